"""The ``discovery_parity`` asset against a real local course-discovery server, on both store
backends: its metadata (a markdown table, numeric counts), its run config, its failures; and
its job and schedule (weekly, off by default, apart from the full refresh)."""

from __future__ import annotations

import dagster as dg
import pytest

from catalog_assets.core.parity import Reason
from catalog_assets.definitions import defs
from catalog_assets.defs.parity import discovery_parity
from catalog_assets.defs.resources import CatalogStoreResource, DiscoveryContentSource
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


@pytest.fixture
def loaded(store_url, fake) -> str:
    with open_store(store_url) as store:
        store.ensure_schema()
        load(store, fake)
    return store_url


def materialize(fake: FakeDiscovery, store_url: str, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [discovery_parity],
        resources={
            "content_source": DiscoveryContentSource(
                api_url=fake.api_url,
                oauth2_url=fake.oauth2_url,
                client_id=fake.client_id,
                client_secret=fake.client_secret,
                max_retries=0,
            ),
            "catalog_store": CatalogStoreResource(url=store_url),
        },
        run_config={"ops": {"discovery_parity": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def test_equal_sets_materialize_with_counts_and_a_table(loaded, fake):
    result = materialize(fake, loaded)
    assert result.success
    found = metadata(result)
    n = len(VALID)
    assert {k: found[k] for k in ("queries", "equal", "differ", "differences")} == {
        "queries": n,
        "equal": n,
        "differ": 0,
        "differences": 0,
    }
    assert (found["only_local"], found["only_discovery"]) == (0, 0)
    assert all(found[f"reason_{reason}"] == 0 for reason in Reason)
    assert found["summary"] == f"{n} queries, {n} equal, 0 differ, 0 differences"
    table = found["queries_table"]
    assert table.splitlines()[0].startswith("| catalog_query_uuid | title | verdict |")
    assert all(f"| {uuid} |" in table for uuid in VALID)
    assert found["differences_preview"] == "None: every chosen query is equal."


def test_planted_differences_show_in_the_metadata_with_their_reasons(loaded, fake):
    with open_store(loaded) as store:
        plant_differences(store, fake)
    result = materialize(fake, loaded)
    assert result.success  # a difference is a finding, not a failure
    found = metadata(result)
    assert found["summary"] == PLANTED_SUMMARY
    assert (found["only_local"], found["only_discovery"]) == (3, 5)
    assert found["reason_tombstoned"] == 2 and found["reason_not_in_store"] == 1
    assert found["reason_excluded_by_allow_list"] == 1 and found["reason_other"] == 2
    table = found["queries_table"].splitlines()
    assert table[2].startswith("| q-edx | Query q-edx | differs |")  # those that differ first
    assert table[-1].startswith("| q-forced | Query q-forced | equal |")
    preview = found["differences_preview"]
    for (uuid, side, key), reason in PLANTED.items():
        assert f"| {uuid} | {side} | {key} | {reason} |" in preview


def test_run_config_chooses_and_samples_queries(loaded, fake):
    found = metadata(materialize(fake, loaded, queries=["q-runs", "q-edx"], sample=1))
    assert found["summary"] == "1 queries, 1 equal, 0 differ, 0 differences"
    assert "| q-edx |" in found["queries_table"] and "q-runs" not in found["queries_table"]


def test_an_unknown_query_or_a_failing_discovery_fails_the_run_and_says_why(loaded, fake):
    unknown = materialize(fake, loaded, queries=["nope"])
    assert not unknown.success
    (failure,) = [e for e in unknown.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "'nope' is not a catalog query in the store" in str(failure.step_failure_data.error)
    fake.fail_next(SEARCH_PATH, 403)
    failing = materialize(fake, loaded)
    assert not failing.success
    (failure,) = [e for e in failing.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "course-discovery cannot be reached" in str(failure.step_failure_data.error)


def test_the_job_and_its_weekly_schedule_are_off_by_default_and_apart_from_the_refresh():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    spec = graph.get(dg.AssetKey("discovery_parity"))
    assert spec.group_name == "parity"
    assert "discovery_parity" not in {
        node.name for node in definitions.resolve_job_def("full_refresh").nodes
    }
    job = definitions.resolve_job_def("parity_report")
    assert [node.name for node in job.nodes] == ["discovery_parity"]
    schedule = definitions.resolve_schedule_def("parity_report_schedule")
    assert schedule.job_name == "parity_report"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 6 * * 1"  # weekly
    scheduled = {s.job_name for s in definitions.schedules if s.default_status.value == "RUNNING"}
    assert "parity_report" not in scheduled
