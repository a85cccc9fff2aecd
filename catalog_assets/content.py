"""One piece of catalog content (course, course run, program, pathway) as the store keeps it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class ContentRecord:
    """A `content_metadata` row before it is written: the document and what derives from it."""

    content_key: str
    content_type: str
    parent_content_key: str | None
    content_uuid: str | None
    metadata: dict
    source_modified: datetime | None
    content_hash: str


def canonical_json(value: Any) -> str:
    """JSON text that does not depend on key order: the text that is hashed and stored."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_hash(metadata: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of `metadata`."""
    return hashlib.sha256(canonical_json(metadata).encode("utf-8")).hexdigest()


def naive_utc(value: datetime | None) -> datetime | None:
    """`value` as naive UTC; a naive value is taken to be UTC already."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def utcnow() -> datetime:
    """Now, as naive UTC: how every timestamp in the store is kept."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_modified(value: object) -> datetime | None:
    """An ISO 8601 timestamp as naive UTC, or None when it is absent or cannot be parsed."""
    if isinstance(value, datetime):
        return naive_utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return naive_utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


def content_key_of(document: Mapping[str, Any]) -> str:
    """A search document's content key: its `key`, or its `uuid` when it has none (programs,
    pathways). Raises ValueError naming the document when it has neither."""
    key = document.get("key") or document.get("uuid")
    if not isinstance(key, str) or not key:
        raise ValueError(
            "content document has neither a key nor a uuid "
            f"(aggregation_key={document.get('aggregation_key')!r}, "
            f"title={document.get('title')!r})"
        )
    return key


def content_record(document: Mapping[str, Any]) -> ContentRecord:
    """The record for a course-discovery search document (possibly merged with its full record)."""
    aggregation_key = document.get("aggregation_key")
    prefix, colon, suffix = str(aggregation_key or "").partition(":")
    content_key = content_key_of(document)
    content_type = prefix if colon and prefix else document.get("content_type")
    if not content_type:
        raise ValueError(
            f"content document {content_key!r} has no content type "
            f"(aggregation_key={aggregation_key!r}, title={document.get('title')!r})"
        )
    parent = suffix if content_type == "courserun" and suffix else None
    # The round trip through canonical JSON copies the document and makes it exactly what is
    # stored and read back, so the hash describes the stored text.
    text = canonical_json(dict(document))
    uuid = document.get("uuid")
    return ContentRecord(
        content_key=content_key,
        content_type=str(content_type),
        parent_content_key=parent,
        content_uuid=str(uuid) if uuid else None,
        metadata=json.loads(text),
        source_modified=parse_modified(document.get("modified")),
        content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )
