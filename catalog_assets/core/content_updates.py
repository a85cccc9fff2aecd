"""The event lane's work, free of Dagster: apply content updates to the store, one key or many.

An update is the latest event for one content key (events within a sensor tick collapse into
one update per key). Applying it uses the bulk lane's store operations and stale-write guard:
take the full record from the event, or fetch it through the content source's single lookup;
upsert it, or tombstone it when the event is a deletion or the source no longer has it; then
evaluate every valid catalog query against what the store now holds for the key (in bulk, for
all keys of a batch at once) and replace that key's rows in ``catalog_query_content``.
Applying the same update twice changes nothing. The catalog rules of
``core.catalog_contents`` (allow-lists, forced courses, declared links) apply in the same
transaction, as in the bulk lane.

Longer than most modules, on purpose: one batch is one transaction whose steps (plan, fetch,
write, the catalog rules, associations) share its plans and outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import polars as pl

from catalog_assets.core.catalog_contents import (
    AllowLists,
    Exclusion,
    declared_relations,
    forcing_queries,
    marked_if_forced,
)
from catalog_assets.core.content import (
    ContentRecord,
    content_record,
    content_type_of,
    parse_modified,
)
from catalog_assets.core.events.decoding import parse_course_run_key
from catalog_assets.core.filters import evaluate, holds
from catalog_assets.core.refresh import RECORD_KEY, UsableQuery, usable_queries
from catalog_assets.core.sources import ContentSource
from catalog_assets.store import CatalogStore, ContentWriteResult


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
    # Set (to the run's key) on a course refreshed because one of its runs was fetched: it is
    # upserted when the source has it and left alone when not, never tombstoned on a run's say.
    course_of: str | None = None

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
    EXCLUDED = "excluded"  # the allow-lists keep the record out: tombstoned if it was live


@dataclass
class AppliedUpdate:
    """What happened to one key: ``outcome`` is inserted, updated, unchanged, stale,
    tombstoned, gone (already absent or deleted), rejected (with ``error``), or excluded (with
    the allow-list's reason in ``error``)."""

    content_key: str
    outcome: Outcome
    queries: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    error: str | None = None
    event_ids: tuple[str, ...] = ()
    course_of: str | None = None  # a course refreshed for this fetched run


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


def _is_run(plan: _Plan) -> bool:
    update = plan.update
    if update.content_type:
        return update.content_type == "courserun"
    fetched_type = content_type_of(plan.fetched) if plan.fetched is not None else None
    return fetched_type == "courserun" or parse_course_run_key(update.content_key) is not None


def _courses_of_run(plan: _Plan, store: CatalogStore) -> list[str]:
    """The courses a fetched run concerns, first the one course-discovery files it under (its
    record's ``aggregation_key``, else its ``course`` field), then the one its key suggests and
    the one the store filed it under, when they differ: a run moved between courses changes
    both."""
    named = None
    if plan.fetched is not None:
        prefix, _, course = str(plan.fetched.get("aggregation_key") or "").partition(":")
        named = course if prefix == "courserun" and course else None
        if named is None and isinstance(plan.fetched.get("course"), str):
            named = plan.fetched["course"]
    parts = parse_course_run_key(plan.update.content_key)
    derived = f"{parts[0]}+{parts[1]}" if parts else None
    stored = store.get_content(plan.update.content_key)
    filed = stored.parent_content_key if stored is not None else None
    return [key for key in dict.fromkeys((named, derived, filed)) if key]


def _course_plans(
    plans: Sequence[_Plan], source: ContentSource, store: CatalogStore, taken: set[str]
) -> tuple[list[_Plan], dict[str, AppliedUpdate]]:
    """Plans refreshing the courses of the runs fetched in ``plans`` (those not updated in
    their own right): a course the source has is upserted; one it does not have is left as it
    is. A course whose document cannot be used comes back rejected."""
    wanted: dict[str, ContentUpdate] = {}
    for plan in plans:
        fetched = plan.fetched is not None or plan.fetch_found_nothing
        if plan.update.deleted or not fetched or not _is_run(plan):
            continue
        for course in _courses_of_run(plan, store):
            if course not in taken and course not in wanted:
                wanted[course] = ContentUpdate(
                    course,
                    "course",
                    event_ids=plan.update.event_ids,
                    course_of=plan.update.content_key,
                )
    if not wanted:
        return [], {}
    rejected: dict[str, AppliedUpdate] = {}
    try:
        found = source.lookup_many(dict.fromkeys(wanted, "course"))
    except ValueError:  # one unusable document: ask one course at a time to find it
        found = {}
        for key, update in wanted.items():
            try:
                record = source.lookup(key, "course")
            except ValueError as error:
                rejected[key] = _rejected(update, str(error))
                rejected[key].course_of = update.course_of
                continue
            if record is not None:
                found[key] = record
    return [_Plan(wanted[key], fetched=record) for key, record in found.items()], rejected


def _only_record_given(plan: _Plan) -> bool:
    """Whether writing the plan is only upserting the record its event gave."""
    update = plan.update
    return (
        not update.deleted
        and update.metadata is not None
        and plan.fetched is None
        and (not plan.fetch_found_nothing)
    )


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


def _record(key: str, metadata: dict[str, Any], event_time: datetime | None) -> ContentRecord:
    """The content record to write for ``key``; ValueError when it cannot be one."""
    record = content_record(metadata)
    if record.source_modified is None and event_time is not None:
        # A record without `modified` is as new as its event, not newer than everything.
        record = replace(record, source_modified=event_time)
    if record.content_key != key:
        raise ValueError(f"the record for {key!r} identifies itself as {record.content_key!r}")
    return record


def _upsert(
    key: str,
    metadata: dict[str, Any],
    event_time: datetime | None,
    store: CatalogStore,
    now: datetime,
) -> Outcome:
    written = store.apply_content_changes([_record(key, metadata, event_time)], [], now)
    for outcome in (Outcome.INSERTED, Outcome.UPDATED, Outcome.STALE):
        if getattr(written, outcome.value):
            return outcome
    return Outcome.UNCHANGED


def _write_records_given(
    plans: Sequence[_Plan], store: CatalogStore, now: datetime
) -> dict[str, Outcome | ValueError]:
    """Write the plans that only upsert the record their event gave, all in one statement
    (a burst's keys, one by one, cost a round of statements each): each key's outcome, or the
    ValueError that kept its record out (nothing written for that key)."""
    records, outcomes = [], {}
    for plan in plans:
        update = plan.update
        try:
            records.append(_record(update.content_key, update.metadata or {}, update.time))
        except ValueError as error:
            outcomes[update.content_key] = error
    written = store.apply_content_changes(records, [], now) if records else ContentWriteResult()
    for outcome in (Outcome.UNCHANGED, Outcome.STALE, Outcome.UPDATED, Outcome.INSERTED):
        outcomes.update(dict.fromkeys(getattr(written, outcome.value), outcome))
    return outcomes


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
        queries = store.catalog_queries()
        usable = usable_queries(queries)
        kept_uuids = {q.uuid for q in queries} - usable.keys()
        forcing = forcing_queries({uuid: query.content_filter for uuid, query in usable.items()})
        # Each key's queries before: a tombstone drops its pairs as it is written.
        before = {
            plan.update.content_key: set(store.associations_of(plan.update.content_key))
            for plan in plans
        }
        screened = [(plan.update, *_screened(plan, store.allow_lists, forcing)) for plan in plans]
        given = _write_records_given(
            [plan for _, plan, _ in screened if _only_record_given(plan)], store, now
        )
        for update, plan, exclusion in screened:
            try:
                outcome = given.get(update.content_key) or _write(plan, store, now)
                if isinstance(outcome, ValueError):
                    raise outcome
            except ValueError as error:  # raised before this key wrote anything
                applied[update.content_key] = _rejected(update, str(error))
                continue
            applied[update.content_key] = _excluded(
                AppliedUpdate(update.content_key, outcome, event_ids=update.event_ids), exclusion
            )
        live = {}
        for key in applied:
            stored = store.get_content(key)
            if stored is not None and stored.deleted_at is None:
                live[key] = {**stored.metadata, RECORD_KEY: key}
        queries_by_key = _matching_queries(usable, live)
        adds: list[tuple[str, str]] = []
        removes: list[tuple[str, str]] = []
        for key, result in applied.items():
            if result.outcome is Outcome.REJECTED:
                continue
            if key not in live:  # gone: a tombstone dropped its rows as it was written
                store.replace_content_associations(key, [], now)
                result.removed = len(before[key])
                continue
            # A live key's rows are still `before` (only tombstones touch them). Invalid queries
            # keep their rows from their last valid evaluation, as in the bulk lane.
            kept = before[key] & kept_uuids
            result.queries = sorted({*queries_by_key.get(key, []), *kept, *forcing.get(key, [])})
            wanted = set(result.queries)
            adds.extend((uuid, key) for uuid in wanted - before[key])
            removes.extend((uuid, key) for uuid in before[key] - wanted)
            result.added = len(wanted - before[key])
            result.removed = len(before[key] - wanted)
        # One bulk write for every key (a broad catalog adds thousands of rows per key).
        store.apply_association_diff(_pair_frame(adds), _pair_frame(removes), now)
        # Each written key's declared links, from what the store now holds (none once gone).
        written = [key for key, result in applied.items() if result.outcome != Outcome.REJECTED]
        relations = declared_relations({key: live[key] for key in written if key in live})
        store.replace_relations(relations, written)
    return applied


def _pair_frame(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        pairs, schema={"catalog_query_uuid": pl.String, "content_key": pl.String}, orient="row"
    )


REFERENCE_PAIRS_LIMIT = 50_000
"""Up to this many (filter, record) pairs, each pair is judged by the reference ``matches``
(about 10 µs a pair); more go to the bulk engine, whose fixed cost grows with the number of
filters (seconds for 5,000 filters, even over one record: docs/benchmarks.md)."""


def _matching_queries(
    usable: dict[str, UsableQuery], live: dict[str, dict[str, Any]]
) -> dict[str, list[str]]:
    """Each live key's matching queries. ``match_table`` always gives ``matches``' answer, so
    the cheaper of the two is used: the reference for a few keys (a trickle event), each filter
    parsed once, the bulk engine for a batch."""
    queries_by_key: dict[str, list[str]] = {}
    if len(usable) * len(live) <= REFERENCE_PAIRS_LIMIT:
        for key, record in live.items():
            found = [uuid for uuid, query in usable.items() if holds(query.parsed, record)]
            if found:
                queries_by_key[key] = found
        return queries_by_key
    filters = {uuid: query.content_filter for uuid, query in usable.items()}
    pairs = evaluate(filters, list(live.values()), key=RECORD_KEY).pairs
    for query_id, key in pairs.iter_rows():
        queries_by_key.setdefault(key, []).append(query_id)
    return queries_by_key


def _screened(
    plan: _Plan, allow: AllowLists, forcing: dict[str, list[str]]
) -> tuple[_Plan, tuple[Exclusion, str] | None]:
    """The plan under the catalog rules, as the bulk lane applies them: a forced course's
    records marked forced, and its deletion undated (so the next full refresh restores it if
    course-discovery still has it); a record the allow-lists exclude becomes a tombstone dated
    by that record (an older admitted record stays stale), with the reason."""
    update = plan.update
    if update.deleted:
        forced = update.content_key in forcing
        return (replace(plan, update=replace(update, time=None)) if forced else plan), None
    metadata, fetched = (
        marked_if_forced(r, forcing) if r is not None else None
        for r in (update.metadata, plan.fetched)
    )
    current = fetched if fetched is not None else metadata
    if current is None or (current.get("key") or current.get("uuid")) != update.content_key:
        return plan, None  # nothing to screen, or a record that `_upsert` rejects
    exclusion = allow.exclusion(current)
    if exclusion is not None:
        time = parse_modified(current.get("modified")) or update.time
        tombstone = replace(update, deleted=True, time=time, metadata=None, also_fetch=False)
        return replace(plan, update=tombstone, fetched=None, fetch_found_nothing=False), exclusion
    if metadata is not None and allow.exclusion(metadata) is not None:
        metadata = None  # an excluded event record must not be written before the fetched one
    return replace(plan, update=replace(update, metadata=metadata), fetched=fetched), None


def _excluded(result: AppliedUpdate, exclusion: tuple[Exclusion, str] | None) -> AppliedUpdate:
    """An excluded record's outcome says so (a stale one stays stale: nothing was written)."""
    if exclusion is None or result.outcome not in (Outcome.TOMBSTONED, Outcome.GONE):
        return result
    result.outcome, (reason, value) = Outcome.EXCLUDED, exclusion
    result.error = f"excluded by the allow-lists: {reason} {value}"
    return result


def apply_updates(
    updates: Sequence[ContentUpdate], source: ContentSource, store: CatalogStore, now: datetime
) -> list[AppliedUpdate]:
    """Apply updates (one per content key) and re-evaluate every valid query for their keys.

    A course run fetched from the source also refreshes its courses (``_courses_of_run``): the
    results include those, marked ``course_of`` the run.

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
    courses, unusable = _course_plans(plans, source, store, {u.content_key for u in updates})
    applied = _apply_plans([*plans, *courses], store, now)
    for plan in courses:
        if plan.update.content_key in applied:
            applied[plan.update.content_key].course_of = plan.update.course_of
    return [*applied.values(), *rejected.values(), *unusable.values()]


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
