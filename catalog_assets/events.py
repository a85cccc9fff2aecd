"""Content-change events decoded from Kafka messages (pure Python: no Kafka client needed).

A message arrives as a `RawMessage` (plain values; `RawMessage.from_kafka` builds one from a
``confluent_kafka.Message``). `decode` turns it into `ContentEvent`s, or raises `BadEvent` with a
message naming the problem and the message's topic, partition and offset; the Kafka sensor writes
those to a dead-letter table. `SchemaRegistryUnavailable` is not a `BadEvent`: the message is fine,
the registry is not, and the sensor retries on its next tick.

Two formats, told apart by the value's first byte and the headers:

* **Open edX event bus** (openedx-events over event-bus-kafka): the value is Avro in Confluent
  wire format (byte 0 is ``0x00``, bytes 1-4 a big-endian schema id, then Avro binary) and the
  CloudEvent attributes are headers (``ce_type``, ``ce_id``, ``ce_time``, ...). The supported type,
  `CATALOG_INFO_CHANGED`, names one course run; it yields an upsert for the run and one for its
  parent course. The record is decoded (with the writer schema from the schema registry when one
  is given, else with the schema bundled in ``catalog_assets/schemas/``) but only the run key is
  kept: the asset fetches full records from the content source.
* **JSON** (other sources of truth): ``{"id", "type", "time", "content_key", "content_type",
  "metadata"}``; the Kafka key, when present, is the content key.
"""

from __future__ import annotations

import functools
import io
import json
import re
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import fastavro
import requests

from catalog_assets.content import naive_utc

__all__ = [
    "CATALOG_INFO_CHANGED",
    "CONTENT_DELETED",
    "CONTENT_TYPES",
    "CONTENT_UPSERTED",
    "EVENT_TYPES",
    "SUPPORTED_OPENEDX_TYPES",
    "BadEvent",
    "ContentEvent",
    "RawMessage",
    "SchemaRegistry",
    "SchemaRegistryUnavailable",
    "bundled_schema",
    "decode",
    "encode_json_event",
    "encode_openedx_catalog_info_changed",
    "frame_confluent",
    "parse_course_run_key",
]

CATALOG_INFO_CHANGED = "org.openedx.content_authoring.course.catalog_info.changed.v1"
CONTENT_UPSERTED = "content.upserted"
CONTENT_DELETED = "content.deleted"
EVENT_TYPES = (CONTENT_UPSERTED, CONTENT_DELETED)
CONTENT_TYPES = ("course", "courserun", "program", "learnerpathway")

SOURCE_OPENEDX = "openedx"
SOURCE_JSON = "json"

# ce_type -> bundled writer schema (file in catalog_assets/schemas/, named as openedx-events names
# its test schemas: the event type with "." replaced by "+").
SUPPORTED_OPENEDX_TYPES = {
    CATALOG_INFO_CHANGED: (
        "org+openedx+content_authoring+course+catalog_info+changed+v1_schema.avsc"
    ),
}

CONFLUENT_MAGIC = 0
_FRAME = struct.Struct(">bI")  # magic byte, schema id
# opaque-keys' CourseLocator: course-v1:ORG+COURSE+RUN, each part made of [\w\-~.:].
_RUN_KEY = re.compile(r"course-v1:([\w\-~.:]+)\+([\w\-~.:]+)\+([\w\-~.:]+)")
_SCHEMA_NOT_FOUND = 40403  # Confluent Schema Registry error_code for an unknown schema id


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
    event_type: str  # CONTENT_UPSERTED or CONTENT_DELETED
    content_key: str
    content_type: str | None  # one of CONTENT_TYPES
    time: datetime | None  # naive UTC
    metadata: dict | None  # the full record, when the event carries one
    source: str  # "openedx" or "json"
    topic: str
    partition: int
    offset: int


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


@functools.cache
def bundled_schema(ce_type: str) -> dict[str, Any]:
    """The parsed bundled writer schema for an Open edX event type (KeyError when unsupported)."""
    name = SUPPORTED_OPENEDX_TYPES[ce_type]
    text = resources.files("catalog_assets").joinpath("schemas", name).read_text(encoding="utf-8")
    return fastavro.parse_schema(json.loads(text))


class SchemaRegistry:
    """A minimal Confluent Schema Registry client: writer schemas by id, cached (ids are
    immutable). Unknown id -> BadEvent; registry unreachable/failing -> SchemaRegistryUnavailable.
    """

    def __init__(
        self, url: str, timeout: float = 10, session: requests.Session | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        self._cache: dict[int, dict[str, Any]] = {}

    def schema(self, schema_id: int) -> dict[str, Any]:
        """The parsed (fastavro) schema registered under `schema_id`."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        address = f"{self.url}/schemas/ids/{schema_id}"
        try:
            response = self._session.get(address, timeout=self.timeout)
        except requests.RequestException as error:
            raise SchemaRegistryUnavailable(
                f"schema registry unreachable fetching schema id {schema_id} from {address}: "
                f"{type(error).__name__}: {error}"
            ) from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 404:
            # Only the registry's own "schema not found" condemns the message; any other 404 (a
            # wrong URL, a proxy page) would dead-letter every message, so it is retried instead.
            if isinstance(body, dict) and body.get("error_code") == _SCHEMA_NOT_FOUND:
                raise BadEvent(
                    f"schema id {schema_id} is not registered in the schema registry at "
                    f"{self.url} (HTTP 404: {body.get('message')!s})"
                )
            raise SchemaRegistryUnavailable(
                f"GET {address} returned HTTP 404 without a schema-registry error body "
                f"(is the registry URL right?): {response.text[:200]!r}"
            )
        if response.status_code != 200:
            raise SchemaRegistryUnavailable(
                f"GET {address} returned HTTP {response.status_code}: {response.text[:200]!r}"
            )
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise SchemaRegistryUnavailable(
                f"GET {address} did not return a JSON object with a 'schema' string: "
                f"{response.text[:200]!r}"
            )
        schema_type = body.get("schemaType") or "AVRO"
        if schema_type != "AVRO":
            raise BadEvent(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        try:
            parsed = fastavro.parse_schema(json.loads(body["schema"]))
        except Exception as error:
            raise BadEvent(
                f"schema id {schema_id} from the schema registry is not a valid Avro schema: "
                f"{type(error).__name__}: {error}"
            ) from error
        self._cache[schema_id] = parsed
        return parsed


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode(message: RawMessage, registry: SchemaRegistry | None = None) -> list[ContentEvent]:
    """The content events in `message`. Raises BadEvent for an unusable message, and
    SchemaRegistryUnavailable when the registry cannot be asked for a writer schema."""
    value = message.value
    if not value:
        raise message.bad("empty message value (no payload)")
    headers = _Headers(message)
    if value[0] == CONFLUENT_MAGIC or headers.has("ce_type"):
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

    def get(self, name: str) -> str | None:
        values = self._values.get(name)
        if not values:
            return None
        if len(set(values)) > 1:
            raise self._message.bad(
                f"header {name!r} appears {len(values)} times with different values"
            )
        raw = values[0]
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
            "Confluent-framed Avro value (first byte 0x00) without a ce_type header: "
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

    if len(value) < _FRAME.size or value[0] != CONFLUENT_MAGIC:
        raise message.bad(
            f"{ce_type} event value is not in Confluent wire format (expected magic byte 0x00 and "
            f"a 4-byte schema id; got {len(value)} bytes starting {value[:5].hex()!r})"
        )
    _, schema_id = _FRAME.unpack_from(value)
    if registry is not None:
        try:
            schema = registry.schema(schema_id)
        except BadEvent as error:
            raise message.bad(str(error)) from error
        which = f"writer schema id {schema_id} from the schema registry"
    else:
        schema = bundled_schema(ce_type)
        which = f"the bundled {ce_type} schema (frame schema id {schema_id})"

    stream = io.BytesIO(value)
    stream.seek(_FRAME.size)
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
    org, number, _ = parts
    common = {
        "event_id": ce_id,
        "event_type": CONTENT_UPSERTED,
        "time": time,
        "metadata": None,
        "source": SOURCE_OPENEDX,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
    }
    return [
        ContentEvent(content_key=run_key, content_type="courserun", **common),
        ContentEvent(content_key=f"{org}+{number}", content_type="course", **common),
    ]


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
    event_type = _required_string(message, body, "type")
    if event_type not in EVENT_TYPES:
        raise message.bad(f"unknown event type {event_type!r}; expected one of {list(EVENT_TYPES)}")
    content_key = _required_string(message, body, "content_key")
    content_type = _required_string(message, body, "content_type")
    if content_type not in CONTENT_TYPES:
        raise message.bad(
            f"unknown content_type {content_type!r}; expected one of {list(CONTENT_TYPES)}"
        )

    if message.key is not None:
        try:
            key = message.key.decode("utf-8")
        except UnicodeDecodeError as error:
            raise message.bad(f"message key is not UTF-8: {error}") from error
        if key != content_key:
            raise message.bad(
                f"message key {key!r} differs from the event's content_key {content_key!r}"
            )

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
            source=SOURCE_JSON,
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


# --------------------------------------------------------------------------------------------
# Encoding (tests, the publish command, benchmarks)
# --------------------------------------------------------------------------------------------


def frame_confluent(schema_id: int, avro_payload: bytes) -> bytes:
    """Confluent wire format: magic byte 0x00, big-endian 4-byte schema id, Avro binary."""
    return _FRAME.pack(CONFLUENT_MAGIC, schema_id) + avro_payload


def _iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _iso(value: datetime | str | None) -> str | None:
    return _iso_utc(value) if isinstance(value, datetime) else value


def encode_openedx_catalog_info_changed(
    course_run_key: str,
    *,
    name: str = "Demonstration Course",
    event_id: str | None = None,
    time: datetime | None = None,
    schema_id: int = 1,
    start: datetime | str = "2024-01-01T00:00:00+00:00",
    pacing: str = "instructor",
    end: datetime | str | None = None,
    enrollment_start: datetime | str | None = None,
    enrollment_end: datetime | str | None = None,
    hidden: bool = False,
    invitation_only: bool = False,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A COURSE_CATALOG_INFO_CHANGED event as event-bus-kafka sends it: the Confluent-framed Avro
    value (bundled schema) and the CloudEvent headers. The run key is not validated."""
    record = {
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
    payload = io.BytesIO()
    fastavro.schemaless_writer(payload, bundled_schema(CATALOG_INFO_CHANGED), record)
    headers = [
        ("ce_type", CATALOG_INFO_CHANGED.encode()),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_source", b"openedx/cms/web"),
        ("ce_specversion", b"1.0"),
        ("ce_time", _iso_utc(time or datetime.now(UTC)).encode()),
        ("content-type", b"application/avro"),
    ]
    return frame_confluent(schema_id, payload.getvalue()), headers


def encode_json_event(
    content_key: str,
    content_type: str,
    *,
    event_type: str = CONTENT_UPSERTED,
    metadata: dict | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A JSON content event: (Kafka key, value). Nothing is validated."""
    body: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "time": _iso_utc(time or datetime.now(UTC)),
        "content_key": content_key,
        "content_type": content_type,
    }
    if metadata is not None:
        body["metadata"] = metadata
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return content_key.encode("utf-8"), value
