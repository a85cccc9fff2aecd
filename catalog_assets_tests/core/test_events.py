"""Decoding content events from Kafka messages: Open edX event bus (Avro) and JSON."""

from __future__ import annotations

import io
import json
import socket
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import confluent_kafka
import fastavro
import pytest

from catalog_assets.core import events
from catalog_assets.core.events import (
    CATALOG_INFO_CHANGED,
    BadEvent,
    RawMessage,
    SchemaRegistry,
    SchemaRegistryUnavailable,
    decode,
    encode_json_event,
    frame_confluent,
)
from catalog_assets.devtools.encoders import encode_openedx_catalog_info_changed

TOPIC = "content-events"
PARTITION = 3
OFFSET = 42
WHERE = f"(topic {TOPIC!r}, partition {PARTITION}, offset {OFFSET})"
RUN_KEY = "course-v1:edX+DemoX+2024_T1"


def raw(
    value: bytes | None,
    headers: list[tuple[str, bytes | None]] | None = None,
    key: bytes | None = None,
) -> RawMessage:
    return RawMessage(TOPIC, PARTITION, OFFSET, key, value, headers, 1_700_000_000_000)


def assert_bad(message: RawMessage, *fragments: str, registry: SchemaRegistry | None = None):
    with pytest.raises(BadEvent) as caught:
        decode(message, registry)
    text = str(caught.value)
    for fragment in fragments:
        assert fragment in text, text
    assert text.endswith(WHERE), text
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == (
        TOPIC,
        PARTITION,
        OFFSET,
    )
    return caught.value


def header(headers: list[tuple[str, bytes]], name: str) -> bytes:
    return dict(headers)[name]


# --------------------------------------------------------------------------------------------
# Open edX event bus (Avro, Confluent wire format)
# --------------------------------------------------------------------------------------------


def test_avro_round_trip_yields_the_run_and_its_parent_course():
    sent_at = datetime(2024, 5, 1, 14, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    value, headers = encode_openedx_catalog_info_changed(
        RUN_KEY, event_id="evt-1", time=sent_at, schema_id=5, hidden=True
    )
    assert value[0] == 0 and int.from_bytes(value[1:5], "big") == 5
    assert header(headers, "ce_type") == CATALOG_INFO_CHANGED.encode()
    assert header(headers, "content-type") == b"application/avro"
    # The payload is plain Avro with the bundled schema after the 5-byte frame.
    record = fastavro.schemaless_reader(
        io.BytesIO(value[5:]), events.bundled_schema(CATALOG_INFO_CHANGED), None
    )
    assert record["catalog_info"]["course_key"] == RUN_KEY
    assert record["catalog_info"]["hidden"] is True

    decoded = decode(raw(value, headers))

    assert [(e.content_key, e.content_type) for e in decoded] == [
        (RUN_KEY, "courserun"),
        ("edX+DemoX", "course"),
    ]
    for event in decoded:
        assert event.event_id == "evt-1"
        assert event.event_type == "content.upserted"
        assert event.time == datetime(2024, 5, 1, 12, 30, 15)  # naive UTC
        assert event.metadata is None
        assert event.source == "openedx"
        assert (event.topic, event.partition, event.offset) == (TOPIC, PARTITION, OFFSET)
    assert {(e.event_id, e.content_key) for e in decoded} == {
        ("evt-1", RUN_KEY),
        ("evt-1", "edX+DemoX"),
    }


def test_from_kafka_message_then_decode():
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, event_id="evt-2")
    message = confluent_kafka.Message(
        topic=TOPIC,
        partition=PARTITION,
        offset=OFFSET,
        key=b"k",
        value=value,
        headers=headers,
        timestamp=(confluent_kafka.TIMESTAMP_CREATE_TIME, 1_714_000_000_000),
    )
    converted = RawMessage.from_kafka(message)
    assert converted == RawMessage(
        TOPIC, PARTITION, OFFSET, b"k", value, headers, timestamp_ms=1_714_000_000_000
    )
    assert [e.content_key for e in decode(converted)] == [RUN_KEY, "edX+DemoX"]

    no_timestamp = confluent_kafka.Message(
        topic=TOPIC, partition=0, offset=0, value=b"{}", timestamp=(0, -1)
    )
    assert RawMessage.from_kafka(no_timestamp).timestamp_ms is None
    assert RawMessage.from_kafka(no_timestamp).headers is None


def test_truncated_avro_is_a_schema_mismatch():
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY)
    assert_bad(raw(value[:-4], headers), "schema mismatch", "does not decode", "bundled")
    # Bytes after a complete record also mean the writer used another schema.
    assert_bad(raw(value + b"\x02\x04", headers), "schema mismatch", "2 bytes left over")
    # A bare 0x00 with no schema id.
    assert_bad(raw(b"\x00\x00", headers), "not in Confluent wire format")


def test_unknown_ce_type():
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY)
    changed = [
        (name, b"org.openedx.learning.course.enrollment.created.v1" if name == "ce_type" else v)
        for name, v in headers
    ]
    assert_bad(
        raw(value, changed),
        "unsupported event type 'org.openedx.learning.course.enrollment.created.v1'",
    )


def test_avro_without_ce_type():
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY)
    without = [(name, v) for name, v in headers if name != "ce_type"]
    assert_bad(raw(value, without), "without a ce_type header")


def test_missing_ce_id():
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY)
    without = [(name, v) for name, v in headers if name != "ce_id"]
    assert_bad(raw(value, without), "no ce_id header")
    blank = [(name, b"" if name == "ce_id" else v) for name, v in headers]
    assert_bad(raw(value, blank), "no ce_id header")


def test_bad_ce_time():
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY)
    changed = [(name, b"yesterday" if name == "ce_time" else v) for name, v in headers]
    assert_bad(raw(value, changed), "ce_time header 'yesterday' is not an ISO 8601 timestamp")


@pytest.mark.parametrize(
    "run_key",
    ["edX/DemoX/2024", "course-v1:edX+DemoX", "course-v1:edX+Demo X+2024", "block-v1:a+b+c"],
)
def test_malformed_run_key(run_key: str):
    value, headers = encode_openedx_catalog_info_changed(run_key)
    assert_bad(raw(value, headers), f"catalog_info.course_key {run_key!r} is not a course run key")


# --------------------------------------------------------------------------------------------
# Schema registry
# --------------------------------------------------------------------------------------------


def evolved_writer_schema() -> dict[str, Any]:
    """The catalog-info schema with its fields reordered and an extra field (with a default)."""
    text = (
        resources.files("catalog_assets")
        .joinpath("schemas", events.SUPPORTED_OPENEDX_TYPES[CATALOG_INFO_CHANGED])
        .read_text(encoding="utf-8")
    )
    schema = json.loads(text)
    catalog_info = schema["fields"][0]["type"]
    by_name = {field["name"]: field for field in catalog_info["fields"]}
    catalog_info["fields"] = [
        by_name["invitation_only"],
        by_name["hidden"],
        by_name["schedule_data"],
        by_name["name"],
        by_name["course_key"],
        {"name": "short_description", "type": "string", "default": ""},
    ]
    return schema


def evolved_message(run_key: str, schema_id: int, event_id: str) -> RawMessage:
    record = {
        "catalog_info": {
            "course_key": run_key,
            "name": "Demo",
            "schedule_data": {"start": "2024-01-01T00:00:00+00:00", "pacing": "self"},
            "hidden": False,
            "invitation_only": False,
            "short_description": "A short description",
        }
    }
    payload = io.BytesIO()
    fastavro.schemaless_writer(payload, fastavro.parse_schema(evolved_writer_schema()), record)
    _, headers = encode_openedx_catalog_info_changed(run_key, event_id=event_id)
    return raw(frame_confluent(schema_id, payload.getvalue()), headers)


def test_registry_writer_schema_is_used_and_cached(httpserver):
    httpserver.expect_request("/schemas/ids/7", method="GET").respond_with_json(
        {"schema": json.dumps(evolved_writer_schema())}
    )
    registry = SchemaRegistry(httpserver.url_for("/"), timeout=5)
    first = evolved_message("course-v1:MITx+6.00x+1T2024", 7, "evt-a")
    second = evolved_message("course-v1:HarvardX+CS50+2024", 7, "evt-b")

    assert [(e.content_key, e.event_id) for e in decode(first, registry)] == [
        ("course-v1:MITx+6.00x+1T2024", "evt-a"),
        ("MITx+6.00x", "evt-a"),
    ]
    assert [e.content_key for e in decode(second, registry)] == [
        "course-v1:HarvardX+CS50+2024",
        "HarvardX+CS50",
    ]
    assert len(httpserver.log) == 1  # the parsed schema was cached
    # Without the registry the bundled schema is used, and it does not fit these bytes.
    assert_bad(first, "schema mismatch", "bundled")


def test_registry_unknown_id_is_a_bad_event(httpserver):
    httpserver.expect_request("/schemas/ids/99").respond_with_json(
        {"error_code": 40403, "message": "Schema 99 not found"}, status=404
    )
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, schema_id=99)
    registry = SchemaRegistry(httpserver.url_for("/"))
    assert_bad(raw(value, headers), "schema id 99 is not registered", registry=registry)


def test_registry_unavailable_is_not_a_bad_event(httpserver):
    httpserver.expect_request("/schemas/ids/7").respond_with_data("overloaded", status=503)
    httpserver.expect_request("/schemas/ids/8").respond_with_data("<html>nginx</html>", status=404)
    registry = SchemaRegistry(httpserver.url_for("/"))
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, schema_id=7)
    with pytest.raises(SchemaRegistryUnavailable, match="HTTP 503") as caught:
        decode(raw(value, headers), registry)
    assert not isinstance(caught.value, BadEvent)
    # A 404 that is not the registry's "schema not found" (wrong URL, proxy page) is retried,
    # not dead-lettered.
    httpserver.expect_request("/schemas/ids/9").respond_with_json({"detail": "nope"}, status=404)
    for schema_id in (8, 9):
        value, headers = encode_openedx_catalog_info_changed(RUN_KEY, schema_id=schema_id)
        with pytest.raises(SchemaRegistryUnavailable, match="HTTP 404"):
            decode(raw(value, headers), registry)


def test_registry_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = SchemaRegistry(f"http://127.0.0.1:{port}", timeout=2)
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY)
    with pytest.raises(SchemaRegistryUnavailable, match="unreachable"):
        decode(raw(value, headers), registry)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------

COURSE_RECORD = {
    "aggregation_key": "course:edX+DemoX",
    "content_type": "course",
    "key": "edX+DemoX",
    "uuid": "7f4ed4f1-0a0e-4b3e-8d0a-5b5d2c2f6a11",
    "title": "Demonstration Course",
}


def test_json_upsert_with_metadata():
    key, value = encode_json_event(
        "edX+DemoX",
        "course",
        metadata=COURSE_RECORD,
        event_id="j-1",
        time=datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
    )
    assert key == b"edX+DemoX"
    assert decode(raw(value, key=key)) == [
        events.ContentEvent(
            event_id="j-1",
            event_type="content.upserted",
            content_key="edX+DemoX",
            content_type="course",
            time=datetime(2024, 3, 1, 10, 0),
            metadata=COURSE_RECORD,
            source="json",
            topic=TOPIC,
            partition=PARTITION,
            offset=OFFSET,
        )
    ]


def test_json_delete_without_key_or_time():
    body = {"id": "j-2", "type": "content.deleted", "content_key": "abc", "content_type": "program"}
    (event,) = decode(raw(json.dumps(body).encode()))
    assert (event.event_type, event.content_key, event.content_type) == (
        "content.deleted",
        "abc",
        "program",
    )
    assert event.time is None and event.metadata is None
    # A "Z" suffix parses as UTC.
    body["time"] = "2024-06-30T23:59:59Z"
    (event,) = decode(raw(json.dumps(body).encode(), key=b"abc"))
    assert event.time == datetime(2024, 6, 30, 23, 59, 59)


GOOD_BODY = {
    "id": "j-3",
    "type": "content.upserted",
    "time": "2024-03-01T10:00:00+00:00",
    "content_key": "edX+DemoX",
    "content_type": "course",
}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD_BODY.items() if k != field}


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        (GOOD_BODY, b"edX+OtherX", "message key 'edX+OtherX' differs from the event's content_key"),
        (without("id"), None, "missing required field 'id'"),
        ({**GOOD_BODY, "id": ""}, None, "field 'id' must be a non-empty string"),
        (without("content_key"), None, "missing required field 'content_key'"),
        (without("type"), None, "missing required field 'type'"),
        (without("content_type"), None, "missing required field 'content_type'"),
        ({**GOOD_BODY, "type": "content.created"}, None, "unknown event type 'content.created'"),
        ({**GOOD_BODY, "content_type": "video"}, None, "unknown content_type 'video'"),
        ({**GOOD_BODY, "time": "last tuesday"}, None, "'time' 'last tuesday' is not an ISO 8601"),
        ({**GOOD_BODY, "time": 1709287200}, None, "'time' must be an ISO 8601 string"),
        ({**GOOD_BODY, "metadata": [1, 2]}, None, "'metadata' must be a JSON object"),
        ({**GOOD_BODY, "metadata": "{}"}, None, "'metadata' must be a JSON object"),
        (
            {**GOOD_BODY, "metadata": {**COURSE_RECORD, "key": "edX+OtherX"}},
            None,
            "metadata describes 'edX+OtherX', not the event's content_key 'edX+DemoX'",
        ),
        (
            {**GOOD_BODY, "metadata": {**COURSE_RECORD, "content_type": "program"}},
            None,
            "metadata content_type 'program' differs",
        ),
        (["not", "an", "object"], None, "JSON event is a list, expected an object"),
    ],
    ids=[
        "key-mismatch",
        "missing-id",
        "empty-id",
        "missing-content-key",
        "missing-type",
        "missing-content-type",
        "unknown-type",
        "unknown-content-type",
        "bad-time",
        "numeric-time",
        "list-metadata",
        "string-metadata",
        "metadata-for-other-key",
        "metadata-of-other-type",
        "not-an-object",
    ],
)
def test_bad_json_events(body: Any, key: bytes | None, fragment: str):
    assert_bad(raw(json.dumps(body).encode(), key=key), fragment)


def test_good_body_decodes():
    """The base of the parametrized cases above is itself valid."""
    assert [e.content_key for e in decode(raw(json.dumps(GOOD_BODY).encode(), key=b"edX+DemoX"))]


def test_undecodable_values():
    assert_bad(raw(b"\xff\xfe{not utf-8}"), "neither Confluent-framed Avro", "nor UTF-8 JSON")
    assert_bad(raw(b'{"id": "x",'), "value is not valid JSON")
    assert_bad(raw(b""), "empty message value")
    assert_bad(raw(None), "empty message value")
    key_not_utf8 = raw(json.dumps(GOOD_BODY).encode(), key=b"\xff")
    assert_bad(key_not_utf8, "message key is not UTF-8")
