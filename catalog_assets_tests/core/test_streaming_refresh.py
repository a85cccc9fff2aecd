"""The chunked (streaming) evaluation and refresh against the whole-table path, pair for pair,
and a refresh killed while it applies its chunks, on both store backends."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from psycopg2 import sql as pgsql

from catalog_assets.core.content import ContentSnapshot
from catalog_assets.core.filters import InvalidFilter, match_table, validate
from catalog_assets.core.filters.bulk import evaluate_chunks
from catalog_assets.core.refresh import refresh_associations, refresh_content, sync_catalog_queries
from catalog_assets.core.sources import CatalogQueryFile
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import CatalogStore, open_store
from catalog_assets_tests.core.test_filters import content_filters, records_strategy
from catalog_assets_tests.support.expected import storable_sample

T1 = datetime(2025, 3, 1, 9, 0)
T2 = T1 + timedelta(hours=1)
T3 = T1 + timedelta(hours=2)

# --- The engine: chunks == the whole table -----------------------------------------------------


def _valid(content_filter: dict) -> bool:
    try:
        validate(content_filter)
    except InvalidFilter:
        return False
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    filters=st.lists(content_filters(), min_size=1, max_size=7),
    records=records_strategy,
    queries_per_chunk=st.integers(1, 8),
)
def test_chunks_are_the_whole_table_pair_for_pair(filters, records, queries_per_chunk):
    by_id = {f"q{i}": f for i, f in enumerate(filters) if _valid(f)}
    keyed = [{**record, "content_key": f"r{i}"} for i, record in enumerate(records)]
    whole = match_table(by_id, keyed)
    chunks = list(evaluate_chunks(by_id, keyed, queries_per_chunk=queries_per_chunk))
    assert len(chunks) == -(-len(by_id) // queries_per_chunk)
    # The same pairs in the same order, each chunk holding whole queries.
    assert pl.concat([whole.clear(), *chunks]).rows() == whole.rows()
    for index, chunk in enumerate(chunks):
        ids = list(by_id)[index * queries_per_chunk : (index + 1) * queries_per_chunk]
        assert set(chunk["query_id"].to_list()) <= set(ids)


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        list(evaluate_chunks({"q": {}}, [{"content_key": "a"}], queries_per_chunk=0))


# --- The refresh: chunked == one chunk, through the store --------------------------------------


@contextmanager
def fresh_store(backend: str, request: pytest.FixtureRequest) -> Iterator[CatalogStore]:
    """A new empty store per call (so per hypothesis example), on either backend."""
    if backend == "duckdb":
        with (
            tempfile.TemporaryDirectory() as folder,
            open_store(f"duckdb:///{Path(folder) / 'catalog.duckdb'}") as store,
        ):
            store.ensure_schema()
            yield store
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url, open_store(url) as store:
        store.ensure_schema()
        yield store


@contextmanager
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A URL whose search path is a new schema, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
        separator = "&" if "?" in postgres_url else "?"
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("DROP SCHEMA {} CASCADE").format(pgsql.Identifier(schema)))
    finally:
        admin.close()


def state(store: CatalogStore) -> dict[str, Any]:
    """Everything a refresh of associations writes."""
    return {
        "pairs": sorted(store.associations().iter_rows()),
        "applied": store.applied_filters(),
        "relations": store.relations(),
    }


def report_facts(report) -> tuple:
    changes = sorted(
        (c.uuid, c.before, c.after, c.added, c.removed, c.held) for c in report.changes
    )
    return (
        report.added,
        report.removed,
        report.total,
        changes,
        sorted(c.uuid for c in report.zero_match),
        report.invalid_kept,
        report.forced_pairs,
        report.relations_total,
    )


def scenario(seed: int, queries: int) -> tuple[list[dict], dict, list[dict], dict]:
    """Content and queries, then edited content (some records changed, some gone) and edited
    queries (a filter changed, one broken, one forcing a course in)."""
    content = storable_sample(generate_content(40, seed=seed))
    listing = generate_catalog_queries(queries, content, seed=seed)
    edited = copy.deepcopy(content)[: len(content) - 3]  # three records gone
    for document in edited[seed % 5 :: 4]:
        document.update(partner="2u", org="IBM", modified="2031-01-01T00:00:00Z")
    edited_listing = copy.deepcopy(listing)
    found = edited_listing["catalog_queries"]
    found[0]["content_filter"] = {"content_type": "course"}
    if len(found) > 1:
        found[1]["content_filter"] = {"org__in": ["MITx"]}  # now invalid: keeps its rows
    if len(found) > 2:
        course = next(d["key"] for d in content if d["content_type"] == "course")
        found[2]["content_filter"] = {
            "content_type": "program",
            "enterprise_force_include_aggregation_keys": [f"course:{course}"],
        }
    return content, listing, edited, edited_listing


def run_scenario(store: CatalogStore, seed: int, queries: int, chunk: int) -> list[tuple]:
    content, listing, edited, edited_listing = scenario(seed, queries)
    sync_catalog_queries(CatalogQueryFile(**listing), store, T1)
    refresh_content(ContentSnapshot(content), store, T1)
    facts = [report_facts(refresh_associations(store, T1, queries_per_chunk=chunk))]
    sync_catalog_queries(CatalogQueryFile(**edited_listing), store, T2)
    refresh_content(ContentSnapshot(edited), store, T2, confirm_mass_tombstone=True)
    facts.append(report_facts(refresh_associations(store, T2, queries_per_chunk=chunk)))
    return facts


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 10_000), queries=st.integers(1, 12), chunk=st.integers(1, 5))
def test_a_chunked_refresh_writes_and_reports_what_one_chunk_does(
    backend, request, seed, queries, chunk
):
    assume(chunk < queries)
    with fresh_store(backend, request) as chunked, fresh_store(backend, request) as whole:
        assert run_scenario(chunked, seed, queries, chunk) == run_scenario(
            whole, seed, queries, 10_000
        )
        assert state(chunked) == state(whole)


# --- A refresh killed while it applies its chunks ----------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from catalog_assets.core.refresh import refresh_associations
    from catalog_assets.store import open_store

    url, marker, now = sys.argv[1], Path(sys.argv[2]), datetime.fromisoformat(sys.argv[3])

    def pause_after_second_chunk(done, chunks):
        if done == 2:
            marker.write_text(f"{done}/{chunks}")
            time.sleep(600)  # killed here, chunks applied but not committed

    with open_store(url) as store:
        refresh_associations(store, now, queries_per_chunk=3, on_chunk=pause_after_second_chunk)
    """
)


def prepared(url: str) -> None:
    """A store whose next refresh changes pairs in most of its chunks."""
    content, listing, edited, edited_listing = scenario(seed=3, queries=20)
    with open_store(url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**listing), store, T1)
        refresh_content(ContentSnapshot(content), store, T1)
        refresh_associations(store, T1)
        sync_catalog_queries(CatalogQueryFile(**edited_listing), store, T2)
        refresh_content(ContentSnapshot(edited), store, T2, confirm_mass_tombstone=True)


def killed_mid_apply(url: str, folder: Path) -> str:
    marker = folder / "paused"
    child = folder / "child.py"
    child.write_text(CHILD)
    process = subprocess.Popen([sys.executable, str(child), url, str(marker), T3.isoformat()])
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, "the refresh ended before it was killed"
            assert time.monotonic() < deadline, "the refresh never reached its second chunk"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return marker.read_text()


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_a_refresh_killed_mid_apply_leaves_the_store_as_before(backend, request, tmp_path):
    with two_stores(backend, request, tmp_path) as (url, control_url):
        prepared(url)
        prepared(control_url)
        with open_store(url) as store:
            before = state(store)
        progress = killed_mid_apply(url, tmp_path)
        assert progress == "2/7"  # killed with two of seven chunks applied
        with open_store(url) as store:
            assert state(store) == before  # nothing of the killed refresh is visible
            report = refresh_associations(store, T3, queries_per_chunk=3)
            after = state(store)
        with open_store(control_url) as control:
            uninterrupted = refresh_associations(control, T3, queries_per_chunk=3)
            assert after == state(control)
        assert report_facts(report) == report_facts(uninterrupted)
        assert after != before and report.added and report.removed


@contextmanager
def two_stores(
    backend: str, request: pytest.FixtureRequest, folder: Path
) -> Iterator[tuple[str, str]]:
    """Two empty stores' URLs: the one killed and an uninterrupted control."""
    if backend == "duckdb":
        yield f"duckdb:///{folder / 'killed.duckdb'}", f"duckdb:///{folder / 'control.duckdb'}"
        return
    postgres_url = request.getfixturevalue("postgres_url")
    with postgres_schema(postgres_url) as url, postgres_schema(postgres_url) as control_url:
        yield url, control_url
