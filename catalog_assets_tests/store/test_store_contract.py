"""The catalog store contract: the same assertions against DuckDB and PostgreSQL.

Every test taking `store` runs once per backend (see conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import psycopg2
import pytest

from catalog_assets.core.catalog_contents import ContentRelation, RelationKind
from catalog_assets.core.content import ContentRecord, content_record
from catalog_assets.store import (
    CatalogQueryRow,
    CatalogStore,
    DeadLetter,
    EnterpriseCatalogRow,
    StoreSchemaMismatch,
    StoreUnavailable,
    migrations,
    open_store,
)
from catalog_assets.store.shared import SqlCatalogStore

T0 = datetime(2024, 1, 1, 12, 0, 0)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
T3 = T0 + timedelta(hours=3)
NOW = datetime(2024, 6, 1, 8, 30, 0)
LATER = NOW + timedelta(days=1)
HOSTILE = 'x\'); DROP TABLE content_metadata; -- "q" ;'


def course(key: str, modified: datetime | None = T0, **extra: object) -> ContentRecord:
    document: dict[str, object] = {
        "key": key,
        "aggregation_key": f"course:{key}",
        "title": f"Title of {key}",
        "uuid": f"uuid-{key}",
        **extra,
    }
    if modified is not None:
        document["modified"] = modified.isoformat() + "Z"
    return content_record(document)


def snapshot(store: CatalogStore) -> tuple:
    state = store.content_state()
    return state, store.live_content(), [store.get_content(key) for key in sorted(state)]


def pairs(*rows: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"catalog_query_uuid": pl.String, "content_key": pl.String}, orient="row"
    )


def apply_diff(store, adds: pl.DataFrame, removes: pl.DataFrame, now) -> tuple[int, int]:
    """`apply_association_diff`, with the added pairs' content made live first: the store only
    associates live content (see test_associations_only_ever_name_live_content)."""
    if "content_key" in adds.columns:
        keys = sorted(set(adds["content_key"].to_list()))
        state = store.content_state()
        missing = [k for k in keys if k not in state or state[k].deleted]
        if missing:
            records = [content_record({"key": k, "content_type": "course"}) for k in missing]
            store.apply_content_changes(records, [], now)
    return store.apply_association_diff(adds, removes, now)


def test_associations_only_ever_name_live_content(store):
    store.apply_content_changes(
        [content_record({"key": k, "content_type": "course"}) for k in ("live", "dead")], [], NOW
    )
    store.apply_content_changes([], ["dead"], LATER)
    added = store.apply_association_diff(
        pairs(("q", "live"), ("q", "dead"), ("q", "unknown")), pairs(), LATER
    )
    assert added == (1, 0)
    assert sorted(store.associations().iter_rows()) == [("q", "live")]


def test_dangling_associations_are_counted_by_the_database(store):
    """Pairs that name tombstoned or unknown content, which only a writer outside the store
    (older code, a hand-written statement) can leave: the check that reports them counts in
    SQL."""
    store.apply_content_changes(
        [content_record({"key": k, "content_type": "course"}) for k in ("live", "dead")], [], NOW
    )
    apply_diff(store, pairs(("q1", "live"), ("q2", "live")), pairs(), NOW)
    assert store.dangling_associations(5) == (0, [])
    store.apply_content_changes([], ["dead"], LATER)
    with store.transaction():  # what a writer outside the store could do
        for uuid, key in (("q2", "unknown"), ("q1", "dead"), ("q1", "zzz")):
            store._run(
                "INSERT INTO catalog_query_content (catalog_query_uuid, content_key, added_at) "
                "VALUES (?, ?, CAST(? AS TIMESTAMP))",
                (uuid, key, LATER),
            )
    assert store.dangling_associations(2) == (3, [("q1", "dead"), ("q1", "zzz")])
    assert store.dangling_associations(10)[1] == [("q1", "dead"), ("q1", "zzz"), ("q2", "unknown")]


def sorted_pairs(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return sorted(frame.select("catalog_query_uuid", "content_key").iter_rows())


# --------------------------------------------------------------------------------------------
# content_record (backend independent)
# --------------------------------------------------------------------------------------------


def test_content_record_derives_keys_types_and_parents() -> None:
    run = content_record(
        {
            "key": "course-v1:edX+DemoX+2024",
            "aggregation_key": "courserun:edX+DemoX",
            "uuid": "r-1",
            "modified": "2024-03-01T10:00:00+02:00",
        }
    )
    assert run.content_key == "course-v1:edX+DemoX+2024"
    assert run.content_type == "courserun"
    assert run.parent_content_key == "edX+DemoX"
    assert run.content_uuid == "r-1"
    assert run.source_modified == datetime(2024, 3, 1, 8, 0, 0)

    program = content_record({"uuid": "p-1", "aggregation_key": "program:p-1", "modified": "x"})
    assert (program.content_key, program.content_type, program.parent_content_key) == (
        "p-1",
        "program",
        None,
    )
    assert program.source_modified is None

    pathway = content_record({"uuid": "lp-1", "content_type": "learnerpathway"})
    assert pathway.content_type == "learnerpathway"


def test_content_hash_ignores_key_order_but_not_values() -> None:
    a = content_record({"key": "k", "aggregation_key": "course:k", "a": 1, "b": [1, 2]})
    b = content_record({"b": [1, 2], "a": 1, "aggregation_key": "course:k", "key": "k"})
    c = content_record({"key": "k", "aggregation_key": "course:k", "a": 2, "b": [1, 2]})
    assert a.content_hash == b.content_hash != c.content_hash
    assert len(a.content_hash) == 64


def test_content_record_without_key_or_uuid_names_the_document() -> None:
    with pytest.raises(ValueError, match=r"neither a key nor a uuid.*course:zzz.*Lost course"):
        content_record({"aggregation_key": "course:zzz", "title": "Lost course"})


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def test_schema_is_idempotent(store: CatalogStore, store_url: str) -> None:
    store.apply_content_changes([course("a")], [], NOW)
    store.ensure_schema()
    store.ensure_schema()
    assert store.schema_version() == max(migrations.MIGRATIONS)
    assert list(store.content_state()) == ["a"]
    store.close()
    with open_store(store_url) as again:
        again.ensure_schema()
        assert again.schema_version() == max(migrations.MIGRATIONS)
        assert list(again.content_state()) == ["a"]


def test_schema_version_before_and_after_ensure_schema(store_url: str) -> None:
    with open_store(store_url) as fresh:
        assert fresh.schema_version() == 0
        fresh.ensure_schema()
        assert fresh.schema_version() == max(migrations.MIGRATIONS)


def test_open_store_rejects_unknown_urls(tmp_path) -> None:
    with pytest.raises(ValueError, match="unsupported store url"):
        open_store("sqlite:///x.db")
    nested = tmp_path / "a" / "b" / "catalog.duckdb"
    with open_store(f"duckdb:///{nested}") as created:
        created.ensure_schema()
    assert nested.is_file()
    with open_store("duckdb:///:memory:") as memory:
        assert memory.schema_version() == 0
        memory.ensure_schema()
        assert memory.content_state() == {}


# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------


def test_insert_update_and_unchanged_counts(store: CatalogStore) -> None:
    first = store.apply_content_changes([course("a"), course("b"), course("c")], [], NOW)
    assert (first.inserted, first.updated, first.unchanged) == (["a", "b", "c"], [], [])
    assert (first.stale, first.tombstoned) == ([], [])

    second = store.apply_content_changes(
        [course("a"), course("b", T1, title="New title"), course("d")], [], LATER
    )
    assert second.inserted == ["d"]
    assert second.updated == ["b"]
    assert second.unchanged == ["a"]

    a, b = store.get_content("a"), store.get_content("b")
    assert a is not None and b is not None
    assert a.updated_at == NOW  # unchanged rows keep their updated_at
    assert b.updated_at == LATER
    assert b.metadata["title"] == "New title"
    assert b.source_modified == T1
    assert b.content_hash == course("b", T1, title="New title").content_hash
    assert (b.content_type, b.content_uuid, b.deleted_at) == ("course", "uuid-b", None)
    state = store.content_state()
    assert sorted(state) == ["a", "b", "c", "d"]
    assert state["b"].content_hash == b.content_hash
    assert state["b"].source_modified == T1
    assert not state["b"].deleted
    assert [key for key, _ in store.live_content()] == ["a", "b", "c", "d"]
    assert dict(store.live_content())["b"] == b.metadata
    assert store.get_content("nope") is None


def test_stale_writes_are_skipped(store: CatalogStore) -> None:
    store.apply_content_changes([course("a", T2, title="newest")], [], NOW)

    older = store.apply_content_changes([course("a", T1, title="older")], [], LATER)
    assert older.stale == ["a"]
    older_same_hash = store.apply_content_changes([course("a", T1, title="newest")], [], LATER)
    assert older_same_hash.stale == ["a"]
    stored = store.get_content("a")
    assert stored is not None
    assert (stored.metadata["title"], stored.source_modified, stored.updated_at) == (
        "newest",
        T2,
        NOW,
    )

    # Equal timestamps and unknown timestamps are never stale.
    same_time = store.apply_content_changes([course("a", T2, title="same time")], [], LATER)
    assert same_time.updated == ["a"]
    unknown = store.apply_content_changes([course("a", None, title="no modified")], [], LATER)
    assert unknown.updated == ["a"]


def test_newest_record_wins_when_a_key_repeats(store: CatalogStore) -> None:
    result = store.apply_content_changes(
        [course("a", T2, title="newest"), course("a", T1, title="older")], [], NOW
    )
    assert result.inserted == ["a"]
    stored = store.get_content("a")
    assert stored is not None and stored.metadata["title"] == "newest"
    with pytest.raises(ValueError, match="both upserted and tombstoned"):
        store.apply_content_changes([course("b")], ["b"], NOW)


def test_tombstone_and_resurrection(store: CatalogStore) -> None:
    store.apply_content_changes([course("a"), course("b")], [], NOW)

    gone = store.apply_content_changes([], ["a", "a", "absent"], LATER)
    assert gone.tombstoned == ["a"]
    again = store.apply_content_changes([], ["a"], LATER + timedelta(hours=1))
    assert again.tombstoned == []

    a = store.get_content("a")
    assert a is not None and a.deleted_at == LATER and a.updated_at == LATER
    assert store.content_state()["a"].deleted
    assert [key for key, _ in store.live_content()] == ["b"]

    back_at = LATER + timedelta(days=1)
    back = store.apply_content_changes([course("a")], [], back_at)  # same hash as before
    assert back.updated == ["a"]
    a = store.get_content("a")
    assert a is not None and a.deleted_at is None and a.updated_at == back_at
    assert [key for key, _ in store.live_content()] == ["a", "b"]


def test_single_key_tombstone_has_the_stale_guard(store: CatalogStore) -> None:
    store.apply_content_changes([course("a", T2), course("b", None)], [], NOW)

    assert not store.tombstone_content("a", LATER, source_modified=T1)  # stored row is newer
    assert not store.content_state()["a"].deleted
    assert store.tombstone_content("a", LATER, source_modified=T3)
    assert not store.tombstone_content("a", LATER, source_modified=T3)  # already tombstoned
    assert not store.tombstone_content("absent", LATER)
    assert store.tombstone_content("b", LATER)
    a = store.get_content("a")
    assert a is not None and a.deleted_at == LATER

    # The delete is recorded as of T3: an older record does not bring the row back, a newer does.
    assert store.apply_content_changes([course("a", T2, v=2)], [], LATER).stale == ["a"]
    assert store.apply_content_changes([course("a", T3 + timedelta(1), v=3)], [], LATER).updated
    assert not store.content_state()["a"].deleted


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            ContentRecord("bad", None, None, None, {}, T0, "h"),  # type: ignore[arg-type]
            id="not-null-violation",
        ),
        pytest.param(
            ContentRecord("bad", "course", None, None, {"x": object()}, T0, "h"),
            id="unserialisable-json",
        ),
    ],
)
def test_content_changes_are_all_or_nothing(store: CatalogStore, bad: ContentRecord) -> None:
    store.apply_content_changes([course("a"), course("b"), course("c")], [], NOW)
    before = snapshot(store)
    with pytest.raises(Exception):  # noqa: B017 - the backend's own error type
        store.apply_content_changes(
            [course("a", T1, title="changed"), course("new"), bad, course("z")], ["b"], LATER
        )
    assert snapshot(store) == before
    # The store is usable after the failure.
    assert store.apply_content_changes([], ["c"], LATER).tombstoned == ["c"]


# --------------------------------------------------------------------------------------------
# Catalog queries
# --------------------------------------------------------------------------------------------

FILTER_1 = '{"content_type": "course", "aggregation_key": ["course:a"],  "a_first": 1}'
FILTER_2 = '{ "zeta":1,"alpha" : [3, 2, 1], "org": "edX" }'


def test_query_sync_add_change_unchanged_remove(store: CatalogStore) -> None:
    q1 = CatalogQueryRow("q1", "Query one", FILTER_1, "h1", True)
    q2 = CatalogQueryRow("q2", "Query two", FILTER_2, "h2", False, "bad filter", ("w1", "w2"))
    q3 = CatalogQueryRow("q3", None, "{}", "h3", True)
    catalogs = [
        EnterpriseCatalogRow("c1", "Catalog one", "e1", "q1"),
        EnterpriseCatalogRow("c3", "Catalog three", "e1", "q3"),
    ]
    first = store.sync_catalog_queries([q1, q2, q3], catalogs, NOW)
    assert (first.added, first.changed, first.unchanged, first.removed) == (
        ["q1", "q2", "q3"],
        [],
        [],
        [],
    )
    apply_diff(store, pairs(("q3", "a"), ("q3", "b"), ("q1", "a")), pairs(), NOW)

    q2_changed = CatalogQueryRow("q2", "Query two", FILTER_2, "h2", True, None, ("w1",))
    q4 = CatalogQueryRow("q4", "Query four", "[]", "h4", True)
    second = store.sync_catalog_queries(
        [q1, q2_changed, q4], [EnterpriseCatalogRow("c1", "Catalog one!", "e2", "q1")], LATER
    )
    assert (second.added, second.changed, second.unchanged, second.removed) == (
        ["q4"],
        ["q2"],
        ["q1"],
        ["q3"],
    )

    stored = {row.uuid: row for row in store.catalog_queries()}
    assert sorted(stored) == ["q1", "q2", "q4"]
    assert stored["q1"].content_filter == FILTER_1  # byte for byte, key order kept
    assert stored["q2"].content_filter == FILTER_2
    assert stored["q1"].updated_at == NOW
    assert stored["q2"].updated_at == LATER
    assert (stored["q2"].is_valid, stored["q2"].error, stored["q2"].warnings) == (
        True,
        None,
        ("w1",),
    )
    assert stored["q4"].updated_at == LATER
    assert store.enterprise_catalogs() == [EnterpriseCatalogRow("c1", "Catalog one!", "e2", "q1")]
    # The removed query's associations went with it; the others stayed.
    assert sorted_pairs(store.associations()) == [("q1", "a")]

    third = store.sync_catalog_queries([q1, q2_changed, q4], [], LATER)
    assert third.unchanged == ["q1", "q2", "q4"]
    assert store.enterprise_catalogs() == []


def test_query_sync_refuses_duplicates(store: CatalogStore) -> None:
    q1 = CatalogQueryRow("q1", "Query one", "{}", "h1", True)
    with pytest.raises(ValueError, match="duplicate catalog query"):
        store.sync_catalog_queries([q1, q1], [], NOW)
    assert store.catalog_queries() == []


# --------------------------------------------------------------------------------------------
# Associations
# --------------------------------------------------------------------------------------------


def test_association_diff_is_idempotent_and_removes_exact_pairs(store: CatalogStore) -> None:
    empty = store.associations()
    assert empty.schema == pl.Schema({"catalog_query_uuid": pl.String, "content_key": pl.String})
    assert empty.height == 0

    adds = pairs(("q1", "a"), ("q1", "b"), ("q2", "a"), ("q1", "a"))
    assert apply_diff(store, adds, pairs(), NOW) == (3, 0)
    assert apply_diff(store, adds, pairs(), LATER) == (0, 0)
    assert store.associations_of("a") == {"q1": NOW, "q2": NOW}

    removes = pairs(("q1", "a"), ("q9", "b"), ("q2", "b"))
    assert apply_diff(store, pairs(("q3", "c")), removes, LATER) == (1, 1)
    frame = store.associations()
    assert frame.schema == empty.schema
    assert sorted_pairs(frame) == [("q1", "b"), ("q2", "a"), ("q3", "c")]

    with pytest.raises(ValueError, match="lacks columns"):
        apply_diff(store, pl.DataFrame({"content_key": ["a"]}), pairs(), NOW)


def test_bulk_associations_round_trip_awkward_text(store: CatalogStore) -> None:
    awkward = ["", "a,b", 'say "hi"', "line\nbreak", "tab\there", "back\\slash", "é ü 中", "\\."]
    rows = [(f"q{i % 7}{awkward[i % len(awkward)]}", f"k{i},{awkward[i % 5]}") for i in range(5000)]
    assert apply_diff(store, pairs(*rows), pairs(), NOW) == (len(set(rows)), 0)
    assert sorted_pairs(store.associations()) == sorted(set(rows))
    half = rows[::2]
    assert apply_diff(store, pairs(), pairs(*half), NOW) == (0, len(set(half)))
    assert sorted_pairs(store.associations()) == sorted(set(rows) - set(half))


def test_large_removal_keeps_the_rest_intact(store: CatalogStore) -> None:
    """Large enough for DuckDB to rebuild the table rather than delete row by row."""
    rows = [(f"q{i % 50}", f"k{i}") for i in range(25_000)]
    assert apply_diff(store, pairs(*rows[:24_000]), pairs(), NOW) == (24_000, 0)
    assert apply_diff(store, pairs(*rows[24_000:]), pairs(), LATER) == (1_000, 0)
    removes = pairs(*rows[:21_000], ("q-none", "k-none"))
    assert apply_diff(store, pairs(("q0", "new")), removes, LATER) == (1, 21_000)
    assert sorted_pairs(store.associations()) == sorted([*rows[21_000:], ("q0", "new")])
    assert store.associations_of("k21000") == {"q0": NOW}
    assert store.associations_of("k24999") == {"q49": LATER}
    # The primary key is still there: present pairs are not added twice.
    assert apply_diff(store, pairs(*rows[21_000:]), pairs(), LATER) == (0, 0)
    assert store.associations().height == 4_001


def test_replace_content_associations_keeps_added_at(store: CatalogStore) -> None:
    apply_diff(store, pairs(("q1", "a"), ("q2", "a"), ("q1", "b")), pairs(), NOW)

    assert store.replace_content_associations("a", ["q2", "q3", "q3"], LATER) == (1, 1)
    assert store.associations_of("a") == {"q2": NOW, "q3": LATER}
    assert store.associations_of("b") == {"q1": NOW}
    assert store.replace_content_associations("a", ["q2", "q3"], LATER) == (0, 0)
    assert store.replace_content_associations("a", [], LATER) == (0, 2)
    assert store.associations_of("a") == {}


# --------------------------------------------------------------------------------------------
# Lookups
# --------------------------------------------------------------------------------------------


def test_lookups(store: CatalogStore) -> None:
    store.apply_content_changes(
        [course("a"), course("b"), content_record({"uuid": "p1", "aggregation_key": "program:p1"})],
        [],
        NOW,
    )
    store.sync_catalog_queries(
        [
            CatalogQueryRow("q1", "Query one", "{}", "h1", True),
            CatalogQueryRow("q2", "Query two", "{}", "h2", True),
        ],
        [
            EnterpriseCatalogRow("c1", "Catalog one", "e1", "q1"),
            EnterpriseCatalogRow("c1b", "Catalog one b", "e2", "q1"),
        ],
        NOW,
    )
    apply_diff(store, pairs(("q1", "a"), ("q2", "a"), ("q1", "p1")), pairs(), NOW)
    # A pair whose content row is missing (written before that row existed, say by an older
    # version): lookups still list it, with what little is known.
    store.replace_content_associations("ghost", ["q1"], NOW)
    # Tombstoned content leaves its catalogs in the same transaction.
    assert store.apply_content_changes([], ["p1"], LATER).associations_removed == 1

    direct = {"rule": "associated", "via_key": "a"}
    assert store.catalogs_for("a") == [
        {
            "catalog_uuid": "c1",
            "catalog_title": "Catalog one",
            "enterprise_uuid": "e1",
            "catalog_query_uuid": "q1",
            "catalog_query_title": "Query one",
            **direct,
        },
        {
            "catalog_uuid": "c1b",
            "catalog_title": "Catalog one b",
            "enterprise_uuid": "e2",
            "catalog_query_uuid": "q1",
            "catalog_query_title": "Query one",
            **direct,
        },
        {
            "catalog_uuid": None,
            "catalog_title": None,
            "enterprise_uuid": None,
            "catalog_query_uuid": "q2",
            "catalog_query_title": "Query two",
            **direct,
        },
    ]
    assert store.catalogs_for("b") == []

    expected = [
        {"content_key": "a", "content_type": "course", "title": "Title of a", "deleted": False},
        {"content_key": "ghost", "content_type": None, "title": None, "deleted": False},
    ]
    assert store.contents_of("q1") == expected
    assert store.contents_of("c1") == expected
    assert store.contents_of("q2") == [expected[0]]
    assert store.contents_of("unknown") == []


# --------------------------------------------------------------------------------------------
# Membership and related content
# --------------------------------------------------------------------------------------------


def run(key: str, course_key: str, **extra: object) -> ContentRecord:
    return content_record(
        {"key": key, "aggregation_key": f"courserun:{course_key}", "title": key, **extra}
    )


def memberships(store: CatalogStore, key: str) -> list[tuple[str, str, str]]:
    return [(m.catalog_query_uuid, str(m.rule), m.via_key) for m in store.memberships(key)]


def test_membership_follows_enterprise_catalog_rules(store: CatalogStore) -> None:
    """A key is in a query's catalogs when its own record is associated, when it is the
    course of an associated live run, or when it is a live run whose course is associated."""
    store.apply_content_changes(
        [
            course("edX+C"),
            run("course-v1:edX+C+1", "edX+C"),
            run("course-v1:edX+C+old", "edX+C"),
            course("edX+D"),
            run("course-v1:edX+D+1", "edX+D"),
            content_record({"uuid": "p1", "aggregation_key": "program:p1"}),
        ],
        [],
        NOW,
    )
    store.sync_catalog_queries(
        [CatalogQueryRow(q, q, "{}", q, True) for q in ("courses", "runs", "both", "programs")],
        [EnterpriseCatalogRow("c-runs", "Runs", "e1", "runs")],
        NOW,
    )
    diff = pairs(
        ("courses", "edX+C"),
        ("runs", "course-v1:edX+D+1"),
        ("both", "edX+C"),
        ("both", "course-v1:edX+C+1"),
        ("programs", "p1"),
    )
    store.apply_association_diff(diff, pairs(), NOW)
    store.apply_content_changes([], ["course-v1:edX+C+old"], LATER)  # an expired run

    assert memberships(store, "edX+C") == [
        ("both", "associated", "edX+C"),
        ("both", "course_of_associated_run", "course-v1:edX+C+1"),
        ("courses", "associated", "edX+C"),
    ]
    # A catalog of courses contains their runs; a tombstoned run is in no catalog.
    assert memberships(store, "course-v1:edX+C+1") == [
        ("both", "associated", "course-v1:edX+C+1"),
        ("both", "run_of_associated_course", "edX+C"),
        ("courses", "run_of_associated_course", "edX+C"),
    ]
    assert memberships(store, "course-v1:edX+C+old") == []
    # A catalog of runs contains their course.
    assert memberships(store, "edX+D") == [
        ("runs", "course_of_associated_run", "course-v1:edX+D+1")
    ]
    assert memberships(store, "course-v1:edX+D+1") == [("runs", "associated", "course-v1:edX+D+1")]
    assert memberships(store, "p1") == [("programs", "associated", "p1")]
    assert memberships(store, "unknown") == []

    # catalogs_for: one row per query and catalog, with the strongest reason.
    rows = {(r["catalog_query_uuid"], r["catalog_uuid"]): r for r in store.catalogs_for("edX+D")}
    assert rows == {
        ("runs", "c-runs"): {
            "catalog_uuid": "c-runs",
            "catalog_title": "Runs",
            "enterprise_uuid": "e1",
            "catalog_query_uuid": "runs",
            "catalog_query_title": "runs",
            "rule": "course_of_associated_run",
            "via_key": "course-v1:edX+D+1",
        }
    }
    by_query = {r["catalog_query_uuid"]: r["rule"] for r in store.catalogs_for("course-v1:edX+C+1")}
    assert by_query == {"both": "associated", "courses": "run_of_associated_course"}


def relation(key: str, other: str, kind: str) -> ContentRelation:
    return ContentRelation(key, other, RelationKind(kind))


def test_relations_are_replaced_whole_or_per_declaring_record(store: CatalogStore) -> None:
    first = [
        relation("edX+A", "p1", "course_program"),
        relation("p1", "edX+A", "program_course"),
        relation("lp", "p1", "pathway_program"),
        relation("lp", HOSTILE, "pathway_course"),
    ]
    assert store.replace_relations(first) == (4, 0)
    assert store.replace_relations(list(reversed(first))) == (0, 0)  # idempotent
    assert store.relations() == sorted(first)

    # Per declaring record: only its own rows change.
    assert store.replace_relations([relation("edX+A", "p2", "course_program")], ["edX+A"]) == (1, 1)
    assert store.replace_relations([], origins=["lp", "nobody"]) == (0, 2)
    assert store.relations() == [relation("edX+A", "p2", "course_program"), first[1]]
    assert store.replace_relations([], origins=[]) == (0, 0)

    # A row that its records do not declare is refused, and nothing is written.
    with pytest.raises(ValueError, match=r"declared by 'p1'.*not among the records"):
        store.replace_relations([relation("p1", "edX+B", "program_course")], ["edX+A"])
    with pytest.raises(ValueError, match="NUL"):
        store.replace_relations([relation("edX+A", "p\x00", "course_program")])
    assert store.relations() == [relation("edX+A", "p2", "course_program"), first[1]]

    assert store.replace_relations([first[0]]) == (1, 2)  # the whole table
    assert store.relations() == [first[0]]


def test_related_content_lists_both_directions_with_the_other_record(store: CatalogStore) -> None:
    store.apply_content_changes(
        [
            course("edX+A"),
            content_record({"uuid": "p1", "aggregation_key": "program:p1", "title": "P one"}),
            content_record({"uuid": "p2", "aggregation_key": "program:p2", "title": "P two"}),
        ],
        [],
        NOW,
    )
    store.apply_content_changes([], ["p2"], LATER)
    store.replace_relations(
        [
            relation("edX+A", "p1", "course_program"),
            relation("edX+A", "p2", "course_program"),
            relation("p1", "edX+A", "program_course"),
            relation("lp-unknown", "edX+A", "pathway_course"),
        ]
    )

    def row(direction, key, kind, content_type, title, deleted=False):
        return {
            "direction": direction,
            "related_key": key,
            "relation": kind,
            "content_type": content_type,
            "title": title,
            "deleted": deleted,
        }

    assert store.related_content("edX+A") == [
        row("declared_by", "lp-unknown", "pathway_course", None, None),
        row("declared_by", "p1", "program_course", "program", "P one"),
        row("declares", "p1", "course_program", "program", "P one"),
        row("declares", "p2", "course_program", "program", "P two", deleted=True),
    ]
    assert store.related_content("p1") == [
        row("declared_by", "edX+A", "course_program", "course", "Title of edX+A"),
        row("declares", "edX+A", "program_course", "course", "Title of edX+A"),
    ]
    assert store.related_content("nothing") == []


def test_a_store_at_schema_version_3_gains_content_relation(store: CatalogStore) -> None:
    store.apply_content_changes([course("a")], [], NOW)
    if isinstance(store, SqlCatalogStore):  # put the store back at version 3
        with store.transaction():
            store._run("DROP INDEX IF EXISTS content_relation_related_key")
            store._run("DROP TABLE content_relation")
            store._run("DELETE FROM catalog_schema_version WHERE version = 4")
    assert store.schema_version() == 3
    with pytest.raises(StoreSchemaMismatch, match="version 3 and this code needs 4"):
        store.check_schema()
    store.ensure_schema()
    assert store.schema_version() == 4
    assert store.relations() == [] and list(store.content_state()) == ["a"]
    assert store.replace_relations([relation("a", "p", "course_program")]) == (1, 0)


# --------------------------------------------------------------------------------------------
# Dead letters
# --------------------------------------------------------------------------------------------


def test_dead_letters_keep_raw_bytes(store: CatalogStore) -> None:
    raw = bytes(range(256)) + b"\xff\xfe\x00\xc3("  # not UTF-8, with NUL bytes
    first = DeadLetter("topic.a", 3, 2**40, raw, '[["h", "v"]]', b"\x80" + raw, "bad avro", NOW)
    second = DeadLetter(None, None, None, None, None, None, "no payload", LATER)
    assert store.add_dead_letters([first, second]) == 2
    assert store.add_dead_letters([]) == 0

    stored = store.dead_letters()
    assert [letter.error for letter in stored] == ["bad avro", "no payload"]
    assert stored[0].key == raw and stored[0].value == b"\x80" + raw
    assert isinstance(stored[0].key, bytes)
    assert stored[0].id is not None and stored[1].id is not None and stored[0].id < stored[1].id
    assert stored[0] == DeadLetter(**{**first.__dict__, "id": stored[0].id})
    assert stored[1] == DeadLetter(**{**second.__dict__, "id": stored[1].id})

    assert store.mark_dead_letters_replayed([stored[0].id, stored[0].id], LATER) == 1
    assert store.mark_dead_letters_replayed([stored[0].id], LATER) == 0
    assert [letter.id for letter in store.dead_letters()] == [stored[1].id]
    everything = store.dead_letters(include_replayed=True)
    assert [letter.replayed_at for letter in everything] == [LATER, None]


# --------------------------------------------------------------------------------------------
# Bound parameters and time zones
# --------------------------------------------------------------------------------------------


def test_hostile_text_round_trips(store: CatalogStore) -> None:
    key = HOSTILE
    record = course(key, title=HOSTILE, body="--;'\"%s %(x)s ?")
    assert store.apply_content_changes([record], [], NOW).inserted == [key]
    stored = store.get_content(key)
    assert stored is not None and stored.metadata == record.metadata
    assert store.live_content() == [(key, record.metadata)]

    query = CatalogQueryRow(HOSTILE, HOSTILE, '{"title": "--\'; DROP"}', HOSTILE, False, HOSTILE)
    store.sync_catalog_queries([query], [EnterpriseCatalogRow(HOSTILE, HOSTILE, "e", HOSTILE)], NOW)
    assert store.catalog_queries() == [CatalogQueryRow(**{**query.__dict__, "updated_at": NOW})]
    assert apply_diff(store, pairs((HOSTILE, key)), pairs(), NOW) == (1, 0)
    assert store.catalogs_for(key)[0]["catalog_query_title"] == HOSTILE
    assert store.contents_of(HOSTILE)[0]["title"] == HOSTILE
    assert store.replace_content_associations(key, [HOSTILE, "q'2"], NOW) == (1, 0)
    assert store.tombstone_content(key, LATER)
    assert sorted(store.content_state()) == [key]


def test_timestamps_are_naive_utc(store: CatalogStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    aware_now = datetime(2024, 6, 1, 10, 30, tzinfo=plus_two)
    store.apply_content_changes([course("a")], [], aware_now)
    stored = store.get_content("a")
    assert stored is not None
    assert stored.updated_at == NOW and stored.updated_at.tzinfo is None
    assert stored.source_modified == T0
    assert store.tombstone_content("a", datetime(2024, 6, 2, 8, 30, tzinfo=UTC))
    assert store.content_state()["a"].deleted


# --------------------------------------------------------------------------------------------
# Concurrent writers (PostgreSQL)
# --------------------------------------------------------------------------------------------


def _wait_for_lock_waiter(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    return
                time.sleep(0.02)
    finally:
        conn.close()
    raise AssertionError("the second writer never waited for the first one's lock")


@pytest.mark.parametrize("existing", [False, True], ids=["insert-race", "update-race"])
@pytest.mark.parametrize("first_is_newer", [True, False], ids=["newer-first", "older-first"])
def test_concurrent_writers_end_with_the_newer_record(
    postgres_schema_url: str, existing: bool, first_is_newer: bool
) -> None:
    """Writer 1 has written but not committed; writer 2 waits on its lock, then must not
    overwrite a newer record with an older one, whichever of them is newer."""
    url = postgres_schema_url
    newer, older = course("k", T2, title="newer"), course("k", T1, title="older")
    first_record, second_record = (newer, older) if first_is_newer else (older, newer)
    with open_store(url) as one, open_store(url) as two:
        one.ensure_schema()
        if existing:
            one.apply_content_changes([course("k", T0, title="original")], [], NOW)

        written, release = threading.Event(), threading.Event()
        rows = one._rows  # pause writer 1 inside its transaction, right after its upsert

        def paused_rows(sql, params=()):
            result = rows(sql, params)
            if sql.lstrip().startswith("INSERT INTO content_metadata"):
                written.set()
                assert release.wait(30)
            return result

        one._rows = paused_rows  # type: ignore[method-assign]
        results: dict[str, object] = {}

        def write(name: str, store: CatalogStore, record: ContentRecord) -> None:
            try:
                results[name] = store.apply_content_changes([record], [], LATER)
            except BaseException as error:  # reported by the assertions below
                results[name] = error

        first = threading.Thread(target=write, args=("one", one, first_record))
        first.start()
        assert written.wait(30)
        second = threading.Thread(target=write, args=("two", two, second_record))
        second.start()
        try:
            _wait_for_lock_waiter(url)
        finally:
            release.set()
            first.join(30)
            second.join(30)

        one_result, two_result = results["one"], results["two"]
        assert not isinstance(one_result, BaseException), one_result
        assert not isinstance(two_result, BaseException), two_result
        stored = two.get_content("k")
        assert stored is not None
        assert (stored.metadata["title"], stored.source_modified) == ("newer", T2)
        if first_is_newer:
            assert two_result.stale == ["k"]  # type: ignore[union-attr]
        else:
            assert two_result.inserted + two_result.updated == ["k"]  # type: ignore[union-attr]


def test_duckdb_waits_for_another_process_to_release_the_file(tmp_path):
    """DuckDB allows one process per file: a second opener waits instead of failing."""
    path = tmp_path / "catalog.duckdb"
    holder = open_store(f"duckdb:///{path}")
    code = (
        "import time, sys\n"
        "from catalog_assets.store import open_store\n"
        "started = time.monotonic()\n"
        f"with open_store('duckdb:///{path}') as store: store.ensure_schema()\n"
        "print(round(time.monotonic() - started, 1))\n"
    )
    waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert waiter.poll() is None  # still waiting for the lock
    holder.close()
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and float(out) >= 1.0


# --------------------------------------------------------------------------------------------
# Data safety: the same behaviour on both backends
# --------------------------------------------------------------------------------------------


def test_tombstoning_removes_the_pairs_in_the_same_transaction(store: CatalogStore) -> None:
    apply_diff(store, pairs(("q1", "a"), ("q2", "a"), ("q1", "b")), pairs(), NOW)
    written = store.apply_content_changes([], ["a"], LATER)
    assert written.tombstoned == ["a"] and written.associations_removed == 2
    assert sorted_pairs(store.associations()) == [("q1", "b")]
    # The single-key tombstone (event lane) does the same.
    assert store.tombstone_content("b", LATER)
    assert store.associations().height == 0 and store.association_count() == 0


def test_nested_store_calls_join_one_transaction(store: CatalogStore) -> None:
    apply_diff(store, pairs(("q1", "a")), pairs(), NOW)
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.lock_writers()
        store.apply_content_changes([course("new")], ["a"], LATER)
        store.replace_content_associations("new", ["q1"], LATER)
        raise RuntimeError("boom")
    # Nothing of the block is visible: the inner calls did not commit on their own.
    assert "new" not in store.content_state()
    assert store.get_content("a").deleted_at is None
    assert sorted_pairs(store.associations()) == [("q1", "a")]


def test_lock_writers_needs_a_transaction(store: CatalogStore) -> None:
    with pytest.raises(RuntimeError, match="transaction"):
        store.lock_writers()


@pytest.mark.parametrize(
    ("query", "catalog", "problem"),
    [
        (CatalogQueryRow("q", "nul\x00title", "{}", "h", True), None, "NUL"),
        (CatalogQueryRow(None, "t", "{}", "h", True), None, "uuid None"),  # type: ignore[arg-type]
        (CatalogQueryRow("", "t", "{}", "h", True), None, "uuid ''"),
        (CatalogQueryRow("q", "t", '{"price__gte": NaN}', "h", False), None, "strict JSON"),
        (CatalogQueryRow("q", "t", "{}", "h", True), EnterpriseCatalogRow("c", "a\x00", None, "q"),
         "NUL"),
    ],
)  # fmt: skip
def test_query_sync_refuses_values_no_backend_can_keep(
    store: CatalogStore, query: CatalogQueryRow, catalog: EnterpriseCatalogRow | None, problem: str
) -> None:
    store.sync_catalog_queries([CatalogQueryRow("keep", "t", "{}", "h", True)], [], NOW)
    with pytest.raises(ValueError, match=problem):
        store.sync_catalog_queries([query], [catalog] if catalog else [], LATER)
    assert [q.uuid for q in store.catalog_queries()] == ["keep"]  # nothing written
    assert store.enterprise_catalogs() == []


def test_content_with_nul_in_a_key_is_refused_and_nothing_written(store: CatalogStore) -> None:
    bad = ContentRecord("a\x00b", "course", None, None, {}, None, "h")
    with pytest.raises(ValueError, match="NUL"):
        store.apply_content_changes([course("fine"), bad], [], NOW)
    assert store.content_state() == {}


def test_dead_letters_are_stored_once_per_message(store: CatalogStore) -> None:
    def letter(offset: int | None, key: bytes | None = b"k", error: str = "bad") -> DeadLetter:
        return DeadLetter("t", 0, offset, key, None, b"v", error, NOW)

    assert store.add_dead_letters([letter(1), letter(1), letter(2)]) == 2
    # The same tick evaluated again: nothing new. Another key of the same message is new.
    assert store.add_dead_letters([letter(1), letter(2), letter(2, key=b"other")]) == 1
    # Letters without coordinates (nothing to tell them apart by) are all kept.
    assert store.add_dead_letters([letter(None), letter(None)]) == 2
    # A NUL in the error text is kept, written out, on both backends.
    assert store.add_dead_letters([letter(9, error="bad \x00 byte")]) == 1
    assert store.dead_letters()[-1].error == "bad \\x00 byte"
    assert len(store.dead_letters()) == 6
    # Replayed, then failing again (say after a sensor replay): open again, with the new error.
    first = store.dead_letters()[0]
    store.mark_dead_letters_replayed([first.id], LATER)
    assert store.add_dead_letters([letter(1, error="bad again")]) == 1
    reopened = next(d for d in store.dead_letters() if d.id == first.id)
    assert reopened.error == "bad again" and reopened.replayed_at is None
    assert len(store.dead_letters(include_replayed=True)) == 6


def test_event_payloads_round_trip(store: CatalogStore) -> None:
    record = {"key": "a", "nested": {"list": [1, 2.5, "x"]}, "text": HOSTILE}
    store.save_event_payloads({"ref1": ("a", record)}, NOW)
    store.save_event_payloads({"ref1": ("a", {"key": "other"})}, LATER)  # a ref names its content
    assert store.event_payload("ref1") == record
    assert store.event_payload("nope") is None
    assert store.delete_event_payloads(["ref1", "ref1", "nope"]) == 1
    assert store.event_payload("ref1") is None


def test_a_store_newer_than_the_code_is_refused(store: CatalogStore, store_url: str) -> None:
    store.check_schema()  # current
    with store.transaction():
        store._run(migrations.INSERT_SCHEMA_VERSION, (migrations.SCHEMA_VERSION + 1, NOW))
    with open_store(store_url) as other:
        with pytest.raises(StoreSchemaMismatch, match="newer than this code knows"):
            other.ensure_schema()
        with pytest.raises(StoreSchemaMismatch, match="upgrade catalog-assets"):
            other.check_schema()


def test_an_empty_store_says_to_migrate(store_url: str) -> None:
    with open_store(store_url) as empty:
        with pytest.raises(StoreSchemaMismatch, match="catalog-assets migrate"):
            empty.check_schema()
        empty.ensure_schema()
        empty.check_schema()
        assert empty.schema_version() == migrations.SCHEMA_VERSION


def test_a_current_store_needs_no_ddl_rights(postgres_schema_url: str) -> None:
    """Lookups and runs against a migrated store work for a role that may not create tables."""
    with open_store(postgres_schema_url) as owner:
        owner.ensure_schema()
        owner.apply_content_changes([course("a")], [], NOW)
    admin = psycopg2.connect(postgres_schema_url)
    admin.autocommit = True
    schema = postgres_schema_url.rsplit("%3D", 1)[1]
    with admin.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS catalog_reader")
        cursor.execute("CREATE ROLE catalog_reader LOGIN")
        cursor.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO catalog_reader')
        cursor.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO catalog_reader')
    reader_url = postgres_schema_url.replace("postgres@", "catalog_reader@", 1)
    try:
        with open_store(reader_url) as reader:
            reader.ensure_schema()  # current: reads the version, runs no DDL
            reader.check_schema()
            assert reader.catalogs_for("a") == []
            assert reader.memberships("a") == [] and reader.related_content("a") == []
            assert "a" in reader.content_state()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM catalog_reader')
            cursor.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM catalog_reader')
            cursor.execute("DROP ROLE catalog_reader")
        admin.close()


def test_an_unreachable_or_unsupported_store_never_shows_its_password(tmp_path) -> None:
    with pytest.raises(ValueError) as unsupported:
        open_store("mysql://admin:hunter2secret@db.example.com/catalog")
    with pytest.raises(StoreUnavailable) as unreachable:
        open_store("postgresql://admin:hunter2secret@127.0.0.1:1/catalog")
    for error in (unsupported.value, unreachable.value):
        assert "hunter2secret" not in str(error)
        assert "admin:***@" in str(error)
