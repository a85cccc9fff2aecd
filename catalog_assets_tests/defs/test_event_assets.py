"""The event lane's assets: per-key partitions and batches, against real stores."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import dagster as dg
import pytest

from catalog_assets.core.content import content_key_of
from catalog_assets.core.content_updates import ContentUpdate
from catalog_assets.definitions import defs
from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.event_assets import apply_content_events, content_item
from catalog_assets.defs.partitions import CONTENT_KEYS
from catalog_assets.defs.resources import (
    CatalogStoreResource,
    FileCatalogQuerySource,
    SampleContentSource,
)
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support import expected


@pytest.fixture
def world(tmp_path, store_url):
    """Queries loaded and content bulk-refreshed once, on both store backends."""
    content = expected.storable_sample(generate_content(120, seed=8))
    queries = generate_catalog_queries(12, content, seed=8)
    (tmp_path / "content.json").write_text(json.dumps(content))
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    resources = {
        "content_source": SampleContentSource(path=str(tmp_path / "content.json")),
        "catalog_query_source": FileCatalogQuerySource(path=str(tmp_path / "queries.json")),
        "catalog_store": CatalogStoreResource(url=store_url),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(bulk_assets, resources=resources, instance=instance).success
    return {
        "content": content,
        "queries": queries,
        "resources": resources,
        "instance": instance,
        "store_url": store_url,
        "path": tmp_path,
    }


def filters_of(world) -> dict[str, dict]:
    with open_store(world["store_url"]) as store:
        return {q.uuid: json.loads(q.content_filter) for q in store.catalog_queries() if q.is_valid}


def expected_queries(world, record: dict) -> list[str]:
    return expected.expected_queries(filters_of(world), record)


def stored_queries(world, key: str) -> list[str]:
    with open_store(world["store_url"]) as store:
        return sorted(store.associations_of(key))


def materialize_key(world, key: str, update: ContentUpdate | None = None, **kwargs):
    config = {"update": update.to_config()} if update else {}
    return dg.materialize(
        [content_item],
        partition_key=key,
        resources=world["resources"],
        instance=world["instance"],
        run_config={"ops": {"content_item": {"config": config}}},
        **kwargs,
    )


def outcome(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def a_course(world) -> dict:
    return next(d for d in world["content"] if d["content_type"] == "course")


def test_bulk_refresh_keeps_one_partition_per_live_key(world):
    partitions = set(world["instance"].get_dynamic_partitions(CONTENT_KEYS.name))
    assert partitions == {content_key_of(d) for d in world["content"]}


def test_update_with_a_full_record_is_upserted_and_reevaluated(world):
    course = dict(a_course(world), org="EventX", modified="2031-01-01T00:00:00Z")
    key = course["key"]
    update = ContentUpdate(key, "course", metadata=course, event_ids=("e-1",))
    result = materialize_key(world, key, update)
    assert outcome(result)["outcome"] == "updated"
    assert outcome(result)["event_ids"] == ["e-1"]
    with open_store(world["store_url"]) as store:
        assert store.get_content(key).metadata["org"] == "EventX"
    assert stored_queries(world, key) == expected_queries(world, course)
    again = materialize_key(world, key, update)  # a redelivered event is harmless
    assert outcome(again)["outcome"] == "unchanged"
    assert (outcome(again)["associations_added"], outcome(again)["associations_removed"]) == (0, 0)


def test_brand_new_key_is_inserted(world):
    course = dict(a_course(world), key="NewX+NEW101", aggregation_key="course:NewX+NEW101")
    world["instance"].add_dynamic_partitions(CONTENT_KEYS.name, ["NewX+NEW101"])
    result = materialize_key(world, "NewX+NEW101", ContentUpdate("NewX+NEW101", metadata=course))
    assert outcome(result)["outcome"] == "inserted"
    assert stored_queries(world, "NewX+NEW101") == expected_queries(world, course)
    assert stored_queries(world, "NewX+NEW101")  # the sample course does belong somewhere


def test_deletion_tombstones_and_drops_associations(world):
    key = next(content_key_of(d) for d in world["content"] if expected_queries(world, d))
    assert stored_queries(world, key)
    update = ContentUpdate(key, deleted=True, time=datetime(2032, 1, 1))
    assert outcome(materialize_key(world, key, update))["outcome"] == "tombstoned"
    assert stored_queries(world, key) == []
    with open_store(world["store_url"]) as store:
        assert store.get_content(key).deleted_at is not None


def test_stale_event_changes_nothing(world):
    course = dict(a_course(world), org="OldX", modified="2001-01-01T00:00:00Z")
    before = stored_queries(world, course["key"])
    result = materialize_key(world, course["key"], ContentUpdate(course["key"], metadata=course))
    assert outcome(result)["outcome"] == "stale"
    with open_store(world["store_url"]) as store:
        assert store.get_content(course["key"]).metadata["org"] != "OldX"
    assert stored_queries(world, course["key"]) == before


def test_operator_materialization_fetches_from_the_source(world):
    course = a_course(world)
    content = [
        dict(d, title="Renamed", modified="2033-01-01T00:00:00Z") if d is course else d
        for d in world["content"]
    ]
    (world["path"] / "content.json").write_text(json.dumps(content))
    result = materialize_key(world, course["key"])  # no run config, as from the UI
    assert outcome(result)["outcome"] == "updated"
    with open_store(world["store_url"]) as store:
        assert store.get_content(course["key"]).metadata["title"] == "Renamed"


def test_key_the_source_no_longer_has_is_tombstoned(world):
    program = next(d for d in world["content"] if d["content_type"] == "program")
    key = program["uuid"]
    rest = [d for d in world["content"] if d is not program]
    (world["path"] / "content.json").write_text(json.dumps(rest))
    assert outcome(materialize_key(world, key))["outcome"] == "tombstoned"
    assert stored_queries(world, key) == []


def test_the_served_content_item_runs_as_from_the_ui(world, monkeypatch):
    """The code location's ``content_item`` (store kind, code references added when definitions
    load) still materializes a partition through its job, and says what it writes."""
    monkeypatch.setenv("CATALOG_STORE_URL", world["store_url"])
    monkeypatch.setenv("SAMPLE_CONTENT_PATH", str(world["path"] / "content.json"))
    monkeypatch.setenv("CATALOG_QUERIES_PATH", str(world["path"] / "queries.json"))
    definitions = defs()
    spec = next(s for s in definitions.resolve_all_asset_specs() if s.key == content_item.key)
    assert {"kafka", "polars"} < spec.kinds
    assert spec.metadata["dagster/table_name"] == "content_metadata"
    course = a_course(world)
    renamed = dict(course, title="Served", modified="2034-01-01T00:00:00Z")
    content = [renamed if d is course else d for d in world["content"]]
    (world["path"] / "content.json").write_text(json.dumps(content))
    job = definitions.resolve_job_def("apply_content_item")
    result = job.execute_in_process(partition_key=course["key"], instance=world["instance"])
    assert outcome(result)["outcome"] == "updated"
    with open_store(world["store_url"]) as store:
        assert store.get_content(course["key"]).metadata["title"] == "Served"


def test_batch_applies_many_keys_and_records_each_partition(world):
    runs = [d for d in world["content"] if d["content_type"] == "courserun"][:40]
    updates = [
        ContentUpdate(
            content_key_of(d),
            "courserun",
            metadata=dict(d, status="unpublished", modified="2034-01-01T00:00:00Z"),
            event_ids=(f"e-{i}",),
        )
        for i, d in enumerate(runs)
    ]
    bad = ContentUpdate(
        "course-v1:Bad+1+2",
        "courserun",
        metadata={"key": "course-v1:Other+1+2", "content_type": "courserun"},
    )
    result = apply_content_events.execute_in_process(
        run_config={
            "ops": {
                "apply_content_updates": {
                    "config": {"updates": [u.to_config() for u in [*updates, bad]]}
                }
            }
        },
        resources=world["resources"],
        instance=world["instance"],
    )
    assert result.success
    events = result.get_asset_materialization_events()
    assert sorted(e.partition for e in events) == sorted(
        [u.content_key for u in updates] + [bad.content_key]
    )
    materialized = world["instance"].get_materialized_partitions(content_item.key)
    assert {u.content_key for u in updates} <= materialized
    for update in updates:
        assert stored_queries(world, update.content_key) == expected_queries(world, update.metadata)
    with open_store(world["store_url"]) as store:
        (dead,) = store.dead_letters()
        assert "identifies itself as 'course-v1:Other+1+2'" in dead.error
        assert json.loads(dead.value)["content_key"] == "course-v1:Bad+1+2"


def test_record_and_fetch_in_one_update_keep_the_newer_version(world):
    course = a_course(world)  # the source still has the original (older) version
    newer = dict(course, title="From the event", modified="2036-01-01T00:00:00Z")
    update = ContentUpdate(course["key"], "course", metadata=newer, also_fetch=True)
    assert outcome(materialize_key(world, course["key"], update))["outcome"] == "stale"
    with open_store(world["store_url"]) as store:
        assert store.get_content(course["key"]).metadata["title"] == "From the event"


def test_dead_letters_replay_once_their_cause_is_fixed(world):
    from catalog_assets.core.dead_letters import dead_letter, replay
    from catalog_assets.core.events import RawMessage, encode_json_event

    course = dict(a_course(world), title="Replayed", modified="2037-01-01T00:00:00Z")
    key, value = encode_json_event(course["key"], "course", metadata=course, event_id="late")
    fixed = RawMessage("topic-a", 0, 7, key, value, [("origin", b"\x00\x01")])
    broken = RawMessage("topic-a", 0, 8, b"k", b"still not json", None)
    now = datetime(2026, 11, 27, 12, 0)
    with open_store(world["store_url"]) as store:
        store.add_dead_letters(
            [dead_letter(fixed, "registry unavailable", now), dead_letter(broken, "bad", now)]
        )
        source = world["resources"]["content_source"]
        report = replay(store, source, now)
        assert [r.outcome.split(":")[0] for r in report] == ["applied", "still bad"]
        assert store.get_content(course["key"]).metadata["title"] == "Replayed"
        assert sorted(store.associations_of(course["key"])) == expected_queries(world, course)
        (left,) = store.dead_letters()
        assert left.value == b"still not json"
        assert len(store.dead_letters(include_replayed=True)) == 2


def test_a_fetch_miss_does_not_block_the_next_full_refresh(world):
    """A lagging source makes an upsert event find nothing: the key is tombstoned without a
    time, so the next full refresh (which has the record) brings it back."""
    course = a_course(world)
    rest = [d for d in world["content"] if d is not course]
    (world["path"] / "content.json").write_text(json.dumps(rest))
    update = ContentUpdate(course["key"], "course", time=datetime(2040, 1, 1))
    assert outcome(materialize_key(world, course["key"], update))["outcome"] == "tombstoned"
    (world["path"] / "content.json").write_text(json.dumps(world["content"]))
    assert dg.materialize(bulk_assets, resources=world["resources"], instance=world["instance"])
    with open_store(world["store_url"]) as store:
        assert store.get_content(course["key"]).deleted_at is None
    assert stored_queries(world, course["key"]) == expected_queries(world, course)


def test_event_lane_keeps_rows_of_invalid_queries(world):
    key = next(content_key_of(d) for d in world["content"] if expected_queries(world, d))
    query_uuid = stored_queries(world, key)[0]
    queries = world["queries"]
    for query in queries["catalog_queries"]:
        if query["uuid"] == query_uuid:
            query["content_filter"] = {"title__icontains": "x"}  # now invalid
    (world["path"] / "queries.json").write_text(json.dumps(queries))
    assert dg.materialize(bulk_assets, resources=world["resources"], instance=world["instance"])
    assert query_uuid in stored_queries(world, key)  # kept by the bulk lane
    materialize_key(world, key)  # an event for the key
    assert query_uuid in stored_queries(world, key)  # and by the event lane


def test_rejected_update_dead_letter_replays_only_once_fixed(world):
    from catalog_assets.core.dead_letters import replay

    bad = ContentUpdate(
        "edX+Bad", "course", metadata={"key": "edX+Other", "content_type": "course"}
    )
    world["instance"].add_dynamic_partitions(CONTENT_KEYS.name, ["edX+Bad"])
    assert outcome(materialize_key(world, "edX+Bad", bad))["outcome"] == "rejected"
    with open_store(world["store_url"]) as store:
        (letter,) = store.dead_letters()
        assert json.loads(letter.value)["content_key"] == "edX+Bad"  # a replayable JSON event
        (line,) = replay(store, world["resources"]["content_source"], datetime(2026, 11, 27))
        assert line.outcome.startswith("still")
        assert len(store.dead_letters()) == 1  # not marked replayed


def test_record_kept_in_the_store_is_applied_then_forgotten(world):
    """The sensor keeps a record too large for run config in the store; the run reads it."""
    from catalog_assets.core.content import content_hash

    course = dict(a_course(world), title="Kept for the run", modified="2038-01-01T00:00:00Z")
    ref = content_hash(course)
    with open_store(world["store_url"]) as store:
        store.save_event_payloads({ref: (course["key"], course)}, datetime(2026, 11, 27))
    update = ContentUpdate(course["key"], "course", metadata_ref=ref, event_ids=("big-1",))
    assert update.to_config()["metadata_json"] == ""
    assert outcome(materialize_key(world, course["key"], update))["outcome"] == "updated"
    with open_store(world["store_url"]) as store:
        assert store.get_content(course["key"]).metadata == course
        assert store.event_payload(ref) is None
    assert stored_queries(world, course["key"]) == expected_queries(world, course)


def test_a_record_no_longer_kept_is_fetched_with_a_warning(world):
    course = a_course(world)
    content = [
        dict(d, title="From the source", modified="2039-01-01T00:00:00Z") if d is course else d
        for d in world["content"]
    ]
    (world["path"] / "content.json").write_text(json.dumps(content))
    update = ContentUpdate(course["key"], "course", metadata_ref="0" * 64)  # pruned
    result = materialize_key(world, course["key"], update)
    assert result.success and outcome(result)["outcome"] == "updated"
    with open_store(world["store_url"]) as store:
        assert store.get_content(course["key"]).metadata["title"] == "From the source"
    warnings = [
        entry.user_message
        for entry in world["instance"].all_logs(result.run_id)
        if entry.level == logging.WARNING
    ]
    assert any("0" * 64 in w and "no longer kept" in w for w in warnings)


def test_rejected_update_dead_letter_keeps_its_event_coordinates(world):
    from catalog_assets.core.dead_letters import collapse
    from catalog_assets.core.events import ContentEvent

    def event(event_id: str, offset: int) -> ContentEvent:
        return ContentEvent(
            event_id=event_id,
            event_type="content.upserted",
            content_key="edX+Bad",
            content_type="course",
            time=datetime(2026, 11, 27, 12, offset % 60),
            metadata={"key": "edX+Other", "content_type": "course"},
            source="json",
            topic="content-metadata-changed",
            partition=3,
            offset=offset,
        )

    (update,) = collapse([event("e-1", 41), event("e-2", 42)])
    world["instance"].add_dynamic_partitions(CONTENT_KEYS.name, ["edX+Bad"])
    assert outcome(materialize_key(world, "edX+Bad", update))["outcome"] == "rejected"
    with open_store(world["store_url"]) as store:
        (letter,) = store.dead_letters()
    assert (letter.topic, letter.partition, letter.offset) == ("content-metadata-changed", 3, 42)
    assert letter.key == b"edX+Bad" and "update rejected" in letter.error
    assert json.loads(letter.value)["id"] == "e-1,e-2"
