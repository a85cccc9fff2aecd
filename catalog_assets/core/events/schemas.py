"""Avro writer schemas: the bundled Open edX schemas, and the Confluent schema registry.

The registry is confluent-kafka's ``SchemaRegistryClient`` (basic auth from an API key and
secret, an optional CA file for TLS), one per process and per settings (`schema_registry`), so
its schema cache outlives a sensor tick. Its answers are sorted by cause: an id the registry does
not know condemns the message (`BadEvent`, a dead letter); refused credentials, an outage or an
unexpected reply do not (`SchemaRegistryRefused`, `SchemaRegistryUnavailable`: retried). Every
message is redacted, and the credentials are registered with ``remember_secret``.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import fastavro

from catalog_assets.core.events.messages import (
    SUPPORTED_OPENEDX_TYPES,
    BadEvent,
    SchemaRef,
    SchemaRegistryRefused,
    SchemaRegistryUnavailable,
)
from catalog_assets.core.redaction import redact, redact_url, remember_secret

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

_SCHEMA_NOT_FOUND = 40403  # the registry's error_code for an unknown schema id
_SUBJECT_NOT_FOUND = 40401
_REFUSED = (401, 403)


@functools.cache
def bundled_schema(ce_type: str) -> dict[str, Any]:
    """The parsed bundled writer schema for an Open edX event type (KeyError when unsupported)."""
    return fastavro.parse_schema(json.loads(bundled_schema_text(ce_type)))


def bundled_schema_text(ce_type: str) -> str:
    """The bundled writer schema's JSON text, as an Open edX producer registers it."""
    name = SUPPORTED_OPENEDX_TYPES[ce_type]
    return resources.files("catalog_assets").joinpath("schemas", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class RegistrySettings:
    """Where the schema registry is and how to authenticate (``repr`` hides the secret)."""

    url: str
    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)
    ca_location: str = ""
    timeout_seconds: float = 10.0

    def client_config(self) -> dict[str, Any]:
        """``SchemaRegistryClient`` settings: few retries, so that a tick stays bounded."""
        config: dict[str, Any] = {
            "url": self.url.strip(),
            "timeout": self.timeout_seconds,
            "max.retries": 1,
            "retries.wait.ms": 200,
            "retries.max.wait.ms": 1000,
        }
        if self.api_key or self.api_secret:
            config["basic.auth.user.info"] = f"{self.api_key}:{self.api_secret}"
        if self.ca_location:
            config["ssl.ca.location"] = self.ca_location
        return config

    @property
    def where(self) -> str:
        """The registry's URL, safe to print."""
        return redact_url(self.url.strip())


def url_has_credentials(url: str) -> bool:
    """True when a registry URL carries ``user:password@``: credentials belong in their own
    (secret) settings, where they are never printed."""
    try:
        parts = urlsplit(url.strip())
        return parts.password is not None or bool(parts.username)
    except ValueError:
        return False


class SchemaRegistry:
    """Writer schemas by id or GUID from a Confluent schema registry, parsed once each."""

    def __init__(self, settings: RegistrySettings) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        remember_secret(settings.api_key, settings.api_secret)
        self.settings = settings
        self._client: SchemaRegistryClient = SchemaRegistryClient(settings.client_config())
        self._parsed: dict[SchemaRef, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> SchemaRegistryClient:
        return self._client

    def schema(self, ref: SchemaRef | int) -> dict[str, Any]:
        """The parsed (fastavro) writer schema ``ref`` names."""
        if isinstance(ref, int):
            ref = SchemaRef(schema_id=ref)
        with self._lock:
            cached = self._parsed.get(ref)
        if cached is not None:
            return cached
        fetched = self.call(
            f"fetching {ref}",
            lambda: (
                self._client.get_schema_by_guid(ref.guid)
                if ref.guid is not None
                else self._client.get_schema(ref.schema_id)
            ),
            not_found=lambda: BadEvent(f"{ref} is not registered in the schema registry"),
        )
        schema_type = fetched.schema_type or "AVRO"
        if schema_type != "AVRO":
            raise BadEvent(f"{ref} is a {schema_type} schema, not Avro")
        try:
            parsed = fastavro.parse_schema(json.loads(fetched.schema_str))
        except Exception as error:
            raise BadEvent(
                f"{ref} from the schema registry is not a valid Avro schema: "
                f"{type(error).__name__}: {redact(error)}"
            ) from error
        with self._lock:
            self._parsed[ref] = parsed
        return parsed

    def register(self, subject: str, schema_text: str) -> int:
        """Register an Avro schema under ``subject`` (idempotent); its id."""
        from confluent_kafka.schema_registry import Schema

        return self.call(
            f"registering subject {subject!r}",
            lambda: self._client.register_schema(subject, Schema(schema_text, "AVRO")),
        )

    def call(self, what: str, call: Any, not_found: Any = None) -> Any:
        """``call()`` (anything that talks to the registry: this client's methods, a serializer
        built on it), its failures turned into the errors named by their cause."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        where = f"the schema registry at {self.settings.where}"
        try:
            return call()
        except SchemaRegistryError as error:
            status, code = error.http_status_code, error.error_code
            text = redact(error.error_message)[:200]
            if status in _REFUSED:
                raise SchemaRegistryRefused(
                    f"{where} refused the credentials {what} (HTTP {status}): check "
                    "KAFKA_SCHEMA_REGISTRY_API_KEY and KAFKA_SCHEMA_REGISTRY_API_SECRET"
                ) from None
            # Only the registry's own "not found" condemns a message; any other 404 (a wrong
            # URL, a proxy page) would dead-letter every message, so it is retried instead.
            if status == 404 and code in (_SCHEMA_NOT_FOUND, _SUBJECT_NOT_FOUND) and not_found:
                raise not_found() from None
            raise SchemaRegistryUnavailable(
                f"{where} answered HTTP {status} (error code {code}) {what}: {text!r}"
            ) from None
        except (BadEvent, SchemaRegistryUnavailable):
            raise
        except Exception as error:  # the HTTP client's transport errors: refused, timeout, TLS
            raise SchemaRegistryUnavailable(
                f"{where} unreachable {what}: {type(error).__name__}: {redact(error)}"
            ) from None


_registries: dict[RegistrySettings, SchemaRegistry] = {}
_registries_lock = threading.Lock()


def schema_registry(settings: RegistrySettings) -> SchemaRegistry:
    """The process's registry client for ``settings``: one per process, so that its caches
    (schemas by id, connections) serve every tick and run."""
    remember_secret(settings.api_key, settings.api_secret)
    with _registries_lock:
        registry = _registries.get(settings)
        if registry is None:
            registry = _registries[settings] = SchemaRegistry(settings)
        return registry
