"""Benchmark: one content event applied at production scale, inside the run.

Loads ``--records`` content records (default 200,000) and ``--queries`` catalog queries (default
5,000) into a PostgreSQL catalog store (a private cluster started here), then applies single
content updates with ``apply_updates`` exactly as the ``content_item`` asset does (the full
record given by the event, so no source lookup) and reports the wall time of each apply, and
where it goes (cProfile of one apply, by the event lane's steps).

    python bench/bench_event_apply.py                      # 200,000 records, 5,000 queries
    python bench/bench_event_apply.py --records 20000 --queries 1000
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata as package_metadata

from catalog_assets.core.catalog_contents import AllowLists
from catalog_assets.core.content import content_record
from catalog_assets.core.content_updates import ContentUpdate, apply_updates
from catalog_assets.core.refresh.queries import catalog_query_row, enterprise_catalog_row
from catalog_assets.core.sources import SampleContent
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.postgres_cluster import running_cluster

# The event lane's steps, as the functions whose cumulative time cProfile reports.
STEPS = (
    ("store.catalog_queries", "catalog_queries"),
    ("usable_queries (parse, validate, once per filter)", "usable_queries"),
    ("evaluate (bulk engine, a batch)", "evaluate"),
    ("holds (the reference, per pair, a few keys)", "holds"),
    ("get_content", "get_content"),
    ("associations_of", "associations_of"),
    ("apply_content_changes", "apply_content_changes"),
    ("replace_content_associations", "replace_content_associations"),
    ("apply_association_diff (bulk)", "apply_association_diff"),
    ("replace_relations", "replace_relations"),
)


def load(store, records: int, queries: int, seed: int) -> list[dict]:
    content = generate_content(records, seed)
    listing = generate_catalog_queries(queries, content, seed)
    now = datetime.now(UTC)
    store.sync_catalog_queries(
        [catalog_query_row(q) for q in listing["catalog_queries"]],
        [enterprise_catalog_row(c) for c in listing["enterprise_catalogs"]],
        now,
    )
    admitted = [d for d in content if AllowLists().exclusion(d) is None]
    for start in range(0, len(admitted), 20_000):
        chunk = admitted[start : start + 20_000]
        store.apply_content_changes([content_record(d) for d in chunk], [], now)
    return admitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=10, help="single-key applies timed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--batch", type=int, default=0, help="also apply this many keys in one batch, profiled"
    )
    args = parser.parse_args()
    versions = ", ".join(
        f"{p} {package_metadata.version(p)}" for p in ("polars", "psycopg2-binary")
    )
    print(f"python {platform.python_version()}, {versions}; load average {os.getloadavg()}")
    with running_cluster("catalog_bench_apply") as url, open_store(url) as store:
        store.ensure_schema()
        started = time.perf_counter()
        documents = load(store, args.records, args.queries, args.seed)
        print(
            f"loaded {len(documents):,} stored records and {args.queries:,} queries "
            f"in {time.perf_counter() - started:.1f} s"
        )
        picks = [d for d in documents if d["content_type"] == "course"][: args.repeat // 2]
        picks += [d for d in documents if d["content_type"] == "courserun"][: args.repeat // 2]
        source = SampleContent()  # not asked: every update carries its full record
        timings, outcomes = [], {}
        base = datetime.now(UTC)
        for index, document in enumerate(picks):
            moment = base + timedelta(seconds=index + 1)
            record = dict(document, title=f"changed {index}", modified=moment.isoformat())
            update = ContentUpdate(
                record["key"], record["content_type"], metadata=record, time=moment
            )
            profile = cProfile.Profile() if index == len(picks) - 1 else None
            started = time.perf_counter()
            if profile is not None:
                profile.enable()
            (result,) = apply_updates([update], source, store, moment)
            if profile is not None:
                profile.disable()
            timings.append(time.perf_counter() - started)
            outcomes[str(result.outcome)] = outcomes.get(str(result.outcome), 0) + 1
            print(
                f"  {record['content_type']:>9} {record['key'][:40]:<40} "
                f"{timings[-1]:.3f} s, {len(result.queries)} queries"
            )
        print(
            f"one event applied ({len(timings)} keys, {outcomes}): median "
            f"{statistics.median(timings):.3f} s, max {max(timings):.3f} s "
            f"(the last one profiled)"
        )
        print_profile(profile)
        if args.batch:
            batch = [d for d in documents if d["content_type"] in ("course", "courserun")]
            batch = batch[len(picks) : len(picks) + args.batch]
            moment = base + timedelta(hours=1)
            updates = [
                ContentUpdate(
                    d["key"],
                    d["content_type"],
                    metadata=dict(d, title=f"batch {i}", modified=moment.isoformat()),
                    time=moment,
                )
                for i, d in enumerate(batch)
            ]
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.enable()
            applied = apply_updates(updates, source, store, moment)
            profile.disable()
            elapsed = time.perf_counter() - started
            print(
                f"a batch of {len(applied):,} keys applied in {elapsed:.2f} s "
                f"({elapsed / len(applied) * 1000:.1f} ms a key; profiled)"
            )
            print_profile(profile)
        print(f"load average after: {os.getloadavg()}")


def print_profile(profile: cProfile.Profile) -> None:
    stats = pstats.Stats(profile)
    by_name: dict[str, float] = {}
    for (_, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        by_name[name] = max(by_name.get(name, 0.0), cumulative)
    print("  where the profiled apply went (cumulative):")
    for label, name in STEPS:
        if name in by_name:
            print(f"    {label}: {by_name[name]:.3f} s")


if __name__ == "__main__":
    main()
