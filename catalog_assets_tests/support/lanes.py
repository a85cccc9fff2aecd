"""A bulk lane for tests: the three bulk assets wired to files the test edits, one store and
one Dagster instance, with helpers to read materialization metadata and check results."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import dagster as dg

from catalog_assets.core.content import content_key_of
from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.checks import associations_reference_live_content
from catalog_assets.defs.resources import (
    CatalogStoreResource,
    FileCatalogQuerySource,
    SampleContentSource,
)
from catalog_assets.store import open_store
from catalog_assets_tests.support.expected import admitted, expected_pairs, valid_filters

ASSETS = [*bulk_assets, associations_reference_live_content]


class Lane:
    """A bulk lane wired to files the test edits, one store and one Dagster instance."""

    def __init__(self, tmp_path: Path, store_url: str, content: list[dict], queries: dict):
        self.content_path = tmp_path / "content.json"
        self.queries_path = tmp_path / "queries.json"
        self.store_url = store_url
        self.instance = dg.DagsterInstance.ephemeral()
        self.write(content, queries)

    def write(self, content: list[dict] | None = None, queries: dict | None = None) -> None:
        if content is not None:
            self.content = copy.deepcopy(content)
            self.content_path.write_text(json.dumps(self.content))
        if queries is not None:
            self.queries = copy.deepcopy(queries)
            self.queries_path.write_text(json.dumps(self.queries))

    def resources(self, content_source: Any = None) -> dict[str, Any]:
        return {
            "content_source": content_source or SampleContentSource(path=str(self.content_path)),
            "catalog_query_source": FileCatalogQuerySource(path=str(self.queries_path)),
            "catalog_store": CatalogStoreResource(url=self.store_url),
        }

    def refresh(self, run_config: dict | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            ASSETS,
            resources=self.resources(kwargs.pop("content_source", None)),
            instance=self.instance,
            run_config=run_config or {},
            **kwargs,
        )

    def tables(self) -> dict[str, Any]:
        """Everything the store holds, for before/after comparisons."""
        with open_store(self.store_url) as store:
            return {
                "content": {key: store.get_content(key) for key in sorted(store.content_state())},
                "queries": store.catalog_queries(),
                "catalogs": store.enterprise_catalogs(),
                "associations": sorted(store.associations().iter_rows()),
            }

    def expected_associations(self) -> list[tuple[str, str]]:
        """What the filter engine says directly, from the source files (valid queries only,
        content the allow-lists admit)."""
        records = [{**d, "_key": content_key_of(d)} for d in admitted(self.content)]
        return expected_pairs(valid_filters(self.queries["catalog_queries"]), records)


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    assert len(events) == 1
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(evaluations) == 1
    return evaluations[0]
