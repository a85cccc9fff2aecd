"""The bulk lane's three steps, free of Dagster so they can be read and tested on their own.

1. ``sync_catalog_queries``: validate every catalog query's filter and store queries + catalogs.
2. ``refresh_content``: diff a full content snapshot against the store; insert, update what
   changed, tombstone what disappeared; guarded against a source that suddenly lost content.
3. ``refresh_associations``: evaluate every valid query against every live record in bulk and
   apply only the difference; guarded against result sets that swing wildly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from catalog_assets.content import content_key_of, content_record
from catalog_assets.filters import InvalidFilter, evaluate, validate
from catalog_assets.sources import CatalogQueryFile, ContentSnapshot
from catalog_assets.store import (
    CatalogQueryRow,
    CatalogStore,
    ContentWriteResult,
    EnterpriseCatalogRow,
    QuerySyncResult,
)

PAIR_COLUMNS = ("catalog_query_uuid", "content_key")
RECORD_KEY = "__content_key"
"""Where records carry their key for ``match_table``: no valid filter key can name a field
with ``__`` in it, so this cannot collide with anything a filter compares."""


class Timer:
    """Wall time per named phase, for materialization metadata."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def phase(self, name: str) -> _Phase:
        return _Phase(self, name)


class _Phase:
    def __init__(self, timer: Timer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        elapsed = time.perf_counter() - self.started
        self.timer.seconds[self.name] = round(elapsed, 3)


# --- 1. Catalog queries ----------------------------------------------------------------------


def catalog_query_row(query: Mapping[str, Any]) -> CatalogQueryRow:
    """A ``catalog_query`` row: the filter as JSON text in its original key order, validated."""
    content_filter = query["content_filter"]
    text = json.dumps(content_filter, ensure_ascii=False)
    error, warnings = None, ()
    try:
        warnings = tuple(validate(content_filter))
    except InvalidFilter as invalid:
        error = str(invalid)
    return CatalogQueryRow(
        uuid=str(query["uuid"]),
        title=query.get("title"),
        content_filter=text,
        filter_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        is_valid=error is None,
        error=error,
        warnings=warnings,
    )


@dataclass
class QueryReport:
    rows: list[CatalogQueryRow]
    catalogs: int
    sync: QuerySyncResult

    @property
    def invalid(self) -> list[CatalogQueryRow]:
        return [row for row in self.rows if not row.is_valid]


def sync_catalog_queries(
    loaded: CatalogQueryFile, store: CatalogStore, now: datetime
) -> QueryReport:
    rows = [catalog_query_row(query) for query in loaded.catalog_queries]
    catalogs = [
        EnterpriseCatalogRow(
            uuid=str(catalog["uuid"]),
            title=catalog.get("title"),
            enterprise_uuid=catalog.get("enterprise_uuid"),
            catalog_query_uuid=catalog.get("catalog_query_uuid"),
        )
        for catalog in loaded.enterprise_catalogs
    ]
    return QueryReport(rows, len(catalogs), store.sync_catalog_queries(rows, catalogs, now))


# --- 2. Content --------------------------------------------------------------------------------


class GuardrailTripped(RuntimeError):
    """A refresh that would change too much at once was refused; nothing was written."""


@dataclass
class ContentReport:
    source_records: int
    deferred_tombstones: int
    duplicate_keys: list[str]
    rejected: list[str]
    written: ContentWriteResult
    request_count: int
    timings: dict[str, float] = field(default_factory=dict)


def refresh_content(
    snapshot: ContentSnapshot,
    store: CatalogStore,
    now: datetime,
    *,
    max_tombstone_share: float = 0.2,
    confirm_mass_tombstone: bool = False,
    timer: Timer | None = None,
) -> ContentReport:
    """Bring ``content_metadata`` in line with a complete snapshot of the source.

    Records whose hash did not change are not written; keys missing from the snapshot are
    tombstoned, unless that would tombstone more than ``max_tombstone_share`` of the live
    content (a source that lost data must not wipe the catalog), which raises
    ``GuardrailTripped`` before anything is written, unless confirmed.
    """
    timer = timer or Timer()
    with timer.phase("diff"):
        records, rejected, rejected_keys = [], [], set()
        for document in snapshot.documents:
            try:
                records.append(content_record(document))
            except ValueError as error:
                rejected.append(str(error))
                with suppress(ValueError):  # a known key is present, just unusable: keep it
                    rejected_keys.add(content_key_of(document))
        state = store.content_state()
        upserts = [
            record
            for record in records
            if (stored := state.get(record.content_key)) is None
            or stored.deleted
            or stored.content_hash != record.content_hash
        ]
        source_keys = {record.content_key for record in records} | rejected_keys
        live = [key for key, stored in state.items() if not stored.deleted]
        missing = sorted(key for key in live if key not in source_keys)
        # A source that shifted while it was read may have skipped items: tombstone nothing.
        tombstones = missing if snapshot.complete else []
    share = len(tombstones) / len(live) if live else 0.0
    if share > max_tombstone_share and not confirm_mass_tombstone:
        raise GuardrailTripped(
            f"refusing to tombstone {len(tombstones)} of {len(live)} live records "
            f"({share:.0%} > max_tombstone_share {max_tombstone_share:.0%}): the source returned "
            f"{len(records)} records. If the content really was removed, re-run with run config "
            "confirm_mass_tombstone: true. Nothing was written."
        )
    with timer.phase("write"):
        written = store.apply_content_changes(
            upserts, tombstones, now, unchanged_since=snapshot.started_at
        )
    upsert_keys = {record.content_key for record in upserts}
    written.unchanged.extend(r.content_key for r in records if r.content_key not in upsert_keys)
    return ContentReport(
        source_records=len(records),
        deferred_tombstones=len(missing) - len(tombstones),
        duplicate_keys=snapshot.duplicate_keys,
        rejected=rejected,
        written=written,
        request_count=snapshot.request_count,
        timings=timer.seconds,
    )


# --- 3. Associations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldRule:
    """Hold a query's change when it had more than ``min_items`` items, its filter did not
    change since the last refresh, and its count moves by more than ``max_swing`` (a share).
    enterprise-catalog adopted this rule after discovery returned wrong result sets."""

    min_items: int = 50
    max_swing: float = 0.8

    def holds(self, before: int, after: int, filter_changed: bool) -> bool:
        if before <= self.min_items or filter_changed:
            return False
        return abs(after - before) / before > self.max_swing


@dataclass
class QueryChange:
    uuid: str
    title: str | None
    before: int
    after: int  # what the filter matches now; a held query keeps ``before`` in the store
    added: int
    removed: int
    held: bool = False


@dataclass
class AssociationReport:
    added: int
    removed: int
    total: int
    changes: list[QueryChange]
    zero_match: list[QueryChange]
    invalid_kept: dict[str, int]
    data_warnings: dict[str, list[str]]
    timings: dict[str, float]

    @property
    def held(self) -> list[QueryChange]:
        return [change for change in self.changes if change.held]


def _counts(pairs: pl.DataFrame) -> dict[str, int]:
    return dict(pairs.group_by("catalog_query_uuid").len().iter_rows())


def refresh_associations(
    store: CatalogStore,
    now: datetime,
    *,
    hold_rule: HoldRule = HoldRule(),
    confirmed: Collection[str] = (),
    confirm_all: bool = False,
    timer: Timer | None = None,
) -> AssociationReport:
    """Make ``catalog_query_content`` the pairs where a valid query matches a live record.

    A query's filter counts as changed when its hash differs from the one its associations
    were last computed with (``store.applied_filters()``; a new query has none). Held queries
    keep their current rows, and their old filter hash, unless their uuid is in ``confirmed``
    or ``confirm_all``.
    Invalid queries keep their rows from their last valid refresh (minus deleted content):
    a broken edit must not empty a catalog; the ``catalog_queries`` check reports them.
    """
    timer = timer or Timer()
    with timer.phase("load"):
        queries = store.catalog_queries()
        live = store.live_content()
        current = store.associations()
        applied = store.applied_filters()
    valid = {q.uuid: q for q in queries if q.is_valid}
    with timer.phase("match"):
        records = [{**metadata, RECORD_KEY: key} for key, metadata in live]
        filters = {uuid: json.loads(q.content_filter) for uuid, q in valid.items()}
        result = evaluate(filters, records, key=RECORD_KEY)
        desired = result.pairs.rename(
            {"query_id": "catalog_query_uuid", "content_key": "content_key"}
        )
    with timer.phase("diff"):
        is_valid = pl.col("catalog_query_uuid").is_in(pl.lit(list(valid), dtype=pl.List(pl.String)))
        current_valid = current.filter(is_valid)
        current_invalid = current.filter(~is_valid)
        live_keys = pl.lit([key for key, _ in live], dtype=pl.List(pl.String))
        adds = desired.join(current_valid, on=PAIR_COLUMNS, how="anti")
        removes = current_valid.join(desired, on=PAIR_COLUMNS, how="anti")
        invalid_removes = current_invalid.filter(~pl.col("content_key").is_in(live_keys))
        before, after = _counts(current_valid), _counts(desired)
        added_per_query, removed_per_query = _counts(adds), _counts(removes)
        changes = []
        for uuid, query in valid.items():
            change = QueryChange(
                uuid,
                query.title,
                before.get(uuid, 0),
                after.get(uuid, 0),
                added_per_query.get(uuid, 0),
                removed_per_query.get(uuid, 0),
            )
            changed = applied.get(uuid) != query.filter_hash
            change.held = bool(
                (change.added or change.removed)
                and hold_rule.holds(change.before, change.after, changed)
                and not (confirm_all or uuid in confirmed)
            )
            changes.append(change)
        held = {c.uuid for c in changes if c.held}
        if held:
            held_list = pl.lit(sorted(held), dtype=pl.List(pl.String))
            not_held = ~pl.col("catalog_query_uuid").is_in(held_list)
            adds, removes = adds.filter(not_held), removes.filter(not_held)
        removes = pl.concat([removes, invalid_removes])
    with timer.phase("write"):
        now_applied = {u: q.filter_hash for u, q in valid.items() if u not in held}
        added, removed = store.apply_association_diff(adds, removes, now, now_applied)
    invalid_kept = _counts(current_invalid.join(invalid_removes, on=PAIR_COLUMNS, how="anti"))
    return AssociationReport(
        added=added,
        removed=removed,
        total=current.height + added - removed,
        changes=changes,
        zero_match=[c for c in changes if c.after == 0 and not c.held],
        invalid_kept=invalid_kept,
        data_warnings=result.data_warnings,
        timings=timer.seconds,
    )


def top_changes(changes: Sequence[QueryChange], limit: int = 10) -> list[QueryChange]:
    moved = [c for c in changes if c.added or c.removed]
    return sorted(moved, key=lambda c: (-(c.added + c.removed), c.uuid))[:limit]
