"""Which catalogs hold a key, and what a catalog holds: ``core.lookup`` against a store the
bulk lane populated (both backends), and its errors for a store that is not there."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest

from catalog_assets.core import lookup
from catalog_assets.core.content import ContentSnapshot, content_key_of
from catalog_assets.core.refresh import refresh_associations, refresh_content, sync_catalog_queries
from catalog_assets.core.sources import CatalogQueryFile
from catalog_assets.store import StoreSchemaMismatch, open_store

NOW = datetime(2025, 3, 1, 9, 0)


@pytest.fixture
def populated(store_url: str, content: list[dict], queries: dict) -> str:
    """`store_url`, loaded by the bulk lane's three steps; one query has no catalog."""
    queries = copy.deepcopy(queries)
    orphan_query = queries["catalog_queries"][0]["uuid"]
    queries["enterprise_catalogs"] = [
        c for c in queries["enterprise_catalogs"] if c["catalog_query_uuid"] != orphan_query
    ]
    with open_store(store_url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**queries), store, NOW)
        refresh_content(ContentSnapshot(content), store, NOW)
        refresh_associations(store, NOW)
    return store_url


def pairs(url: str) -> list[tuple[str, str]]:
    with open_store(url) as store:
        return sorted(store.associations().iter_rows())


def test_catalogs_for_lists_each_query_with_each_catalog_that_uses_it(populated):
    with open_store(populated) as store:
        catalogs = store.enterprise_catalogs()
        titles = {q.uuid: q.title for q in store.catalog_queries()}
    stored = pairs(populated)
    keys = sorted({key for _, key in stored})
    columns = ("catalog_query_uuid", "catalog_query_title", "catalog_uuid", "catalog_title")
    for key in keys[:: max(1, len(keys) // 25)]:
        expected = []
        for query in sorted(uuid for uuid, k in stored if k == key):
            using = [(c.uuid, c.title) for c in catalogs if c.catalog_query_uuid == query]
            expected += [(query, titles[query], *catalog) for catalog in using or [(None, None)]]
        rows = lookup.catalogs_for(key, url=populated)
        got = [tuple(row[column] for column in columns) for row in rows]
        assert sorted(got, key=str) == sorted(expected, key=str)
        by_catalog = {c.uuid: c.enterprise_uuid for c in catalogs}
        assert all(row["enterprise_uuid"] == by_catalog.get(row["catalog_uuid"]) for row in rows)
    assert lookup.catalogs_for("edX+NOT-THERE", url=populated) == []


def test_a_query_without_a_catalog_is_listed_with_empty_catalog_fields(populated, queries):
    orphan = queries["catalog_queries"][0]["uuid"]
    key = next(key for uuid, key in pairs(populated) if uuid == orphan)
    (row,) = [
        r for r in lookup.catalogs_for(key, url=populated) if r["catalog_query_uuid"] == orphan
    ]
    assert (row["catalog_uuid"], row["catalog_title"], row["enterprise_uuid"]) == (None, None, None)


def test_contents_of_a_query_or_its_catalogs_is_its_associated_content(populated, content):
    documents = {content_key_of(d): d for d in content}
    with open_store(populated) as store:
        catalogs = store.enterprise_catalogs()
    for query in sorted({uuid for uuid, _ in pairs(populated)}):
        keys = sorted(key for uuid, key in pairs(populated) if uuid == query)
        rows = lookup.contents_of(query, url=populated)
        assert [r["content_key"] for r in rows] == keys
        for row in rows:
            document = documents[row["content_key"]]
            assert row["title"] == document["title"] and row["deleted"] is False
            assert document["aggregation_key"].startswith(f"{row['content_type']}:")
        for catalog in (c for c in catalogs if c.catalog_query_uuid == query):
            assert lookup.contents_of(catalog.uuid, url=populated) == rows
    assert lookup.contents_of("no-such-uuid", url=populated) == []


def test_the_store_comes_from_the_environment(populated, monkeypatch):
    monkeypatch.setenv("CATALOG_STORE_URL", populated)
    uuid, key = pairs(populated)[0]
    assert uuid in {r["catalog_query_uuid"] for r in lookup.catalogs_for(key)}
    assert key in {r["content_key"] for r in lookup.contents_of(uuid)}


def test_a_missing_duckdb_file_is_an_error_that_says_what_to_do(tmp_path, monkeypatch):
    """And the lookup does not create the file it looked for."""
    missing = tmp_path / "nowhere" / "catalog.duckdb"
    monkeypatch.setenv("CATALOG_STORE_URL", f"duckdb:///{missing}")
    for call in (lambda: lookup.catalogs_for("k"), lambda: lookup.contents_of("q")):
        with pytest.raises(FileNotFoundError, match="CATALOG_STORE_URL") as error:
            call()
        assert str(missing) in str(error.value) and "make run" in str(error.value)
    assert not missing.parent.exists()


def test_the_default_store_is_the_embedded_file_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        lookup.store_url({})
    assert str((tmp_path / "data" / "catalog.duckdb").resolve()) in str(error.value)
    assert lookup.store_url({"CATALOG_STORE_URL": "duckdb:///:memory:"}) == "duckdb:///:memory:"
    server = "postgresql://reader@db.example/catalog"
    assert lookup.store_url({"CATALOG_STORE_URL": server}) == server  # no file to check


def test_a_store_without_the_schema_is_refused_not_migrated(tmp_path):
    """A lookup is read-only: it needs no rights to create tables."""
    url = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    with open_store(url) as store:
        assert store.schema_version() == 0
    with pytest.raises(StoreSchemaMismatch):
        lookup.catalogs_for("k", url=url)
    with open_store(url) as store:
        assert store.schema_version() == 0


def test_an_existing_duckdb_file_is_used_as_given(tmp_path):
    url = f"duckdb:///{tmp_path / 'catalog.duckdb'}"
    with open_store(url) as store:
        store.ensure_schema()
    assert lookup.store_url({"CATALOG_STORE_URL": url}) == url
