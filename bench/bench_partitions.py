"""Benchmark: what recording the ``content_item`` partition status costs the full refresh.

The bulk assets run with ``materialize()`` on a Dagster instance whose storage is PostgreSQL
(dagster-postgres, a private cluster) or SQLite, with ``--documents`` sample records (a JSON
file source) and a DuckDB catalog store: a first load, then a refresh that changes nothing. For
each it reports the refresh's ``partition_status`` phase (recording a materialization for every
key written, in range runs with batched event writes), the partitions phase before it, the
number of events written, and whether the partition status then equals the store's live keys.
The baseline, in the same run: ``report_runless_asset_event`` for ``--single-events`` keys, one
event at a time.

    python bench/bench_partitions.py                    # 200,000 records, PostgreSQL
    python bench/bench_partitions.py --documents 20000 --instance sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from contextlib import ExitStack
from importlib import metadata as package_metadata
from pathlib import Path

import dagster as dg

from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.partition_status import CONTENT_ITEM
from catalog_assets.defs.partitions import CONTENT_KEYS
from catalog_assets.defs.resources import (
    CatalogStoreResource,
    FileCatalogQuerySource,
    SampleContentSource,
)
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.postgres_cluster import running_cluster


def instance_yaml(postgres_url: str | None) -> str:
    storage = f'storage:\n  postgres:\n    postgres_url: "{postgres_url}"\n' if postgres_url else ""
    return storage + "telemetry:\n  enabled: false\n"


def content_metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("content_metadata")
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--instance", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--single-events", type=int, default=500)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    versions = ", ".join(
        f"{p} {package_metadata.version(p)}" for p in ("dagster", "dagster-postgres", "duckdb")
    )
    print(f"python {platform.python_version()}, {versions}, {os.cpu_count()} cores")

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        started = time.perf_counter()
        documents = generate_content(args.documents, args.seed)
        (folder / "content.json").write_text(json.dumps(documents))
        queries = generate_catalog_queries(args.queries, documents, args.seed)
        (folder / "queries.json").write_text(json.dumps(queries))
        print(f"{len(documents):,} records generated in {time.perf_counter() - started:.1f} s")
        postgres = (
            stack.enter_context(running_cluster("dagster_bench"))
            if args.instance == "postgresql"
            else None
        )
        home = folder / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(instance_yaml(postgres))
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        store_url = f"duckdb:///{folder}/catalog.duckdb"
        resources = {
            "content_source": SampleContentSource(path=str(folder / "content.json")),
            "catalog_query_source": FileCatalogQuerySource(path=str(folder / "queries.json")),
            "catalog_store": CatalogStoreResource(url=store_url),
        }
        print(f"Dagster instance storage: {args.instance}; catalog store: DuckDB")
        for run in ("first load", "second run, no changes"):
            started = time.perf_counter()
            result = dg.materialize(
                bulk_assets,
                resources=resources,
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            wall = time.perf_counter() - started
            meta = content_metadata_of(result)
            print(
                f"  {run}: {wall:.1f} s end to end; inserted {meta['inserted']:,}, "
                f"updated {meta['updated']:,}; partitions phase {meta['seconds_partitions']:.1f} s "
                f"({meta['partitions_added']:,} added); partition_status phase "
                f"{meta['seconds_partition_status']:.1f} s: {meta['partitions_recorded']:,} "
                f"materializations in {meta['partition_record_runs']} range runs"
            )
            started = time.perf_counter()
            materialized = instance.get_materialized_partitions(CONTENT_ITEM)
            read = time.perf_counter() - started
            with open_store(store_url) as store:
                live = {k for k, s in store.content_state().items() if not s.deleted}
            print(
                f"    partition status equals the store's live keys: {materialized == live} "
                f"({len(live):,} live; read in {read:.2f} s)"
            )

        keys = instance.get_dynamic_partitions(CONTENT_KEYS.name)[: args.single_events]
        started = time.perf_counter()
        for key in keys:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=CONTENT_ITEM, partition=key)
            )
        per_event = (time.perf_counter() - started) / len(keys)
        print(
            f"baseline, one event at a time (report_runless_asset_event, {len(keys)} keys): "
            f"{per_event * 1000:.1f} ms each, so {per_event * args.documents:,.0f} s for "
            f"{args.documents:,} keys"
        )


if __name__ == "__main__":
    main()
