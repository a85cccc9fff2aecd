"""Open edX event-bus messages as edx-event-bus-kafka sends them, for tests, `publish` and
benchmarks.

What the producer does (openedx-events + edx-event-bus-kafka), reproduced here:

* topic: the base topic, prefixed ``PREFIX-`` when ``EVENT_BUS_TOPIC_PREFIX`` is set;
* key: the event's key field (``catalog_info.course_key`` for COURSE_CATALOG_INFO_CHANGED) as an
  Avro string, whose schema is that field's sub-schema (``{"name": "course_key", "type":
  "string"}``), Confluent-framed with its schema id;
* value: the event data as Avro with the signal's schema, Confluent-framed;
* both schemas registered with ``topic_record_subject_name_strategy`` (``{topic}-{record name}``)
  by confluent-kafka's ``AvroSerializer``, which this module uses too when a registry is given;
* headers: ``ce_specversion``, ``content-type``, ``ce_datacontenttype``, ``ce_type``, ``ce_id``
  (a UUID1), ``ce_source`` (``openedx/<service>/web``), ``ce_time`` (ISO 8601, UTC),
  ``ce_minorversion``, ``sourcehost`` and ``sourcelib`` (the openedx-events version).
"""

from __future__ import annotations

import io
import json
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fastavro

from catalog_assets.core.events.messages import CATALOG_INFO_CHANGED, frame_confluent, iso_utc
from catalog_assets.core.events.schemas import (
    SchemaRegistry,
    bundled_schema,
    bundled_schema_text,
)

KEY_FIELD_SCHEMA = json.dumps({"name": "course_key", "type": "string"}, sort_keys=True)
"""The key's schema as event-bus-kafka derives it: the key field's sub-schema, keys sorted."""
SOURCELIB = "11.2.0"
"""The openedx-events version a producer reports in ``sourcelib``."""
BUNDLED_KEY_SCHEMA_ID = 1
BUNDLED_VALUE_SCHEMA_ID = 2
"""Schema ids framed without a registry (a consumer without one ignores them)."""


@dataclass(frozen=True)
class EventBusMessage:
    """One Kafka message as the Open edX producer sends it."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def full_topic(base_topic: str, prefix: str = "") -> str:
    """``PREFIX-base`` when a prefix is set, as event-bus-kafka's ``EVENT_BUS_TOPIC_PREFIX``."""
    return f"{prefix}-{base_topic}" if prefix else base_topic


def _iso(value: datetime | str | None) -> str | None:
    return iso_utc(value) if isinstance(value, datetime) else value


def catalog_info_record(
    course_run_key: str,
    *,
    name: str = "Demonstration Course",
    start: datetime | str = "2024-01-01T00:00:00+00:00",
    pacing: str = "instructor",
    end: datetime | str | None = None,
    enrollment_start: datetime | str | None = None,
    enrollment_end: datetime | str | None = None,
    hidden: bool = False,
    invitation_only: bool = False,
) -> dict[str, Any]:
    """COURSE_CATALOG_INFO_CHANGED's event data as an Avro record (the run key not validated)."""
    return {
        "catalog_info": {
            "course_key": course_run_key,
            "name": name,
            "schedule_data": {
                "start": _iso(start),
                "pacing": pacing,
                "end": _iso(end),
                "enrollment_start": _iso(enrollment_start),
                "enrollment_end": _iso(enrollment_end),
            },
            "hidden": hidden,
            "invitation_only": invitation_only,
        }
    }


def event_bus_headers(
    ce_type: str,
    *,
    event_id: str | None = None,
    time: datetime | None = None,
    source: str = "openedx/cms/web",
    sourcehost: str | None = None,
) -> list[tuple[str, bytes]]:
    """The headers event-bus-kafka writes, in its order."""
    return [
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/avro"),
        ("ce_datacontenttype", b"application/avro"),
        ("ce_type", ce_type.encode()),
        ("ce_id", (event_id or str(uuid.uuid1())).encode()),
        ("ce_source", source.encode()),
        ("ce_time", iso_utc(time or datetime.now(UTC)).encode()),
        ("ce_minorversion", b"0"),
        ("sourcehost", (sourcehost or socket.gethostname()).encode()),
        ("sourcelib", SOURCELIB.encode()),
    ]


def _avro(schema: dict[str, Any] | str, datum: Any) -> bytes:
    payload = io.BytesIO()
    fastavro.schemaless_writer(payload, fastavro.parse_schema(schema), datum)
    return payload.getvalue()


def encode_openedx_catalog_info_changed(
    course_run_key: str,
    *,
    event_id: str | None = None,
    time: datetime | None = None,
    schema_id: int = BUNDLED_VALUE_SCHEMA_ID,
    **fields: Any,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A COURSE_CATALOG_INFO_CHANGED value (bundled schema, framed with ``schema_id``) and its
    headers, as event-bus-kafka sends them; the key: `catalog_info_changed_message`."""
    record = catalog_info_record(course_run_key, **fields)
    value = frame_confluent(schema_id, _avro(bundled_schema(CATALOG_INFO_CHANGED), record))
    headers = event_bus_headers(CATALOG_INFO_CHANGED, event_id=event_id, time=time)
    return value, headers


def catalog_info_changed_message(
    course_run_key: str,
    *,
    topic: str,
    registry: SchemaRegistry | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    **fields: Any,
) -> EventBusMessage:
    """The whole message (Avro key and value, headers) for ``topic`` (already prefixed).

    With a registry, the key and value schemas are registered and framed by confluent-kafka's
    ``AvroSerializer`` configured as event-bus-kafka configures it; without one they are framed
    with `BUNDLED_KEY_SCHEMA_ID` and `BUNDLED_VALUE_SCHEMA_ID`.
    """
    record = catalog_info_record(course_run_key, **fields)
    headers = event_bus_headers(CATALOG_INFO_CHANGED, event_id=event_id, time=time)
    if registry is None:
        key_avro = _avro(json.loads(KEY_FIELD_SCHEMA), record_key(record))
        key = frame_confluent(BUNDLED_KEY_SCHEMA_ID, key_avro)
        value = frame_confluent(
            BUNDLED_VALUE_SCHEMA_ID, _avro(bundled_schema(CATALOG_INFO_CHANGED), record)
        )
        return EventBusMessage(topic, key, value, headers)
    return registry.call(
        f"registering the {CATALOG_INFO_CHANGED} key and value schemas for {topic!r}",
        lambda: _serialized(registry, topic, record, headers),
    )


def record_key(record: dict[str, Any]) -> str:
    return record["catalog_info"]["course_key"]


def _serialized(
    registry: SchemaRegistry,
    topic: str,
    record: dict[str, Any],
    headers: list[tuple[str, bytes]],
) -> EventBusMessage:
    from confluent_kafka.schema_registry import topic_record_subject_name_strategy
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    conf = {"subject.name.strategy": topic_record_subject_name_strategy}
    value_schema = json.dumps(json.loads(bundled_schema_text(CATALOG_INFO_CHANGED)), sort_keys=True)
    key_serializer = AvroSerializer(registry.client, KEY_FIELD_SCHEMA, conf=conf)
    value_serializer = AvroSerializer(registry.client, value_schema, conf=conf)
    key = key_serializer(record_key(record), SerializationContext(topic, MessageField.KEY, headers))
    value = value_serializer(record, SerializationContext(topic, MessageField.VALUE, headers))
    return EventBusMessage(topic, key, value, headers)
