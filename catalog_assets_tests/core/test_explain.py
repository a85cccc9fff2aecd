"""``explain``: each filter key's verdict by the refresh's own engine, then the allow-list,
forced-course and membership verdicts, and an answer that equals what the store holds (on both
store backends)."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest

from catalog_assets.core import lookup
from catalog_assets.core.catalog_contents import AllowLists
from catalog_assets.core.content import ContentSnapshot, content_key_of, content_record
from catalog_assets.core.explain import judge_keys
from catalog_assets.core.filters import matches
from catalog_assets.core.lookup import Found
from catalog_assets.core.refresh import (
    forced_courses,
    refresh_associations,
    refresh_content,
    sync_catalog_queries,
)
from catalog_assets.core.sources import CatalogQueryFile
from catalog_assets.store import open_store

NOW = datetime(2025, 3, 1, 9, 0)
LATER = datetime(2025, 3, 2, 9, 0)


def test_keys_are_judged_in_the_engine_s_order_and_overridden_keys_come_last():
    content_filter = {
        "org__exclude": ["edX"],
        "content_type": "course",
        "org": "edX",
        "aggregration__key": "course:k",  # a known typo, read as aggregation_key
        "price__lte": "100",
        "status": None,
    }
    record = {"content_type": "course", "org": "edX", "aggregation_key": "course:x", "price": "50"}
    verdicts = judge_keys(content_filter, record)
    assert [(v.key, v.field, v.operator, v.passed) for v in verdicts] == [
        ("content_type", "content_type", "exact", True),
        ("org", "org", "exact", True),  # the later key for `org` decides it
        ("aggregration__key", "aggregation_key", "exact", False),
        ("price__lte", "price", "lte", True),
        ("status", "status", "exact", True),  # missing reads as null
        ("org__exclude", "", "", None),  # overridden by `org`
    ]
    assert [(v.record_value, v.present) for v in verdicts[3:5]] == [("50", True), (None, False)]
    assert all(v.passed is not None for v in judge_keys({"a": 1}, {}))


@pytest.fixture
def populated(store_url, content, queries) -> str:
    with open_store(store_url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**copy.deepcopy(queries)), store, NOW)
        refresh_content(ContentSnapshot(content), store, NOW)
        refresh_associations(store, NOW)
    return store_url


def test_every_explanation_agrees_with_the_refresh_and_the_engine(populated, content, queries):
    """For every query (and catalog) and a spread of records: the answer is what the store
    holds, the rules agree with it, and the filter verdict is the reference ``matches``."""
    documents = {content_key_of(d): d for d in content}
    keys = sorted(documents)[::23]
    targets = [q["uuid"] for q in queries["catalog_queries"]]
    targets += [c["uuid"] for c in queries["enterprise_catalogs"][:3]]
    filters = {q["uuid"]: q["content_filter"] for q in queries["catalog_queries"]}
    answers = set()
    for uuid in targets:
        for key in keys:
            found, explained, _ = lookup.find_explanation(uuid, key, url=populated)
            assert explained is not None and explained.store_agrees, (uuid, key, explained.notes)
            assert lookup.contains(uuid, [key], url=populated) is explained.in_catalog
            assert found == (Found.FOUND if explained.in_catalog else Found.NOTHING)
            content_filter = filters[explained.query_uuid]
            assert explained.filter_matches == matches(content_filter, documents[key])
            assert explained.filter_matches == all(v.passed is not False for v in explained.keys)
            answers.add(explained.in_catalog)
    assert answers == {True, False}


def test_a_record_changed_since_the_refresh_is_reported_as_a_disagreement(populated):
    with open_store(populated) as store:
        key, uuid = next(
            (key, uuid)
            for uuid, key in sorted(store.associations().iter_rows())
            if store.get_content(key).content_type == "course"
        )
        changed = {**store.get_content(key).metadata, "content_type": "changed", "modified": "2030"}
        store.apply_content_changes([content_record(changed)], [], LATER)  # no association step
    _, explained, _ = lookup.find_explanation(uuid, key, url=populated)
    assert explained.in_catalog and not explained.rules_say and not explained.store_agrees
    assert any(note.startswith("the store disagrees") for note in explained.notes)


@pytest.fixture
def small(store_url) -> str:
    """A forced course, an excluded course that was stored before it became excluded, a
    tombstoned one, and an invalid query."""
    listing = CatalogQueryFile(
        [
            {
                "uuid": "q-forced",
                "title": "Forced",
                "content_filter": {
                    "content_type": "program",
                    "enterprise_force_include_aggregation_keys": ["edX+F"],
                },
            },
            {"uuid": "q-courses", "title": "Courses", "content_filter": {"content_type": "course"}},
            {"uuid": "q-bad", "title": "Bad", "content_filter": {"org__in": ["x"]}},
        ],
        [{"uuid": "c-forced", "title": "Forced catalog", "catalog_query_uuid": "q-forced"}],
    )
    documents = [
        {"key": "edX+F", "aggregation_key": "course:edX+F", "content_type": "course"},
        {"key": "edX+Boot", "aggregation_key": "course:edX+Boot", "content_type": "course"},
    ]
    with open_store(store_url) as store:
        store.ensure_schema()
        sync_catalog_queries(listing, store, NOW)
        forced = forced_courses([q.content_filter for q in store.catalog_queries()])
        refresh_content(ContentSnapshot(documents), store, NOW, forced=forced)
        refresh_associations(store, NOW)
    return store_url


def test_a_forced_course_is_in_the_catalog_although_its_filter_fails(small):
    found, explained, message = lookup.find_explanation("c-forced", "edX+F", url=small)
    assert (found, message) == (Found.FOUND, "'edX+F' is in 'c-forced'")
    assert explained.catalog_uuid == "c-forced" and explained.query_uuid == "q-forced"
    assert explained.filter_matches is False and explained.forced and explained.in_catalog
    assert [v.key for v in explained.keys if v.passed is False] == [
        "content_type",
        "enterprise_force_include_aggregation_keys",  # compared as a field, like any key
    ]
    assert explained.store_agrees


def test_allow_lists_and_tombstones_and_invalid_filters_are_explained(small):
    # The allow-lists named at explain time judge the stored record.
    only_audit = AllowLists(course_types=frozenset({"audit"}))  # the course has none: admitted
    with open_store(small) as store:
        boot = {**store.get_content("edX+Boot").metadata, "course_type": "verified"}
        store.apply_content_changes([content_record(boot)], [], NOW)
    _, explained, _ = lookup.find_explanation("q-courses", "edX+Boot", url=small, allow=only_audit)
    assert not explained.admitted and explained.allow_list.startswith("excluded: course_type")
    assert explained.in_catalog and not explained.store_agrees  # the next refresh removes it

    with open_store(small) as store:
        store.apply_content_changes([], ["edX+Boot"], LATER)
    _, explained, _ = lookup.find_explanation("q-courses", "edX+Boot", url=small)
    assert explained.deleted and not explained.in_catalog and explained.store_agrees
    assert "the record is tombstoned: deleted content is in no catalog" in explained.notes

    _, explained, _ = lookup.find_explanation("q-bad", "edX+F", url=small)
    assert explained.filter_error.startswith("invalid content filter: key 'org__in'")
    assert explained.keys == [] and explained.filter_matches is None and explained.store_agrees

    assert lookup.find_explanation("nope", "edX+F", url=small)[0] == Found.UNKNOWN_UUID
    assert lookup.find_explanation("q-bad", "nope", url=small)[0] == Found.UNKNOWN_CONTENT
