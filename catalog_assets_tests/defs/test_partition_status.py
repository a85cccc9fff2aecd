"""The ``content_item`` partition status follows the store: after a full refresh every live key
is materialized; a refresh that changed nothing records nothing; changed keys are recorded
again. On a real Dagster instance (SQLite in a temporary DAGSTER_HOME)."""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest

from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.partition_status import (
    BATCHED_WRITES,
    CONTENT_ITEM,
    GAP_LIMIT,
    MAX_SINGLES,
    MIN_RANGE,
    RecordPlan,
    batched_event_writes,
    plan_records,
)
from catalog_assets.defs.partitions import CONTENT_KEYS
from catalog_assets.defs.resources import (
    CatalogStoreResource,
    FileCatalogQuerySource,
    SampleContentSource,
)
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store


class Refresh:
    def __init__(self, tmp_path, content: list[dict]):
        self.path = tmp_path
        self.content = content
        self.store_url = f"duckdb:///{tmp_path}/catalog.duckdb"
        (tmp_path / "queries.json").write_text(
            json.dumps(generate_catalog_queries(8, content, seed=4))
        )
        self.write(content)
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.instance = dg.DagsterInstance.from_config(str(home))

    def write(self, content: list[dict]) -> None:
        self.content = content
        (self.path / "content.json").write_text(json.dumps(content))

    def run(self) -> dict:
        resources = {
            "content_source": SampleContentSource(path=str(self.path / "content.json")),
            "catalog_query_source": FileCatalogQuerySource(path=str(self.path / "queries.json")),
            "catalog_store": CatalogStoreResource(url=self.store_url),
        }
        result = dg.materialize(bulk_assets, resources=resources, instance=self.instance)
        assert result.success
        (event,) = [
            e
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey("content_metadata")
        ]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def live_keys(self) -> set[str]:
        with open_store(self.store_url) as store:
            return {key for key, state in store.content_state().items() if not state.deleted}

    def materialized(self) -> set[str]:
        return self.instance.get_materialized_partitions(CONTENT_ITEM)

    def event_count(self) -> int:
        return len(self.instance.fetch_materializations(CONTENT_ITEM, limit=10_000).records)


@pytest.fixture
def refresh(tmp_path):
    made = Refresh(tmp_path, generate_content(400, seed=21))
    yield made
    made.instance.dispose()


def test_after_a_full_refresh_every_live_key_is_materialized(refresh):
    metadata = refresh.run()
    live = refresh.live_keys()
    assert len(live) > MIN_RANGE
    assert refresh.materialized() == live
    assert set(refresh.instance.get_dynamic_partitions(CONTENT_KEYS.name)) == live
    assert metadata["partitions_recorded"] == len(live)
    assert metadata["partition_record_runs"] == 1  # one range run, batched writes
    assert not set(BATCHED_WRITES) & set(os.environ)  # set only while it ran


def test_a_refresh_that_changed_nothing_records_nothing(refresh):
    refresh.run()
    before = refresh.event_count()
    metadata = refresh.run()
    assert (metadata["partitions_recorded"], metadata["partition_record_runs"]) == (0, 0)
    assert refresh.event_count() == before


def test_changed_and_tombstoned_keys(refresh):
    refresh.run()
    before = refresh.event_count()
    courses = [d for d in refresh.content if d["content_type"] == "course"]
    changed, gone = courses[:3], courses[-1]
    edited = {
        d["key"]: {**d, "title": "Renamed", "modified": "2040-01-01T00:00:00Z"} for d in changed
    }
    refresh.write([edited.get(d.get("key"), d) for d in refresh.content if d is not gone])
    metadata = refresh.run()
    assert metadata["updated"] == 3 and metadata["tombstoned"] == 1
    assert metadata["partitions_recorded"] == 3  # scattered: one by one, no range run
    assert metadata["partition_record_runs"] == 0
    assert refresh.event_count() == before + 3
    assert refresh.materialized() >= refresh.live_keys()
    assert gone["key"] not in refresh.instance.get_dynamic_partitions(CONTENT_KEYS.name)


def test_keys_stored_before_partition_status_was_recorded_get_one(refresh):
    """A store and partitions from before this feature: the next refresh records them all."""
    refresh.run()
    refresh.instance.wipe_assets([CONTENT_ITEM])
    assert refresh.materialized() == set()
    metadata = refresh.run()
    assert metadata["updated"] == 0 and metadata["partitions_recorded"] == len(refresh.live_keys())
    assert refresh.materialized() == refresh.live_keys()


# --- planning ------------------------------------------------------------------------------------

ORDER = [f"k{i:05d}" for i in range(5_000)]


def test_a_contiguous_stretch_is_one_range():
    assert plan_records(ORDER, set(ORDER[100:400])) == RecordPlan([(ORDER[100], ORDER[399])])


def test_small_gaps_are_bridged_and_short_stretches_recorded_one_by_one():
    wanted = set(ORDER[0:150]) | set(ORDER[150 + GAP_LIMIT : 300]) | {ORDER[1000], ORDER[2000]}
    assert plan_records(ORDER, wanted) == RecordPlan(
        ranges=[(ORDER[0], ORDER[299])], singles=[ORDER[1000], ORDER[2000]]
    )
    assert plan_records(ORDER, set()).empty


def test_too_many_scattered_keys_become_one_range():
    order = [f"k{i:06d}" for i in range((MAX_SINGLES + 1) * (GAP_LIMIT + 2))]
    wanted = order[:: GAP_LIMIT + 2]
    assert len(wanted) == MAX_SINGLES + 1
    assert plan_records(order, set(wanted)) == RecordPlan(ranges=[(wanted[0], wanted[-1])])
    assert plan_records(order, set(wanted[:-1])) == RecordPlan(singles=wanted[:-1])


def test_batched_writes_are_restored_afterwards(monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "7")
    with batched_event_writes():
        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "7"
    assert "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS" not in os.environ
