"""Shadow parity against a real local course-discovery server, on both store backends: equal
sets where the data agree, each planted difference named with its reason, the searches asked
as enterprise-catalog asks them, and nothing written."""

from __future__ import annotations

import json

import pytest

from catalog_assets.core.catalog_contents import AllowLists
from catalog_assets.core.content import utcnow
from catalog_assets.core.discovery import DiscoveryError
from catalog_assets.core.parity import (
    EXAMPLES,
    Reason,
    Side,
    UnknownQuery,
    check_parity,
    choose_queries,
)
from catalog_assets.core.refresh import (
    forced_courses,
    refresh_associations,
    refresh_content,
    sync_catalog_queries,
)
from catalog_assets.core.sources import SampleContent, read_catalog_queries
from catalog_assets_tests.support.fake_discovery import SEARCH_PATH
from catalog_assets_tests.support.parity_data import (
    PLANTED,
    PLANTED_SUMMARY,
    VALID,
    course,
    load,
    plant_differences,
    serve,
    source,
)


@pytest.fixture
def fake():
    with serve() as server:
        yield server


def reasons_found(report) -> dict[tuple[str, Side, str], Reason]:
    return {
        (query.uuid, difference.side, difference.content_key): difference.reason
        for query in report.queries
        for difference in [*query.local_examples, *query.discovery_examples]
    }


def test_equal_sets_where_the_data_agree(store, fake):
    load(store, fake)
    report = check_parity(store, source(fake))
    assert report.summary() == f"{len(VALID)} queries, {len(VALID)} equal, 0 differ, 0 differences"
    results = {query.uuid: query for query in report.queries}
    assert list(results) == VALID  # the invalid query is left out; uuid order
    assert results["q-edx"].matched_examples == ("edX+A", "edX+B", "edX+D")  # not edX+Boot
    assert results["q-runs"].matched_examples == ("course-v1:edX+A+1",)  # not the expired run
    assert results["q-forced"].matched_examples == ("edX+F",)  # forced, fetched by key
    assert results["q-new"].matched == 0 and results["q-new"].equal


def test_each_planted_difference_is_named_with_its_reason(store, fake):
    load(store, fake)
    plant_differences(store, fake)
    before = sorted(store.associations().iter_rows())
    report = check_parity(store, source(fake))
    assert report.summary() == PLANTED_SUMMARY
    assert reasons_found(report) == PLANTED
    assert report.reasons() == {
        Reason.NOT_IN_STORE: 1,
        Reason.TOMBSTONED: 2,
        Reason.MODIFIED_DIFFERS: 2,
        Reason.EXCLUDED_BY_ALLOW_LIST: 1,
        Reason.OTHER: 2,
    }
    assert report.counts() == {
        "queries": 8,
        "equal": 1,
        "differ": 7,
        "differences": 8,
        "only_local": 3,
        "only_discovery": 5,
    }
    details = {
        (d.content_key, d.side): d.detail
        for q in report.queries
        for d in [*q.local_examples, *q.discovery_examples]
    }
    assert details["edX+D", Side.ONLY_DISCOVERY] == (
        "store 2026-01-01T00:00:00, discovery 2026-06-01T00:00:00"
    )
    assert details["p1", Side.ONLY_LOCAL] == "discovery's product_source is other"
    assert "does not match the stored record" in details["edX+A", Side.ONLY_DISCOVERY]
    assert "the search does not" in details["HarvardX+H", Side.ONLY_LOCAL]
    assert sorted(store.associations().iter_rows()) == before  # never writes associations


def test_the_json_form_lists_counts_reasons_and_examples(store, fake):
    load(store, fake)
    plant_differences(store, fake)
    answer = json.loads(json.dumps(check_parity(store, source(fake)).as_json()))
    assert answer["summary"] == PLANTED_SUMMARY
    assert answer["reasons"]["tombstoned"] == 2
    edx = next(result for result in answer["results"] if result["uuid"] == "q-edx")
    assert edx == {
        "uuid": "q-edx",
        "title": "Query q-edx",
        "equal": False,
        "matched": 1,
        "only_local": 1,
        "only_discovery": 1,
        "reasons": {"tombstoned": 1, "modified_differs": 1},
        "examples": {
            "matched": ["edX+A"],
            "only_local": [
                {
                    "content_key": "edX+D",
                    "reason": "modified_differs",
                    "detail": "store 2026-01-01T00:00:00, discovery 2026-06-01T00:00:00",
                }
            ],
            "only_discovery": [
                {
                    "content_key": "edX+B",
                    "reason": "tombstoned",
                    "detail": "the store's record is tombstoned",
                }
            ],
        },
    }


def test_searches_are_asked_as_enterprise_catalog_asks_them_page_by_page(store, fake):
    load(store, fake)
    fake.max_page_size = 2  # clamped, as DRF does: q-edx's three keys take two pages
    fake.clear_log()
    report = check_parity(store, source(fake), query_uuids=["q-edx"])
    assert report.summary() == "1 queries, 1 equal, 0 differ, 0 differences"
    searches = [entry for entry in fake.request_log if entry.path == SEARCH_PATH]
    assert [(entry.method, entry.query["page"]) for entry in searches] == [
        ("POST", ["1"]),
        ("POST", ["2"]),
    ]
    for entry in searches:
        assert json.loads(entry.body) == {"org": "edX"}
        assert entry.query["exclude_expired_course_run"] == ["True"]
        assert entry.query["include_learner_pathways"] == ["True"]
        assert entry.query["page_size"] == ["100"]
        assert entry.query["ordering"] == ["aggregation_key,start"]


def test_queries_are_chosen_by_uuid_and_sampled_in_uuid_order(store, fake):
    load(store, fake)
    rows = store.catalog_queries()
    assert [row.uuid for row, _ in choose_queries(rows, sample=3)] == VALID[:3]
    assert [row.uuid for row, _ in choose_queries(rows, ["q-tomb", "q-edx"])] == [
        "q-edx",
        "q-tomb",
    ]
    report = check_parity(store, source(fake), query_uuids=["q-runs", "q-edx"], sample=1)
    assert [query.uuid for query in report.queries] == ["q-edx"]
    with pytest.raises(UnknownQuery, match="'nope' is not a catalog query in the store"):
        check_parity(store, source(fake), query_uuids=["q-edx", "nope"])
    with pytest.raises(UnknownQuery, match="'q-z-invalid' has an invalid filter"):
        check_parity(store, source(fake), query_uuids=["q-z-invalid"])
    with pytest.raises(ValueError, match="at least 1"):
        check_parity(store, source(fake), sample=0)


def test_a_failing_discovery_raises_its_own_error_and_writes_nothing(store, fake):
    load(store, fake)
    before = sorted(store.associations().iter_rows())
    fake.fail_next(SEARCH_PATH, 403)
    with pytest.raises(DiscoveryError, match="HTTP 403"):
        check_parity(store, source(fake))
    down = source(fake)
    fake.stop()  # nothing listens there any more: connection refused
    with pytest.raises(DiscoveryError, match="ConnectionError"):
        check_parity(store, down)
    assert sorted(store.associations().iter_rows()) == before


def test_the_allow_lists_in_force_now_name_what_they_exclude(store, fake):
    """Allow-lists narrowed since the refresh: discovery's documents are excluded, while the
    store still associates them."""
    load(store, fake)
    narrower = AllowLists(course_types=frozenset({"verified"}))
    report = check_parity(store, source(fake), query_uuids=["q-harv"], allow=narrower)
    (harvard,) = report.queries
    assert [(d.content_key, d.side, d.reason) for d in harvard.local_examples] == [
        ("HarvardX+H", Side.ONLY_LOCAL, Reason.EXCLUDED_BY_ALLOW_LIST)
    ]
    assert harvard.local_examples[0].detail == "discovery's course_type is verified-audit"


def test_examples_are_bounded_and_counts_are_not(store, fake):
    load(store, fake)
    fake.upsert_documents(course(f"NewX+{i}", "NewX") for i in range(EXAMPLES + 3))
    (new,) = check_parity(store, source(fake), query_uuids=["q-new"]).queries
    assert new.only_discovery == EXAMPLES + 3
    assert len(new.discovery_examples) == EXAMPLES
    assert new.reasons == {Reason.NOT_IN_STORE: EXAMPLES + 3}


def test_the_sample_source_agrees_with_the_store_on_the_embedded_defaults(store):
    """What `catalog-assets parity` shows after `make run`: the sample search uses the
    reference engine record by record; the refresh the bulk engine."""
    sample = SampleContent()
    sync_catalog_queries(read_catalog_queries(), store, utcnow())
    forced = forced_courses([q.content_filter for q in store.catalog_queries()])
    refresh_content(
        sample.fetch_all(), store, utcnow(), lookup=sample, courses=sample, forced=forced
    )
    refresh_associations(store, utcnow())
    report = check_parity(store, sample)
    valid = [q for q in store.catalog_queries() if q.is_valid]
    assert report.summary() == f"{len(valid)} queries, {len(valid)} equal, 0 differ, 0 differences"
    assert sum(query.matched for query in report.queries) == store.association_count()


def test_the_test_server_filters_by_the_reference_engine_and_refuses_an_invalid_filter(fake):
    client = source(fake).client()
    with client:
        found = client.search({"content_type": "course", "org__exclude": ["edX"]})
        assert list(found) == ["HarvardX+H", "MITx+C"]  # ordered by aggregation_key
        assert set(client.search({})) >= {"p1", "lp1", "course-v1:edX+A+1"}  # pathways in
        assert "course-v1:edX+A+old" not in client.search({})  # expired at the server's now
        with pytest.raises(DiscoveryError, match=r"HTTP 400.*org__in"):
            client.search({"org__in": ["edX"]})
