"""What a catalog contains, through the full refresh against a local course-discovery server,
on DuckDB and PostgreSQL: a course that becomes disallowed, a forced course that the crawl
does not list, a learner pathway that turns invisible, and a course run that expires."""

from __future__ import annotations

from datetime import datetime

import pytest

from catalog_assets.core import lookup
from catalog_assets.core.catalog_contents import AllowLists, ContentRelation, RelationKind
from catalog_assets.defs.resources import (
    CatalogStoreResource,
    DiscoveryContentSource,
    build_resources,
)
from catalog_assets.settings import Settings
from catalog_assets.store import open_store
from catalog_assets_tests.support.fake_discovery import SEARCH_PATH, FakeDiscovery
from catalog_assets_tests.support.lanes import Lane, check, metadata

OLD_RUN = "course-v1:edX+A+old"


def course(key: str) -> dict:
    return {"key": key, "aggregation_key": f"course:{key}", "content_type": "course", "title": key}


def run(key: str, course_key: str, end: str) -> dict:
    return {
        "key": key,
        "aggregation_key": f"courserun:{course_key}",
        "content_type": "courserun",
        "title": key,
        "end": end,
    }


SEARCH = [
    course("edX+A"),
    course("edX+B"),
    *(course(f"edX+C{i}") for i in range(8)),
    run("course-v1:edX+A+1", "edX+A", "2030-01-01T00:00:00Z"),
    run(OLD_RUN, "edX+A", "2026-06-01T00:00:00Z"),
    {"uuid": "p1", "aggregation_key": "program:p1", "content_type": "program", "title": "P"},
    {
        "uuid": "lp1",
        "aggregation_key": "learnerpathway:lp1",
        "content_type": "learnerpathway",
        "title": "Pathway",
        "status": "active",
        "visible_via_association": True,
        "steps": [{"programs": [{"uuid": "p1"}], "courses": [{"key": "edX+B"}]}],
    },
]
FULL = {
    "edX+A": {"key": "edX+A", "course_type": "verified-audit", "programs": [{"uuid": "p1"}]},
    "edX+B": {"key": "edX+B", "course_type": "verified-audit"},
    **{f"edX+C{i}": {"key": f"edX+C{i}", "course_type": "audit"} for i in range(8)},
    "p1": {"uuid": "p1", "courses": [{"key": "edX+A"}, {"key": "edX+B"}]},
    # Unlisted: search/all does not return it, courses/?keys= does.
    "edX+F": {"key": "edX+F", "title": "Forced", "course_type": "verified", "course_runs": []},
}
QUERIES = {
    "catalog_queries": [
        {"uuid": "q-all", "title": "Everything", "content_filter": {}},
        {"uuid": "q-runs", "title": "Runs", "content_filter": {"content_type": "courserun"}},
        {
            "uuid": "q-forced",
            "title": "Programs and one forced course",
            "content_filter": {
                "content_type": "program",
                "enterprise_force_include_aggregation_keys": ["edX+F"],
            },
        },
    ],
    "enterprise_catalogs": [
        {"uuid": "c-runs", "title": "Runs", "catalog_query_uuid": "q-runs"},
        {"uuid": "c-forced", "title": "Forced", "catalog_query_uuid": "q-forced"},
    ],
}


@pytest.fixture
def discovery():
    with FakeDiscovery(SEARCH, FULL, now=datetime(2026, 1, 1)) as fake:
        yield fake


def source(fake: FakeDiscovery) -> DiscoveryContentSource:
    return DiscoveryContentSource(
        api_url=fake.api_url,
        oauth2_url=fake.oauth2_url,
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        max_retries=1,
    )


def live(url: str) -> set[str]:
    with open_store(url) as store:
        return {key for key, state in store.content_state().items() if not state.deleted}


def test_the_full_refresh_keeps_catalog_contents_as_enterprise_catalog_does(
    tmp_path, store_url, discovery
):
    lane = Lane(tmp_path, store_url, [], QUERIES)
    first = lane.refresh(content_source=source(discovery))
    assert first.success
    content = metadata(first, "content_metadata")
    assert (content["forced_courses"], content["forced_courses_unlisted"]) == (1, 1)
    assert (content["excluded_course_type"], content["excluded_product_source"]) == (0, 0)
    assert live(store_url) == {d.get("key") or d["uuid"] for d in SEARCH} | {"edX+F"}
    assert lookup.contains("c-forced", ["edX+F"], url=store_url)
    assert lookup.contains("c-runs", [OLD_RUN, "edX+A"], url=store_url)
    with open_store(store_url) as store:
        assert store.get_content("edX+F").metadata["enterprise_force_included"] is True
        assert store.relations() == [
            ContentRelation("edX+A", "p1", RelationKind.COURSE_PROGRAM),
            ContentRelation("lp1", "edX+B", RelationKind.PATHWAY_COURSE),
            ContentRelation("lp1", "p1", RelationKind.PATHWAY_PROGRAM),
            ContentRelation("p1", "edX+A", RelationKind.PROGRAM_COURSE),
            ContentRelation("p1", "edX+B", RelationKind.PROGRAM_COURSE),
        ]
    searches = [e for e in discovery.request_log if e.path == SEARCH_PATH]
    assert searches and all(
        e.query.get("exclude_expired_course_run") == ["True"]
        and e.query.get("include_learner_pathways") == ["True"]
        for e in searches
    )

    # A course becomes disallowed, the pathway turns invisible, a run expires.
    discovery.upsert_full_records({"edX+B": {"key": "edX+B", "course_type": "bootcamp-2u"}})
    pathway = {**SEARCH[-1], "visible_via_association": False}
    discovery.upsert_documents([pathway])
    discovery.now = datetime(2026, 7, 1)
    second = lane.refresh(content_source=source(discovery))
    assert second.success
    content = metadata(second, "content_metadata")
    assert content["excluded_course_type"] == 1 and "edX+B" in content["exclusions_preview"]
    assert content["tombstoned"] == 2 and content["forced_courses"] == 1
    assert live(store_url) == ({d.get("key") or d["uuid"] for d in SEARCH} | {"edX+F"}) - {
        "edX+B",
        OLD_RUN,
    }
    assert not lookup.contains("c-runs", [OLD_RUN], url=store_url)
    assert lookup.find_catalogs("edX+B", url=store_url).found == "nothing"
    assert lookup.contains("c-forced", ["edX+F"], url=store_url)  # still forced, still there
    associations = metadata(second, "catalog_content_associations")
    assert associations["relations_removed"] == 2
    with open_store(store_url) as store:
        assert [r for r in store.relations() if r.content_key == "lp1"] == []
    assert check(second, "associations_reference_live_content").passed

    third = lane.refresh(content_source=source(discovery))  # nothing left to change
    content = metadata(third, "content_metadata")
    assert (content["inserted"], content["updated"], content["tombstoned"]) == (0, 0, 0)
    associations = metadata(third, "catalog_content_associations")
    assert (associations["added"], associations["removed"]) == (0, 0)
    assert (associations["relations_added"], associations["relations_removed"]) == (0, 0)


def test_the_configured_allow_lists_reach_every_writer_through_the_store(tmp_path, monkeypatch):
    """Both lanes write through ``catalog_store.open()``: the store carries the settings' lists."""
    monkeypatch.setenv("CONTENT_COURSE_TYPE_ALLOW_LIST", "bootcamp-2u")
    monkeypatch.setenv("CATALOG_STORE_URL", f"duckdb:///{tmp_path / 'c.duckdb'}")
    resource = build_resources(Settings.from_env())["catalog_store"]
    with resource.process_config_and_initialize().open() as store:
        assert store.allow_lists.course_types == {"bootcamp-2u"}
        assert store.allow_lists.product_sources == {"edx", "2u"}
    default = CatalogStoreResource(url=f"duckdb:///{tmp_path / 'd.duckdb'}")
    with default.open() as store:
        assert store.allow_lists == AllowLists()
    broken = CatalogStoreResource(url=default.url, product_source_allow_list="edx,,2u")
    with pytest.raises(ValueError, match="product source allow-list 'edx,,2u' has an empty"):
        broken.open().__enter__()
