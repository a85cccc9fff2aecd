"""The content-event sensor against a real Kafka-compatible broker (Tansu or a real cluster)."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from catalog_assets.core.content_updates import ContentUpdate
from catalog_assets.core.dead_letters import collapse, headers_from_json
from catalog_assets.core.events import (
    CATALOG_INFO_CHANGED,
    RegistrySettings,
    encode_json_event,
    schema_registry,
)
from catalog_assets.defs.event_assets import (
    CONTENT_KEYS,
    ContentUpdateConfig,
    apply_content_events,
    content_item_job,
)
from catalog_assets.defs.resources import CatalogStoreResource, SampleContentSource
from catalog_assets.devtools.broker import ensure_topics
from catalog_assets.devtools.encoders import catalog_info_changed_message, full_topic
from catalog_assets.store import open_store
from catalog_assets_tests.support.schema_registry import LocalSchemaRegistry
from sensors.content_events import (
    EVENT_IDS_LIMIT,
    INLINE_RECORD_LIMIT,
    RUN_CONFIG_LIMIT,
    TICK_INLINE_LIMIT,
    TickLimits,
    build_content_events_sensor,
    evaluate_tick,
    parse_cursor,
    update_config,
)
from sensors.kafka_source import KafkaEventSource

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Bus:
    """One test's topics on the broker, a producer, and the sensor's resources."""

    def __init__(self, bootstrap: str, make_topic, store_url: str, partitions: int = 1):
        self.bootstrap = bootstrap
        self.json_topic = make_topic(partitions=partitions)
        self.avro_topic = make_topic(partitions=1)
        self.producer = Producer({"bootstrap.servers": bootstrap})
        self.store_url = store_url
        self.instance = dg.DagsterInstance.ephemeral()
        self.source = KafkaEventSource(
            bootstrap_servers=bootstrap,
            topics=f"{self.avro_topic},{self.json_topic}",
            consumer_group=f"group-{self.json_topic}",
        )

    def publish_json(self, key: str, event_id: str, **kwargs) -> None:
        kwargs.setdefault("time", EPOCH)
        kafka_key, value = encode_json_event(key, "course", event_id=event_id, **kwargs)
        self.producer.produce(self.json_topic, key=kafka_key, value=value)
        self.producer.flush(10)

    def publish_raw(self, value: bytes, key: bytes | None = None, headers=None) -> None:
        self.producer.produce(self.json_topic, key=key, value=value, headers=headers)
        self.producer.flush(10)

    def publish_avro(self, run_key: str, event_id: str, registry=None) -> None:
        """As edx-event-bus-kafka sends it: Avro key and value, Confluent framing, headers."""
        message = catalog_info_changed_message(
            run_key, topic=self.avro_topic, event_id=event_id, registry=registry
        )
        self.producer.produce(
            message.topic, key=message.key, value=message.value, headers=message.headers
        )
        self.producer.flush(10)

    def tick(self, cursor: str | None = None, limits: TickLimits | None = None, source=None):
        context = dg.build_sensor_context(instance=self.instance, cursor=cursor)
        return evaluate_tick(
            context,
            source or self.source,
            limits or TickLimits(),
            CatalogStoreResource(url=self.store_url),
        )


@pytest.fixture
def bus(kafka_bootstrap, kafka_topic, tmp_path) -> Bus:
    return Bus(kafka_bootstrap, kafka_topic, f"duckdb:///{tmp_path}/catalog.duckdb")


def test_trickle_one_run_per_key_with_partitions_and_cursor(bus):
    bus.publish_json("edX+DemoX", "e-1", metadata={"key": "edX+DemoX", "title": "Demo"})
    bus.publish_avro("course-v1:MITx+6.002x+2026_T1", "avro-1")
    result = bus.tick()
    assert isinstance(result, dg.SensorResult)
    by_key = {run.partition_key: run for run in result.run_requests}
    # The run only: its course is refreshed by the run's run, from the course discovery names.
    assert set(by_key) == {"edX+DemoX", "course-v1:MITx+6.002x+2026_T1"}
    assert {run.job_name for run in result.run_requests} == {content_item_job.name}
    update = by_key["edX+DemoX"].run_config["ops"]["content_item"]["config"]["update"]
    assert json.loads(update["metadata_json"])["title"] == "Demo"
    assert update["event_ids"] == ["e-1"]
    run = by_key["course-v1:MITx+6.002x+2026_T1"]
    run_update = run.run_config["ops"]["content_item"]["config"]["update"]
    assert run_update["content_type"] == "courserun" and run_update["metadata_json"] == ""
    (partitions_request,) = result.dynamic_partitions_requests
    assert partitions_request.partitions_def_name == CONTENT_KEYS.name
    assert set(partitions_request.partition_keys) == set(by_key)
    assert parse_cursor(result.cursor) == {bus.avro_topic: {0: 1}, bus.json_topic: {0: 1}}


def test_idle_tick_skips_and_keeps_the_cursor(bus):
    first = bus.tick()  # empty topics: remembers where they start
    assert isinstance(first, dg.SensorResult) and not first.run_requests
    again = bus.tick(first.cursor)
    assert isinstance(again, dg.SkipReason)
    assert "no new content events" in again.skip_message


def test_unreachable_kafka_skips_without_moving_the_cursor(bus):
    closed = KafkaEventSource(bootstrap_servers="127.0.0.1:1", topics="t", timeout_seconds=2)
    result = bus.tick('{"t":{"0":5}}', source=closed)
    assert isinstance(result, dg.SkipReason)
    assert "could not be read" in result.skip_message and "offsets unchanged" in result.skip_message


def test_kafka_not_configured_says_why():
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral())
    result = evaluate_tick(
        context, KafkaEventSource(), TickLimits(), CatalogStoreResource(url="duckdb:///:memory:")
    )
    assert isinstance(result, dg.SkipReason)
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.skip_message
    sensor = build_content_events_sensor(enabled=False)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert build_content_events_sensor(enabled=True).default_status == (
        dg.DefaultSensorStatus.RUNNING
    )


def test_bad_messages_go_to_dead_letters_and_the_stream_moves_on(bus):
    bus.publish_raw(b"\x00\x00\x00\x00\x07garbage", key=b"k", headers=[("ce_type", b"x")])
    bus.publish_raw(b"\xff\xfe not utf-8", key=b"\xff")
    bus.publish_raw(json.dumps({"type": "content.upserted", "content_key": "A+B"}).encode())
    bus.publish_json("edX+Good", "e-good")
    result = bus.tick()
    assert [run.partition_key for run in result.run_requests] == ["edX+Good"]
    assert parse_cursor(result.cursor)[bus.json_topic] == {0: 4}
    with open_store(bus.store_url) as store:
        dead = store.dead_letters()
    assert [d.offset for d in dead] == [0, 1, 2]
    assert dead[0].value == b"\x00\x00\x00\x00\x07garbage"  # raw bytes kept exactly
    assert dead[1].key == b"\xff"
    assert headers_from_json(dead[0].headers) == [("ce_type", b"x")]
    assert "unsupported event type" in dead[0].error
    assert "id" in dead[2].error and f"topic '{bus.json_topic}'" in dead[2].error


def test_events_for_one_key_collapse_and_redelivery_is_harmless(bus):
    bus.publish_json("edX+A", "e-1", metadata={"key": "edX+A", "title": "first"})
    bus.publish_json(
        "edX+A",
        "e-2",
        metadata={"key": "edX+A", "title": "second"},
        time=EPOCH + timedelta(seconds=5),
    )
    bus.publish_json(
        "edX+A",
        "e-2",
        metadata={"key": "edX+A", "title": "second"},
        time=EPOCH + timedelta(seconds=5),
    )  # redelivered
    (run,) = bus.tick().run_requests
    update = run.run_config["ops"]["content_item"]["config"]["update"]
    assert json.loads(update["metadata_json"])["title"] == "second"
    assert update["event_ids"] == ["e-1", "e-2"]


def test_failed_tick_rereads_and_asks_for_the_same_runs(bus):
    for i in range(3):
        bus.publish_json(f"edX+K{i}", f"e-{i}")
    first = bus.tick()
    # The tick "failed": Dagster did not commit its cursor. The next tick starts over.
    retried = bus.tick(None)
    assert [r.run_key for r in retried.run_requests] == [r.run_key for r in first.run_requests]
    assert retried.cursor == first.cursor


def test_restart_continues_where_it_left_off_and_loses_nothing(bus):
    limits = TickLimits(max_messages=7)
    for i in range(30):
        bus.publish_json(f"edX+K{i:02d}", f"e-{i}")
    cursor, seen_ids = None, []
    for _ in range(10):
        result = bus.tick(cursor, limits)
        if isinstance(result, dg.SkipReason):
            break
        cursor = result.cursor
        for run in result.run_requests:
            config = run.run_config["ops"]
            updates = (
                [config["content_item"]["config"]["update"]]
                if "content_item" in config
                else config["apply_content_updates"]["config"]["updates"]
            )
            seen_ids += [event_id for update in updates for event_id in update["event_ids"]]
    assert sorted(seen_ids) == sorted(f"e-{i}" for i in range(30))  # each once, none lost
    assert parse_cursor(cursor)[bus.json_topic] == {0: 30}


def test_burst_is_batched_into_a_few_runs(bus):
    for i in range(1200):
        key, value = encode_json_event(f"edX+B{i:04d}", "course", event_id=f"b-{i}", time=EPOCH)
        bus.producer.produce(bus.json_topic, key=key, value=value)
    bus.producer.flush(30)
    limits = TickLimits(max_runs=4, max_keys_per_batch=500)
    result = bus.tick(limits=limits)
    assert len(result.run_requests) == 3
    assert {run.job_name for run in result.run_requests} == {apply_content_events.name}
    keys = [
        update["content_key"]
        for run in result.run_requests
        for update in run.run_config["ops"]["apply_content_updates"]["config"]["updates"]
    ]
    assert sorted(keys) == sorted(f"edX+B{i:04d}" for i in range(1200))
    assert len({run.run_key for run in result.run_requests}) == 3


def test_offsets_are_mirrored_to_the_consumer_group(bus):
    bus.publish_json("edX+G", "e-g")
    result = bus.tick()
    consumer = Consumer({"bootstrap.servers": bus.bootstrap, "group.id": bus.source.consumer_group})
    try:
        (committed,) = consumer.committed([TopicPartition(bus.json_topic, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed.offset == parse_cursor(result.cursor)[bus.json_topic][0] == 1


def _event(event_id, seconds, deleted=False, metadata=None):
    from catalog_assets.core.events import ContentEvent

    return ContentEvent(
        event_id=event_id,
        event_type="content.deleted" if deleted else "content.upserted",
        content_key="k",
        content_type="course",
        time=(EPOCH + timedelta(seconds=seconds)).replace(tzinfo=None),
        metadata=metadata,
        source="json",
        topic="t",
        partition=0,
        offset=seconds,
    )


def test_collapse_keeps_the_latest_event_by_time():
    (update,) = collapse([_event("late-delete", 9, deleted=True), _event("early", 1)])
    assert update.deleted and update.event_ids == ("early", "late-delete")
    assert update.metadata is None


def test_collapse_keeps_a_full_record_when_a_later_event_asks_to_fetch():
    record = {"key": "k", "title": "from the event"}
    (update,) = collapse([_event("full", 1, metadata=record), _event("fetch", 2)])
    assert not update.deleted and update.metadata == record and update.also_fetch
    (after_delete,) = collapse(
        [_event("full", 1, metadata=record), _event("gone", 2, deleted=True), _event("back", 3)]
    )
    assert after_delete.metadata is None and not after_delete.also_fetch  # plain fetch


def test_a_partition_missing_from_the_cursor_is_picked_up(kafka_bootstrap, kafka_topic, tmp_path):
    """Tansu cannot add partitions to a topic, so a cursor that knows only partition 0 of a
    two-partition topic stands in for a topic that grew a partition."""
    bus = Bus(kafka_bootstrap, kafka_topic, f"duckdb:///{tmp_path}/c.duckdb", partitions=2)
    for partition in (0, 1):
        key, value = encode_json_event(f"edX+P{partition}", "course", event_id=f"p-{partition}")
        bus.producer.produce(bus.json_topic, key=key, value=value, partition=partition)
    bus.producer.flush(10)
    first = bus.tick(f'{{"{bus.json_topic}":{{"0":1}},"{bus.avro_topic}":{{"0":0}}}}')
    assert [run.partition_key for run in first.run_requests] == ["edX+P1"]
    assert parse_cursor(first.cursor)[bus.json_topic] == {0: 1, 1: 1}


def test_replay_rewinds_the_cursor_to_at_or_before_the_time(bus):
    from sensors.replay import replay_offsets

    bus.publish_json("edX+R0", "r-0")
    since = datetime.now(UTC)
    bus.publish_json("edX+R1", "r-1")
    offsets = replay_offsets(bus.source, since, [bus.json_topic])
    # Kafka answers exactly 1; Tansu ignores the time and answers 0 (a harmless superset,
    # since applying an event twice changes nothing).
    assert offsets[bus.json_topic][0] in (0, 1)
    replayed = bus.tick(json.dumps({bus.json_topic: {"0": offsets[bus.json_topic][0]}}))
    assert "edX+R1" in {run.partition_key for run in replayed.run_requests}


def test_replay_generation_changes_run_keys_so_replayed_events_run_again(bus):
    from sensors.content_events import REPLAY_KEY, replay_generation

    bus.publish_json("edX+Again", "again-1")
    first = bus.tick()
    start = json.dumps({bus.json_topic: {"0": 0}, bus.avro_topic: {"0": 0}, REPLAY_KEY: 1})
    replayed = bus.tick(start)
    assert [r.partition_key for r in replayed.run_requests] == ["edX+Again"]
    assert replayed.run_requests[0].run_key != first.run_requests[0].run_key
    assert replay_generation(replayed.cursor) == 1


def test_a_topic_that_does_not_answer_keeps_its_offsets(bus):
    cursor = json.dumps({"vanished-topic": {"0": 42}, bus.json_topic: {"0": 0}})
    bus.publish_json("edX+Still", "still-1")
    result = bus.tick(cursor)
    assert parse_cursor(result.cursor)["vanished-topic"] == {0: 42}


def _updates_of(run: dg.RunRequest) -> list[dict]:
    ops = run.run_config["ops"]
    if "content_item" in ops:
        return [ops["content_item"]["config"]["update"]]
    return ops["apply_content_updates"]["config"]["updates"]


def test_large_records_go_by_reference_and_run_config_stays_small(bus, tmp_path):
    """25 records of ~5 MB once made a tick's run requests ~125 MB, over Dagster's 100 MB gRPC
    limit: the tick failed on every retry. Now they wait in the store and runs name them."""
    producer = Producer({"bootstrap.servers": bus.bootstrap, "message.max.bytes": 20_000_000})
    big = {
        f"edX+Big{i:02d}": {
            "key": f"edX+Big{i:02d}",
            "content_type": "course",
            "title": f"Big {i}",
            "description": f'<p>{i} "quoted"</p>' * 250_000,  # 4-5 MB, quotes to escape
        }
        for i in range(25)
    }
    # Records small enough to go inline, more of them than a tick carries inline in all.
    medium = {
        f"edX+Mid{i:03d}": {
            "key": f"edX+Mid{i:03d}",
            "content_type": "course",
            "title": f"Mid {i}",
            "description": "m" * (INLINE_RECORD_LIMIT - 200),
        }
        for i in range(300)
    }
    records = {**big, **medium}
    refused = []
    for number, (key, record) in enumerate(records.items()):
        kafka_key, value = encode_json_event(
            key, "course", event_id=f"r-{number}", metadata=record, time=EPOCH
        )
        producer.produce(
            bus.json_topic,
            key=kafka_key,
            value=value,
            on_delivery=lambda error, _: error and refused.append(error),
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not refused, f"the broker refused messages of 5 MB: {refused[0]}"

    result = bus.tick()
    sizes = [len(json.dumps(run.run_config)) for run in result.run_requests]
    assert len(result.run_requests) > 1 and max(sizes) < RUN_CONFIG_LIMIT
    # Inline records add up to TICK_INLINE_LIMIT at most (escaped: under twice that).
    assert sum(sizes) < 2 * TICK_INLINE_LIMIT + 1_000_000
    updates = {u["content_key"]: u for run in result.run_requests for u in _updates_of(run)}
    assert set(updates) == set(records)
    assert all(updates[key]["metadata_ref"] and not updates[key]["metadata_json"] for key in big)
    inline = [key for key in medium if updates[key]["metadata_json"]]
    assert 0 < len(inline) < len(medium)  # the rest went by reference too
    with open_store(bus.store_url) as store:
        assert store.event_payload(updates["edX+Big03"]["metadata_ref"]) == big["edX+Big03"]

    # The runs apply the full records from the store, then forget them.
    (empty := tmp_path / "no-content.json").write_text("[]")
    resources = {
        "content_source": SampleContentSource(path=str(empty)),
        "catalog_store": CatalogStoreResource(url=bus.store_url),
    }
    bus.instance.add_dynamic_partitions(CONTENT_KEYS.name, sorted(records))
    for run in result.run_requests:
        executed = apply_content_events.execute_in_process(
            run_config=run.run_config, resources=resources, instance=bus.instance
        )
        assert executed.success
    with open_store(bus.store_url) as store:
        for key in ("edX+Big00", "edX+Big24", inline[0], sorted(set(medium) - set(inline))[0]):
            assert store.get_content(key).metadata == records[key]
        assert all(store.event_payload(u["metadata_ref"]) is None for u in updates.values())


def test_a_tick_evaluated_again_stores_its_dead_letters_once(bus):
    bus.publish_raw(b"not json at all", key=b"k")
    bus.publish_json("edX+Fine", "e-fine")
    first = bus.tick(None)
    again = bus.tick(None)  # Dagster did not commit the first: the same tick, evaluated again
    assert again.cursor == first.cursor
    with open_store(bus.store_url) as store:
        (letter,) = store.dead_letters()
    assert (letter.topic, letter.partition, letter.offset) == (bus.json_topic, 0, 0)


def test_an_absurdly_long_key_or_id_is_a_dead_letter(bus):
    bus.publish_json("edX+" + "K" * 5000, "e-long-key")
    bus.publish_json("edX+Ok", "i" * 5000)
    bus.publish_json("edX+Fine", "e-fine")
    result = bus.tick()
    assert [run.partition_key for run in result.run_requests] == ["edX+Fine"]
    with open_store(bus.store_url) as store:
        dead = store.dead_letters()
    assert [d.offset for d in dead] == [0, 1]
    assert "content key of 5004 characters" in dead[0].error
    assert "event id of 5000 characters" in dead[1].error


def test_run_config_carries_the_latest_event_ids_that_fit():
    ids = tuple(f"event-{i:05d}" for i in range(5000))
    config = update_config(ContentUpdate("edX+Busy", "course", event_ids=ids))
    assert len(json.dumps(config["event_ids"])) <= EVENT_IDS_LIMIT
    assert config["event_ids"] == list(ids[-len(config["event_ids"]) :])
    assert len(config["event_ids"]) > 500


def test_collapse_keeps_the_coordinates_of_the_latest_event():
    (update,) = collapse([_event("late", 9), _event("early", 1)])
    assert (update.topic, update.partition, update.offset) == ("t", 0, 9)
    assert ContentUpdate.from_config(ContentUpdateConfig(**update.to_config())) == update


# --- the Open edX event bus as it really sends: prefixed topics, Avro keys, an authenticated
# --- schema registry ------------------------------------------------------------------------

REGISTRY_CREDENTIALS = ("sensor-key-31d", "sensor-secret-8e0f2a")


def with_registry(source: KafkaEventSource, url: str, key: str, secret: str) -> KafkaEventSource:
    return source.model_copy(
        update={
            "schema_registry_url": url,
            "schema_registry_api_key": key,
            "schema_registry_api_secret": secret,
        }
    )


def test_open_edx_messages_through_a_registry_that_requires_basic_auth(bus):
    with LocalSchemaRegistry(credentials=REGISTRY_CREDENTIALS) as registry:
        producer_side = schema_registry(RegistrySettings(registry.url, *REGISTRY_CREDENTIALS))
        bus.publish_avro("course-v1:MITx+6.002x+2026_T1", "avro-reg-1", registry=producer_side)
        assert set(registry.subjects()) == {
            f"{bus.avro_topic}-string",
            f"{bus.avro_topic}-{CATALOG_INFO_CHANGED}.CloudEvent",
        }

        wrong = with_registry(bus.source, registry.url, "sensor-key-31d", "bad-9a7c")
        refused = bus.tick(source=wrong)
        assert isinstance(refused, dg.SkipReason)
        assert "refused the credentials" in refused.skip_message
        assert "offsets unchanged" in refused.skip_message
        for secret in ("bad-9a7c", "sensor-key-31d"):
            assert secret not in refused.skip_message

        accepted = bus.tick(source=with_registry(bus.source, registry.url, *REGISTRY_CREDENTIALS))
        assert [run.partition_key for run in accepted.run_requests] == [
            "course-v1:MITx+6.002x+2026_T1"
        ]
        assert parse_cursor(accepted.cursor)[bus.avro_topic] == {0: 1}
        url = registry.url
    down = bus.tick(source=with_registry(bus.source, url, "other-key-0c1", "other-secret-77d"))
    assert isinstance(down, dg.SkipReason) and "unreachable" in down.skip_message
    with open_store(bus.store_url) as store:
        store.ensure_schema()
        assert store.dead_letters() == []  # refused or down: retried, never dead-lettered


def test_topics_are_prefixed_as_open_edx_prefixes_them(kafka_bootstrap, tmp_path):
    base = f"course-catalog-info-changed-{uuid.uuid4().hex[:8]}"
    prefixed = f"dev-{base}"
    ensure_topics(kafka_bootstrap, [prefixed])
    try:
        message = catalog_info_changed_message(
            "course-v1:edX+Prefix+2026", topic=full_topic(base, "dev"), event_id="p-1"
        )
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(prefixed, key=message.key, value=message.value, headers=message.headers)
        producer.flush(10)
        source = KafkaEventSource(
            bootstrap_servers=kafka_bootstrap,
            topics=base,
            topic_prefix="dev",
            consumer_group=f"group-{prefixed}",
        )
        assert source.topic_list() == [prefixed]
        context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral())
        result = evaluate_tick(
            context,
            source,
            TickLimits(),
            CatalogStoreResource(url=f"duckdb:///{tmp_path}/c.duckdb"),
        )
        assert [run.partition_key for run in result.run_requests] == ["course-v1:edX+Prefix+2026"]
        assert parse_cursor(result.cursor) == {prefixed: {0: 1}}
    finally:
        from confluent_kafka.admin import AdminClient

        for future in (
            AdminClient({"bootstrap.servers": kafka_bootstrap})
            .delete_topics([prefixed], operation_timeout=5)
            .values()
        ):
            with contextlib.suppress(Exception):
                future.result(timeout=10)
