"""The event lane's apply, called directly (no Dagster), on both store backends: each outcome,
each key's associations replaced by what the filter engine says, and a re-apply that changes
nothing."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from catalog_assets.core.content import ContentSnapshot
from catalog_assets.core.content_updates import (
    AppliedUpdate,
    ContentUpdate,
    apply_updates,
    guess_content_type,
)
from catalog_assets.core.refresh import refresh_associations, refresh_content, sync_catalog_queries
from catalog_assets.core.sources import CatalogQueryFile, SampleContent
from catalog_assets.store import CatalogStore
from catalog_assets_tests.support import expected

T1 = datetime(2025, 3, 1, 9, 0)
T2 = T1 + timedelta(hours=1)
T3 = T1 + timedelta(hours=2)
LATER = datetime(2030, 1, 1)  # after every sample record's `modified`
NEWER = "2031-01-01T00:00:00Z"


class LoadedStore:
    """A store loaded by the bulk lane, and the content file the event lane fetches from."""

    def __init__(self, store: CatalogStore, content: list[dict], queries: dict, path: Path):
        self.store, self.content, self.path = store, content, path
        self.write(content)
        sync_catalog_queries(CatalogQueryFile(**copy.deepcopy(queries)), store, T1)
        refresh_content(ContentSnapshot(content), store, T1)
        refresh_associations(store, T1)
        self.source = SampleContent(str(path))

    def write(self, documents: list[dict]) -> None:
        self.path.write_text(json.dumps(documents))

    def apply(self, *updates: ContentUpdate, now: datetime = T2) -> dict[str, AppliedUpdate]:
        applied = apply_updates(list(updates), self.source, self.store, now)
        assert len(applied) == len(updates)
        return {result.content_key: result for result in applied}

    def expected_queries(self, record: dict) -> list[str]:
        filters = {
            q.uuid: json.loads(q.content_filter) for q in self.store.catalog_queries() if q.is_valid
        }
        return expected.expected_queries(filters, record)

    def associated(self, key: str) -> list[str]:
        return sorted(self.store.associations_of(key))

    def other_pairs(self, keys: set[str]) -> list[tuple[str, str]]:
        return sorted(p for p in self.store.associations().iter_rows() if p[1] not in keys)


@pytest.fixture
def loaded(store, content, queries, tmp_path) -> LoadedStore:
    """A `store` (both backends) loaded by the bulk lane, and the event lane's content file."""
    return LoadedStore(store, content, queries, tmp_path / "content.json")


def associated_course(loaded: LoadedStore, index: int = 0) -> dict:
    courses = [d for d in loaded.content if d["content_type"] == "course"]
    return [d for d in courses if loaded.associated(d["key"])][index]


def new_course(loaded: LoadedStore, key: str) -> dict:
    return {
        **associated_course(loaded),
        "key": key,
        "aggregation_key": f"course:{key}",
        "uuid": f"uuid-{key}",
    }


def test_a_new_record_is_inserted_with_exactly_its_matching_queries(loaded):
    document = new_course(loaded, "edX+NEW00001x")
    result = loaded.apply(
        ContentUpdate(document["key"], "course", metadata=document, event_ids=("e1",))
    )[document["key"]]
    assert result.outcome == "inserted"
    assert result.queries == loaded.expected_queries(document) != []
    assert loaded.associated(document["key"]) == result.queries
    assert (result.added, result.removed, result.event_ids) == (len(result.queries), 0, ("e1",))
    assert loaded.store.get_content(document["key"]).metadata == document


def test_updates_replace_each_key_s_associations_and_no_other_key_s(loaded):
    documents = [associated_course(loaded, i) for i in range(6)]
    keys = {d["key"] for d in documents}
    before = {key: loaded.store.associations_of(key) for key in keys}
    others = loaded.other_pairs(keys)
    changed = [{**d, "partner": "2u", "org": "IBM", "modified": NEWER} for d in documents]
    results = loaded.apply(*(ContentUpdate(d["key"], "course", metadata=d) for d in changed))
    assert any(set(loaded.expected_queries(d)) != set(before[d["key"]]) for d in changed)
    for document in changed:
        key, result = document["key"], results[document["key"]]
        now_queries = loaded.expected_queries(document)
        assert result.outcome == "updated"
        assert result.queries == loaded.associated(key) == now_queries
        assert result.added == len(set(now_queries) - set(before[key]))
        assert result.removed == len(set(before[key]) - set(now_queries))
        kept = set(now_queries) & set(before[key])
        assert {q: loaded.store.associations_of(key)[q] for q in kept} == {
            q: before[key][q] for q in kept
        }  # a row that stays keeps its added_at
    assert loaded.other_pairs(keys) == others


def test_applying_the_same_updates_again_changes_nothing(loaded):
    course, gone = associated_course(loaded, 0), associated_course(loaded, 1)
    updates = [
        ContentUpdate("edX+NEW00002x", "course", metadata=new_course(loaded, "edX+NEW00002x")),
        ContentUpdate(
            course["key"], "course", metadata={**course, "title": "T", "modified": NEWER}
        ),
        ContentUpdate(gone["key"], "course", deleted=True, time=LATER),
    ]
    first = loaded.apply(*updates)
    assert [first[u.content_key].outcome for u in updates] == ["inserted", "updated", "tombstoned"]
    keys = [u.content_key for u in updates]

    def state() -> tuple:
        rows = [loaded.store.get_content(key) for key in keys]
        return rows, [loaded.store.associations_of(key) for key in keys], loaded.other_pairs(set())

    before = state()
    again = loaded.apply(*updates, now=T3)
    assert [again[key].outcome for key in keys] == ["unchanged", "unchanged", "gone"]
    assert all((again[key].added, again[key].removed) == (0, 0) for key in keys)
    assert [again[key].queries for key in keys] == [first[key].queries for key in keys]
    assert state() == before  # updated_at and added_at included


def test_an_older_record_is_stale_and_changes_nothing(loaded):
    course = associated_course(loaded)
    stored, queries = loaded.store.get_content(course["key"]), loaded.associated(course["key"])
    older = {
        **course,
        "title": "An older edit",
        "partner": "2u",
        "modified": "2001-01-01T00:00:00Z",
    }
    result = loaded.apply(ContentUpdate(course["key"], "course", metadata=older))[course["key"]]
    assert result.outcome == "stale"
    assert loaded.store.get_content(course["key"]) == stored
    assert result.queries == loaded.associated(course["key"]) == queries


def test_a_deletion_tombstones_the_key_and_drops_its_associations(loaded):
    course = associated_course(loaded)
    queries = loaded.associated(course["key"])
    deletion = ContentUpdate(course["key"], "course", deleted=True, time=LATER)
    result = loaded.apply(deletion)[course["key"]]
    assert queries and (result.outcome, result.queries) == ("tombstoned", [])
    stored = loaded.store.get_content(course["key"])
    assert stored.deleted_at == T2 and stored.source_modified == LATER
    assert loaded.associated(course["key"]) == []
    assert loaded.apply(deletion, now=T3)[course["key"]].outcome == "gone"
    unknown = ContentUpdate("edX+NEVER00001x", "course", deleted=True, time=LATER)
    assert loaded.apply(unknown)["edX+NEVER00001x"].outcome == "gone"
    assert loaded.store.get_content("edX+NEVER00001x") is None

    # The deletion's time guards against an older record bringing the key back.
    back = {**course, "title": "Resurrected?"}
    assert (
        loaded.apply(ContentUpdate(course["key"], "course", metadata=back))[course["key"]].outcome
        == "stale"
    )
    assert loaded.store.get_content(course["key"]).deleted_at is not None


@pytest.mark.parametrize("source_has_it", [True, False], ids=["deletion", "fetch-miss"])
def test_a_tombstone_reports_the_associations_it_removed(loaded, source_has_it):
    course = associated_course(loaded)
    queries = loaded.associated(course["key"])
    if not source_has_it:
        loaded.write([d for d in loaded.content if d is not course])
    update = ContentUpdate(course["key"], "course", deleted=source_has_it, time=LATER)
    result = loaded.apply(update)[course["key"]]
    assert (result.outcome, result.added, result.removed) == ("tombstoned", 0, len(queries))


def test_a_deletion_older_than_the_stored_record_leaves_it_live(loaded):
    course = associated_course(loaded)
    queries = loaded.associated(course["key"])
    old = ContentUpdate(course["key"], "course", deleted=True, time=datetime(2001, 1, 1))
    result = loaded.apply(old)[course["key"]]
    assert result.outcome == "stale"
    assert loaded.store.get_content(course["key"]).deleted_at is None
    assert result.queries == loaded.associated(course["key"]) == queries


def test_an_update_without_a_record_fetches_it_from_the_source(loaded):
    course = associated_course(loaded)
    edited = {**course, "title": "From the source", "partner": "2u", "modified": NEWER}
    loaded.write([edited if d is course else d for d in loaded.content])
    for content_type in ("course", None):  # without a type, it is guessed from the key
        result = loaded.apply(ContentUpdate(course["key"], content_type), now=T2)[course["key"]]
        assert result.outcome == ("updated" if content_type else "unchanged")
        assert loaded.store.get_content(course["key"]).metadata["title"] == "From the source"
        assert result.queries == loaded.associated(course["key"]) == loaded.expected_queries(edited)


def test_a_key_the_source_no_longer_has_is_tombstoned_until_the_next_full_read(loaded):
    course = associated_course(loaded)
    stored = loaded.store.get_content(course["key"])
    loaded.write([d for d in loaded.content if d is not course])
    result = loaded.apply(ContentUpdate(course["key"], "course", time=LATER))[course["key"]]
    assert result.outcome == "tombstoned" and loaded.associated(course["key"]) == []
    # No time recorded: a lagging index must not keep the record from coming back.
    assert loaded.store.get_content(course["key"]).source_modified == stored.source_modified
    assert loaded.apply(ContentUpdate("edX+NEVER00002x", "course"))["edX+NEVER00002x"].outcome == (
        "gone"
    )

    refresh_content(ContentSnapshot(loaded.content), loaded.store, T3)
    assert loaded.store.get_content(course["key"]).deleted_at is None


def test_unusable_updates_are_rejected_one_by_one_and_write_nothing(loaded):
    course = associated_course(loaded)
    impostor = {**course, "title": "Impostor", "modified": NEWER}
    typeless = {"key": "edX+TYPELESS1x", "title": "No type"}
    deep: object = "x"
    for _ in range(100):
        deep = [deep]
    broken_in_source = {"key": "edX+DEEP1x", "aggregation_key": "course:edX+DEEP1x", "x": deep}
    loaded.write([*loaded.content, broken_in_source])
    good = new_course(loaded, "edX+NEW00003x")
    results = loaded.apply(
        ContentUpdate("edX+WRONG1x", "course", metadata=impostor, event_ids=("bad",)),
        ContentUpdate(typeless["key"], "course", metadata=typeless),
        ContentUpdate(broken_in_source["key"], "course"),
        ContentUpdate(good["key"], "course", metadata=good),
    )
    assert results[good["key"]].outcome == "inserted"
    rejected = {key: r for key, r in results.items() if r.outcome == "rejected"}
    assert sorted(rejected) == sorted(["edX+WRONG1x", typeless["key"], broken_in_source["key"]])
    assert "identifies itself as" in rejected["edX+WRONG1x"].error
    assert rejected["edX+WRONG1x"].event_ids == ("bad",)
    assert "content type" in rejected[typeless["key"]].error
    assert "not gone" in rejected[broken_in_source["key"]].error
    for key in rejected:
        assert loaded.store.get_content(key) is None and loaded.associated(key) == []
    assert loaded.store.get_content(course["key"]).metadata["title"] == course["title"]


def test_invalid_queries_keep_their_rows_for_an_updated_key(loaded, queries):
    course = associated_course(loaded)
    broken_uuid = loaded.associated(course["key"])[0]
    edited = copy.deepcopy(queries)
    for query in edited["catalog_queries"]:
        if query["uuid"] == broken_uuid:
            query["content_filter"] = {"org__in": ["MITx"]}
    sync_catalog_queries(CatalogQueryFile(**edited), loaded.store, T2)
    changed = {**course, "title": "Edited", "modified": NEWER}
    result = loaded.apply(ContentUpdate(course["key"], "course", metadata=changed))[course["key"]]
    assert result.queries == sorted({broken_uuid, *loaded.expected_queries(changed)})
    assert loaded.associated(course["key"]) == result.queries


def test_a_content_type_is_guessed_from_the_store_then_the_key(loaded):
    program = next(d for d in loaded.content if d["content_type"] == "program")
    assert guess_content_type(program["uuid"], loaded.store) == ["program"]
    assert guess_content_type("course-v1:edX+X+2026", loaded.store) == ["courserun"]
    assert guess_content_type("edX+Unknown", loaded.store) == ["course"]
    assert guess_content_type("a-uuid", loaded.store) == ["program", "learnerpathway"]


# --- moved runs: a fetched run refreshes the course discovery files it under -------------------


def run_of(loaded: LoadedStore, course: dict) -> dict:
    """A run the store holds for ``course`` (its aggregation_key names the course)."""
    return next(
        d
        for d in loaded.content
        if d["content_type"] == "courserun"
        and d["aggregation_key"] == f"courserun:{course['key']}"
        and loaded.store.get_content(d["key"]) is not None
    )


def apply_all(loaded: LoadedStore, *updates: ContentUpdate) -> dict[str, AppliedUpdate]:
    applied = apply_updates(list(updates), loaded.source, loaded.store, T2)
    return {result.content_key: result for result in applied}


def test_a_moved_run_refreshes_the_course_discovery_names_and_the_one_its_key_suggests(loaded):
    courses = [d for d in loaded.content if d["content_type"] == "course"]
    home = next(c for c in courses if any(run_of_or_none(loaded, c)))
    new_home = next(c for c in courses if c is not home and loaded.store.get_content(c["key"]))
    run = run_of(loaded, home)
    moved = {**run, "aggregation_key": f"courserun:{new_home['key']}", "modified": NEWER}
    renamed = {
        home["key"]: {**home, "title": "Home, one run fewer", "modified": NEWER},
        new_home["key"]: {**new_home, "title": "New home, one run more", "modified": NEWER},
    }
    loaded.write([moved if d is run else renamed.get(d.get("key"), d) for d in loaded.content])

    results = apply_all(loaded, ContentUpdate(run["key"], "courserun", event_ids=("ev-1",)))

    assert results[run["key"]].outcome == "updated" and results[run["key"]].course_of is None
    assert loaded.store.get_content(run["key"]).parent_content_key == new_home["key"]
    for course in (home, new_home):  # the course discovery names, and the one the key suggests
        result = results[course["key"]]
        assert (result.outcome, result.course_of, result.event_ids) == (
            "updated",
            run["key"],
            ("ev-1",),
        )
        stored = loaded.store.get_content(course["key"])
        assert stored.metadata["title"] == renamed[course["key"]]["title"]
        assert result.queries == loaded.associated(course["key"])
    assert set(results) == {run["key"], home["key"], new_home["key"]}


def run_of_or_none(loaded: LoadedStore, course: dict) -> list[dict]:
    return [
        d
        for d in loaded.content
        if d["content_type"] == "courserun"
        and d["aggregation_key"] == f"courserun:{course['key']}"
        and loaded.store.get_content(d["key"]) is not None
    ]


def test_a_course_only_a_run_key_suggests_is_never_tombstoned(loaded):
    """Discovery files the run ``course-v1:Ghost+G1+2026`` under another course and has no
    ``Ghost+G1``: the stored ``Ghost+G1`` stays live, and the real course is refreshed."""
    home = associated_course(loaded)
    ghost = new_course(loaded, "Ghost+G1")
    loaded.apply(ContentUpdate(ghost["key"], "course", metadata=ghost))
    run = {
        **run_of(loaded, home),
        "key": "course-v1:Ghost+G1+2026",
        "uuid": "uuid-ghost-run",
        "modified": NEWER,
    }
    loaded.write([*loaded.content, run])  # the source: the run, and no Ghost+G1

    results = apply_all(loaded, ContentUpdate(run["key"], "courserun"))

    assert results[run["key"]].outcome == "inserted"
    assert loaded.store.get_content(run["key"]).parent_content_key == home["key"]
    assert results[home["key"]].course_of == run["key"]
    assert "Ghost+G1" not in results  # looked up, not found, left alone
    assert loaded.store.get_content("Ghost+G1").deleted_at is None


def test_a_run_the_source_no_longer_has_is_tombstoned_but_not_its_course(loaded):
    course = next(
        c for c in loaded.content if c["content_type"] == "course" and run_of_or_none(loaded, c)
    )
    run = run_of(loaded, course)
    loaded.write([d for d in loaded.content if d is not run and d is not course])
    results = apply_all(loaded, ContentUpdate(run["key"], "courserun"))
    assert results[run["key"]].outcome == "tombstoned"
    assert course["key"] not in results
    assert loaded.store.get_content(course["key"]).deleted_at is None


def test_a_run_given_with_its_record_does_not_fetch_courses(loaded):
    """Only a fetched run refreshes its courses: a full record in the event is applied as is."""
    course = next(
        c for c in loaded.content if c["content_type"] == "course" and run_of_or_none(loaded, c)
    )
    run = {**run_of(loaded, course), "title": "From the event", "modified": NEWER}
    results = apply_all(loaded, ContentUpdate(run["key"], "courserun", metadata=run))
    assert set(results) == {run["key"]}
