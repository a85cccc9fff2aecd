"""Event runs that fail for good keep their events: the run-failure sensor dead-letters them, and
``dead-letters replay`` applies them once the cause is fixed. Against a real local
course-discovery server that refuses the run's token, a real store and a real Dagster instance."""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg
import pytest

from catalog_assets import cli
from catalog_assets.core.catalog_contents import AllowLists
from catalog_assets.core.content import content_hash
from catalog_assets.core.content_updates import ContentUpdate
from catalog_assets.core.dead_letters import replay
from catalog_assets.defs.event_assets import (
    EVENT_RETRIES,
    apply_content_events,
    apply_content_updates,
    content_item,
)
from catalog_assets.defs.resources import CatalogStoreResource, DiscoveryContentSource
from catalog_assets.devtools.sample_data import generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.fake_discovery import FakeDiscovery
from sensors.failed_runs import (
    FAILED_RUNS_SENSOR,
    build_failed_event_runs_sensor,
    keep_failed_run,
    updates_of_run,
)

NOW = datetime(2026, 11, 27, 12, 0)
FAST_RETRIES = dg.RetryPolicy(max_retries=2)


@dg.job(name=apply_content_events.name)
def fast_retrying_batch_job():
    """The event lane's batch job with its op retried without delay (the real policy waits
    5 + 10 + 20 s): the same op, config and failure path."""
    apply_content_updates.with_retry_policy(FAST_RETRIES)()


@pytest.fixture
def discovery():
    documents = generate_content(40, seed=5)
    with FakeDiscovery(documents) as fake:
        yield fake, documents


def source(fake: FakeDiscovery, secret: str | None = None) -> DiscoveryContentSource:
    return DiscoveryContentSource(
        api_url=fake.api_url,
        oauth2_url=fake.oauth2_url,
        client_id=fake.client_id,
        client_secret=secret or fake.client_secret,
        max_retries=0,
        timeout_seconds=5,
    )


def batch_config(updates: list[ContentUpdate]) -> dict:
    return {
        "ops": {"apply_content_updates": {"config": {"updates": [u.to_config() for u in updates]}}}
    }


def failure_context(instance: dg.DagsterInstance, result, store_url: str):
    run = instance.get_run_by_id(result.run_id)
    (failure,) = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    return dg.build_run_status_sensor_context(
        sensor_name=FAILED_RUNS_SENSOR,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"catalog_store": CatalogStoreResource(url=store_url)},
    ).for_run_failure()


def test_a_run_that_fails_on_every_retry_leaves_its_events_replayable(discovery, tmp_path):
    fake, documents = discovery
    store_url = f"duckdb:///{tmp_path}/catalog.duckdb"
    run_doc = next(d for d in documents if d["content_type"] == "courserun")
    course_doc = next(
        d for d in documents if d["content_type"] == "course" and AllowLists().exclusion(d) is None
    )
    big = {**course_doc, "title": "Kept in event_payload", "modified": "2036-01-01T00:00:00Z"}
    ref = content_hash(big)
    with open_store(store_url) as store:
        store.ensure_schema()
        store.save_event_payloads({ref: (big["key"], big)}, NOW)
    updates = [
        ContentUpdate(
            run_doc["key"],
            "courserun",
            event_ids=("avro-1",),
            time=NOW,
            topic="dev-course-catalog-info-changed",
            partition=0,
            offset=7,
        ),
        ContentUpdate(
            big["key"],
            "course",
            metadata_ref=ref,
            event_ids=("json-1",),
            topic="dev-content-metadata-changed",
            partition=2,
            offset=41,
        ),
    ]
    instance = dg.DagsterInstance.ephemeral()
    refused = source(fake, secret="not-the-secret-0b7d")  # discovery refuses the token

    result = fast_retrying_batch_job.execute_in_process(
        run_config=batch_config(updates),
        resources={"content_source": refused, "catalog_store": CatalogStoreResource(url=store_url)},
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == FAST_RETRIES.max_retries  # it failed on every attempt
    sensor = build_failed_event_runs_sensor()
    context = failure_context(instance, result, store_url)
    assert sensor(context) is None  # stored
    again = sensor(context)  # evaluated twice (a tick retried): stored once
    assert isinstance(again, dg.SkipReason) and "kept already" in again.skip_message
    with open_store(store_url) as store:
        letters = store.dead_letters()
        assert [(d.topic, d.partition, d.offset) for d in letters] == [
            ("dev-course-catalog-info-changed", 0, 7),
            ("dev-content-metadata-changed", 2, 41),
        ]
        for letter in letters:
            assert letter.error.startswith(f"run {result.run_id} failed: ")
            assert "DiscoveryError" in letter.error and "401" in letter.error
            assert "not-the-secret-0b7d" not in letter.error
        kept = json.loads(letters[1].value)
        assert kept["metadata"] == big and kept["id"] == "json-1"  # the record left event_payload
        assert store.event_payload(ref) is None

        # Fixed (the right secret): replay applies both, the run fetched from discovery.
        report = replay(store, source(fake), NOW)
        assert [line.outcome.split(":")[0] for line in report] == ["applied", "applied"]
        assert store.get_content(run_doc["key"]) is not None
        assert store.get_content(big["key"]).metadata["title"] == "Kept in event_payload"
        assert store.dead_letters() == []


def test_a_run_dagster_retries_or_an_operator_run_keeps_nothing(tmp_path):
    store_url = f"duckdb:///{tmp_path}/catalog.duckdb"
    config = batch_config([ContentUpdate("edX+DemoX", "course", topic="t", partition=0, offset=1)])
    with open_store(store_url) as store:
        store.ensure_schema()
        will_retry = keep_failed_run("r1", {"dagster/will_retry": "true"}, config, "x", store, NOW)
        operator = keep_failed_run(
            "r2", {}, {"ops": {"content_item": {"config": {}}}}, "x", store, NOW
        )
        assert (will_retry, operator) == (0, 0)
        assert keep_failed_run("r3", {"dagster/will_retry": "false"}, config, "x", store, NOW) == 1
        (letter,) = store.dead_letters()
        assert letter.error == "run r3 failed: x"


def test_the_single_key_run_config_is_read_too():
    update = ContentUpdate("course-v1:edX+DemoX+2026", "courserun", event_ids=("e",))
    config = {"ops": {"content_item": {"config": {"update": update.to_config()}}}}
    assert updates_of_run(config) == [update]


def test_the_sensor_is_on_in_the_code_location_and_both_event_jobs_retry(tmp_path, monkeypatch):
    from catalog_assets.definitions import defs

    monkeypatch.setenv("CATALOG_STORE_URL", f"duckdb:///{tmp_path}/c.duckdb")
    sensor = defs().resolve_sensor_def(FAILED_RUNS_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert content_item.op.retry_policy == EVENT_RETRIES
    assert apply_content_updates.retry_policy == EVENT_RETRIES


def test_replay_from_the_command_line_after_a_failed_run(discovery, tmp_path, monkeypatch, capsys):
    fake, documents = discovery
    store_url = f"duckdb:///{tmp_path}/catalog.duckdb"
    run_doc = next(d for d in documents if d["content_type"] == "courserun")
    update = ContentUpdate(run_doc["key"], "courserun", topic="t", partition=0, offset=3)
    with open_store(store_url) as store:
        store.ensure_schema()
        keep_failed_run("r9", {}, batch_config([update]), "step failed", store, NOW)
    for name, value in {
        "CATALOG_STORE_URL": store_url,
        "CONTENT_SOURCE": "discovery",
        "DISCOVERY_API_URL": fake.api_url,
        "LMS_OAUTH2_URL": fake.oauth2_url,
        "LMS_OAUTH2_CLIENT_ID": fake.client_id,
        "LMS_OAUTH2_CLIENT_SECRET": fake.client_secret,
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["dead-letters", "replay"]) == 0
    assert f"applied: {run_doc['key']}" in capsys.readouterr().out
