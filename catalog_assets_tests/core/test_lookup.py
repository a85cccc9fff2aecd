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
LATER = datetime(2025, 3, 2, 9, 0)


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


def member_queries(stored: list[tuple[str, str]], content: list[dict], key: str) -> dict:
    """Query uuid -> the rule that puts ``key`` in it, worked out from the stored pairs and the
    documents: its own pair, else the pair of one of its runs, else its course's pair."""
    parent = {
        d["key"]: d["aggregation_key"].partition(":")[2]
        for d in content
        if d["content_type"] == "courserun"
    }
    found: dict[str, str] = {}
    for uuid, associated in stored:
        if associated == key:
            found[uuid] = "associated"
    for uuid, associated in stored:
        if parent.get(associated) == key:
            found.setdefault(uuid, "course_of_associated_run")
        if associated == parent.get(key):
            found.setdefault(uuid, "run_of_associated_course")
    return found


def test_catalogs_for_lists_each_query_with_each_catalog_that_uses_it(populated, content):
    with open_store(populated) as store:
        catalogs = store.enterprise_catalogs()
        titles = {q.uuid: q.title for q in store.catalog_queries()}
    stored = pairs(populated)
    keys = sorted({content_key_of(d) for d in content})
    columns = ("catalog_query_uuid", "catalog_query_title", "catalog_uuid", "catalog_title", "rule")
    rules_seen = set()
    for key in keys[:: max(1, len(keys) // 40)]:
        expected = []
        for query, rule in sorted(member_queries(stored, content, key).items()):
            using = [(c.uuid, c.title) for c in catalogs if c.catalog_query_uuid == query]
            expected += [(query, titles[query], *c, rule) for c in using or [(None, None)]]
            rules_seen.add(rule)
        rows = lookup.catalogs_for(key, url=populated)
        got = [tuple(row[column] for column in columns) for row in rows]
        assert sorted(got, key=str) == sorted(expected, key=str)
        by_catalog = {c.uuid: c.enterprise_uuid for c in catalogs}
        assert all(row["enterprise_uuid"] == by_catalog.get(row["catalog_uuid"]) for row in rows)
    assert rules_seen == {"associated", "course_of_associated_run", "run_of_associated_course"}
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


# --- Membership, as enterprise-catalog's contains_content_keys answers it ----------------------


def doc(key: str, kind: str, parent: str | None = None, **fields) -> dict:
    identity = {"uuid": key} if kind == "program" else {"key": key}
    return {**identity, "aggregation_key": f"{kind}:{parent or key}", "title": key, **fields}


SMALL_CONTENT = [
    doc("edX+A", "course"),
    doc("course-v1:edX+A+1", "courserun", "edX+A"),
    doc("edX+B", "course"),
    doc("course-v1:edX+B+1", "courserun", "edX+B"),
    doc("p1", "program"),
]
SMALL_QUERIES = {
    "catalog_queries": [
        {"uuid": "q-courses", "title": "Courses", "content_filter": {"key": ["edX+A"]}},
        {"uuid": "q-runs", "title": "Runs", "content_filter": {"key": ["course-v1:edX+B+1"]}},
        {
            "uuid": "q-programs",
            "title": "Programs",
            "content_filter": {"aggregation_key": "program:p1"},
        },
        {"uuid": "q-empty", "title": "Nothing", "content_filter": {"key": "nothing"}},
        {"uuid": "q-bad", "title": "Broken", "content_filter": {"title__icontains": "x"}},
    ],
    "enterprise_catalogs": [
        {"uuid": "c-courses", "title": "C", "catalog_query_uuid": "q-courses"},
        {"uuid": "c-runs", "title": "R", "catalog_query_uuid": "q-runs"},
        {"uuid": "c-programs", "title": "P", "catalog_query_uuid": "q-programs"},
        {"uuid": "c-bad", "title": "B", "catalog_query_uuid": "q-bad"},
        {"uuid": "c-orphan", "title": "O", "catalog_query_uuid": "q-gone"},
    ],
}


@pytest.fixture
def small(store_url: str) -> str:
    """A catalog of one course, one of one run, one of one program, an empty, an invalid one."""
    with open_store(store_url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**copy.deepcopy(SMALL_QUERIES)), store, NOW)
        refresh_content(ContentSnapshot(copy.deepcopy(SMALL_CONTENT)), store, NOW)
        refresh_associations(store, NOW)
    return store_url


@pytest.mark.parametrize(
    ("catalog", "key", "contained"),
    [
        ("c-courses", "edX+A", True),  # a course key, a catalog of courses
        ("c-courses", "course-v1:edX+A+1", True),  # a run key: its course is in the catalog
        ("c-courses", "edX+B", False),
        ("c-runs", "course-v1:edX+B+1", True),  # a run key, a catalog of runs
        ("c-runs", "edX+B", True),  # a course key: one of its runs is in the catalog
        ("c-runs", "course-v1:edX+A+1", False),
        ("c-programs", "p1", True),  # a program
        ("c-programs", "edX+A", False),
        ("q-courses", "course-v1:edX+A+1", True),  # a catalog query's uuid works too
        ("c-courses", "unknown", False),
    ],
)
def test_each_membership_case(small, catalog, key, contained):
    assert lookup.contains(catalog, [key], url=small) is contained
    assert lookup.filter_content_keys(catalog, [key], url=small) == ({key} if contained else set())


def test_contains_is_any_of_the_keys_and_filter_keeps_the_contained_ones(small):
    keys = ["edX+B", "course-v1:edX+A+1", "edX+A", "p1", "nope"]
    assert lookup.contains("c-courses", keys, url=small)
    assert lookup.filter_content_keys("c-courses", keys, url=small) == {
        "edX+A",
        "course-v1:edX+A+1",
    }
    assert not lookup.contains("c-courses", ["edX+B", "nope"], url=small)
    assert not lookup.contains("c-courses", [], url=small)
    with pytest.raises(lookup.UnknownCatalog, match="'c-nope'"):
        lookup.contains("c-nope", ["edX+A"], url=small)
    check = lookup.check_membership("c-runs", ["edX+B"], url=small)
    (found,) = check.memberships.values()
    assert (found.rule, found.via_key) == ("course_of_associated_run", "course-v1:edX+B+1")


def test_a_tombstoned_run_leaves_its_course_s_catalogs(small):
    with open_store(small) as store:
        store.apply_content_changes([], ["course-v1:edX+A+1"], LATER)
    assert not lookup.contains("c-courses", ["course-v1:edX+A+1"], url=small)
    assert lookup.contains("c-courses", ["edX+A"], url=small)


def test_lookups_say_what_they_found(small):
    found = lookup.find_catalogs("course-v1:edX+A+1", url=small)
    assert found.found == "found" and [r["rule"] for r in found.rows] == [
        "run_of_associated_course"
    ]
    assert lookup.find_catalogs("nope", url=small).found == "unknown_content"
    with open_store(small) as store:
        store.apply_content_changes([], ["p1"], LATER)
    nothing = lookup.find_catalogs("p1", url=small)
    assert (nothing.found, nothing.message) == (
        "nothing",
        "'p1' is known (program, tombstoned) but in no catalog",
    )

    assert lookup.find_contents("q-courses", url=small).found == "found"
    assert lookup.find_contents("c-runs", url=small).rows[0]["content_key"] == "course-v1:edX+B+1"
    assert lookup.find_contents("q-empty", url=small).found == "nothing"
    unknown = lookup.find_contents("who", url=small)
    assert (unknown.found, unknown.message) == (
        "unknown_uuid",
        "no catalog query or enterprise catalog has the uuid 'who' in the catalog store",
    )
    invalid = lookup.find_contents("q-bad", url=small)
    assert (
        invalid.found == "invalid_query" and "unsupported operator 'icontains'" in invalid.message
    )
    through = lookup.find_contents("c-bad", url=small)
    assert through.found == "invalid_catalog_query"
    assert through.message.startswith("enterprise catalog 'c-bad': its catalog query 'q-bad' has")
    orphan = lookup.find_contents("c-orphan", url=small)
    assert (
        orphan.found == "nothing"
        and "'q-gone', which is not in the catalog store" in orphan.message
    )

    assert lookup.find_related("nope", url=small).found == "unknown_content"
    assert lookup.find_related("edX+A", url=small).found == "nothing"
