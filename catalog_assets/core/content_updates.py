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
from enum import StrEnum
from typing import Any

from catalog_assets.core.content import content_record, parse_modified
from catalog_assets.core.filters import evaluate
from catalog_assets.core.refresh import RECORD_KEY, usable_filters
from catalog_assets.core.sources import ContentSource
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
    # The record is too large for run config: the store keeps it under this ref (its sha256)
    # until the run applies it; `metadata` is None until the run reads it back.
    metadata_ref: str | None = None
    # Where the latest event came from, so that a rejected update's dead letter points at it.
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def to_config(self) -> dict[str, Any]:
        """The run-config form (``ContentUpdateConfig``): JSON-friendly values only."""
        return {
            "content_key": self.content_key,
            "content_type": str(self.content_type or ""),
            "deleted": self.deleted,
            "time": self.time.isoformat() if self.time else "",
            "metadata_json": json.dumps(self.metadata) if self.metadata is not None else "",
            "metadata_ref": self.metadata_ref or "",
            "event_ids": list(self.event_ids),
            "also_fetch": self.also_fetch,
            "topic": self.topic or "",
            "partition": self.partition,
            "offset": self.offset,
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
            metadata_ref=config.metadata_ref or None,
            topic=config.topic or None,
            partition=config.partition,
            offset=config.offset,
        )


class Outcome(StrEnum):
    """What applying an update did to its key."""

    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"  # the store holds a newer record: nothing written
    TOMBSTONED = "tombstoned"
    GONE = "gone"  # already absent or deleted
    REJECTED = "rejected"  # nothing written; the update becomes a dead letter


@dataclass
class AppliedUpdate:
    """What happened to one key: ``outcome`` is inserted, updated, unchanged, stale,
    tombstoned, gone (already absent or deleted), or rejected (with ``error``)."""

    content_key: str
    outcome: Outcome
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


@dataclass(frozen=True)
class _Plan:
    """One update with what the source said of it, fetched before any write (no network call
    happens inside the write transaction)."""

    update: ContentUpdate
    fetched: dict[str, Any] | None = None
    fetch_found_nothing: bool = False


def _plan(update: ContentUpdate, source: ContentSource, store: CatalogStore) -> _Plan:
    if update.deleted or (update.metadata is not None and not update.also_fetch):
        return _Plan(update)
    fetched = _fetch(update, source, store)
    return _Plan(update, fetched, fetch_found_nothing=fetched is None)


def _write(plan: _Plan, store: CatalogStore, now: datetime) -> Outcome:
    """Write one update; a record given and a record fetched are both written, in that order,
    so the stale guard keeps whichever is newer."""
    update = plan.update
    if update.deleted:  # the event's time guards against an older record resurrecting it
        if store.tombstone_content(update.content_key, now, update.time):
            return Outcome.TOMBSTONED
        stored = store.get_content(update.content_key)
        live = stored is not None and stored.deleted_at is None
        return Outcome.STALE if live else Outcome.GONE  # live: the deletion is older
    outcome = None
    if update.metadata is not None:
        outcome = _upsert(update.content_key, update.metadata, update.time, store, now)
    if plan.fetched is not None:
        outcome = _upsert(update.content_key, plan.fetched, update.time, store, now)
    elif outcome is None:
        # The source no longer has it. Record no time: a lagging index must not block the
        # record from coming back with the next full refresh.
        tombstoned = store.tombstone_content(update.content_key, now, None)
        outcome = Outcome.TOMBSTONED if tombstoned else Outcome.GONE
    return outcome


def _upsert(
    key: str,
    metadata: dict[str, Any],
    event_time: datetime | None,
    store: CatalogStore,
    now: datetime,
) -> Outcome:
    record = content_record(metadata)
    if record.source_modified is None and event_time is not None:
        # A record without `modified` is as new as its event, not newer than everything.
        record = replace(record, source_modified=event_time)
    if record.content_key != key:
        raise ValueError(f"the record for {key!r} identifies itself as {record.content_key!r}")
    written = store.apply_content_changes([record], [], now)
    for outcome in (Outcome.INSERTED, Outcome.UPDATED, Outcome.STALE):
        if getattr(written, outcome.value):
            return outcome
    return Outcome.UNCHANGED


def _rejected(update: ContentUpdate, error: str) -> AppliedUpdate:
    return AppliedUpdate(
        update.content_key, Outcome.REJECTED, error=error, event_ids=update.event_ids
    )


def _apply_together(
    plans: Sequence[_Plan], store: CatalogStore, now: datetime
) -> dict[str, AppliedUpdate]:
    """Write the plans' content and their keys' associations in one transaction, serialised
    with the full refresh's association step. Raises (and writes nothing) when the
    associations cannot be computed."""
    applied: dict[str, AppliedUpdate] = {}
    with store.transaction():
        store.lock_writers()
        # Each key's queries before: a tombstone drops its pairs as it is written.
        before = {
            plan.update.content_key: set(store.associations_of(plan.update.content_key))
            for plan in plans
        }
        for plan in plans:
            update = plan.update
            try:
                outcome = _write(plan, store, now)
            except ValueError as error:  # raised before this key wrote anything
                applied[update.content_key] = _rejected(update, str(error))
                continue
            applied[update.content_key] = AppliedUpdate(
                update.content_key, outcome, event_ids=update.event_ids
            )
        queries = store.catalog_queries()
        valid, filters = usable_filters(queries)
        kept_uuids = {q.uuid for q in queries} - valid.keys()
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
            if result.outcome is Outcome.REJECTED:
                continue
            # Invalid queries keep their rows from their last valid evaluation, as in the bulk
            # lane.
            kept = set(store.associations_of(key)) & kept_uuids if key in live else set()
            result.queries = sorted({*queries_by_key.get(key, []), *kept})
            store.replace_content_associations(key, result.queries, now)
            result.added = len(set(result.queries) - before[key])
            result.removed = len(before[key] - set(result.queries))
    return applied


def apply_updates(
    updates: Sequence[ContentUpdate], source: ContentSource, store: CatalogStore, now: datetime
) -> list[AppliedUpdate]:
    """Apply updates (one per content key) and re-evaluate every valid query for their keys.

    A key's record and its associations are written in one transaction: no reader ever sees
    new content with old catalog memberships. When a key's associations cannot be computed,
    nothing is written for it and it comes back ``rejected`` (its events become dead letters).
    """
    rejected: dict[str, AppliedUpdate] = {}
    plans = []
    for update in updates:
        try:
            plans.append(_plan(update, source, store))
        except ValueError as error:
            rejected[update.content_key] = _rejected(update, str(error))
    return [*_apply_plans(plans, store, now).values(), *rejected.values()]


def _apply_plans(
    plans: Sequence[_Plan], store: CatalogStore, now: datetime
) -> dict[str, AppliedUpdate]:
    try:
        return _apply_together(plans, store, now)
    except (ValueError, RecursionError) as error:
        if len(plans) == 1:
            reason = f"associations could not be computed: {type(error).__name__}: {error}"
            return {plans[0].update.content_key: _rejected(plans[0].update, reason)}
    applied: dict[str, AppliedUpdate] = {}
    for plan in plans:  # find the keys that fail, one transaction each; the others apply
        applied.update(_apply_plans([plan], store, now))
    return applied
