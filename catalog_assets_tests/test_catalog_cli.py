"""The catalog commands (``catalogs-for``, ``contents-of``, ``contains``, ``related``,
``explain``) on DuckDB and PostgreSQL: what each prints, and an exit status per outcome."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest

from catalog_assets import cli
from catalog_assets.cli.catalog import Exit
from catalog_assets.core.content import ContentSnapshot
from catalog_assets.core.refresh import refresh_associations, refresh_content, sync_catalog_queries
from catalog_assets.core.sources import CatalogQueryFile
from catalog_assets.store import open_store

NOW = datetime(2025, 3, 1, 9, 0)
LATER = datetime(2025, 3, 2, 9, 0)

CONTENT = [
    {
        "key": "edX+A",
        "aggregation_key": "course:edX+A",
        "title": "Course A",
        "programs": [{"uuid": "p1"}],
    },
    {"key": "course-v1:edX+A+1", "aggregation_key": "courserun:edX+A", "title": "Run A1"},
    {"key": "edX+B", "aggregation_key": "course:edX+B", "title": "Course B"},
    {
        "uuid": "p1",
        "aggregation_key": "program:p1",
        "title": "Program 1",
        "courses": [{"key": "edX+A"}],
    },
]
QUERIES = {
    "catalog_queries": [
        {"uuid": "q-a", "title": "Course A", "content_filter": {"key": "edX+A"}},
        {"uuid": "q-none", "title": "Nothing", "content_filter": {"key": "none"}},
        {"uuid": "q-bad", "title": "Broken", "content_filter": {"org__in": ["x"]}},
    ],
    "enterprise_catalogs": [
        {"uuid": "c-a", "title": "Catalog A", "catalog_query_uuid": "q-a"},
        {"uuid": "c-bad", "title": "Catalog B", "catalog_query_uuid": "q-bad"},
    ],
}


@pytest.fixture
def store_env(store_url, monkeypatch) -> str:
    """A loaded store (both backends) that the commands read through CATALOG_STORE_URL."""
    with open_store(store_url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**copy.deepcopy(QUERIES)), store, NOW)
        refresh_content(ContentSnapshot(copy.deepcopy(CONTENT)), store, NOW)
        refresh_associations(store, NOW)
    monkeypatch.setenv("CATALOG_STORE_URL", store_url)
    return store_url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_catalogs_for_finds_a_run_s_course_catalogs_and_says_what_it_missed(store_env, capsys):
    status, out, err = run(capsys, "catalogs-for", "course-v1:edX+A+1")
    assert (status, err) == (Exit.FOUND, "")
    header, row = out.splitlines()
    assert header.split() == [
        "catalog_query_uuid",
        "catalog_query_title",
        "catalog_uuid",
        "catalog_title",
        "rule",
        "via_key",
    ]
    assert row.split() == [
        "q-a",
        "Course",
        "A",
        "c-a",
        "Catalog",
        "A",
        "run_of_associated_course",
        "edX+A",
    ]
    status, out, _ = run(capsys, "catalogs-for", "course-v1:edX+A+1", "--json")
    assert json.loads(out)[0]["rule"] == "run_of_associated_course"

    status, out, err = run(capsys, "catalogs-for", "nope")
    assert (status, out) == (Exit.UNKNOWN_CONTENT, "")
    assert err == "catalog-assets catalogs-for: no content with the key 'nope' in the store\n"
    status, out, err = run(capsys, "catalogs-for", "edX+B", "--json")
    assert (status, json.loads(out)) == (Exit.NOTHING, [])
    assert "'edX+B' is known (course, live) but in no catalog" in err


def test_contents_of_says_yes_or_no_and_tells_every_miss_apart(store_env, capsys):
    with open_store(store_env) as store:
        store.replace_content_associations("gone", ["q-a"], NOW)  # a pair from an older version
    status, out, err = run(capsys, "contents-of", "c-a")
    assert (status, err) == (Exit.FOUND, "")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["content_key", "content_type", "title", "deleted"]
    assert lines[1] == ["edX+A", "course", "Course", "A", "no"]
    assert lines[2] == ["gone", "-", "-", "no"]
    assert not {"False", "True", "None"} & set(out.split())
    assert json.loads(run(capsys, "contents-of", "c-a", "--json")[1])[0]["deleted"] is False

    assert run(capsys, "contents-of", "q-none")[0] == Exit.NOTHING
    status, out, err = run(capsys, "contents-of", "who")
    assert (status, out) == (Exit.UNKNOWN_UUID, "")
    assert "no catalog query or enterprise catalog has the uuid 'who'" in err
    status, _, err = run(capsys, "contents-of", "q-bad")
    assert status == Exit.INVALID_QUERY and "unsupported operator 'in'" in err
    status, _, err = run(capsys, "contents-of", "c-bad")
    assert status == Exit.INVALID_CATALOG_QUERY and "its catalog query 'q-bad' has" in err


def test_contains_answers_like_the_api(store_env, capsys):
    status, out, err = run(capsys, "contains", "c-a", "course-v1:edX+A+1", "edX+B")
    assert (status, err) == (Exit.FOUND, "")
    lines = out.splitlines()
    assert lines[1].split() == ["course-v1:edX+A+1", "yes", "run_of_associated_course", "edX+A"]
    assert lines[2].split() == ["edX+B", "no"]
    assert json.loads(lines[-1]) == {"contains_content_items": True}
    status, out, _ = run(capsys, "contains", "c-a", "edX+B", "--json")
    assert (status, out) == (Exit.NOTHING, '{"contains_content_items": false}\n')
    status, out, err = run(capsys, "contains", "c-unknown", "edX+A")
    assert (status, out) == (2, "")
    assert "'c-unknown'" in err
    status, out, err = run(capsys, "contains", "c-bad", "edX+A", "--json")
    assert status == Exit.NOTHING and "invalid filter" in err  # answered, with a warning


def test_related_lists_links_both_ways(store_env, capsys):
    status, out, _ = run(capsys, "related", "edX+A")
    assert status == Exit.FOUND
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows == [
        ["p1", "declared_by", "program_course", "program", "Program", "1", "no"],
        ["p1", "declares", "course_program", "program", "Program", "1", "no"],
    ]
    assert run(capsys, "related", "edX+B")[0] == Exit.NOTHING
    assert run(capsys, "related", "nope")[0] == Exit.UNKNOWN_CONTENT


def test_explain_walks_through_the_verdicts_to_the_store_s_answer(store_env, capsys):
    status, out, _ = run(capsys, "explain", "c-a", "edX+B")
    assert status == Exit.NOTHING
    lines = out.splitlines()
    assert lines[0] == "enterprise catalog c-a (Catalog A), catalog query q-a (Course A)"
    assert lines[1] == "content edX+B (course, live)"
    at = lines.index("filter, key by key in the order the engine evaluates them:")
    assert lines[at + 1].split() == [
        "key",
        "operator",
        "filter",
        "value",
        "record",
        "value",
        "result",
    ]
    assert lines[at + 2].split() == ["key", "exact", '"edX+A"', '"edX+B"', "fail"]
    assert lines[at + 3] == "filter: no match"
    assert lines[at + 4] == "allow-lists: admitted by the allow-lists"
    assert lines[-1] == "answer: not in the catalog (as the store holds it; the rules agree)"

    status, out, _ = run(capsys, "explain", "q-a", "course-v1:edX+A+1", "--json")
    explained = json.loads(out)
    assert status == Exit.FOUND and explained["in_catalog"] and explained["store_agrees"]
    assert explained["filter_matches"] is False
    assert explained["memberships"] == [
        {"catalog_query_uuid": "q-a", "rule": "run_of_associated_course", "via_key": "edX+A"}
    ]

    # The store disagrees once the record changes without a refresh.
    with open_store(store_env) as store:
        store.replace_content_associations("edX+B", ["q-a"], LATER)
    status, out, _ = run(capsys, "explain", "q-a", "edX+B")
    assert status == Exit.FOUND and "note: the store disagrees" in out
    assert out.splitlines()[-1].endswith("the rules DISAGREE)")

    assert run(capsys, "explain", "who", "edX+A")[0] == Exit.UNKNOWN_UUID
    assert run(capsys, "explain", "q-a", "nope")[0] == Exit.UNKNOWN_CONTENT
