"""Content events from Kafka: the Open edX event bus (Confluent-framed Avro) and JSON."""

from catalog_assets.core.events.decoding import decode, parse_course_run_key
from catalog_assets.core.events.encoding import encode_json_event
from catalog_assets.core.events.messages import (
    CATALOG_INFO_CHANGED,
    SUPPORTED_OPENEDX_TYPES,
    BadEvent,
    ContentEvent,
    ContentType,
    EventFormat,
    EventType,
    RawMessage,
    SchemaRef,
    SchemaRegistryRefused,
    SchemaRegistryUnavailable,
    frame_confluent,
)
from catalog_assets.core.events.schemas import (
    RegistrySettings,
    SchemaRegistry,
    bundled_schema,
    schema_registry,
)

__all__ = [
    "CATALOG_INFO_CHANGED",
    "SUPPORTED_OPENEDX_TYPES",
    "BadEvent",
    "ContentEvent",
    "ContentType",
    "EventFormat",
    "EventType",
    "RawMessage",
    "RegistrySettings",
    "SchemaRef",
    "SchemaRegistry",
    "SchemaRegistryRefused",
    "SchemaRegistryUnavailable",
    "bundled_schema",
    "decode",
    "encode_json_event",
    "frame_confluent",
    "parse_course_run_key",
    "schema_registry",
]
