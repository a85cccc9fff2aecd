"""``catalog-assets parity`` against a real local course-discovery server, on DuckDB and
PostgreSQL: the summary line and tables, ``--json``, and the exit status per outcome."""

from __future__ import annotations

import json

import pytest

from catalog_assets import cli
from catalog_assets.cli.parity import ParityExit
from catalog_assets.store import open_store
from catalog_assets_tests.support.fake_discovery import SEARCH_PATH, FakeDiscovery
from catalog_assets_tests.support.parity_data import (
    PLANTED,
    PLANTED_SUMMARY,
    VALID,
    load,
    plant_differences,
    serve,
)


@pytest.fixture
def fake():
    with serve() as server:
        yield server


def point_at(monkeypatch, fake: FakeDiscovery, store_url: str) -> None:
    monkeypatch.setenv("CATALOG_STORE_URL", store_url)
    monkeypatch.setenv("CONTENT_SOURCE", "discovery")
    monkeypatch.setenv("DISCOVERY_API_URL", fake.api_url)
    monkeypatch.setenv("LMS_OAUTH2_URL", fake.oauth2_url)
    monkeypatch.setenv("LMS_OAUTH2_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("LMS_OAUTH2_CLIENT_SECRET", fake.client_secret)


@pytest.fixture
def loaded(store_url, fake, monkeypatch) -> str:
    """A store loaded from ``fake``, which the command reads through the environment."""
    with open_store(store_url) as store:
        store.ensure_schema()
        load(store, fake)
    point_at(monkeypatch, fake, store_url)
    return store_url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(["parity", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_equal_sets_exit_0_with_the_summary_line_and_a_row_per_query(loaded, capsys):
    status, out, err = run(capsys)
    assert (status, err) == (ParityExit.EQUAL, "")
    lines = out.splitlines()
    assert lines[0] == f"{len(VALID)} queries, {len(VALID)} equal, 0 differ, 0 differences"
    assert lines[2].split() == [
        "catalog_query_uuid",
        "title",
        "verdict",
        "matched",
        "only_local",
        "only_discovery",
    ]
    rows = [line.split() for line in lines[3:]]
    assert [row[0] for row in rows] == VALID
    assert all(row[-4:-3] == ["equal"] for row in rows)


def test_planted_differences_exit_1_and_each_is_named_with_its_reason(loaded, fake, capsys):
    with open_store(loaded) as store:
        plant_differences(store, fake)
    status, out, err = run(capsys)
    assert (status, err) == (ParityExit.DIFFERS, "")
    assert out.splitlines()[0] == PLANTED_SUMMARY
    for (uuid, side, key), reason in PLANTED.items():
        section = out.split(f"\nquery {uuid} ", 1)[1].split("\nquery ", 1)[0]
        assert any(line.split()[:3] == [side, key, reason] for line in section.splitlines()), (
            uuid,
            key,
            reason,
        )
    assert "\nquery q-forced " not in out  # equal: no section


def test_json_gives_the_report_for_machines(loaded, fake, capsys):
    with open_store(loaded) as store:
        plant_differences(store, fake)
    status, out, _ = run(capsys, "--json", "--query", "q-excl", "--query", "q-forced")
    assert status == ParityExit.DIFFERS
    answer = json.loads(out)
    assert set(answer) == {
        "summary",
        "queries",
        "equal",
        "differ",
        "differences",
        "only_local",
        "only_discovery",
        "reasons",
        "results",
    }
    assert answer["summary"] == "2 queries, 1 equal, 1 differ, 1 differences"
    assert answer["reasons"] == {"excluded_by_allow_list": 1}
    excl, forced = answer["results"]
    assert (excl["uuid"], excl["equal"], forced["uuid"], forced["equal"]) == (
        "q-excl",
        False,
        "q-forced",
        True,
    )
    assert excl["examples"]["only_local"] == [
        {
            "content_key": "p1",
            "reason": "excluded_by_allow_list",
            "detail": "discovery's product_source is other",
        }
    ]
    assert forced["examples"] == {"matched": ["edX+F"], "only_local": [], "only_discovery": []}


def test_sample_bounds_the_queries_in_uuid_order(loaded, capsys):
    status, out, _ = run(capsys, "--sample", "2", "--json")
    assert status == ParityExit.EQUAL
    assert [r["uuid"] for r in json.loads(out)["results"]] == VALID[:2]


def test_an_unknown_query_exits_2_and_says_which(loaded, capsys):
    status, out, err = run(capsys, "--query", "q-edx", "--query", "no-such-query")
    assert (status, out) == (ParityExit.UNAVAILABLE, "")
    assert err == ("catalog-assets parity: 'no-such-query' is not a catalog query in the store\n")


def test_a_failing_discovery_exits_2(loaded, fake, capsys):
    fake.fail_next(SEARCH_PATH, 403)
    status, out, err = run(capsys)
    assert (status, out) == (ParityExit.UNAVAILABLE, "")
    assert err.startswith("catalog-assets parity: course-discovery cannot be reached: POST ")
    assert "HTTP 403" in err


def test_a_discovery_that_is_down_exits_2_after_its_retries(tmp_path, fake, monkeypatch, capsys):
    """One backend is enough here: the retries' backoff takes seconds."""
    url = f"duckdb:///{tmp_path / 'catalog.duckdb'}"
    with open_store(url) as store:
        store.ensure_schema()
        load(store, fake)
    point_at(monkeypatch, fake, url)
    fake.stop()
    status, out, err = run(capsys, "--query", "q-edx")
    assert (status, out) == (ParityExit.UNAVAILABLE, "")
    assert "course-discovery cannot be reached" in err and "after 6 attempts" in err
