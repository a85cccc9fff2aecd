"""One piece of catalog content (course, course run, program, pathway) as the store keeps it."""

from __future__ import annotations

import hashlib
import json
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

MAX_DOCUMENT_DEPTH = 64
"""How deeply a content document may nest (objects and arrays). Real course-discovery records
nest about six levels; anything near Python's recursion limit would break hashing and matching."""


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


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel = 3


def _brief(value: object) -> str:
    """``repr(value)`` cut short, in length and depth (a plain repr of a document nested
    thousands deep raises RecursionError): messages name documents without quoting them."""
    return _SHORT.repr(value)


def _text_problem(value: object) -> str | None:
    """Why ``value`` cannot be stored as a key column (content key, uuid, type), or None."""
    if not isinstance(value, str) or not value:
        return f"is {_brief(value)}, not a non-empty string"
    if "\x00" in value:
        return f"{_brief(value)} contains a NUL character, which PostgreSQL cannot store"
    return None


def document_depth(value: Any, limit: int = MAX_DOCUMENT_DEPTH) -> int:
    """How deeply ``value`` nests objects and arrays (a flat object is 1, a scalar 0), counted
    up to ``limit + 1``. Iterative: a document deep enough to matter would overflow a recursive
    walk (and Python's own ``json``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, Mapping | list | tuple):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        children = item.values() if isinstance(item, Mapping) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, Mapping | list | tuple))
    return deepest


def document_identity(document: Mapping[str, Any]) -> str:
    """How messages name a document without quoting it: its aggregation_key and title."""
    return (
        f"aggregation_key={_brief(document.get('aggregation_key'))}, "
        f"title={_brief(document.get('title'))}"
    )


def screen_document(document: Mapping[str, Any], where: str) -> RejectedDocument | None:
    """Why a source's ``document`` cannot be stored, or None when it can (then it has a
    content key). ``where`` says where the source had it; the rejection keeps the key when
    the document has a usable one, so that the item is never tombstoned for being absent."""
    try:
        key = content_key_of(document)
    except ValueError as error:
        return RejectedDocument(f"{error}: {where}")
    if document_depth(document) > MAX_DOCUMENT_DEPTH:
        return RejectedDocument(
            f"content document {key!r} nests deeper than {MAX_DOCUMENT_DEPTH} levels: {where} "
            f"({document_identity(document)})",
            key,
        )
    return None


def content_key_of(document: Mapping[str, Any]) -> str:
    """A search document's content key: its `key`, or its `uuid` when it has none (programs,
    pathways). Raises ValueError naming the document when it has neither, or when the one it
    has is not a non-empty string or holds a NUL character (PostgreSQL cannot store it)."""
    if not isinstance(document, Mapping):
        raise ValueError(f"a content document is a JSON object, not {type(document).__name__}")
    for name in ("key", "uuid"):
        value = document.get(name)
        if value is None or value == "":
            continue
        if problem := _text_problem(value):
            where = document_identity(document)
            raise ValueError(f"content document {name} {problem} ({where})")
        return value
    raise ValueError(
        f"content document has neither a key nor a uuid ({document_identity(document)})"
    )


def content_type_of(document: Mapping[str, Any]) -> Any:
    """A document's content type: its ``aggregation_key`` prefix (``course:KEY``), else its
    ``content_type`` field (not necessarily a string: ``content_record`` checks)."""
    aggregation_key = document.get("aggregation_key")
    if not isinstance(aggregation_key, str):  # only a "type:key" string says anything
        aggregation_key = ""
    prefix, colon, _ = aggregation_key.partition(":")
    return prefix if colon and prefix else document.get("content_type")


def content_record(document: Mapping[str, Any]) -> ContentRecord:
    """The record for a course-discovery search document (possibly merged with its full record).

    Raises ValueError, naming the document and the reason, for a document that cannot be stored
    and matched: no usable key, a uuid or type that is not a storable string, nesting deeper
    than ``MAX_DOCUMENT_DEPTH``, values that are not JSON."""
    content_key = content_key_of(document)
    if document_depth(document) > MAX_DOCUMENT_DEPTH:
        raise ValueError(
            f"content document {content_key!r} nests objects and arrays more than "
            f"{MAX_DOCUMENT_DEPTH} levels deep"
        )
    aggregation_key = document.get("aggregation_key")
    if not isinstance(aggregation_key, str):  # only a "type:key" string says anything
        aggregation_key = ""
    suffix = aggregation_key.partition(":")[2]
    content_type = content_type_of(document)
    if not content_type:
        raise ValueError(
            f"content document {content_key!r} has no content type ({document_identity(document)})"
        )
    parent = suffix if content_type == "courserun" and suffix else None
    uuid = document.get("uuid")
    uuid = None if uuid == "" else uuid
    for name, value in (("uuid", uuid), ("content type", content_type), ("parent", parent)):
        if value is not None and (problem := _text_problem(value)):
            raise ValueError(f"content document {content_key!r}: its {name} {problem}")
    # The round trip through canonical JSON copies the document and makes it exactly what is
    # stored and read back, so the hash describes the stored text.
    try:
        text = canonical_json(dict(document))
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    except (TypeError, ValueError) as error:  # a set, NaN, a lone surrogate: not storable JSON
        raise ValueError(f"content document {content_key!r} is not valid JSON: {error}") from None
    return ContentRecord(
        content_key=content_key,
        content_type=content_type,
        parent_content_key=parent,
        content_uuid=uuid,
        metadata=json.loads(text),
        source_modified=parse_modified(document.get("modified")),
        content_hash=digest,
    )


# --- A full read of a source ---------------------------------------------------------------


@dataclass(frozen=True)
class RejectedDocument:
    """A document the source returned that cannot be stored: why, and its key when it has one
    (a rejected key is never tombstoned for being absent)."""

    reason: str
    content_key: str | None = None


@dataclass(frozen=True)
class ContentSnapshot:
    """All content of a source at one moment: documents deduplicated by content key.

    ``complete`` is False when the read showed signs of a source that shifted under it (repeated
    items, a count that does not add up); ``incomplete_reason`` says which. Absent keys are
    tombstoned only when the source confirms them gone (``ContentLookup.lookup_many``), so an
    incomplete read never tombstones live content. ``rejected`` lists documents that could not
    be used, each with its reason. ``started_at`` (naive UTC) is when the read began.
    """

    documents: list[dict[str, Any]]
    duplicate_keys: list[str] = field(default_factory=list)
    request_count: int = 0
    complete: bool = True
    started_at: datetime | None = None
    rejected: list[RejectedDocument] = field(default_factory=list)
    incomplete_reason: str | None = None


class ContentLookup(Protocol):
    """What the bulk lane asks a source before it tombstones: which of these keys still exist."""

    def lookup_many(self, keys: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """``{content_key: content_type}`` in; the current record of each key the source still
        has out. A key missing from the answer is confirmed gone. Raises rather than answer
        partially."""
        ...
