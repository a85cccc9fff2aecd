"""The catalog rules in both lanes, called directly (no Dagster), on both store backends:
allow-lists (never stored, tombstoned once excluded, under the tombstone guardrail), forced
courses (fetched when unlisted, marked, associated whatever the filter says), and the links
between content (rebuilt by the association step, kept current by the event lane)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from catalog_assets.core.catalog_contents import (
    AllowLists,
    ContentRelation,
    Exclusion,
    RelationKind,
)
from catalog_assets.core.content import ContentSnapshot, content_key_of
from catalog_assets.core.content_updates import ContentUpdate, apply_updates
from catalog_assets.core.filters import matches
from catalog_assets.core.refresh import (
    GuardrailTripped,
    forced_courses,
    refresh_associations,
    refresh_content,
    sync_catalog_queries,
)
from catalog_assets.core.sources import CatalogQueryFile, SampleContent
from catalog_assets.store import CatalogStore

T1 = datetime(2025, 3, 1, 9, 0)
T2 = T1 + timedelta(hours=1)
T3 = T1 + timedelta(hours=2)
T4 = T1 + timedelta(hours=3)
FORCE = "enterprise_force_include_aggregation_keys"


def course(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "key": key,
        "aggregation_key": f"course:{key}",
        "content_type": "course",
        "title": f"Course {key}",
        "course_type": "verified-audit",
        "modified": "2025-01-01T00:00:00Z",
        **fields,
    }


def run(key: str, course_key: str, **fields: Any) -> dict[str, Any]:
    return {
        "key": key,
        "aggregation_key": f"courserun:{course_key}",
        "content_type": "courserun",
        "title": f"Run {key}",
        "course_type": "bootcamp-2u",  # runs skip the course-type test
        "modified": "2025-01-01T00:00:00Z",
        **fields,
    }


def program(uuid: str, courses: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "aggregation_key": f"program:{uuid}",
        "content_type": "program",
        "title": f"Program {uuid}",
        "courses": [{"key": key} for key in courses],
        "modified": "2025-01-01T00:00:00Z",
        **fields,
    }


def pathway(uuid: str, **fields: Any) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "aggregation_key": f"learnerpathway:{uuid}",
        "content_type": "learnerpathway",
        "title": f"Pathway {uuid}",
        "status": "active",
        "visible_via_association": True,
        "steps": [{"programs": [{"uuid": "p1"}], "courses": [{"key": "edX+A"}]}],
        "modified": "2025-01-01T00:00:00Z",
        **fields,
    }


def documents() -> list[dict[str, Any]]:
    return [
        course("edX+A", programs=[{"uuid": "p1"}]),
        run("course-v1:edX+A+1", "edX+A"),
        course("edX+Boot", course_type="bootcamp-2u"),
        course("Ext+X", product_source={"slug": "external"}),
        program("p1", ["edX+A"]),
        pathway("lp1"),
    ]


def listing(forced: Iterable[str] = ("edX+F",)) -> CatalogQueryFile:
    return CatalogQueryFile(
        [
            {"uuid": "q-all", "title": "Everything", "content_filter": {}},
            {"uuid": "q-courses", "title": "Courses", "content_filter": {"content_type": "course"}},
            {
                "uuid": "q-forced",
                "title": "Programs, and forced courses",
                "content_filter": {"content_type": "program", FORCE: list(forced)},
            },
        ],
        [{"uuid": "c-forced", "title": "Forced", "catalog_query_uuid": "q-forced"}],
    )


class Source:
    """What a source answers: its listed documents (also for lookups), and the full records
    of courses by key, listed or not."""

    def __init__(self, listed: list[dict], unlisted: Mapping[str, dict] | None = None):
        self.listed = {content_key_of(d): d for d in listed}
        self.unlisted = dict(unlisted or {})
        self.fetched: list[list[str]] = []

    def lookup_many(self, keys: Mapping[str, str]) -> dict[str, dict]:
        return {key: self.listed[key] for key in keys if key in self.listed}

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(keys)
        self.fetched.append(keys)
        return {key: self.unlisted[key] for key in keys if key in self.unlisted}


def unlisted_course(key: str = "edX+F") -> dict[str, Any]:
    """A full course record (``courses/?keys=``): no search fields, runs not yet published."""
    return {
        "key": key,
        "title": f"Unlisted {key}",
        "course_type": "verified",
        "course_runs": [{"key": f"course-v1:{key}+1", "status": "unpublished"}],
        "modified": "2025-01-01T00:00:00Z",
    }


def refresh(
    store: CatalogStore,
    docs: list[dict],
    now: datetime,
    query_listing: CatalogQueryFile | None = None,
    source: Source | None = None,
    **options: Any,
):
    """The bulk lane's three steps, with forced courses as the content asset computes them."""
    query_listing = query_listing or listing()
    source = source or Source(docs, {"edX+F": unlisted_course()})
    sync_catalog_queries(copy.deepcopy(query_listing), store, now)
    forced = forced_courses(
        [q.content_filter for q in store.catalog_queries() if q.is_valid],
        [q["content_filter"] for q in query_listing.catalog_queries],
    )
    report = refresh_content(
        ContentSnapshot(copy.deepcopy(docs)),
        store,
        now,
        lookup=source,
        courses=source,
        forced=forced,
        **options,
    )
    return report, refresh_associations(store, now)


def live(store: CatalogStore) -> set[str]:
    return {key for key, state in store.content_state().items() if not state.deleted}


def queries_of(store: CatalogStore, key: str) -> set[str]:
    return set(store.associations_of(key))


# --- Allow-lists ------------------------------------------------------------------------------


def test_excluded_documents_are_never_stored_nor_associated(store):
    content, _ = refresh(store, documents(), T1)
    assert live(store) == {"edX+A", "course-v1:edX+A+1", "p1", "lp1", "edX+F"}
    assert store.get_content("edX+Boot") is None and store.get_content("Ext+X") is None
    assert [(e.content_key, e.reason, e.value) for e in content.excluded] == [
        ("edX+Boot", Exclusion.COURSE_TYPE, "bootcamp-2u"),
        ("Ext+X", Exclusion.PRODUCT_SOURCE, "external"),
    ]
    associated = {key for _, key in store.associations().iter_rows()}
    assert not associated & {"edX+Boot", "Ext+X"}


def test_a_record_that_becomes_excluded_is_tombstoned_with_its_pairs(store):
    refresh(store, documents(), T1)
    assert queries_of(store, "edX+A") == {"q-all", "q-courses"}
    docs = documents()
    docs[0] = {**docs[0], "course_type": "bootcamp-2u", "modified": "2025-02-01T00:00:00Z"}
    content, associations = refresh(store, docs, T2)
    assert content.written.tombstoned == ["edX+A"]
    assert content.written.associations_removed == 2  # in the same transaction
    assert store.get_content("edX+A").deleted_at == T2 and queries_of(store, "edX+A") == set()
    assert ("edX+A", Exclusion.COURSE_TYPE, "bootcamp-2u") in [
        (e.content_key, e.reason, e.value) for e in content.excluded
    ]
    assert "course-v1:edX+A+1" in live(store)  # its run is no course: it stays
    assert associations.removed == 0  # nothing left for the association step to remove


def test_exclusions_count_against_the_tombstone_guardrail(store):
    refresh(store, documents(), T1)
    before = store.content_state()
    docs = [
        {**d, "product_source": "external"} if d.get("key") in ("edX+A", "course-v1:edX+A+1") else d
        for d in documents()
    ]
    with pytest.raises(GuardrailTripped, match=r"2 of 5 live .*the allow-lists exclude 2"):
        refresh(store, docs, T2)
    assert store.content_state() == before  # nothing written
    content, _ = refresh(store, docs, T2, confirm_mass_tombstone=True)
    assert sorted(content.written.tombstoned) == ["course-v1:edX+A+1", "edX+A"]


def test_the_store_s_allow_lists_decide(store):
    store.allow_lists = AllowLists(
        course_types=frozenset({"bootcamp-2u", "verified-audit", "verified"})
    )
    refresh(store, documents(), T1)
    assert "edX+Boot" in live(store) and "Ext+X" not in live(store)


# --- Forced courses ---------------------------------------------------------------------------


def test_an_unlisted_forced_course_is_fetched_stored_marked_and_associated(store):
    source = Source(documents(), {"edX+F": unlisted_course(), "edX+Other": unlisted_course()})
    content, associations = refresh(store, documents(), T1, source=source)
    assert source.fetched == [["edX+F"]]  # only what the crawl lacks, only what is forced
    assert (content.forced, content.forced_unlisted) == (["edX+F"], ["edX+F"])
    stored = store.get_content("edX+F")
    assert (stored.content_type, stored.deleted_at) == ("course", None)
    assert stored.metadata["enterprise_force_included"] is True
    assert stored.metadata["course_runs"] == [
        {"key": "course-v1:edX+F+1", "status": "published", "availability": "Current"}
    ]
    assert stored.metadata["course_run_statuses"] == ["published"]
    # Associated with the query that forces it, whatever its filter says.
    assert not matches(listing().catalog_queries[2]["content_filter"], stored.metadata)
    assert queries_of(store, "edX+F") == {"q-all", "q-courses", "q-forced"}
    assert associations.forced_pairs == 1

    again, associations = refresh(store, documents(), T2, source=source)
    assert (again.written.inserted, again.written.updated, again.written.tombstoned) == ([], [], [])
    assert (associations.added, associations.removed) == (0, 0)


def test_a_forced_course_is_not_tombstoned_while_a_query_forces_it(store):
    refresh(store, documents(), T1)
    for now in (T2, T3):  # absent from every crawl, still forced
        refresh(store, documents(), now)
        assert "edX+F" in live(store) and "q-forced" in queries_of(store, "edX+F")
    # No longer forced, absent from the crawl, and the source confirms it gone: tombstoned.
    content, _ = refresh(store, documents(), T4, query_listing=listing(forced=[]))
    assert content.written.tombstoned == ["edX+F"]


def test_a_forced_course_in_the_crawl_is_marked_too_and_rules_still_apply(store):
    docs = [
        *documents(),
        course("edX+F", course_runs=[{"key": "r", "status": "unpublished", "availability": "x"}]),
    ]
    source = Source(docs, {"edX+Boot": course("edX+Boot", course_type="bootcamp-2u")})
    content, _ = refresh(
        store, docs, T1, query_listing=listing(["edX+F", "edX+Boot", "edX+Nope"]), source=source
    )
    assert source.fetched == [["edX+Nope"]]  # listed ones come from the crawl
    assert store.get_content("edX+F").metadata["course_runs"][0]["availability"] == "Current"
    assert "edX+Boot" not in live(store)  # forced, but excluded: never stored
    assert content.forced == ["edX+F"] and content.forced_not_found == ["edX+Nope"]


# --- Related content --------------------------------------------------------------------------


def test_links_are_rebuilt_by_the_association_step_and_follow_the_pathway(store):
    _, associations = refresh(store, documents(), T1)
    links = [
        ContentRelation("edX+A", "p1", RelationKind.COURSE_PROGRAM),
        ContentRelation("lp1", "edX+A", RelationKind.PATHWAY_COURSE),
        ContentRelation("lp1", "p1", RelationKind.PATHWAY_PROGRAM),
        ContentRelation("p1", "edX+A", RelationKind.PROGRAM_COURSE),
    ]
    assert store.relations() == links
    assert (associations.relations_added, associations.relations_total) == (4, 4)
    _, again = refresh(store, documents(), T2)
    assert (again.relations_added, again.relations_removed) == (0, 0)

    docs = documents()
    docs[5] = {**docs[5], "visible_via_association": False, "modified": "2025-02-01T00:00:00Z"}
    _, hidden = refresh(store, docs, T3)
    assert store.relations() == [links[0], links[3]]  # the invisible pathway's links cleared
    assert hidden.relations_removed == 2


# --- The event lane ---------------------------------------------------------------------------


class EventLane:
    """A store loaded by the bulk lane, and the content file the event lane fetches from."""

    def __init__(self, store: CatalogStore, path: Path):
        self.store, self.path = store, path
        self.docs = documents()
        refresh(store, self.docs, T1)
        self.path.write_text(json.dumps(self.docs))

    def apply(self, *updates: ContentUpdate, now: datetime = T2) -> dict:
        applied = apply_updates(list(updates), SampleContent(str(self.path)), self.store, now)
        return {result.content_key: result for result in applied}


@pytest.fixture
def events(store, tmp_path) -> EventLane:
    return EventLane(store, tmp_path / "content.json")


def test_an_event_that_excludes_a_record_tombstones_it_with_its_pairs_and_links(events):
    excluded = course("edX+A", course_type="bootcamp-2u", modified="2025-02-01T00:00:00Z")
    result = events.apply(ContentUpdate("edX+A", "course", metadata=excluded))["edX+A"]
    assert (result.outcome, result.error) == (
        "excluded",
        "excluded by the allow-lists: course_type bootcamp-2u",
    )
    assert (result.queries, result.removed) == ([], 2)
    stored = events.store.get_content("edX+A")
    assert stored.deleted_at == T2 and stored.metadata["course_type"] == "verified-audit"
    assert [r for r in events.store.relations() if r.content_key == "edX+A"] == []

    # An excluded record of an unknown key writes nothing; an older one is stale.
    new = course("Ext+New", product_source="external")
    assert (
        events.apply(ContentUpdate("Ext+New", "course", metadata=new))["Ext+New"].outcome
        == "excluded"
    )
    assert events.store.get_content("Ext+New") is None
    older = course(
        "p1",
        aggregation_key="course:p1",
        course_type="bootcamp-2u",
        modified="2020-01-01T00:00:00Z",
    )
    assert events.apply(ContentUpdate("p1", "program", metadata=older))["p1"].outcome == "stale"
    assert "p1" in live(events.store)


def test_an_event_for_a_forced_course_keeps_it_marked_and_forced_in(events):
    record = {**unlisted_course(), "title": "Edited", "modified": "2025-03-01T00:00:00Z"}
    document = {"aggregation_key": "course:edX+F", "content_type": "course", **record}
    result = events.apply(ContentUpdate("edX+F", "course", metadata=document))["edX+F"]
    assert result.outcome == "updated" and "q-forced" in result.queries
    stored = events.store.get_content("edX+F").metadata
    assert stored["title"] == "Edited" and stored["enterprise_force_included"] is True

    # Its deletion is undated, so the next full refresh restores it while it is forced.
    gone = events.apply(ContentUpdate("edX+F", "course", deleted=True, time=T4), now=T3)
    assert gone["edX+F"].outcome == "tombstoned"
    refresh(events.store, documents(), T4, source=Source(documents(), {"edX+F": record}))
    assert "edX+F" in live(events.store) and "q-forced" in queries_of(events.store, "edX+F")


def test_events_keep_each_key_s_links_current(events):
    edited = program("p1", ["edX+A", "edX+B"], modified="2025-02-01T00:00:00Z")
    events.apply(ContentUpdate("p1", "program", metadata=edited))
    declared = {
        (r.related_key, r.relation) for r in events.store.relations() if r.content_key == "p1"
    }
    assert declared == {("edX+A", "program_course"), ("edX+B", "program_course")}

    hidden = pathway("lp1", status="retired", modified="2025-02-01T00:00:00Z")
    events.apply(ContentUpdate("lp1", "learnerpathway", metadata=hidden))
    assert [r for r in events.store.relations() if r.content_key == "lp1"] == []

    events.apply(ContentUpdate("p1", "program", deleted=True, time=T3), now=T3)
    assert [r for r in events.store.relations() if r.content_key == "p1"] == []
    # Other records' links are untouched.
    assert ContentRelation("edX+A", "p1", RelationKind.COURSE_PROGRAM) in events.store.relations()
