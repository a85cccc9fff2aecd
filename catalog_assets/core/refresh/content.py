"""Step 2 of the bulk lane: diff a full read of the source against the store; insert, update
what changed, tombstone what the source confirms gone or the allow-lists exclude; store the
courses catalog queries force in; guarded against a source that lost data."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from catalog_assets.core.catalog_contents import (
    AllowLists,
    Excluded,
    as_course_document,
    forced_course_keys,
    marked_if_forced,
)
from catalog_assets.core.content import (
    ContentLookup,
    ContentRecord,
    ContentSnapshot,
    RejectedDocument,
    content_key_of,
    content_record,
)
from catalog_assets.core.filters import InvalidFilter, validate
from catalog_assets.core.refresh.common import (
    GuardrailTripped,
    Timer,
)
from catalog_assets.store import (
    CatalogStore,
    ContentWriteResult,
)


@dataclass
class ContentReport:
    source_records: int
    deferred_tombstones: int
    duplicate_keys: list[str]
    rejected: list[RejectedDocument]
    written: ContentWriteResult
    request_count: int
    still_present: list[str] = field(default_factory=list)
    incomplete_reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    excluded: list[Excluded] = field(default_factory=list)  # by the allow-lists
    forced: list[str] = field(default_factory=list)  # forced courses the source has
    forced_unlisted: list[str] = field(default_factory=list)  # ... that the read lacked
    forced_not_found: list[str] = field(default_factory=list)  # forced, the source has not


class CourseSource(Protocol):
    """Where forced courses come from when a full read does not list them."""

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of the course keys the source has; the others are absent."""
        ...


def forced_courses(stored_filters: Iterable[str], listing: Iterable[Any] = ()) -> list[str]:
    """The course keys that valid filters force in: those of the stored catalog queries (JSON
    text) and of a listing's filters, so that a refresh whose content step runs before its
    query step still fetches what the new listing forces. Invalid filters force nothing."""
    keys: list[str] = []
    for content_filter in [*map(json.loads, stored_filters), *listing]:
        try:
            validate(content_filter)
        except (InvalidFilter, RecursionError):
            continue
        keys += forced_course_keys(content_filter)
    return list(dict.fromkeys(keys))


def _with_forced(
    documents: Sequence[Mapping[str, Any]],
    forced: Collection[str],
    courses: CourseSource | None,
) -> tuple[list[Mapping[str, Any]], list[str], list[str]]:
    """The read's documents plus the forced courses it lacked (fetched by key), each forced
    course marked as enterprise-catalog marks it; and the forced keys the read lacked, and
    those the source does not have at all."""
    listed = {key for document in documents if isinstance(key := document.get("key"), str)}
    unlisted = [key for key in forced if key not in listed]
    fetched = courses.fetch_courses(unlisted) if unlisted and courses is not None else {}
    added = [as_course_document(key, fetched[key]) for key in unlisted if key in fetched]
    return (
        _forced_marked([*documents, *added], forced),
        [key for key in unlisted if key in fetched],
        [key for key in unlisted if key not in fetched],
    )


def _forced_marked(
    documents: Iterable[Mapping[str, Any]], forced: Collection[str]
) -> list[Mapping[str, Any]]:
    return [marked_if_forced(document, forced) for document in documents]


def _admitted(
    records: Iterable[ContentRecord], allow: AllowLists, excluded: list[Excluded]
) -> list[ContentRecord]:
    """The records the allow-lists admit; the others are added to ``excluded``."""
    admitted = []
    for record in records:
        found = allow.exclusion(record.metadata)
        if found is None:
            admitted.append(record)
        else:
            excluded.append(Excluded(record.content_key, *found))
    return admitted


def _records(
    documents: Sequence[Mapping[str, Any]], rejected: list[RejectedDocument]
) -> list[ContentRecord]:
    """The usable records among ``documents``; the others are added to ``rejected``."""
    records = []
    for document in documents:
        try:
            records.append(content_record(document))
        except ValueError as error:
            key = None
            with suppress(ValueError):  # a known key is present, just unusable: keep it
                key = content_key_of(document)
            rejected.append(RejectedDocument(str(error), key))
    return records


def refresh_content(
    snapshot: ContentSnapshot,
    store: CatalogStore,
    now: datetime,
    *,
    lookup: ContentLookup | None = None,
    courses: CourseSource | None = None,
    forced: Collection[str] = (),
    allow: AllowLists | None = None,
    max_tombstone_share: float = 0.2,
    confirm_mass_tombstone: bool = False,
    timer: Timer | None = None,
) -> ContentReport:
    """Bring ``content_metadata`` in line with a full read of the source.

    Records whose hash did not change are not written. A live key absent from the read is
    tombstoned only when ``lookup`` confirms the source no longer has it: a read of a search
    index that changes under it skips items without any sign (page boundaries shift), so
    absence alone proves nothing. Keys the lookup still finds are written from its answer.
    Without a ``lookup``, absent keys are tombstoned only when the read looked complete.
    Rejected documents are reported and their keys never tombstoned.

    The ``forced`` course keys (see ``forced_courses``) are fetched from ``courses`` when the
    read lacks them and stored marked as forced (``force_included``); a forced course the
    source no longer has is treated like any absent record. Records the allow-lists (``allow``,
    by default the store's) exclude are not stored, and tombstoned when they were live.

    If more than ``max_tombstone_share`` of the live content would be tombstoned for being
    absent or excluded (a source that lost data must not wipe the catalog),
    ``GuardrailTripped`` is raised before anything is asked or written, unless confirmed.
    """
    timer = timer or Timer()
    allow = allow if allow is not None else store.allow_lists
    forced = list(dict.fromkeys(forced))
    documents: Sequence[Mapping[str, Any]] = snapshot.documents
    unlisted: list[str] = []
    not_found: list[str] = []
    if forced:
        with timer.phase("forced"):
            documents, unlisted, not_found = _with_forced(documents, forced, courses)
    with timer.phase("diff"):
        rejected = list(snapshot.rejected)
        excluded: list[Excluded] = []
        records = _admitted(_records(documents, rejected), allow, excluded)
        state = store.content_state()
        source_keys = {r.content_key for r in records} | {
            r.content_key for r in [*rejected, *excluded] if r.content_key
        }
        live = [key for key, stored in state.items() if not stored.deleted]
        missing = sorted(key for key in live if key not in source_keys)
        live_excluded = sorted({e.content_key for e in excluded if e.content_key} & set(live))
    leaving = len(missing) + len(live_excluded)
    share = leaving / len(live) if live else 0.0
    if share > max_tombstone_share and not confirm_mass_tombstone:
        also = f", and the allow-lists exclude {len(live_excluded)}" if live_excluded else ""
        raise GuardrailTripped(
            f"refusing to tombstone {leaving} of {len(live)} live records "
            f"({share:.0%} > max_tombstone_share {max_tombstone_share:.0%}): the source returned "
            f"{len(records)} records{also}. If the content really was removed, re-run with run "
            "config confirm_mass_tombstone: true. Nothing was written."
        )
    still_present: list[str] = []
    if missing and lookup is not None:
        with timer.phase("confirm"):
            found = lookup.lookup_many({key: state[key].content_type for key in missing})
            answers = _forced_marked(found.values(), forced)
            found_excluded: list[Excluded] = []
            found_records = _admitted(_records(answers, rejected), allow, found_excluded)
            excluded += found_excluded
            live_excluded += [e.content_key for e in found_excluded if e.content_key in found]
            still_present = sorted(found)
            records += [r for r in found_records if r.content_key in found]
        gone = [key for key in missing if key not in found]
    else:
        gone = missing if snapshot.complete else []
    tombstones = gone + live_excluded
    upserts = [
        record
        for record in records
        if (stored := state.get(record.content_key)) is None
        or stored.deleted
        or stored.content_hash != record.content_hash
    ]
    with timer.phase("write"):
        written = store.apply_content_changes(
            upserts, tombstones, now, unchanged_since=snapshot.started_at
        )
    upsert_keys = {record.content_key for record in upserts}
    written.unchanged.extend(r.content_key for r in records if r.content_key not in upsert_keys)
    admitted_keys = {record.content_key for record in records}
    return ContentReport(
        source_records=len(records),
        deferred_tombstones=len(missing) - len(gone) - len(still_present),
        duplicate_keys=snapshot.duplicate_keys,
        rejected=rejected,
        written=written,
        request_count=snapshot.request_count,
        still_present=still_present,
        incomplete_reason=snapshot.incomplete_reason,
        timings=timer.seconds,
        excluded=excluded,
        forced=[key for key in forced if key in admitted_keys],
        forced_unlisted=unlisted,
        forced_not_found=not_found,
    )
