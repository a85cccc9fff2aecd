"""Benchmark: the bulk filter engine (``match_table``) against the per-pair reference (``matches``).

Both are measured in the same run on the same generated data:

- (a) ``match_table`` wall time over all queries x all records, pair extraction included
  (best and median of ``--repeat`` runs);
- (b) the per-pair cost of ``matches`` on a random sample of (query, record) pairs,
  extrapolated to all pairs;

and the ratio (b) / (a). Peak resident memory of the process is reported too.

    python bench/bench_filters.py                          # Q=2,000 x C=100,000
    python bench/bench_filters.py --queries 5000 --records 200000 --sample-pairs 20000
"""

from __future__ import annotations

import argparse
import platform
import random
import resource
import statistics
import sys
import time
from importlib import metadata

from catalog_assets.core.content import content_key_of
from catalog_assets.core.filters import evaluate, matches
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sample-pairs", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("polars", "duckdb", "dagster"))
    print(f"python {platform.python_version()}, {versions}; {platform.machine()}")
    started = time.perf_counter()
    content = generate_content(args.records, args.seed)
    records = [{**document, "content_key": content_key_of(document)} for document in content]
    queries = generate_catalog_queries(args.queries, content, args.seed)["catalog_queries"]
    filters = {query["uuid"]: query["content_filter"] for query in queries}
    print(
        f"generated Q={len(filters):,} queries x C={len(records):,} records "
        f"in {time.perf_counter() - started:.1f} s"
    )

    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = evaluate(filters, records)
        timings.append(time.perf_counter() - started)
    bulk = min(timings)
    pairs = result.pairs.height
    print(
        f"(a) match_table: best {bulk:.2f} s, median {statistics.median(timings):.2f} s "
        f"over {args.repeat} runs; {pairs:,} matching pairs"
    )

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
    print(f"ratio (b)/(a): {reference / bulk:,.0f}x")
    print(f"peak resident memory: {peak_rss_gib():.2f} GiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
