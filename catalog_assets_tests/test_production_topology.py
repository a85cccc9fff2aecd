"""The production topology end to end, driven only through the webserver's GraphQL API.

PostgreSQL (Dagster's instance and the catalog store), ``dagster code-server start``,
``dagster-webserver`` and ``dagster-daemon`` on ``deploy/dagster.yaml`` (``make deploy-local``
starts the same), a local course-discovery server as the content source and the local broker.
One test walks through what an operator's tools do, in order, on one topology (starting it is
the expensive part): a full refresh and its results, the content-event sensor applying an event,
the ``catalog_store`` pool queueing a second writer, and a host crash in the middle of a run
(daemon and code server killed with the run's worker), which run monitoring resolves and a run
retry completes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from catalog_assets.core.content import content_key_of
from catalog_assets.core.events import encode_json_event
from catalog_assets.defs.resources import STORE_POOL
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets_tests.support.fake_discovery import SEARCH_PATH, FakeDiscovery
from catalog_assets_tests.support.topology import (
    LOCATION,
    REPOSITORY,
    Topology,
    running_topology,
    wait_for,
)

RUN_FIELDS = "runId status startTime endTime allPools tags { key value }"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def full_records(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The courses/ and programs/ records the crawl fetches after the search pages."""
    return {
        content_key_of(doc): {"uuid": doc["uuid"], "title": doc["title"], "key": doc.get("key")}
        for doc in documents
        if doc["content_type"] in ("course", "program")
    }


@pytest.fixture
def deployment(tmp_path, kafka_bootstrap, kafka_topic) -> Iterator[dict[str, Any]]:
    content = generate_content(150, seed=41)
    queries = generate_catalog_queries(10, content, seed=41)
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    topic = kafka_topic(partitions=1)
    with FakeDiscovery(content, full_records(content)) as discovery:
        code_env = {
            "CONTENT_SOURCE": "discovery",
            "DISCOVERY_API_URL": discovery.api_url,
            "LMS_OAUTH2_URL": discovery.oauth2_url,
            "LMS_OAUTH2_CLIENT_ID": discovery.client_id,
            "LMS_OAUTH2_CLIENT_SECRET": discovery.client_secret,
            "CATALOG_QUERIES_PATH": str(tmp_path / "queries.json"),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_CONTENT_TOPICS": topic,
            "KAFKA_SENSOR_INTERVAL_SECONDS": "2",
        }
        with running_topology(code_env) as topology:
            try:
                yield {
                    "topology": topology,
                    "content": content,
                    "discovery": discovery,
                    "topic": topic,
                    "bootstrap": kafka_bootstrap,
                }
            finally:
                for name in ("daemon", "code-server", "webserver"):
                    print(f"--- {name} log (end)\n{topology.tail(name, 3000)}")


# --- GraphQL, as an operator's tools call it -------------------------------------------------


def launch(topology: Topology, job: str, tags: dict[str, str] | None = None) -> str:
    data = topology.graphql(
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } }
             ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } }
           } }""",
        params={
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": job,
            },
            "runConfigData": {},
            "executionMetadata": {
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]
            },
        },
    )["launchRun"]
    assert data["__typename"] == "LaunchRunSuccess", data
    return data["run"]["runId"]


def run(topology: Topology, run_id: str) -> dict[str, Any]:
    return topology.graphql(
        f"query($id: ID!) {{ runOrError(runId: $id) {{ ... on Run {{ {RUN_FIELDS} }} }} }}",
        id=run_id,
    )["runOrError"]


def runs_tagged(topology: Topology, key: str, value: str) -> list[dict[str, Any]]:
    return topology.graphql(
        f"""query($tags: [ExecutionTag!]) {{ runsOrError(filter: {{tags: $tags}}) {{
              ... on Runs {{ results {{ {RUN_FIELDS} }} }} }} }}""",
        tags=[{"key": key, "value": value}],
    )["runsOrError"]["results"]


def wait_finished(topology: Topology, run_id: str, timeout: float) -> dict[str, Any]:
    return wait_for(
        lambda: (r := run(topology, run_id))["status"] in FINISHED and r, timeout, f"run {run_id}"
    )


def run_messages(topology: Topology, run_id: str) -> list[str]:
    events = topology.graphql(
        """query($id: ID!) { logsForRun(runId: $id, limit: 1000) {
             ... on EventConnection { events { ... on MessageEvent { message } } } } }""",
        id=run_id,
    )["logsForRun"]["events"]
    return [event.get("message") or "" for event in events]


def latest_metadata(topology: Topology, asset: str, partition: str | None = None) -> dict:
    data = topology.graphql(
        """query($key: AssetKeyInput!, $partitions: [String!]) { assetOrError(assetKey: $key) {
             ... on Asset { assetMaterializations(partitions: $partitions, limit: 1) {
               runId metadataEntries { label
                 ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
                 ... on TextMetadataEntry { text } } } } } }""",
        key={"path": [asset]},
        partitions=[partition] if partition else None,
    )["assetOrError"]
    materializations = data.get("assetMaterializations") or []
    if not materializations:
        return {}
    entries = materializations[0]["metadataEntries"]
    values = {e["label"]: e.get("intValue", e.get("floatValue", e.get("text"))) for e in entries}
    return {"run_id": materializations[0]["runId"], **values}


def check_statuses(topology: Topology, asset: str, checks: list[str]) -> dict[str, str]:
    statuses = {}
    for name in checks:
        (latest,) = topology.graphql(
            """query($key: AssetKeyInput!, $name: String!) {
                 assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1) { status } }""",
            key={"path": [asset]},
            name=name,
        )["assetCheckExecutions"]
        statuses[name] = latest["status"]
    return statuses


# --- the walk-through ---------------------------------------------------------------------------


def test_the_production_topology_through_graphql(deployment):
    topology: Topology = deployment["topology"]
    content = deployment["content"]

    # The instance is the production one: queue limits, pools, monitoring, retries.
    instance = topology.graphql(
        "{ instance { runLauncher { name } runQueueConfig { maxConcurrentRuns }"
        " poolConfig { poolGranularity defaultPoolLimit } } }"
    )["instance"]
    assert instance["runLauncher"]["name"] == "DefaultRunLauncher"
    assert instance["runQueueConfig"]["maxConcurrentRuns"] == 4
    assert instance["poolConfig"] == {"poolGranularity": "run", "defaultPoolLimit": 2}

    # 1. A full refresh, launched and checked as an operator would.
    refresh = launch(topology, "full_refresh")
    finished = wait_finished(topology, refresh, 120)
    assert finished["status"] == "SUCCESS", run_messages(topology, refresh)[-20:]
    assert finished["allPools"] == [STORE_POOL]
    metadata = latest_metadata(topology, "content_metadata")
    assert metadata["run_id"] == refresh
    assert metadata["inserted"] == metadata["source_records"] > len(content) // 2, metadata
    associations = latest_metadata(topology, "catalog_content_associations")
    assert associations["run_id"] == refresh and associations["added"] > 0, associations
    assert check_statuses(
        topology,
        "catalog_content_associations",
        ["no_held_changes", "associations_reference_live_content"],
    ) == {"no_held_changes": "SUCCEEDED", "associations_reference_live_content": "SUCCEEDED"}

    # 2. The content-event sensor: started, then an event applied by the run it requests.
    sensor = topology.graphql(
        """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
             __typename ... on Sensor { sensorState { status } } } }""",
        selector={
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": "content_events_sensor",
        },
    )["startSensor"]
    assert sensor["sensorState"]["status"] == "RUNNING", sensor
    course = next(doc for doc in content if doc["content_type"] == "course")
    changed = dict(course, org="TopologyX", modified="2035-01-01T00:00:00Z")
    producer = Producer({"bootstrap.servers": deployment["bootstrap"]})
    key, value = encode_json_event(course["key"], "course", metadata=changed, event_id="topo-1")
    producer.produce(deployment["topic"], key=key, value=value)
    assert producer.flush(10) == 0
    applied = wait_for(  # past the full refresh's own record of the partition ("recorded")
        lambda: (
            latest_metadata(topology, "content_item", course["key"]).get("outcome")
            not in (None, "recorded")
            and latest_metadata(topology, "content_item", course["key"])
        ),
        90,
        "the event's content_item materialization",
        step=1,
    )
    assert applied["outcome"] == "updated"
    event_run = run(topology, applied["run_id"])
    assert event_run["status"] == "SUCCESS" and event_run["allPools"] == [STORE_POOL]
    assert {"key": "catalog/lane", "value": "events"} in event_run["tags"]

    # 3. Two store writers at once: with the pool at 1 (set as an operator would, overriding the
    # instance's default), the second waits in the queue until the first has finished.
    assert topology.graphql(
        'mutation { setConcurrencyLimit(concurrencyKey: "catalog_store", limit: 1) }'
    )["setConcurrencyLimit"]
    other = next(doc for doc in content if doc["content_type"] == "courserun")
    first = launch(topology, "full_refresh")
    second = launch(topology, "apply_content_item", {"dagster/partition": other["key"]})

    def one_queued_behind_the_other() -> bool:
        statuses = {run(topology, first)["status"], run(topology, second)["status"]}
        return statuses & {"STARTING", "STARTED"} and "QUEUED" in statuses

    wait_for(one_queued_behind_the_other, 60, "one writer running while the other is queued")
    a, b = sorted(
        (wait_finished(topology, r, 120) for r in (first, second)), key=lambda r: r["startTime"]
    )
    assert a["status"] == b["status"] == "SUCCESS"
    assert a["endTime"] <= b["startTime"], "the pool let two store writers run at once"
    assert topology.graphql('mutation { deleteConcurrencyLimit(concurrencyKey: "catalog_store") }')[
        "deleteConcurrencyLimit"
    ]

    # 4. The host loses the daemon and the code server (and with it the run's worker) in the
    # middle of a run. A supervisor restarts both; run monitoring resolves the orphaned run at
    # its runtime limit (tagged tighter than the instance's 2 h for the test) and a run retry
    # completes the refresh.
    deployment["discovery"].delay_next(SEARCH_PATH, 120)  # the crawl stalls: the run is mid-way
    stalled = launch(topology, "full_refresh", {"dagster/max_runtime": "25"})
    wait_for(lambda: run(topology, stalled)["status"] == "STARTED", 60, "the run to start")
    time.sleep(2)  # into the stalled crawl
    topology.kill("daemon")
    topology.kill("code-server")
    assert run(topology, stalled)["status"] == "STARTED"  # nothing left to notice
    topology.start_code_server()
    topology.start_daemon()
    topology.reload_location()
    topology.wait_until_serving()

    resolved = wait_finished(topology, stalled, 90)
    assert resolved["status"] == "FAILURE"
    assert any("maximum runtime" in m for m in run_messages(topology, stalled))
    retry = wait_for(
        lambda: runs_tagged(topology, "dagster/parent_run_id", stalled),
        60,
        "the run retry to be launched",
        step=1,
    )[0]
    assert {"key": "dagster/retry_number", "value": "1"} in retry["tags"]
    assert wait_finished(topology, retry["runId"], 90)["status"] == "SUCCESS"
    assert latest_metadata(topology, "content_metadata")["run_id"] == retry["runId"]
