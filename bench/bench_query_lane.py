"""Benchmark: the query lane, from a catalog query edited in the listing to its new associations
in the store.

PostgreSQL holds the catalog store (``--records`` content records, ``--queries`` catalog queries
of production's breadth, their associations loaded up front with the bulk lane's core steps) and
Dagster's instance (``deploy/dagster.yaml``: the run queue, ``DefaultRunLauncher``).
``dagster code-server start`` and ``dagster-daemon`` run as in production, the
``catalog_queries_sensor`` at its default interval (``CATALOG_QUERIES_POLL_SECONDS``, 30 s,
unless ``--interval``). Then ``--edits`` times: one query's filter is edited in the listing
file (the edit is visible to the source at once), and the bench measures

- **edit → store**: until the store holds exactly the new filter's pairs for that query;
- **the run**: its duration from Dagster's run stats (start → end);
- **where the time goes**: waiting for the tick, the tick, the run queue, launch, process
  start and code load, each step, and the association step's own phases (load, match, diff,
  write) from its materialization metadata;
- **the load path**: what the scoped evaluation's reads cost on their own, in this process:
  ``live_content()`` (every record, whole), ``associations()`` (every pair), and
  ``live_content_fields()`` (just the fields the edited filter names).

Between edits it waits a random part of the interval, so that the edits land at different
phases of the sensor's ticks.

    python bench/bench_query_lane.py                       # 200,000 records, 1,000 queries
    python bench/bench_query_lane.py --records 20000 --interval 10 --edits 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from contextlib import ExitStack
from importlib import metadata as package_metadata
from pathlib import Path

import dagster as dg
import psycopg2

from catalog_assets.core.catalog_contents import forcing_queries
from catalog_assets.core.content import utcnow
from catalog_assets.core.filters import evaluate
from catalog_assets.core.filters.rules import parse
from catalog_assets.core.refresh import RECORD_KEY, refresh_associations, refresh_content
from catalog_assets.core.refresh.queries import catalog_query_row, sync_catalog_queries
from catalog_assets.core.sources import CatalogQueryFile, SampleContent
from catalog_assets.devtools.sample_data import generate_content, generate_scale_queries
from catalog_assets.settings import BY_NAME
from catalog_assets.store import open_store
from catalog_assets_tests.support.postgres_cluster import free_port, running_cluster
from catalog_assets_tests.support.topology import DEPLOY, Topology, wait_for

SENSOR = "catalog_queries_sensor"


def versions() -> str:
    names = ("dagster", "dagster-postgres", "polars", "psycopg2-binary", "duckdb")
    found = []
    for name in names:
        try:
            found.append(f"{name} {package_metadata.version(name)}")
        except package_metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def populate(store_url: str, folder: Path, records: int, queries: int) -> dict:
    """Content, queries and their associations in the store, as after a full refresh (the bulk
    lane's core steps, in this process: the Dagster side of a full refresh is measured by
    ``bench_refresh``/``bench_scale``). Queries and associations go in one transaction, so the
    sensor never sees queries without their applied filters."""
    started = time.perf_counter()
    content = generate_content(records, seed=11)
    listing = generate_scale_queries(queries, content, seed=11)
    (folder / "content.json").write_text(json.dumps(content))
    (folder / "queries.json").write_text(json.dumps(listing))
    generated = time.perf_counter()
    with open_store(store_url) as store:
        store.ensure_schema()
        refresh_content(SampleContent(str(folder / "content.json")).fetch_all(), store, utcnow())
        stored = time.perf_counter()
        with store.transaction():
            sync_catalog_queries(
                CatalogQueryFile(listing["catalog_queries"], listing["enterprise_catalogs"]),
                store,
                utcnow(),
            )
            refresh_associations(store, utcnow())
        pairs = store.association_count()
        live = len(store.live_content_fields([]))
    print(
        f"store: {live:,} live records, {queries:,} queries, {pairs:,} associations "
        f"(generate {generated - started:.0f} s, content {stored - generated:.0f} s, "
        f"queries + associations {time.perf_counter() - stored:.0f} s)",
        flush=True,
    )
    return listing


def expected_keys(store_url: str, uuid: str, content_filter: dict) -> set[str]:
    """What the bulk engine gives the filter over the stored live content (forced courses
    included): the pairs the lane must leave in the store."""
    with open_store(store_url) as store:
        live = store.live_content()
    records = [{**metadata, RECORD_KEY: key} for key, metadata in live]
    pairs = evaluate({uuid: content_filter}, records, key=RECORD_KEY).pairs
    keys = {key for _, key in pairs.iter_rows()}
    live_keys = {key for key, _ in live}
    forced = forcing_queries({uuid: content_filter})
    return keys | {key for key in forced if key in live_keys}


def stored_keys(store_url: str, uuid: str) -> set[str]:
    with open_store(store_url) as store:
        return {row["content_key"] for row in store.contents_of(uuid)}


def load_paths(store_url: str, content_filter: dict) -> dict[str, float]:
    """Seconds of each read the scoped association step could make, in this process."""
    fields = [condition.field for condition in parse(content_filter).conditions]
    out = {}
    with open_store(store_url) as store:
        for name, read in (
            ("live_content() (every record, whole)", store.live_content),
            ("associations() (every pair)", store.associations),
            ("applied_filters() + catalog_queries()", store.catalog_queries),
            (f"live_content_fields({fields})", lambda: store.live_content_fields(fields)),
        ):
            started = time.perf_counter()
            read()
            out[name] = time.perf_counter() - started
    return out


def run_events(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[tuple[float, str]]]:
    """Event type -> (timestamp, step key) of each event of the run."""
    times: dict[str, list[tuple[float, str]]] = {}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is not None:
            name = entry.dagster_event.event_type.name
            times.setdefault(name, []).append((entry.timestamp, entry.step_key or ""))
    return times


def sensor_tick(instance: dg.DagsterInstance, run_id: str, since: float):
    (state,) = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
    return next((t for t in ticks if run_id in t.run_ids), None)


def phase_metadata(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, float]:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=5).records
    for record in records:
        if record.run_id == run_id:
            metadata = record.asset_materialization.metadata
            return {k: v.value for k, v in metadata.items() if k.startswith("seconds_")}
    return {}


def breakdown(instance: dg.DagsterInstance, run: dg.DagsterRun, edit: dict) -> dict[str, float]:
    """Seconds of each stage of one edit, from the tick, the run's events and its metadata."""
    events = run_events(instance, run.run_id)

    def first(name: str, step: str | None = None) -> float:
        times = [t for t, s in events.get(name, []) if step is None or s == step]
        if not times:
            raise KeyError(
                f"no {name} event ({step or 'run'}) in run {run.run_id}: {sorted(events)}"
            )
        return min(times)

    tick = sensor_tick(instance, run.run_id, edit["edited"] - 1)
    stats = instance.get_run_stats(run.run_id)
    parts = {}
    if tick is not None:
        parts["edit -> the tick that sees it starts (tick wait)"] = tick.timestamp - edit["edited"]
        parts["tick (read listing + store, compare, request)"] = tick.end_timestamp - tick.timestamp
        parts["tick end -> run enqueued"] = first("RUN_ENQUEUED") - tick.end_timestamp
    parts["run enqueued -> launched (run queue, dequeue interval)"] = first("RUN_STARTING") - (
        first("RUN_ENQUEUED")
    )
    parts["launched -> run start (process start, code load)"] = first("RUN_START") - first(
        "RUN_STARTING"
    )
    parts["run start -> first step start"] = first("STEP_START") - first("RUN_START")
    for step in ("catalog_queries", "catalog_content_associations"):
        if any(s == step for _, s in events.get("STEP_START", [])):
            parts[f"step {step}"] = first("STEP_SUCCESS", step) - first("STEP_START", step)
            for phase, seconds in phase_metadata(instance, run.run_id, step).items():
                parts[f"  {step}: {phase.removeprefix('seconds_')}"] = seconds
    parts["last step -> run end"] = first("RUN_SUCCESS") - max(
        t for t, _ in events.get("STEP_SUCCESS", [])
    )
    parts["run duration (Dagster run stats: start -> end)"] = stats.end_time - stats.start_time
    parts["edit -> store holds the new pairs"] = edit["landed"] - edit["edited"]
    return parts


def edits_for(listing: dict, count: int, seed: int) -> list[tuple[int, dict]]:
    """Which query to edit and its new filter: real shapes, narrow to broad."""
    rng = random.Random(seed)
    shapes = [
        {"content_type": "program"},
        {"content_type": "course", "partner": "edx", "level_type": "Introductory"},
        {"content_type": ["course", "courserun"], "partner": "2u"},
        {"content_type": "courserun", "partner": "edx", "status": "published"},
    ]
    indexes = rng.sample(range(len(listing["catalog_queries"])), count)
    return [(index, shapes[i % len(shapes)]) for i, index in enumerate(indexes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument(
        "--interval",
        type=int,
        default=None,
        help="CATALOG_QUERIES_POLL_SECONDS (default: the setting's)",
    )
    args = parser.parse_args()
    interval = args.interval or int(BY_NAME["CATALOG_QUERIES_POLL_SECONDS"].default)
    print(f"python {platform.python_version()}, {versions()}; {os.cpu_count()} CPUs")
    print(f"load average before: {os.getloadavg()}; sensor interval {interval} s", flush=True)

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store_url = stack.enter_context(running_cluster("catalog_bench"))
        admin = psycopg2.connect(store_url)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE dagster")
            cursor.execute("SHOW server_version")
            print(f"PostgreSQL {cursor.fetchone()[0]}")
        admin.close()
        listing = populate(store_url, folder, args.records, args.queries)

        host, port = store_url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
        home = folder / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CATALOG_"))},
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": host,
            "DAGSTER_PG_PORT": port,
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "unused-by-trust-auth",
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(free_port()),
            "CATALOG_STORE_URL": store_url,
            "SAMPLE_CONTENT_PATH": str(folder / "content.json"),
            "CATALOG_QUERIES_PATH": str(folder / "queries.json"),
        }
        if args.interval:
            env["CATALOG_QUERIES_POLL_SECONDS"] = str(args.interval)
        # This process reads the same instance (its yaml names DAGSTER_PG_* variables).
        os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
        topology = Topology(folder, env)
        stack.callback(topology.stop)
        topology.start_code_server()
        topology.start_daemon()

        with dg.DagsterInstance.from_config(str(home)) as instance:

            def ticked() -> bool:
                states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
                return bool(
                    states
                    and instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id)
                )

            wait_for(ticked, 300, "the sensor's first tick", step=1)
            print("daemon up, sensor ticking", flush=True)
            results, rng = [], random.Random(7)
            for number, (index, new_filter) in enumerate(edits_for(listing, args.edits, 3)):
                time.sleep(rng.uniform(0, interval))
                query = listing["catalog_queries"][index]
                uuid = query["uuid"]
                expected = expected_keys(store_url, uuid, new_filter)
                query["content_filter"] = new_filter
                new_hash = catalog_query_row(query).filter_hash
                text = json.dumps(listing)
                (folder / "queries.tmp").write_text(text)
                os.replace(folder / "queries.tmp", folder / "queries.json")  # visible at once
                edit = {"edited": time.time()}

                def landed(uuid=uuid, expected=expected, new_hash=new_hash) -> bool:
                    with open_store(store_url) as store:
                        if store.applied_filters().get(uuid) != new_hash:
                            return False
                    return stored_keys(store_url, uuid) == expected

                wait_for(landed, 600, f"edit {number} in the store", step=0.2)
                edit["landed"] = time.time()
                runs = instance.get_runs(dg.RunsFilter(job_name="catalog_query_changes"), limit=1)
                wait_for(
                    lambda run_id=runs[0].run_id: instance.get_run_by_id(run_id).is_finished,
                    120,
                    "the run to finish",
                )
                parts = breakdown(instance, instance.get_run_by_id(runs[0].run_id), edit)
                print(
                    f"edit {number}: query {uuid} -> {json.dumps(new_filter)} "
                    f"({len(expected):,} pairs): store after "
                    f"{parts['edit -> store holds the new pairs']:.1f} s, run "
                    f"{parts['run duration (Dagster run stats: start -> end)']:.1f} s",
                    flush=True,
                )
                results.append(parts)
            print(f"load average after edits: {os.getloadavg()}")
            print("\n| stage | " + " | ".join(f"edit {i}" for i in range(len(results))) + " |")
            print("|---|" + "---|" * len(results))
            for name in results[0]:
                cells = " | ".join(
                    f"{r[name]:.2f} s" if name in r else "" for r in results
                )  # fmt: skip
                print(f"| {name} | {cells} |")
            landed_all = [r["edit -> store holds the new pairs"] for r in results]
            run_all = [r["run duration (Dagster run stats: start -> end)"] for r in results]
            print(
                f"\nedit -> store: median {statistics.median(landed_all):.1f} s, max "
                f"{max(landed_all):.1f} s; run: median {statistics.median(run_all):.1f} s, max "
                f"{max(run_all):.1f} s"
            )
        print("\nthe scoped step's reads on their own (this process, the last edit's filter):")
        for name, seconds in load_paths(store_url, edits_for(listing, 1, 3)[0][1]).items():
            print(f"  {name}: {seconds:.2f} s")
        print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
