"""Replay content topics from a point in time, like event-bus-kafka's ``offset_time``.

The rewound cursor is computed from Kafka alone, never from the cursor Dagster holds (reading
that needs Dagster's private API): the replayed topics start at the first offset at or after
``since`` in every partition (``offsets_for_times``); the other content topics resume at the
offsets the sensor mirrors into its consumer group (``KafkaEventSource.commit_to_group``); and
the replay generation is the current Unix time, new without knowing the old one. Applying is
idempotent, so events that were already applied change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from catalog_assets.settings import Settings
from sensors.content_events import serialize_cursor
from sensors.kafka_source import KafkaEventSource, Offsets

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(?:\d+[smhdw])+")


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it names an offset), or a duration before ``now`` such as
    ``30m``, ``2h``, ``1d`` or ``1d12h`` (units s, m, h, d, w). Raises ``ValueError`` saying
    which forms are accepted, and for a time after ``now`` (it would replay nothing)."""
    value = text.strip()
    if _DURATION.fullmatch(value):
        units = re.findall(r"(\d+)([smhdw])", value)
        try:
            since = now - sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in units), timedelta())
        except OverflowError:
            raise ValueError(f"{text!r} reaches back past the year 1") from None
    else:
        try:
            since = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{text!r} is not an ISO time or a duration like 2h "
                "(e.g. 2026-11-27T10:00Z, 30m, 2h, 1d)"
            ) from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    if since > now:
        raise ValueError(f"{text!r} is in the future ({since.isoformat()}): nothing to replay")
    return since


def event_source() -> KafkaEventSource:
    """The sensor's Kafka source as the environment configures it (``ValueError`` if it does
    not): the same resource, so the same client, topic and group settings."""
    from sensors.content_events import build_event_resources

    source = build_event_resources(Settings.from_env())["content_events"]
    source = source.process_config_and_initialize()
    if not source.configured:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
    return source


def _consumer(source: KafkaEventSource):
    """A consumer of the sensor's group that never joins it (``assign``-style calls only), and
    keeps librdkafka's connection logs off the terminal: the exception says what failed."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            **source.client_config(),
            "group.id": source.consumer_group,
            "enable.auto.commit": False,
            "log_level": 2,
        }
    )


def _partitions(consumer, source: KafkaEventSource, topics: Sequence[str]) -> dict[str, list[int]]:
    """The partitions of each of ``topics`` that the cluster has (absent topics left out)."""
    metadata = consumer.list_topics(timeout=source.timeout_seconds)
    found = {}
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is not None and described.error is None:
            found[topic] = sorted(described.partitions)
    return found


def replay_offsets(source: KafkaEventSource, since: datetime, topics: Sequence[str]) -> Offsets:
    """For each partition of ``topics``: the first offset whose timestamp is >= ``since``
    (the end of the partition when there is none)."""
    from confluent_kafka import TopicPartition

    since_ms = int((since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp() * 1000)
    consumer = _consumer(source)
    try:
        partitions = _partitions(consumer, source, topics)
        for topic in topics:
            if topic not in partitions:
                raise ValueError(f"topic {topic!r} does not exist on {source.bootstrap_servers}")
        wanted = [TopicPartition(t, p, since_ms) for t, ps in partitions.items() for p in ps]
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


@dataclass
class GroupOffsets:
    """Offsets committed to the sensor's consumer group, and what it has none for."""

    offsets: Offsets = field(default_factory=dict)
    uncommitted: list[tuple[str, int]] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)


def committed_offsets(source: KafkaEventSource, topics: Sequence[str]) -> GroupOffsets:
    """Where the sensor's consumer group stands in every partition of ``topics``: the sensor
    mirrors its cursor there after every tick that read messages."""
    from confluent_kafka import KafkaException, TopicPartition

    consumer = _consumer(source)
    try:
        partitions = _partitions(consumer, source, topics)
        group = GroupOffsets(missing_topics=[t for t in topics if t not in partitions])
        wanted = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
        for partition in consumer.committed(wanted, timeout=source.timeout_seconds):
            if partition.error is not None:
                raise KafkaException(partition.error)
            if partition.offset >= 0:
                group.offsets.setdefault(partition.topic, {})[partition.partition] = (
                    partition.offset
                )
            else:  # OFFSET_INVALID: the group never committed this partition
                group.uncommitted.append((partition.topic, partition.partition))
        return group
    finally:
        consumer.close()


def new_generation(now: datetime) -> int:
    """A replay generation no earlier replay used: the Unix time of this one. It only has to
    differ from the generations in earlier run keys, and one replay per second is plenty."""
    return int(now.timestamp())


@dataclass
class Rewind:
    """A rewound sensor cursor and where each of its offsets came from."""

    cursor: str
    generation: int
    replayed: Offsets
    resumed: GroupOffsets


def replayed_topics(content: Sequence[str], topics: Sequence[str] | None) -> list[str]:
    """``topics`` (default: all the ``content`` topics), each one of those the sensor reads."""
    unknown = [topic for topic in topics or () if topic not in content]
    if unknown:
        what = "is not a content topic" if len(unknown) == 1 else "are not content topics"
        raise ValueError(
            f"{', '.join(map(repr, unknown))} {what} (KAFKA_CONTENT_TOPICS: {', '.join(content)})"
        )
    return list(dict.fromkeys(topics)) if topics else list(content)


def rewind_cursor(
    source: KafkaEventSource,
    since: datetime,
    topics: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Rewind:
    """The sensor cursor that replays ``topics`` (default: all content topics) from ``since``.

    The other content topics resume where the consumer group stands. A partition the group
    has no offset for is left out of the cursor: the sensor then starts it like any new
    partition (``KAFKA_START_FROM``). Raises ``confluent_kafka.KafkaException`` when the
    cluster cannot be reached.
    """
    replayed = replayed_topics(source.topic_list(), topics)
    offsets = replay_offsets(source, since, replayed)
    others = [topic for topic in source.topic_list() if topic not in replayed]
    resumed = committed_offsets(source, others) if others else GroupOffsets()
    generation = new_generation(now or datetime.now(UTC))
    cursor = serialize_cursor({**resumed.offsets, **offsets}, generation)
    return Rewind(cursor, generation, offsets, resumed)
