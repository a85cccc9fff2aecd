"""Decoding content events from Kafka messages: Open edX event bus (Avro) and JSON."""

from __future__ import annotations

import io
import json
import socket
import uuid
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
    RegistrySettings,
    SchemaRegistry,
    SchemaRegistryRefused,
    SchemaRegistryUnavailable,
    decode,
    encode_json_event,
    frame_confluent,
)
from catalog_assets.devtools.encoders import (
    catalog_info_changed_message,
    encode_openedx_catalog_info_changed,
    full_topic,
)
from catalog_assets_tests.support.schema_registry import LocalSchemaRegistry, make_tls_files

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


def test_avro_round_trip_yields_the_run():
    """The run only: its course is refreshed when the run's record is fetched (from the course
    that record names), never derived from the run key here."""
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

    (event,) = decode(raw(value, headers))

    assert (event.content_key, event.content_type) == (RUN_KEY, "courserun")
    assert event.event_id == "evt-1"
    assert event.event_type == "content.upserted"
    assert event.time == datetime(2024, 5, 1, 12, 30, 15)  # naive UTC
    assert event.metadata is None
    assert event.source == "openedx"
    assert (event.topic, event.partition, event.offset) == (TOPIC, PARTITION, OFFSET)


def test_the_event_bus_wire_format_key_value_and_headers():
    """What edx-event-bus-kafka sends: an Avro string key and an Avro value, each framed with
    its schema id, and the CloudEvent headers in its order."""
    message = catalog_info_changed_message(
        RUN_KEY, topic="dev-course-catalog-info-changed", event_id="evt-w"
    )
    assert message.topic == "dev-course-catalog-info-changed"
    assert message.key[:5] == b"\x00\x00\x00\x00\x01"  # magic byte, key schema id 1
    assert fastavro.schemaless_reader(io.BytesIO(message.key[5:]), "string", None) == RUN_KEY
    assert message.value[:5] == b"\x00\x00\x00\x00\x02"
    assert [name for name, _ in message.headers] == [
        "ce_specversion",
        "content-type",
        "ce_datacontenttype",
        "ce_type",
        "ce_id",
        "ce_source",
        "ce_time",
        "ce_minorversion",
        "sourcehost",
        "sourcelib",
    ]
    values = dict(message.headers)
    assert values["ce_specversion"] == b"1.0" and values["ce_minorversion"] == b"0"
    assert values["ce_source"] == b"openedx/cms/web"
    assert datetime.fromisoformat(values["ce_time"].decode()).utcoffset() == timedelta(0)
    (event,) = decode(raw(message.value, message.headers, key=message.key))
    assert (event.content_key, event.event_id) == (RUN_KEY, "evt-w")
    assert full_topic("course-catalog-info-changed", "dev") == "dev-course-catalog-info-changed"
    assert full_topic("course-catalog-info-changed") == "course-catalog-info-changed"


@pytest.mark.parametrize(
    "key", [None, b"", b"\xff\xfe", b"\x00\x00\x00\x00\x01\x02ab", b"edX+SomethingElse"]
)
def test_decoding_never_depends_on_the_key(key):
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, event_id="evt-k")
    assert [e.content_key for e in decode(raw(value, headers, key=key))] == [RUN_KEY]
    assert [e.content_key for e in decode(raw(json.dumps(GOOD_BODY).encode(), key=key))] == [
        "edX+DemoX"
    ]


def test_a_schema_guid_frame_and_the_schema_id_header_decode():
    """Confluent's newer framings: magic byte 1 and a 16-byte GUID in the value, or the GUID
    in the ``__value_schema_id`` header with a bare Avro value."""
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, event_id="evt-g")
    guid = uuid.uuid4()
    guid_framed = b"\x01" + guid.bytes + value[5:]
    assert [e.content_key for e in decode(raw(guid_framed, headers))] == [RUN_KEY]
    in_header = [*headers, ("__value_schema_id", b"\x01" + guid.bytes)]
    assert [e.content_key for e in decode(raw(value[5:], in_header))] == [RUN_KEY]
    assert_bad(raw(value[5:], [*headers, ("__value_schema_id", b"\x07")]), "__value_schema_id")


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
    assert [e.content_key for e in decode(converted)] == [RUN_KEY]

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


CREDENTIALS = ("registry-key-7781", "registry-secret-d41c9e")


@pytest.fixture
def registry_server():
    with LocalSchemaRegistry(credentials=CREDENTIALS) as server:
        yield server


def client_for(server: LocalSchemaRegistry, key: str = "", secret: str = "") -> SchemaRegistry:
    return SchemaRegistry(RegistrySettings(server.url, key, secret, timeout_seconds=5))


def test_registry_writer_schema_is_used_and_cached(registry_server):
    schema_id = registry_server.add(json.dumps(evolved_writer_schema()))
    registry = client_for(registry_server, *CREDENTIALS)
    first = evolved_message("course-v1:MITx+6.00x+1T2024", schema_id, "evt-a")
    second = evolved_message("course-v1:HarvardX+CS50+2024", schema_id, "evt-b")

    assert [(e.content_key, e.event_id) for e in decode(first, registry)] == [
        ("course-v1:MITx+6.00x+1T2024", "evt-a")
    ]
    assert [e.content_key for e in decode(second, registry)] == ["course-v1:HarvardX+CS50+2024"]
    assert registry_server.requests == [("GET", f"/schemas/ids/{schema_id}", CREDENTIALS[0])]
    # Without the registry the bundled schema is used, and it does not fit these bytes.
    assert_bad(first, "schema mismatch", "bundled")


def test_registry_by_guid(registry_server):
    schema_id = registry_server.add(json.dumps(evolved_writer_schema()))
    framed = evolved_message(RUN_KEY, schema_id, "evt-guid")
    guid = uuid.UUID(registry_server.guid_of(schema_id))
    by_guid = RawMessage(
        TOPIC, PARTITION, OFFSET, None, b"\x01" + guid.bytes + framed.value[5:], framed.headers
    )
    registry = client_for(registry_server, *CREDENTIALS)
    assert [e.content_key for e in decode(by_guid, registry)] == [RUN_KEY]
    assert registry_server.requests[-1][1] == f"/schemas/guids/{guid}"


def test_registry_unknown_id_is_a_bad_event(registry_server):
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, schema_id=99)
    registry = client_for(registry_server, *CREDENTIALS)
    assert_bad(raw(value, headers), "schema id 99 is not registered", registry=registry)


def test_refused_credentials_are_retried_not_dead_lettered(registry_server):
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, schema_id=1)
    for key, secret in (("", ""), (CREDENTIALS[0], "wrong-secret-5521")):
        with pytest.raises(SchemaRegistryRefused, match="refused the credentials") as caught:
            decode(raw(value, headers), client_for(registry_server, key, secret))
        assert isinstance(caught.value, SchemaRegistryUnavailable)
        assert not isinstance(caught.value, BadEvent)
        assert "wrong-secret-5521" not in str(caught.value)


def test_registry_unavailable_is_not_a_bad_event(registry_server):
    registry = client_for(registry_server, *CREDENTIALS)
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY, schema_id=7)
    registry_server.fail_next(503, times=2)  # the client retries once
    with pytest.raises(SchemaRegistryUnavailable, match="HTTP 503") as caught:
        decode(raw(value, headers), registry)
    assert not isinstance(caught.value, BadEvent)
    # A 404 that is not the registry's "schema not found" (wrong URL, proxy page) is retried,
    # not dead-lettered.
    wrong_path = SchemaRegistry(RegistrySettings(registry_server.url + "/nope", *CREDENTIALS))
    with pytest.raises(SchemaRegistryUnavailable, match="HTTP 404"):
        decode(raw(value, headers), wrong_path)


def test_a_registry_over_tls_is_trusted_through_its_ca_file(tmp_path):
    tls = make_tls_files(tmp_path)
    with LocalSchemaRegistry(credentials=CREDENTIALS, tls=tls) as server:
        schema_id = server.add(json.dumps(evolved_writer_schema()))
        message = evolved_message(RUN_KEY, schema_id, "evt-tls")
        untrusted = SchemaRegistry(RegistrySettings(server.url, *CREDENTIALS, timeout_seconds=5))
        with pytest.raises(SchemaRegistryUnavailable, match="unreachable"):
            decode(message, untrusted)
        trusted = SchemaRegistry(
            RegistrySettings(server.url, *CREDENTIALS, ca_location=tls.ca, timeout_seconds=5)
        )
        assert [e.content_key for e in decode(message, trusted)] == [RUN_KEY]


def test_registry_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = SchemaRegistry(
        RegistrySettings(f"http://127.0.0.1:{port}", "k-0001", "s-0002", timeout_seconds=2)
    )
    value, headers = encode_openedx_catalog_info_changed(RUN_KEY)
    with pytest.raises(SchemaRegistryUnavailable, match="unreachable"):
        decode(raw(value, headers), registry)


def test_one_registry_client_per_process_and_settings():
    settings = RegistrySettings("http://127.0.0.1:1", "key-aaaa", "secret-bbbb")
    assert events.schema_registry(settings) is events.schema_registry(settings)
    other = RegistrySettings("http://127.0.0.1:1", "key-aaaa", "secret-cccc")
    assert events.schema_registry(other) is not events.schema_registry(settings)
    assert "secret-bbbb" not in repr(settings)


def test_publishing_through_the_registry_registers_as_event_bus_kafka_does(registry_server):
    """Subjects by ``topic_record_subject_name_strategy``; the key schema is the key field's
    sub-schema (whose record name confluent-kafka takes to be ``string``)."""
    registry = client_for(registry_server, *CREDENTIALS)
    topic = "dev-course-catalog-info-changed"
    message = catalog_info_changed_message(RUN_KEY, topic=topic, registry=registry)
    subjects = registry_server.subjects()
    assert subjects == {
        f"{topic}-string": subjects[f"{topic}-string"],
        f"{topic}-{CATALOG_INFO_CHANGED}.CloudEvent": subjects[
            f"{topic}-{CATALOG_INFO_CHANGED}.CloudEvent"
        ],
    }
    key_id = int.from_bytes(message.key[1:5], "big")
    value_id = int.from_bytes(message.value[1:5], "big")
    assert (key_id, value_id) == (
        subjects[f"{topic}-string"],
        subjects[f"{topic}-{CATALOG_INFO_CHANGED}.CloudEvent"],
    )
    (event,) = decode(raw(message.value, message.headers, key=message.key), registry)
    assert event.content_key == RUN_KEY


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
