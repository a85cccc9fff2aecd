"""Replay a topic from a point in time, like event-bus-kafka's ``offset_time``.

The sensor's cursor is rewound to the first offset at or after ``since`` in every partition
(``offsets_for_times``); the events after it are read and applied again (applying is
idempotent, so events that were already applied change nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from catalog_assets.settings import Settings
from sensors.content_events import serialize_cursor
from sensors.kafka_source import KafkaEventSource, Offsets


def replay_offsets(source: KafkaEventSource, since: datetime, topics: Sequence[str]) -> Offsets:
    """For each partition of ``topics``: the first offset whose timestamp is >= ``since``."""
    from confluent_kafka import Consumer, TopicPartition

    since_ms = int((since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp() * 1000)
    consumer = Consumer({**source.client_config(), "group.id": source.consumer_group})
    try:
        metadata = consumer.list_topics(timeout=source.timeout_seconds)
        wanted = []
        for topic in topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                raise ValueError(f"topic {topic!r} does not exist on {source.bootstrap_servers}")
            wanted += [TopicPartition(topic, p, since_ms) for p in sorted(described.partitions)]
        found = consumer.offsets_for_times(wanted, timeout=source.timeout_seconds)
        offsets: Offsets = {}
        for partition in found:
            offset = partition.offset
            if offset < 0:  # nothing at or after `since`: resume at the end
                offset = consumer.get_watermark_offsets(
                    TopicPartition(partition.topic, partition.partition),
                    timeout=source.timeout_seconds,
                )[1]
            offsets.setdefault(partition.topic, {})[partition.partition] = offset
        return offsets
    finally:
        consumer.close()


def rewind_cursor(
    env: Mapping[str, str],
    since: datetime,
    topics: Sequence[str] | None = None,
    current: str | None = None,
) -> str:
    """The sensor cursor that replays ``topics`` (default: all content topics) from ``since``;
    other topics keep their offsets from the ``current`` cursor."""
    from sensors.content_events import build_event_resources, parse_cursor, replay_generation

    source = build_event_resources(Settings.from_env(env))["content_events"]
    source = source.process_config_and_initialize()
    if not source.configured:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
    offsets = parse_cursor(current)
    offsets.update(replay_offsets(source, since, topics or source.topic_list()))
    return serialize_cursor(offsets, replay_generation(current) + 1)


def current_cursor(instance, sensor_name: str) -> str | None:
    """The cursor a Dagster instance holds for a sensor (None when it never ticked)."""
    from dagster._core.definitions.run_request import InstigatorType

    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.name == sensor_name and state.instigator_data is not None:
            return state.instigator_data.cursor
    return None
