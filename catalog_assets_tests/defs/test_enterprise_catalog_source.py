"""enterprise-catalog as the catalog-query source, through Dagster: the ``full_refresh`` job of
the code location with ``CATALOG_QUERIES_SOURCE=enterprise-catalog`` against a real local
enterprise-catalog server (FakeEnterpriseCatalog) and the sample content, on both store
backends; and the choice of resource and its settings when definitions load."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from catalog_assets.definitions import defs
from catalog_assets.defs.resources import (
    CatalogQuerySource,
    EnterpriseCatalogQuerySource,
    FileCatalogQuerySource,
    build_resources,
)
from catalog_assets.settings import CatalogQueriesSourceKind, SettingError, Settings
from catalog_assets_tests.support.fake_enterprise_catalog import (
    CATALOGS_PATH,
    QUERIES_PATH,
    FakeEnterpriseCatalog,
)
from catalog_assets_tests.support.lanes import ASSETS, Lane, metadata


@pytest.fixture
def sample_seed() -> int:
    """The data the bulk-lane tests were written against (conftest's `content`, `queries`)."""
    return 21


@pytest.fixture
def fake(lane: Lane) -> Iterator[FakeEnterpriseCatalog]:
    """enterprise-catalog serving the lane's catalog queries and enterprise catalogs."""
    with FakeEnterpriseCatalog.from_file(lane.queries) as server:
        yield server


def source_env(fake: FakeEnterpriseCatalog, lane: Lane) -> dict[str, str]:
    return {
        "CATALOG_QUERIES_SOURCE": "enterprise-catalog",
        "ENTERPRISE_CATALOG_API_URL": fake.api_url,
        "LMS_OAUTH2_URL": fake.oauth2_url,
        "LMS_OAUTH2_CLIENT_ID": fake.client_id,
        "LMS_OAUTH2_CLIENT_SECRET": fake.client_secret,
        "CATALOG_STORE_URL": lane.store_url,
        "SAMPLE_CONTENT_PATH": str(lane.content_path),
    }


@pytest.fixture
def full_refresh(
    fake: FakeEnterpriseCatalog, lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> dg.JobDefinition:
    """The code location's ``full_refresh`` job, loaded with enterprise-catalog as the source."""
    for name, value in source_env(fake, lane).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CATALOG_QUERIES_PATH", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    definitions = defs()
    assert isinstance(definitions.resources["catalog_query_source"], EnterpriseCatalogQuerySource)
    return definitions.resolve_job_def("full_refresh")


def run(job: dg.JobDefinition, lane: Lane) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(instance=lane.instance, raise_on_error=False)


def pairs_of(lane: Lane, query_uuid: str) -> set[str]:
    return {key for query, key in lane.tables()["associations"] if query == query_uuid}


def edit_filter(lane: Lane, fake: FakeEnterpriseCatalog, index: int, content_filter: dict) -> str:
    """Change query ``index``'s filter on the server (and in the lane's expectations)."""
    queries = lane.queries
    uuid = queries["catalog_queries"][index]["uuid"]
    queries["catalog_queries"][index]["content_filter"] = content_filter
    lane.write(queries=queries)
    fake.edit_query(uuid, content_filter=content_filter)
    return uuid


def test_the_full_refresh_reads_queries_and_catalogs_from_enterprise_catalog(
    full_refresh: dg.JobDefinition, lane: Lane, fake: FakeEnterpriseCatalog
) -> None:
    result = run(full_refresh, lane)
    assert result.success
    tables = lane.tables()
    assert {q.uuid for q in tables["queries"]} == {
        q["uuid"] for q in lane.queries["catalog_queries"]
    }
    stored_catalogs = {
        (c.uuid, c.enterprise_uuid, c.catalog_query_uuid) for c in tables["catalogs"]
    }
    assert stored_catalogs == {
        (c["uuid"], c["enterprise_uuid"], c["catalog_query_uuid"])
        for c in lane.queries["enterprise_catalogs"]
    }
    assert tables["associations"] == lane.expected_associations()
    assert metadata(result, "catalog_queries")["queries"] == 20
    # Both listings were read with the JWT, 100 a page.
    served = [e for e in fake.request_log if e.path in (QUERIES_PATH, CATALOGS_PATH)]
    assert {(e.path, e.query["page_size"][-1], e.status) for e in served} == {
        (QUERIES_PATH, "100", 200),
        (CATALOGS_PATH, "100", 200),
    }


def test_an_edited_filter_changes_the_catalog_after_the_next_refresh(
    full_refresh: dg.JobDefinition, lane: Lane, fake: FakeEnterpriseCatalog
) -> None:
    assert run(full_refresh, lane).success
    org = next(d["org"] for d in lane.content if d["content_type"] == "course" and d.get("org"))
    before = pairs_of(lane, lane.queries["catalog_queries"][0]["uuid"])
    uuid = edit_filter(lane, fake, 0, {"content_type": "course", "org": org})
    result = run(full_refresh, lane)
    assert result.success
    after = pairs_of(lane, uuid)
    assert after != before and after
    assert lane.tables()["associations"] == lane.expected_associations()
    assert metadata(result, "catalog_queries")["changed"] == 1


def test_the_query_sensor_applies_an_edit_made_in_enterprise_catalog(
    full_refresh: dg.JobDefinition, lane: Lane, fake: FakeEnterpriseCatalog
) -> None:
    """The query lane on this source: a tick reads the listing from the server, asks for one
    scoped run, and that run (with the code location's resources) applies the edit alone."""
    assert run(full_refresh, lane).success
    definitions = defs()  # the environment of the `full_refresh` fixture: enterprise-catalog
    sensor = definitions.resolve_sensor_def("catalog_queries_sensor")
    org = next(d["org"] for d in lane.content if d["content_type"] == "course" and d.get("org"))
    uuid = edit_filter(lane, fake, 0, {"content_type": "course", "org": org})
    with dg.build_sensor_context(
        instance=lane.instance, resources=definitions.resources
    ) as context:
        result = sensor(context)
    (request,) = result.run_requests
    assert request.job_name == "catalog_query_changes"
    job = definitions.resolve_job_def("catalog_query_changes")
    outcome = job.execute_in_process(
        instance=lane.instance,
        run_config=request.run_config,
        asset_selection=request.asset_selection,
    )
    assert outcome.success
    assert lane.tables()["associations"] == lane.expected_associations()
    assert pairs_of(lane, uuid)
    assert metadata(outcome, "catalog_content_associations")["queries_changed"] == 1
    # The store is now in step: the next tick asks for nothing.
    with dg.build_sensor_context(
        instance=lane.instance, resources=definitions.resources, cursor=result.cursor
    ) as context:
        again = sensor(context)
    assert not (getattr(again, "run_requests", None) or [])


def test_a_removed_query_loses_its_associations_and_a_query_without_catalogs_stays(
    full_refresh: dg.JobDefinition, lane: Lane, fake: FakeEnterpriseCatalog
) -> None:
    assert run(full_refresh, lane).success
    associated = {query for query, _ in lane.tables()["associations"]}
    gone, orphaned = [
        q["uuid"] for q in lane.queries["catalog_queries"] if q["uuid"] in associated
    ][:2]
    assert pairs_of(lane, gone) and pairs_of(lane, orphaned)
    fake.remove_query(gone)
    fake.remove_catalogs(
        c["uuid"]
        for c in lane.queries["enterprise_catalogs"]
        if c["catalog_query_uuid"] == orphaned
    )
    assert run(full_refresh, lane).success
    tables = lane.tables()
    assert gone not in {q.uuid for q in tables["queries"]}
    assert not pairs_of(lane, gone)
    # Its catalogs stay, pointing at no query (enterprise-catalog's SET_NULL), containing nothing.
    assert all(c.catalog_query_uuid != gone for c in tables["catalogs"])
    assert orphaned in {q.uuid for q in tables["queries"]}
    assert pairs_of(lane, orphaned)  # the query stays with its content
    assert not any(c.catalog_query_uuid == orphaned for c in tables["catalogs"])


@pytest.mark.parametrize("fault", ["malformed page", "missing field"])
def test_a_broken_listing_changes_nothing(
    full_refresh: dg.JobDefinition, lane: Lane, fake: FakeEnterpriseCatalog, fault: str
) -> None:
    assert run(full_refresh, lane).success
    before = lane.tables()
    edit_filter(lane, fake, 0, {"content_type": "program"})
    fake.remove_query(lane.queries["catalog_queries"][1]["uuid"])
    if fault == "malformed page":
        fake.malformed_page(CATALOGS_PATH, 1)
    else:
        fake.drop_field(CATALOGS_PATH, lane.queries["enterprise_catalogs"][-1]["uuid"], "uuid")
    result = run(full_refresh, lane)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "MalformedEnterpriseCatalogReply" in str(failure.event_specific_data.error)
    assert "enterprise-catalogs/?page=1" in str(failure.event_specific_data.error)
    assert lane.tables() == before


def test_a_failing_source_changes_nothing(
    lane: Lane, fake: FakeEnterpriseCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page that keeps failing (5xx after the retries) fails the run before anything is
    written, with a retryable error. The resource is configured with ``dg.EnvVar``s, as the
    definitions configure it, and one retry so the test does not wait out the backoff."""
    for name, value in source_env(fake, lane).items():
        monkeypatch.setenv(name, value)
    source = EnterpriseCatalogQuerySource(
        api_url=dg.EnvVar("ENTERPRISE_CATALOG_API_URL"),
        oauth2_url=dg.EnvVar("LMS_OAUTH2_URL"),
        client_id=dg.EnvVar("LMS_OAUTH2_CLIENT_ID"),
        client_secret=dg.EnvVar("LMS_OAUTH2_CLIENT_SECRET"),
        max_retries=1,
    )
    resources: dict[str, Any] = {**lane.resources(), "catalog_query_source": source}
    assert dg.materialize(ASSETS, resources=resources, instance=lane.instance).success
    before = lane.tables()
    edit_filter(lane, fake, 0, {"content_type": "program"})
    fake.fail_page(QUERIES_PATH, 1, 503, times=2)
    result = dg.materialize(
        ASSETS, resources=resources, instance=lane.instance, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "EnterpriseCatalogUnavailable" in str(failure.event_specific_data.error)
    assert lane.tables() == before
    # Once the source answers again, the edit arrives.
    assert dg.materialize(ASSETS, resources=resources, instance=lane.instance).success
    assert lane.tables()["associations"] == lane.expected_associations()


# -- the choice of source when definitions load ------------------------------------------------


ENTERPRISE_ENV = {
    "CATALOG_QUERIES_SOURCE": "enterprise-catalog",
    "ENTERPRISE_CATALOG_API_URL": "http://127.0.0.1:9/api/v1/",
    "LMS_OAUTH2_URL": "http://127.0.0.1:9/oauth2",
    "LMS_OAUTH2_CLIENT_ID": "id",
    "LMS_OAUTH2_CLIENT_SECRET": "planted-secret-5d1e",
}


def test_enterprise_catalog_selects_its_resource_configured_with_env_vars(monkeypatch) -> None:
    for name, value in ENTERPRISE_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(ENTERPRISE_ENV)
    assert settings.catalog_queries_source is CatalogQueriesSourceKind.ENTERPRISE_CATALOG
    source = build_resources(settings)["catalog_query_source"]
    assert isinstance(source, EnterpriseCatalogQuerySource)
    assert isinstance(source, CatalogQuerySource)  # what the assets and the sensor ask for
    # Settings stay EnvVar references, resolved by Dagster at run time (secrets never inlined).
    assert source.api_url == dg.EnvVar("ENTERPRISE_CATALOG_API_URL")
    assert source.client_secret == dg.EnvVar("LMS_OAUTH2_CLIENT_SECRET")
    assert source.process_config_and_initialize().client_secret == "planted-secret-5d1e"


def test_the_file_stays_the_default_source() -> None:
    settings = Settings.from_env({"CATALOG_QUERIES_PATH": "/tmp/queries.json"})
    assert settings.catalog_queries_source is CatalogQueriesSourceKind.FILE
    source = build_resources(settings)["catalog_query_source"]
    assert isinstance(source, FileCatalogQuerySource)
    assert source.path == dg.EnvVar("CATALOG_QUERIES_PATH")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"CATALOG_QUERIES_SOURCE": "enterprise-catalog"},
            "CATALOG_QUERIES_SOURCE=enterprise-catalog needs ENTERPRISE_CATALOG_API_URL, "
            "LMS_OAUTH2_URL, LMS_OAUTH2_CLIENT_ID, LMS_OAUTH2_CLIENT_SECRET",
        ),
        (
            {**ENTERPRISE_ENV, "LMS_OAUTH2_CLIENT_SECRET": ""},
            "CATALOG_QUERIES_SOURCE=enterprise-catalog needs LMS_OAUTH2_CLIENT_SECRET",
        ),
        (
            {**ENTERPRISE_ENV, "ENTERPRISE_CATALOG_API_URL": "enterprise-catalog.example.com"},
            "ENTERPRISE_CATALOG_API_URL must start with http:// or https://",
        ),
        (
            {"CATALOG_QUERIES_SOURCE": "api"},
            "CATALOG_QUERIES_SOURCE='api' is not one of file, enterprise-catalog",
        ),
    ],
)
def test_missing_or_bad_settings_are_a_clear_error_when_definitions_load(
    monkeypatch, env: dict[str, str], problem: str
) -> None:
    for name in ENTERPRISE_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=re.escape(problem)):
        defs()
