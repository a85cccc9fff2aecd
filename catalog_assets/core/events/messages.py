"""Content events and the messages that carry them: types, wire-format facts, errors.

A message arrives as a `RawMessage` (plain values; `RawMessage.from_kafka` builds one from a
``confluent_kafka.Message``); decoding turns it into `ContentEvent`s or raises `BadEvent` (the
message goes to the dead-letter table). `SchemaRegistryUnavailable` is not a `BadEvent`: the
message is fine, the registry is not, and the sensor retries on its next tick.

Wire-format facts (Confluent Schema Registry framing, as confluent-kafka writes it for the Open
edX event bus): a framed key or value starts with a magic byte, 0 followed by a big-endian 4-byte
schema id, or 1 followed by a 16-byte schema GUID; the writer's schema id may instead travel in
the ``__value_schema_id`` header (magic byte 1 and a GUID), the payload then being bare Avro.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

CATALOG_INFO_CHANGED = "org.openedx.content_authoring.course.catalog_info.changed.v1"


class EventType(StrEnum):
    """What a content event says happened (the JSON format's ``type``)."""

    UPSERTED = "content.upserted"
    DELETED = "content.deleted"


class ContentType(StrEnum):
    """The kinds of content course-discovery serves (the ``aggregation_key`` prefix)."""

    COURSE = "course"
    COURSERUN = "courserun"
    PROGRAM = "program"
    LEARNERPATHWAY = "learnerpathway"


class EventFormat(StrEnum):
    """Where an event came from: the Open edX event bus (Avro) or a JSON producer."""

    OPENEDX = "openedx"
    JSON = "json"


# ce_type -> bundled writer schema (file in catalog_assets/schemas/, named as openedx-events names
# its test schemas: the event type with "." replaced by "+").
SUPPORTED_OPENEDX_TYPES = {
    CATALOG_INFO_CHANGED: (
        "org+openedx+content_authoring+course+catalog_info+changed+v1_schema.avsc"
    ),
}

CONFLUENT_MAGIC = 0
CONFLUENT_MAGIC_GUID = 1
FRAME = struct.Struct(">bI")  # magic byte 0, schema id
GUID_FRAME_SIZE = 17  # magic byte 1, 16-byte schema GUID
VALUE_SCHEMA_ID_HEADER = "__value_schema_id"


class BadEvent(ValueError):
    """A message that cannot be turned into content events; it goes to the dead-letter table.

    ``reason`` is what is wrong; ``str()`` adds the message coordinates when they are known.
    """

    def __init__(
        self,
        reason: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        if topic is None and partition is None and offset is None:
            text = reason
        else:
            text = f"{reason} (topic {topic!r}, partition {partition}, offset {offset})"
        super().__init__(text)


class SchemaRegistryUnavailable(RuntimeError):
    """The schema registry could not answer (connection error, timeout, 5xx, unexpected reply).

    Not a problem with the message: do not dead-letter it, retry later.
    """


class SchemaRegistryRefused(SchemaRegistryUnavailable):
    """The schema registry refused the credentials (HTTP 401/403): a setting to fix, not a bad
    message, so it is retried like an outage."""


@dataclass(frozen=True)
class SchemaRef:
    """Which writer schema framed a payload: a registry id (magic byte 0) or GUID (magic 1)."""

    schema_id: int | None = None
    guid: str | None = None

    def __str__(self) -> str:
        return f"schema id {self.schema_id}" if self.guid is None else f"schema GUID {self.guid}"


@dataclass(frozen=True)
class RawMessage:
    """A Kafka message as plain values."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None = None
    timestamp_ms: int | None = None

    @classmethod
    def from_kafka(cls, message: Any) -> RawMessage:
        """Build from a ``confluent_kafka.Message``. Raises ValueError for an error event (a
        message whose ``error()`` is set), which is not a record and must not be decoded."""
        error = message.error()
        if error is not None:
            raise ValueError(f"not a data message: Kafka error {error}")
        timestamp_type, timestamp_ms = message.timestamp()
        headers = message.headers()
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            headers=list(headers) if headers is not None else None,
            # TIMESTAMP_NOT_AVAILABLE is 0.
            timestamp_ms=timestamp_ms if timestamp_type else None,
        )

    def bad(self, reason: str) -> BadEvent:
        """A BadEvent for this message."""
        return BadEvent(reason, topic=self.topic, partition=self.partition, offset=self.offset)


@dataclass(frozen=True)
class ContentEvent:
    """One piece of content that changed. One message can name several (a run and its course)."""

    event_id: str
    event_type: EventType
    content_key: str
    content_type: ContentType | None
    time: datetime | None  # naive UTC
    metadata: dict | None  # the full record, when the event carries one
    source: EventFormat
    topic: str
    partition: int
    offset: int


def frame_confluent(schema_id: int, avro_payload: bytes) -> bytes:
    """Confluent wire format: magic byte 0x00, big-endian 4-byte schema id, Avro binary."""
    return FRAME.pack(CONFLUENT_MAGIC, schema_id) + avro_payload


def read_frame(data: bytes) -> tuple[SchemaRef, int] | None:
    """The schema reference a framed payload starts with and the Avro payload's offset; None
    when ``data`` does not start with a complete Confluent frame."""
    if len(data) >= FRAME.size and data[0] == CONFLUENT_MAGIC:
        return SchemaRef(schema_id=FRAME.unpack_from(data)[1]), FRAME.size
    if len(data) >= GUID_FRAME_SIZE and data[0] == CONFLUENT_MAGIC_GUID:
        return SchemaRef(guid=str(uuid.UUID(bytes=bytes(data[1:GUID_FRAME_SIZE])))), GUID_FRAME_SIZE
    return None


def iso_utc(value: datetime) -> str:
    """ISO 8601 with an explicit UTC offset; a naive value is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()
