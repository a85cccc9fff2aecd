"""Benchmark: the full refresh through Dagster against a local course-discovery server.

The ``full_refresh`` assets run with ``materialize()`` against a real local HTTP server that
speaks course-discovery's contract (``catalog_assets_tests.support.fake_discovery``), serving
``--documents`` search documents (plus full course and program records), with ``--queries``
catalog queries, on each store backend. For each backend it runs a first load and then a
second run with no changes, and reports wall time, time per phase, and HTTP requests, next to
the requests the old approach makes (one search crawl per catalog query).

    python bench/bench_refresh.py          # 20,000 documents, 1,000 queries, both stores
    python bench/bench_refresh.py --stores duckdb
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from contextlib import ExitStack
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import dagster as dg

from catalog_assets.core.content import content_key_of
from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.resources import (
    CatalogStoreResource,
    DiscoveryContentSource,
    FileCatalogQuerySource,
)
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.fake_discovery import FakeDiscovery
from catalog_assets_tests.support.postgres_cluster import running_cluster

PAGE_SIZE = 100


def full_records(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What courses/ and programs/ return beyond the search document (the full record wins)."""
    records = {}
    for document in documents:
        if document["content_type"] in ("course", "program"):
            key = content_key_of(document)
            records[key] = {
                "key": document.get("key"),
                "uuid": document["uuid"],
                "title": document["title"],
                "short_description": f"<p>About {document['title']}.</p>",
                "full_description": "<p>" + "Course details. " * 20 + "</p>",
                "owners": [{"key": document.get("org", "edX"), "name": document.get("org")}],
            }
    return records


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        event.asset_key.to_user_string(): {
            k: v.value for k, v in event.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }


def run(store_url: str, fake: FakeDiscovery, queries_path: Path) -> tuple[float, dict, int]:
    instance = dg.DagsterInstance.ephemeral()
    source = DiscoveryContentSource(
        api_url=fake.api_url,
        oauth2_url=fake.oauth2_url,
        client_id=fake.client_id,
        client_secret=fake.client_secret,
    )
    resources = {
        "content_source": source,
        "catalog_query_source": FileCatalogQuerySource(path=str(queries_path)),
        "catalog_store": CatalogStoreResource(url=store_url),
    }
    outcomes = []
    for _ in range(2):
        started = time.perf_counter()
        result = dg.materialize(bulk_assets, resources=resources, instance=instance)
        outcomes.append((time.perf_counter() - started, materialization_metadata(result)))
    with open_store(store_url) as store:
        per_query = store.associations().group_by("catalog_query_uuid").len()["len"].to_list()
    return outcomes, per_query


def report(name: str, outcome: tuple[float, dict]) -> None:
    wall, meta = outcome
    content, associations = meta["content_metadata"], meta["catalog_content_associations"]
    print(f"  {name}: {wall:.1f} s end to end")
    for asset in ("catalog_queries", "content_metadata", "catalog_content_associations"):
        phases = ", ".join(
            f"{k.removeprefix('seconds_')} {v:.2f}"
            for k, v in meta[asset].items()
            if k.startswith("seconds_")
        )
        print(f"    {asset}: {phases} (s)")
    print(
        f"    content: inserted {content['inserted']}, updated {content['updated']}, "
        f"unchanged {content['unchanged']}, tombstoned {content['tombstoned']}; "
        f"HTTP requests {content['source_requests']}"
    )
    print(
        f"    associations: added {associations['added']}, removed {associations['removed']}, "
        f"total {associations['total']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--stores", nargs="+", default=["duckdb", "postgresql"])
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    versions = ", ".join(
        f"{p} {package_metadata.version(p)}"
        for p in ("dagster", "polars", "duckdb", "psycopg2-binary")
    )
    print(f"python {platform.python_version()}, {versions}")
    documents = generate_content(args.documents, args.seed)
    payload = generate_catalog_queries(args.queries, documents, args.seed)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        queries_path = folder / "queries.json"
        queries_path.write_text(json.dumps(payload))
        fake = stack.enter_context(FakeDiscovery(documents, full_records(documents)))
        print(f"{len(documents):,} search documents, {len(payload['catalog_queries']):,} queries")
        for store in args.stores:
            if store == "duckdb":
                url = f"duckdb:///{folder}/catalog.duckdb"
            else:
                url = stack.enter_context(running_cluster("catalog_bench"))
            (first, second), per_query = run(url, fake, queries_path)
            print(f"store {store}:")
            report("first load", first)
            report("second run, no changes", second)
        search_pages = math.ceil(len(documents) / PAGE_SIZE)
        per_query_pages = sum(math.ceil(max(n, 1) / PAGE_SIZE) for n in per_query)
        per_query_pages += len(payload["catalog_queries"]) - len(per_query)  # empty results
        print(
            "old approach (one search/all crawl per catalog query, 100 results a page): "
            f"{per_query_pages:,} requests for the queries' own result pages; "
            f"{search_pages * len(payload['catalog_queries']):,} if each crawl were unfiltered"
        )


if __name__ == "__main__":
    main()
