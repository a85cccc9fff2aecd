"""Benchmark: the bulk filter engine (``match_table``, and its chunked form ``evaluate_chunks``)
against the per-pair reference (``matches``).

All are measured in the same run on the same generated data:

- (a) ``match_table`` wall time over all queries x all records, every pair extracted at once
  (best and median of ``--repeat`` runs), and the peak resident memory while it runs;
- (c) the same evaluation a chunk of ``--chunk`` queries at a time, each chunk's pairs
  extracted and dropped, and its peak resident memory: pairs as two integer ids (query
  position, record row: what the refresh compares), and as strings (``evaluate_chunks``);
- (b) the per-pair cost of ``matches`` on a random sample of (query, record) pairs,
  extrapolated to all pairs;

and the ratio (b) / (a). Peak memory is the process's resident high-water mark (``VmHWM``),
reset just before each measurement (``/proc/self/clear_refs``, which resets ``ru_maxrss``
too); each of (a) and (c) runs in a fresh process that loads the generated data, so the peak
includes the records held in memory but neither the generation nor another measurement.

    python bench/bench_filters.py                          # Q=2,000 x C=100,000
    python bench/bench_filters.py --queries 5000 --records 200000 --sample-pairs 20000
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from catalog_assets.core.content import content_key_of
from catalog_assets.core.filters import matches
from catalog_assets.core.filters.bulk import evaluate_chunks, match_table, prepare
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def peak_rss_gib() -> float:
    """The resident high-water mark since the last reset (``VmHWM``), or since the start."""
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_peak_rss() -> bool:
    """Start a new high-water mark at the current resident size (Linux); False elsewhere."""
    gc.collect()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def measure(run: Callable[[], int], repeat: int) -> tuple[list[float], list[float], int, float]:
    """Wall and CPU times of ``repeat`` runs, the pairs of the last, and the peak RSS of any run.
    CPU time (all threads) is given too: on a shared machine it moves less than wall time."""
    timings, cpu, peak, pairs = [], [], 0.0, 0
    for _ in range(repeat):
        reset_peak_rss()
        started, started_cpu = time.perf_counter(), time.process_time()
        pairs = run()
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        peak = max(peak, peak_rss_gib())
    return timings, cpu, pairs, peak


def describe(timings: list[float], cpu: list[float], repeat: int) -> str:
    return (
        f"best {min(timings):.2f} s, median {statistics.median(timings):.2f} s over {repeat} "
        f"runs (CPU best {min(cpu):.2f} s)"
    )


MODES = {
    "ids": "(c) chunked, {chunk} queries a chunk, pairs as integer ids",
    "strings": "(c) chunked, {chunk} queries a chunk, pairs as strings (evaluate_chunks)",
    "whole": "(a) match_table, every pair at once",
}


def measure_in_this_process(mode: str, data: Path, repeat: int, chunk: int) -> None:
    """One mode, in a fresh process: no memory another measurement left behind counts."""
    with data.open("rb") as stored:
        filters, records = pickle.load(stored)  # written by this script's parent run

    def run() -> int:
        if mode == "whole":
            return match_table(filters, records).height
        if mode == "strings":
            return sum(c.height for c in evaluate_chunks(filters, records, queries_per_chunk=chunk))
        evaluation = prepare(filters, records)
        steps = range(0, len(evaluation.query_ids), chunk)
        return sum(evaluation.rows(start, start + chunk).height for start in steps)

    reset_peak_rss()
    resident = peak_rss_gib()
    timings, cpu, pairs, peak = measure(run, repeat)
    print(
        f"{MODES[mode].format(chunk=chunk)}: {describe(timings, cpu, repeat)}; {pairs:,} pairs; "
        f"peak RSS {peak:.2f} GiB ({resident:.2f} GiB of it the records, before)"
    )
    print(f"BEST {min(timings)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sample-pairs", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=250, help="queries per chunk for (c)")
    parser.add_argument("--skip-whole", action="store_true", help="measure (c) and (b) only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--measure", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_in_this_process(args.measure, args.data, args.repeat, args.chunk)
        return

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("polars", "duckdb", "dagster"))
    print(f"python {platform.python_version()}, {versions}; {platform.machine()}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cpus")
    started = time.perf_counter()
    content = generate_content(args.records, args.seed)
    records = [{**document, "content_key": content_key_of(document)} for document in content]
    queries = generate_catalog_queries(args.queries, content, args.seed)["catalog_queries"]
    del content
    filters = {query["uuid"]: query["content_filter"] for query in queries}
    print(
        f"generated Q={len(filters):,} queries x C={len(records):,} records "
        f"in {time.perf_counter() - started:.1f} s"
    )

    bulk = None
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.pickle"
        with data.open("wb") as stored:
            pickle.dump((filters, records), stored)
        for mode in [m for m in MODES if not (args.skip_whole and m == "whole")]:
            command = [sys.executable, __file__, "--measure", mode, "--data", str(data)]
            command += ["--repeat", str(args.repeat), "--chunk", str(args.chunk)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            for line in output.splitlines():
                if line.startswith("BEST "):
                    bulk = float(line.split()[1]) if mode == "whole" else bulk
                else:
                    print(line, flush=True)

    rng = random.Random(args.seed)
    filter_list = list(filters.values())
    sample = [(rng.choice(filter_list), rng.choice(records)) for _ in range(args.sample_pairs)]
    started = time.perf_counter()
    sample_matches = sum(matches(content_filter, record) for content_filter, record in sample)
    per_pair = (time.perf_counter() - started) / len(sample)
    reference = per_pair * len(filters) * len(records)
    print(
        f"(b) matches: {per_pair * 1e6:.2f} us per pair over {len(sample):,} sampled pairs "
        f"({sample_matches:,} matched); extrapolated to {len(filters) * len(records):,} pairs: "
        f"{reference:,.0f} s"
    )
    if bulk is not None:
        print(f"ratio (b)/(a): {reference / bulk:,.0f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
