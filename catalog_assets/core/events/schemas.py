"""Avro writer schemas: the bundled Open edX schemas, and a Confluent schema registry client."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import fastavro
import requests

from catalog_assets.core.events.messages import (
    SUPPORTED_OPENEDX_TYPES,
    BadEvent,
    SchemaRegistryUnavailable,
)

_SCHEMA_NOT_FOUND = 40403  # the registry's error_code for an unknown schema id


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
