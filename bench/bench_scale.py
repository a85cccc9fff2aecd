"""Benchmark: the full refresh at production scale, run by Dagster as production runs it.

Generated content (``generate_content``: courses, runs, programs, pathways in course-discovery's
``search/all`` shape) is served by the local course-discovery test server
(``catalog_assets_tests.support.fake_discovery``, as ``bench_refresh.py`` does), and the catalog
queries (``generate_scale_queries``: broad partner/type filters, exclusions, key lists) come
from a file. PostgreSQL (a private cluster) holds the catalog store AND the Dagster instance,
configured by ``deploy/dagster.yaml``. Each refresh is ``dagster job execute -j full_refresh``
on the code location ``catalog_assets.definitions``: a run in its own process, as a run worker
is, whose peak RSS is its ``ru_maxrss`` from ``wait4``. ``/proc/<pid>/status`` is also sampled
while it runs, to say which phase holds the peak.

Rows: a first full refresh (empty store and instance) and then a no-change one, whose writes to
the catalog database are counted from PostgreSQL's own statistics (``pg_stat_user_tables``);
at ``--records`` x ``--queries`` and, for the cost curve, at each ``--curve`` size.

    python bench/bench_scale.py        # 200,000 x 5,000; the curve at 50k x 1k, 100k x 2.5k
    python bench/bench_scale.py --records 20000 --queries 500 --rows first no-change
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
from bench_refresh import full_records

from catalog_assets.devtools.sample_data import generate_content, generate_scale_queries
from catalog_assets_tests.support.fake_discovery import FakeDiscovery
from catalog_assets_tests.support.postgres_cluster import running_cluster
from catalog_assets_tests.support.topology import DEPLOY, _create_database

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSETS = ("catalog_queries", "content_metadata", "catalog_content_associations")
TARGETS = {"first": (300.0, 4.0), "no-change": (60.0, None)}
"""Issue 12's targets at 200,000 x 5,000: seconds, GiB of peak RSS of the run process."""
PHASE_DONE = re.compile(r" - (\w+) - (\w+) done in ([0-9.]+) s")
STEP_START = re.compile(r" - (\w+) - STEP_START - ")
GIB = 1024**3


@dataclass
class Outcome:
    """One refresh: the run process's wall time and peak RSS, the run's duration, per-asset
    metadata, the catalog database's row writes, and the peak RSS sampled in each phase."""

    wall: float
    peak_rss: int  # bytes
    run_seconds: float
    status: str
    metadata: dict[str, dict[str, Any]]
    writes: dict[str, int]
    load: tuple[float, float, float]
    phase_peaks: dict[str, int] = field(default_factory=dict)


def machine_facts() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    versions = ", ".join(
        f"{p} {package_metadata.version(p)}"
        for p in ("dagster", "dagster-postgres", "polars", "duckdb", "psycopg2-binary")
    )
    return (
        f"{os.cpu_count()} cores ({model}), {mem / GIB:.1f} GiB RAM, Linux {platform.release()}; "
        f"python {platform.python_version()}, {versions}"
    )


def table_writes(store_url: str) -> dict[str, int]:
    """Rows inserted + updated + deleted so far in each table of the catalog database."""
    with psycopg2.connect(store_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"
            " WHERE schemaname = 'public'"
        )
        return dict(cursor.fetchall())


class RunProcess:
    """``dagster job execute`` of ``full_refresh``: its output stamped line by line, its RSS
    sampled from /proc, its peak RSS from ``wait4``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.samples: list[tuple[float, int]] = []  # (monotonic, VmRSS bytes)
        self.lines: list[tuple[float, str]] = []

    def _read(self, stream: Any) -> None:
        with self.log.open("a", buffering=1) as log:  # line-buffered: follow it live
            for line in stream:
                self.lines.append((time.monotonic(), line))
                log.write(line)

    def _sample(self, pid: int, done: threading.Event) -> None:
        status = Path(f"/proc/{pid}/status")
        while not done.wait(0.25):
            try:
                text = status.read_text()
            except OSError:
                return
            found = re.search(r"VmRSS:\s+(\d+) kB", text)
            if found:
                self.samples.append((time.monotonic(), int(found.group(1)) * 1024))

    def run(self) -> tuple[float, int, int]:
        """(wall seconds, exit code, peak RSS bytes)."""
        command = [
            str(BIN / "dagster"), "job", "execute",
            "-m", "catalog_assets.definitions", "-j", "full_refresh",
        ]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        done = threading.Event()
        reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        sampler = threading.Thread(target=self._sample, args=(process.pid, done), daemon=True)
        reader.start()
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        reader.join(10)
        sampler.join(10)
        return wall, process.returncode, usage.ru_maxrss * 1024

    def phase_peaks(self) -> dict[str, int]:
        """The highest sampled RSS within each logged phase (``<asset>.<phase>``)."""
        peaks = {}
        for stamp, line in self.lines:
            found = PHASE_DONE.search(line)
            if not found:
                continue
            asset, phase, seconds = found.group(1), found.group(2), float(found.group(3))
            inside = [rss for t, rss in self.samples if stamp - seconds - 0.3 <= t <= stamp]
            if inside:
                peaks[f"{asset}.{phase}"] = max(inside)
        if self.samples:  # the overall sampled peak, and the step running then
            stamp, rss = max(self.samples, key=lambda sample: sample[1])
            started = [STEP_START.search(line) for t, line in self.lines if t <= stamp]
            step = next((m.group(1) for m in reversed(started) if m), "start-up")
            peaks[f"highest sample, in step {step}"] = rss
        return peaks


def refresh(
    instance: dg.DagsterInstance, env: dict[str, str], store_url: str, log: Path
) -> Outcome:
    load = os.getloadavg()
    before = table_writes(store_url)
    runner = RunProcess(env, log)
    wall, code, peak = runner.run()
    after = table_writes(store_url)
    (record,) = instance.get_run_records(dg.RunsFilter(job_name="full_refresh"), limit=1)
    run = record.dagster_run
    if code != 0 or run.status != dg.DagsterRunStatus.SUCCESS:
        errors = [line for _, line in runner.lines if re.match(r"\w+(\.\w+)*Error: ", line)]
        done = ", ".join(
            f"{m.group(1)}.{m.group(2)} {float(m.group(3)):.1f}"
            for _, line in runner.lines
            if (m := PHASE_DONE.search(line))
        )
        raise SystemExit(
            f"run {run.run_id} ended {run.status.value} (exit {code}) after {wall:.1f} s, "
            f"peak RSS {peak / GIB:.2f} GiB; phases done (s): {done}\n"
            f"{''.join(dict.fromkeys(errors)) or log.read_text(errors='replace')[-4000:]}"
            f"(log: {log})"
        )
    metadata = {}
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key.path[0] in ASSETS:
            metadata[materialization.asset_key.path[0]] = {
                k: v.value for k, v in materialization.metadata.items()
            }
    writes = {t: n - before.get(t, 0) for t, n in after.items() if n != before.get(t, 0)}
    return Outcome(
        wall=wall,
        peak_rss=peak,
        run_seconds=(record.end_time or 0) - (record.start_time or 0),
        status=run.status.value,
        metadata=metadata,
        writes=writes,
        load=load,
        phase_peaks=runner.phase_peaks(),
    )


def phases(meta: dict[str, Any]) -> str:
    return ", ".join(
        f"{k.removeprefix('seconds_')} {v:.1f}" for k, v in meta.items() if k.startswith("seconds_")
    )


def verdict(row: str, outcome: Outcome, full_size: bool) -> str:
    if not full_size or row not in TARGETS:
        return ""
    seconds, gib = TARGETS[row]
    met = outcome.wall <= seconds and (gib is None or outcome.peak_rss <= gib * GIB)
    if row == "no-change":
        met = met and not outcome.writes
    limits = f"<= {seconds:.0f} s" + (f", <= {gib:.0f} GiB" if gib else ", writes nothing")
    return f"target {limits}: {'met' if met else 'MISSED'}"


def report(row: str, size: str, outcome: Outcome, full_size: bool) -> None:
    meta = outcome.metadata
    content, pairs = meta["content_metadata"], meta["catalog_content_associations"]
    print(
        f"| {size} | {row} | **{outcome.wall:.1f} s** (run {outcome.run_seconds:.1f} s) "
        f"| **{outcome.peak_rss / GIB:.2f} GiB** | {pairs['total']:,} "
        f"| {' '.join(f'{x:.2f}' for x in outcome.load)} | {verdict(row, outcome, full_size)} |"
    )
    for asset in ASSETS:
        print(f"    {asset}: {phases(meta[asset])} (s)")
    print(
        f"    content: inserted {content['inserted']:,}, updated {content['updated']:,}, "
        f"unchanged {content['unchanged']:,}, tombstoned {content['tombstoned']:,}; "
        f"partitions added {content['partitions_added']:,}, recorded "
        f"{content['partitions_recorded']:,}; HTTP requests {content['source_requests']:,}"
    )
    print(
        f"    associations: added {pairs['added']:,}, removed {pairs['removed']:,}, "
        f"total {pairs['total']:,}"
    )
    written = ", ".join(f"{t} {n:,}" for t, n in sorted(outcome.writes.items())) or "none"
    print(f"    rows written to the catalog database (pg_stat_user_tables): {written}")
    top = sorted(outcome.phase_peaks.items(), key=lambda item: -item[1])[:5]
    print("    sampled peak RSS by phase: " + ", ".join(f"{p} {b / GIB:.2f} GiB" for p, b in top))


def run_size(
    stack: ExitStack,
    cluster_url: str,
    folder: Path,
    records: int,
    queries: int,
    seed: int,
    rows: list[str],
    full_size: bool,
) -> None:
    name = f"{records}x{queries}"
    started = time.perf_counter()
    documents = generate_content(records, seed)
    payload = generate_scale_queries(queries, documents, seed)
    queries_path = folder / f"queries-{name}.json"
    queries_path.write_text(json.dumps(payload))
    generated = time.perf_counter() - started
    store_url = _create_database(cluster_url, f"catalog_{records}_{queries}")
    dagster_db = f"dagster_{records}_{queries}"
    _create_database(cluster_url, dagster_db)
    home = folder / f"home-{name}"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    host, port = store_url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    instance_env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": port,
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "unused-by-trust-auth",  # the throwaway cluster trusts 127.0.0.1
        "DAGSTER_PG_DB": dagster_db,
    }
    os.environ.update(instance_env)  # the instance below reads its yaml's env: references
    fake = stack.enter_context(FakeDiscovery(documents, full_records(documents)))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CATALOG_"))},
        **instance_env,
        "CONTENT_SOURCE": "discovery",
        "DISCOVERY_API_URL": fake.api_url,
        "LMS_OAUTH2_URL": fake.oauth2_url,
        "LMS_OAUTH2_CLIENT_ID": fake.client_id,
        "LMS_OAUTH2_CLIENT_SECRET": fake.client_secret,
        "CATALOG_QUERIES_PATH": str(queries_path),
        "CATALOG_STORE_URL": store_url,
    }
    del documents
    print(
        f"{records:,} documents x {queries:,} queries (generated in {generated:.1f} s); "
        f"run log: {folder}/run-{name}-*.log",
        flush=True,
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = refresh(instance, env, store_url, folder / f"run-{name}-first.log")
        if "first" in rows or "curve" in rows:
            report("first", f"{records:,} x {queries:,}", first, full_size)
        if "no-change" in rows or "curve" in rows:
            second = refresh(instance, env, store_url, folder / f"run-{name}-second.log")
            report("no-change", f"{records:,} x {queries:,}", second, full_size)
    fake.stop()


def parse_size(text: str) -> tuple[int, int]:
    records, _, queries = text.lower().partition("x")
    return int(records), int(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=["first", "no-change", "curve"],
        default=["first", "no-change", "curve"],
        help="first/no-change: at --records x --queries; curve: at each --curve size",
    )
    parser.add_argument("--curve", nargs="*", default=["50000x1000", "100000x2500"])
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the folder of run logs")
    args = parser.parse_args()
    print(machine_facts())
    sizes = []
    if "curve" in args.rows:
        sizes += [(*parse_size(size), ["curve"]) for size in args.curve]
    main_rows = [row for row in args.rows if row != "curve"]
    if main_rows:
        sizes.append((args.records, args.queries, main_rows))
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        if not args.keep:
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
        cluster_url = stack.enter_context(running_cluster("postgres_bench"))
        with psycopg2.connect(cluster_url) as connection, connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            print(f"PostgreSQL {cursor.fetchone()[0]} (private cluster, fsync=off); logs {folder}")
        print(
            "| records x queries | run | wall of the run process (Dagster run) | peak RSS "
            "| associations | load average | target |\n|---|---|---|---|---|---|---|"
        )
        for records, queries, rows in sizes:
            full_size = (records, queries) == (200_000, 5_000)
            run_size(stack, cluster_url, folder, records, queries, args.seed, rows, full_size)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"benchmark process (generator + course-discovery server) peak RSS {own:.2f} GiB")


if __name__ == "__main__":
    main()
