"""Step 2 of the bulk lane: diff a full read of the source against the store; insert, update
what changed, tombstone what the source confirms gone; guarded against a source that lost data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from catalog_assets.core.content import (
    ContentLookup,
    ContentRecord,
    ContentSnapshot,
    RejectedDocument,
    content_key_of,
    content_record,
)
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

    If more than ``max_tombstone_share`` of the live content is absent (a source that lost
    data must not wipe the catalog), ``GuardrailTripped`` is raised before anything is asked
    or written, unless confirmed.
    """
    timer = timer or Timer()
    with timer.phase("diff"):
        rejected = list(snapshot.rejected)
        records = _records(snapshot.documents, rejected)
        state = store.content_state()
        source_keys = {r.content_key for r in records} | {
            r.content_key for r in rejected if r.content_key
        }
        live = [key for key, stored in state.items() if not stored.deleted]
        missing = sorted(key for key in live if key not in source_keys)
    share = len(missing) / len(live) if live else 0.0
    if share > max_tombstone_share and not confirm_mass_tombstone:
        raise GuardrailTripped(
            f"refusing to tombstone {len(missing)} of {len(live)} live records "
            f"({share:.0%} > max_tombstone_share {max_tombstone_share:.0%}): the source returned "
            f"{len(records)} records. If the content really was removed, re-run with run config "
            "confirm_mass_tombstone: true. Nothing was written."
        )
    still_present: list[str] = []
    if missing and lookup is not None:
        with timer.phase("confirm"):
            found = lookup.lookup_many({key: state[key].content_type for key in missing})
            found_records = _records(list(found.values()), rejected)
            still_present = sorted(found)
            records += [r for r in found_records if r.content_key in found]
        tombstones = [key for key in missing if key not in found]
    else:
        tombstones = missing if snapshot.complete else []
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
    return ContentReport(
        source_records=len(records),
        deferred_tombstones=len(missing) - len(tombstones) - len(still_present),
        duplicate_keys=snapshot.duplicate_keys,
        rejected=rejected,
        written=written,
        request_count=snapshot.request_count,
        still_present=still_present,
        incomplete_reason=snapshot.incomplete_reason,
        timings=timer.seconds,
    )
