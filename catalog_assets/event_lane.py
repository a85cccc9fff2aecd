"""The event lane's work, free of Dagster: apply content updates to the store, one key or many.

An update is the latest event for one content key (events within a sensor tick collapse into
one update per key). Applying it uses the bulk lane's store operations and stale-write guard:
take the full record from the event, or fetch it through the content source's single lookup;
upsert it, or tombstone it when the event is a deletion or the source no longer has it; then
evaluate every valid catalog query against what the store now holds for the key (in bulk, for
all keys of a batch at once) and replace that key's rows in ``catalog_query_content``.
Applying the same update twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from catalog_assets.content import content_record, parse_modified
from catalog_assets.filters import evaluate
from catalog_assets.refresh import RECORD_KEY
from catalog_assets.sources import ContentSource
from catalog_assets.store import CatalogStore


@dataclass(frozen=True)
class ContentUpdate:
    """What to do for one content key: the collapse of its events in one sensor tick."""

    content_key: str
    content_type: str | None = None
    deleted: bool = False
    time: datetime | None = None
    metadata: dict[str, Any] | None = None
    event_ids: tuple[str, ...] = ()
    also_fetch: bool = False  # a later event in the tick asked to fetch the current record

    def to_config(self) -> dict[str, Any]:
        """The run-config form (``ContentUpdateConfig``): JSON-friendly values only."""
        return {
            "content_key": self.content_key,
            "content_type": self.content_type or "",
            "deleted": self.deleted,
            "time": self.time.isoformat() if self.time else "",
            "metadata_json": json.dumps(self.metadata) if self.metadata is not None else "",
            "event_ids": list(self.event_ids),
            "also_fetch": self.also_fetch,
        }

    @classmethod
    def from_config(cls, config: Any) -> ContentUpdate:
        return cls(
            content_key=config.content_key,
            content_type=config.content_type or None,
            deleted=config.deleted,
            time=parse_modified(config.time) if config.time else None,
            metadata=json.loads(config.metadata_json) if config.metadata_json else None,
            event_ids=tuple(config.event_ids),
            also_fetch=config.also_fetch,
        )


@dataclass
class AppliedUpdate:
    """What happened to one key: ``outcome`` is inserted, updated, unchanged, stale,
    tombstoned, gone (already absent or deleted), or rejected (with ``error``)."""

    content_key: str
    outcome: str
    queries: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    error: str | None = None
    event_ids: tuple[str, ...] = ()


def guess_content_type(content_key: str, store: CatalogStore) -> list[str]:
    """Content types to try for a key that arrived without one (an operator's UI request)."""
    stored = store.get_content(content_key)
    if stored is not None:
        return [stored.content_type]
    if content_key.startswith("course-v1:"):
        return ["courserun"]
    if "+" in content_key:
        return ["course"]
    return ["program", "learnerpathway"]


def _fetch(update: ContentUpdate, source: ContentSource, store: CatalogStore) -> dict | None:
    types = (
        [update.content_type]
        if update.content_type
        else guess_content_type(update.content_key, store)
    )
    for content_type in types:
        found = source.lookup(update.content_key, content_type)
        if found is not None:
            return found
    return None


def _write(update: ContentUpdate, source: ContentSource, store: CatalogStore, now: datetime):
    """Write one update; a record given and a fetch asked for are both written, in that order,
    so the stale guard keeps whichever is newer."""
    if update.deleted:  # the event's time guards against an older record resurrecting it
        tombstoned = store.tombstone_content(update.content_key, now, update.time)
        return "tombstoned" if tombstoned else "gone"
    outcome = None
    if update.metadata is not None:
        outcome = _upsert(update.content_key, update.metadata, update.time, store, now)
    if update.metadata is None or update.also_fetch:
        fetched = _fetch(update, source, store)
        if fetched is not None:
            outcome = _upsert(update.content_key, fetched, update.time, store, now)
        elif outcome is None:
            # The source no longer has it. Record no time: a lagging index must not block the
            # record from coming back with the next full refresh.
            tombstoned = store.tombstone_content(update.content_key, now, None)
            outcome = "tombstoned" if tombstoned else "gone"
    return outcome


def _upsert(
    key: str,
    metadata: dict[str, Any],
    event_time: datetime | None,
    store: CatalogStore,
    now: datetime,
) -> str:
    record = content_record(metadata)
    if record.source_modified is None and event_time is not None:
        # A record without `modified` is as new as its event, not newer than everything.
        record = replace(record, source_modified=event_time)
    if record.content_key != key:
        raise ValueError(f"the record for {key!r} identifies itself as {record.content_key!r}")
    written = store.apply_content_changes([record], [], now)
    for outcome in ("inserted", "updated", "stale"):
        if getattr(written, outcome):
            return outcome
    return "unchanged"


def apply_updates(
    updates: Sequence[ContentUpdate], source: ContentSource, store: CatalogStore, now: datetime
) -> list[AppliedUpdate]:
    """Apply updates (one per content key) and re-evaluate every valid query for their keys."""
    applied: dict[str, AppliedUpdate] = {}
    for update in updates:
        try:
            outcome = _write(update, source, store, now)
            applied[update.content_key] = AppliedUpdate(
                update.content_key, outcome, event_ids=update.event_ids
            )
        except ValueError as error:
            applied[update.content_key] = AppliedUpdate(
                update.content_key, "rejected", error=str(error), event_ids=update.event_ids
            )
    queries = store.catalog_queries()
    filters = {q.uuid: json.loads(q.content_filter) for q in queries if q.is_valid}
    invalid = {q.uuid for q in queries if not q.is_valid}
    live = {}
    for key in applied:
        stored = store.get_content(key)
        if stored is not None and stored.deleted_at is None:
            live[key] = {**stored.metadata, RECORD_KEY: key}
    pairs = evaluate(filters, list(live.values()), key=RECORD_KEY).pairs
    queries_by_key: dict[str, list[str]] = {}
    for query_id, key in pairs.iter_rows():
        queries_by_key.setdefault(key, []).append(query_id)
    for key, result in applied.items():
        # Invalid queries keep their rows from their last valid evaluation, as in the bulk lane.
        kept = set(store.associations_of(key)) & invalid if invalid and key in live else set()
        result.queries = sorted({*queries_by_key.get(key, []), *kept})
        if result.outcome != "rejected":
            result.added, result.removed = store.replace_content_associations(
                key, result.queries, now
            )
    return list(applied.values())
