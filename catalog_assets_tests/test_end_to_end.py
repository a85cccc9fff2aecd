"""End to end: a real dagster-daemon runs the real sensor and run launcher; events published to
the broker change the output tables on PostgreSQL; a bad message lands in the dead letters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from catalog_assets.core.content import content_key_of
from catalog_assets.core.events import encode_json_event
from catalog_assets.devtools.encoders import encode_openedx_catalog_info_changed
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support import expected
from catalog_assets_tests.support.expected import valid_filters

BIN = Path(sys.executable).parent
INSTANCE_CONFIG = """
telemetry:
  enabled: false
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 4
"""


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def deployment(tmp_path, postgres_schema_url, kafka_bootstrap, kafka_topic):
    """Files, environment and a DAGSTER_HOME as an operator would set them up."""
    content = generate_content(150, seed=31)
    queries = generate_catalog_queries(10, content, seed=31)
    (tmp_path / "content.json").write_text(json.dumps(content))
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_CONFIG)
    json_topic, avro_topic = kafka_topic(partitions=2), kafka_topic(partitions=1)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CONTENT_SOURCE": "sample",
        "SAMPLE_CONTENT_PATH": str(tmp_path / "content.json"),
        "CATALOG_QUERIES_PATH": str(tmp_path / "queries.json"),
        "CATALOG_STORE_URL": postgres_schema_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_CONTENT_TOPICS": f"{avro_topic},{json_topic}",
        "KAFKA_SENSOR_INTERVAL_SECONDS": "2",
    }
    return {
        "env": env,
        "content": content,
        "queries": queries,
        "json_topic": json_topic,
        "avro_topic": avro_topic,
        "store_url": postgres_schema_url,
        "home": home,
        "path": tmp_path,
    }


def expected_queries(deployment, record: dict) -> list[str]:
    return expected.expected_queries(
        valid_filters(deployment["queries"]["catalog_queries"]), record
    )


def test_events_flow_from_kafka_through_the_daemon_into_the_store(deployment):
    env = deployment["env"]
    refresh = subprocess.run(
        [str(BIN / "catalog-assets"), "refresh"], env=env, capture_output=True, text=True
    )
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr

    daemon_log = deployment["path"] / "daemon.log"
    with daemon_log.open("w") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", "catalog_assets.definitions"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        course = next(d for d in deployment["content"] if d["content_type"] == "course")
        changed = dict(
            course, org="EventsX", level_type="Advanced", modified="2035-01-01T00:00:00Z"
        )
        gone = next(d for d in deployment["content"] if d["content_type"] == "program")
        run = next(d for d in deployment["content"] if d["content_type"] == "courserun")
        producer = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
        key, value = encode_json_event(course["key"], "course", metadata=changed, event_id="u-1")
        producer.produce(deployment["json_topic"], key=key, value=value)
        key, value = encode_json_event(
            content_key_of(gone), "program", event_type="content.deleted", event_id="d-1"
        )
        producer.produce(deployment["json_topic"], key=key, value=value)
        producer.produce(deployment["json_topic"], key=b"broken", value=b"{not json")
        value, headers = encode_openedx_catalog_info_changed(run["key"], event_id="avro-1")
        producer.produce(
            deployment["avro_topic"], key=run["key"].encode(), value=value, headers=headers
        )
        assert producer.flush(10) == 0

        def landed():
            with open_store(deployment["store_url"]) as store:
                updated = store.get_content(course["key"])
                deleted = store.get_content(content_key_of(gone))
                return (
                    updated.metadata["org"] == "EventsX"
                    and deleted.deleted_at is not None
                    and store.dead_letters()
                    and store.associations_of(course["key"]).keys()
                    == set(expected_queries(deployment, changed))
                )

        wait_for(landed, 120, "the events to land in the store")
        with open_store(deployment["store_url"]) as store:
            (dead,) = store.dead_letters()
            assert dead.value == b"{not json" and dead.topic == deployment["json_topic"]
            assert store.associations_of(content_key_of(gone)) == {}

        import dagster as dg

        with dg.DagsterInstance.from_config(str(deployment["home"])) as instance:
            materialized = wait_for(
                lambda: (
                    {run["key"], course["key"]}
                    <= instance.get_materialized_partitions(dg.AssetKey("content_item"))
                ),
                60,
                "the Avro event's run partition to be materialized",
            )
            assert materialized
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        print(daemon_log.read_text()[-5000:])
