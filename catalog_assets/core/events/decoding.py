"""Decoding Kafka messages into content events (pure Python: no Kafka client needed).

A message arrives as a `RawMessage` (plain values; `RawMessage.from_kafka` builds one from a
``confluent_kafka.Message``). `decode` turns it into `ContentEvent`s, or raises `BadEvent` with a
message naming the problem and the message's topic, partition and offset; the Kafka sensor writes
those to a dead-letter table. `SchemaRegistryUnavailable` is not a `BadEvent`: the message is fine,
the registry is not, and the sensor retries on its next tick.

Two formats, told apart by the value's first byte and the headers:

* **Open edX event bus** (openedx-events over event-bus-kafka): the value is Avro in Confluent
  wire format (a magic byte and the writer's schema id or GUID, then Avro binary; or bare Avro
  with the schema GUID in the ``__value_schema_id`` header) and the CloudEvent attributes are
  headers (``ce_type``, ``ce_id``, ``ce_time``, ...). The supported type, `CATALOG_INFO_CHANGED`,
  names one course run and yields an upsert for it; the run's course is refreshed when the run's
  record is fetched (``content_updates``), from the course that record names, never from the
  run key alone. The record is decoded (with the writer schema from the schema registry when
  one is given, else with the schema bundled in ``catalog_assets/schemas/``) but only the run
  key is kept: the asset fetches full records from the content source.
* **JSON** (other sources of truth): ``{"id", "type", "time", "content_key", "content_type",
  "metadata"}``.

Decoding never depends on the Kafka key: event-bus-kafka sends it Avro-encoded (a framed Avro
string), JSON producers as text, and it only decides the partition.
"""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from typing import Any

import fastavro

from catalog_assets.core.content import naive_utc
from catalog_assets.core.events.messages import (
    CONFLUENT_MAGIC,
    CONFLUENT_MAGIC_GUID,
    SUPPORTED_OPENEDX_TYPES,
    VALUE_SCHEMA_ID_HEADER,
    BadEvent,
    ContentEvent,
    ContentType,
    EventFormat,
    EventType,
    RawMessage,
    SchemaRef,
    read_frame,
)
from catalog_assets.core.events.schemas import SchemaRegistry, bundled_schema

_RUN_KEY = re.compile(r"course-v1:([\w\-~.:]+)\+([\w\-~.:]+)\+([\w\-~.:]+)")
r"""opaque-keys' CourseLocator: course-v1:ORG+COURSE+RUN, each part made of [\w\-~.:]."""


def decode(message: RawMessage, registry: SchemaRegistry | None = None) -> list[ContentEvent]:
    """The content events in `message`. Raises BadEvent for an unusable message, and
    SchemaRegistryUnavailable when the registry cannot be asked for a writer schema."""
    value = message.value
    if not value:
        raise message.bad("empty message value (no payload)")
    headers = _Headers(message)
    if value[0] in (CONFLUENT_MAGIC, CONFLUENT_MAGIC_GUID) or headers.has("ce_type"):
        return _decode_openedx(message, value, headers, registry)
    return _decode_json(message, value)


def parse_course_run_key(run_key: str) -> tuple[str, str, str] | None:
    """``course-v1:ORG+NUM+RUN`` -> ``(ORG, NUM, RUN)``; None when it is not such a key."""
    match = _RUN_KEY.fullmatch(run_key)
    return match.groups() if match else None  # type: ignore[return-value]


class _Headers:
    """Header lookup that reports undecodable or conflicting values as BadEvent."""

    def __init__(self, message: RawMessage) -> None:
        self._message = message
        self._values: dict[str, list[bytes | None]] = {}
        for name, raw in message.headers or ():
            self._values.setdefault(name, []).append(raw)

    def has(self, name: str) -> bool:
        return name in self._values

    def raw(self, name: str) -> bytes | None:
        """A binary header's bytes (several different values: BadEvent)."""
        values = self._values.get(name)
        if not values:
            return None
        if len(set(values)) > 1:
            raise self._message.bad(
                f"header {name!r} appears {len(values)} times with different values"
            )
        return values[0]

    def get(self, name: str) -> str | None:
        """A text header (several different values, or not UTF-8: BadEvent)."""
        raw = self.raw(name)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._message.bad(f"header {name!r} is not UTF-8 ({error})") from error


def _decode_openedx(
    message: RawMessage, value: bytes, headers: _Headers, registry: SchemaRegistry | None
) -> list[ContentEvent]:
    ce_type = headers.get("ce_type")
    if not ce_type:
        raise message.bad(
            "Confluent-framed Avro value (first byte 0x00 or 0x01) without a ce_type header: "
            "cannot tell which Open edX event it is"
        )
    if ce_type not in SUPPORTED_OPENEDX_TYPES:
        raise message.bad(
            f"unsupported event type {ce_type!r} (ce_type header); supported: "
            f"{sorted(SUPPORTED_OPENEDX_TYPES)}"
        )
    ce_id = headers.get("ce_id")
    if not ce_id or not ce_id.strip():
        raise message.bad(f"{ce_type} event has no ce_id header (event id)")
    ce_id = ce_id.strip()
    ce_time = headers.get("ce_time")
    time = _parse_time(message, ce_time, "ce_time header") if ce_time else None

    ref, start = _writer_schema_ref(message, value, headers, ce_type)
    if registry is not None:
        try:
            schema = registry.schema(ref)
        except BadEvent as error:
            raise message.bad(str(error)) from error
        which = f"writer {ref} from the schema registry"
    else:
        schema = bundled_schema(ce_type)
        which = f"the bundled {ce_type} schema (frame {ref})"

    stream = io.BytesIO(value)
    stream.seek(start)
    try:
        record = fastavro.schemaless_reader(stream, schema, None)
    except Exception as error:
        raise message.bad(
            f"schema mismatch: the Avro payload does not decode with {which}: "
            f"{type(error).__name__}: {error}"
        ) from error
    leftover = len(value) - stream.tell()
    if leftover:
        raise message.bad(
            f"schema mismatch: {leftover} bytes left over after decoding the Avro payload "
            f"with {which}"
        )

    catalog_info = record.get("catalog_info") if isinstance(record, dict) else None
    run_key = catalog_info.get("course_key") if isinstance(catalog_info, dict) else None
    if not isinstance(run_key, str) or not run_key:
        raise message.bad(
            f"{ce_type} record decoded with {which} has no catalog_info.course_key string"
        )
    parts = parse_course_run_key(run_key)
    if parts is None:
        raise message.bad(
            f"catalog_info.course_key {run_key!r} is not a course run key of the form "
            "course-v1:ORG+NUMBER+RUN"
        )
    return [
        ContentEvent(
            event_id=ce_id,
            event_type=EventType.UPSERTED,
            content_key=run_key,
            content_type=ContentType.COURSERUN,
            time=time,
            metadata=None,
            source=EventFormat.OPENEDX,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
    ]


def _writer_schema_ref(
    message: RawMessage, value: bytes, headers: _Headers, ce_type: str
) -> tuple[SchemaRef, int]:
    """The writer schema's reference and where the Avro payload starts: from the
    ``__value_schema_id`` header when present (the payload is then bare Avro), else from the
    value's own frame."""
    if headers.has(VALUE_SCHEMA_ID_HEADER):
        raw = headers.raw(VALUE_SCHEMA_ID_HEADER)
        framed = read_frame(raw or b"")
        if framed is None or framed[1] != len(raw or b""):
            raise message.bad(
                f"{VALUE_SCHEMA_ID_HEADER} header is not a schema id or GUID frame: "
                f"{(raw or b'')[:20].hex()!r}"
            )
        return framed[0], 0
    framed = read_frame(value)
    if framed is None:
        raise message.bad(
            f"{ce_type} event value is not in Confluent wire format (expected magic byte 0x00 "
            "and a 4-byte schema id, or 0x01 and a 16-byte schema GUID; got "
            f"{len(value)} bytes starting {value[:5].hex()!r})"
        )
    return framed


def _decode_json(message: RawMessage, value: bytes) -> list[ContentEvent]:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise message.bad(
            f"value is neither Confluent-framed Avro (first byte 0x00) nor UTF-8 JSON: {error}"
        ) from error
    try:
        body = json.loads(text)
    except ValueError as error:
        raise message.bad(f"value is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise message.bad(f"JSON event is a {type(body).__name__}, expected an object")

    event_id = _required_string(message, body, "id")
    raw_type = _required_string(message, body, "type")
    if raw_type not in set(EventType):
        known = [t.value for t in EventType]
        raise message.bad(f"unknown event type {raw_type!r}; expected one of {known}")
    event_type = EventType(raw_type)
    content_key = _required_string(message, body, "content_key")
    raw_content_type = _required_string(message, body, "content_type")
    if raw_content_type not in set(ContentType):
        known = [t.value for t in ContentType]
        raise message.bad(f"unknown content_type {raw_content_type!r}; expected one of {known}")
    content_type = ContentType(raw_content_type)

    raw_time = body.get("time")
    if raw_time is None:
        time = None
    elif isinstance(raw_time, str):
        time = _parse_time(message, raw_time, "'time'")
    else:
        raise message.bad(
            f"'time' must be an ISO 8601 string, got {type(raw_time).__name__} {raw_time!r}"
        )

    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise message.bad(
                f"'metadata' must be a JSON object (the full record), got {type(metadata).__name__}"
            )
        _check_metadata(message, metadata, content_key, content_type)

    return [
        ContentEvent(
            event_id=event_id,
            event_type=event_type,
            content_key=content_key,
            content_type=content_type,
            time=time,
            metadata=metadata,
            source=EventFormat.JSON,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
    ]


def _required_string(message: RawMessage, body: dict[str, Any], field: str) -> str:
    if field not in body or body[field] is None:
        raise message.bad(f"JSON event is missing required field {field!r}")
    value = body[field]
    if not isinstance(value, str) or not value.strip():
        raise message.bad(f"JSON event field {field!r} must be a non-empty string, got {value!r}")
    return value


def _check_metadata(
    message: RawMessage, metadata: dict[str, Any], content_key: str, content_type: str
) -> None:
    """A record that names different content than the event would be stored under the wrong
    key: reject it. (The record's key is its ``key``, or ``uuid`` when it has no key.)"""
    record_key = metadata.get("key") or metadata.get("uuid")
    if record_key is not None and record_key != content_key:
        raise message.bad(
            f"metadata describes {record_key!r}, not the event's content_key {content_key!r}"
        )
    record_type = metadata.get("content_type")
    if record_type is not None and record_type != content_type:
        raise message.bad(
            f"metadata content_type {record_type!r} differs from the event's content_type "
            f"{content_type!r}"
        )


def _parse_time(message: RawMessage, text: str, what: str) -> datetime:
    try:
        return naive_utc(datetime.fromisoformat(text.strip()))  # type: ignore[return-value]
    except ValueError as error:
        raise message.bad(f"{what} {text!r} is not an ISO 8601 timestamp") from error
