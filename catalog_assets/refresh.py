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
import math
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from catalog_assets.content import (
    ContentLookup,
    ContentRecord,
    ContentSnapshot,
    RejectedDocument,
    content_key_of,
    content_record,
)
from catalog_assets.filters import InvalidFilter, evaluate, validate
from catalog_assets.sources import CatalogQueryFile
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


class GuardrailTripped(RuntimeError):
    """A refresh that would change too much at once was refused; nothing was written."""


# --- 1. Catalog queries ----------------------------------------------------------------------

NUL_REPLACEMENT = "\ufffd"


def _identifier(value: Any, where: str) -> str:
    """A uuid as the listing gives it: a non-empty string without NUL, else ValueError."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ValueError(f"{where}: uuid {value!r} is not a non-empty string")
    return value


def _optional_text(value: Any, where: str, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{where}: {name} {value!r} is not a string")


def _filter_text(content_filter: Any) -> str:
    """The filter as JSON text in its original key order. A non-JSON number (NaN, Infinity)
    makes the filter invalid; its text then holds the number as a string, so the stored text
    stays JSON that every reader can parse."""
    try:
        return json.dumps(content_filter, ensure_ascii=False, allow_nan=False)
    except ValueError:

        def strict(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return repr(value).replace("inf", "Infinity").replace("nan", "NaN")
            if isinstance(value, list):
                return [strict(item) for item in value]
            if isinstance(value, dict):
                return {key: strict(item) for key, item in value.items()}
            return value

        return json.dumps(strict(content_filter), ensure_ascii=False, allow_nan=False)


def catalog_query_row(query: Mapping[str, Any], where: str = "catalog query") -> CatalogQueryRow:
    """A ``catalog_query`` row: the filter as JSON text in its original key order, validated.

    A NUL character in the title (which no store can keep) becomes U+FFFD, with a warning."""
    uuid = _identifier(query.get("uuid"), where)
    title = _optional_text(query.get("title"), where, "title")
    content_filter = query["content_filter"]
    text = _filter_text(content_filter)
    error, warnings = None, ()
    try:
        warnings = tuple(validate(content_filter))
    except InvalidFilter as invalid:
        error = str(invalid)
    if title is not None and "\x00" in title:
        title = title.replace("\x00", NUL_REPLACEMENT)
        warnings = (*warnings, "the title contained NUL characters, stored as U+FFFD")
    return CatalogQueryRow(
        uuid=uuid,
        title=title,
        content_filter=text,
        filter_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        is_valid=error is None,
        error=error,
        warnings=warnings,
    )


def enterprise_catalog_row(
    catalog: Mapping[str, Any], where: str = "enterprise catalog"
) -> EnterpriseCatalogRow:
    title = _optional_text(catalog.get("title"), where, "title")
    return EnterpriseCatalogRow(
        uuid=_identifier(catalog.get("uuid"), where),
        title=title.replace("\x00", NUL_REPLACEMENT) if title else title,
        enterprise_uuid=_optional_text(catalog.get("enterprise_uuid"), where, "enterprise_uuid"),
        catalog_query_uuid=_optional_text(
            catalog.get("catalog_query_uuid"), where, "catalog_query_uuid"
        ),
    )


@dataclass
class QueryReport:
    rows: list[CatalogQueryRow]
    catalogs: list[EnterpriseCatalogRow]
    sync: QuerySyncResult
    catalogs_removed: int = 0

    @property
    def invalid(self) -> list[CatalogQueryRow]:
        return [row for row in self.rows if not row.is_valid]

    @property
    def unknown_query_catalogs(self) -> list[EnterpriseCatalogRow]:
        """Enterprise catalogs whose catalog query is not in the listing (they contain nothing)."""
        known = {row.uuid for row in self.rows}
        return [c for c in self.catalogs if c.catalog_query_uuid not in known]


def _refuse_mass_removal(
    what: str, stored: set[str], incoming: set[str], max_share: float
) -> str | None:
    """Why removing ``stored - incoming`` is refused, or None when it is not."""
    if not stored:
        return None
    removed = len(stored - incoming)
    if not incoming:
        return f"the listing has no {what} rows, and the store holds {len(stored)}"
    share = removed / len(stored)
    if share > max_share:
        return (
            f"the listing would remove {removed} of {len(stored)} {what} rows "
            f"({share:.0%} > max_removal_share {max_share:.0%})"
        )
    return None


def sync_catalog_queries(
    loaded: CatalogQueryFile,
    store: CatalogStore,
    now: datetime,
    *,
    max_removal_share: float = 0.2,
    confirm_mass_removal: bool = False,
) -> QueryReport:
    """Store the listing's queries and catalogs, each filter validated.

    A listing that would remove more than ``max_removal_share`` of the stored queries or
    catalogs, or any empty listing where the store holds some, is refused with
    ``GuardrailTripped`` before anything is written (a truncated file or a broken source must
    not wipe every catalog), unless ``confirm_mass_removal``.
    """
    rows = [
        catalog_query_row(query, f"catalog_queries[{index}]")
        for index, query in enumerate(loaded.catalog_queries)
    ]
    catalogs = [
        enterprise_catalog_row(catalog, f"enterprise_catalogs[{index}]")
        for index, catalog in enumerate(loaded.enterprise_catalogs)
    ]
    stored_catalogs = {c.uuid for c in store.enterprise_catalogs()}
    incoming_catalogs = {c.uuid for c in catalogs}
    if not confirm_mass_removal:
        problems = [
            problem
            for problem in (
                _refuse_mass_removal(
                    "catalog query",
                    {q.uuid for q in store.catalog_queries()},
                    {row.uuid for row in rows},
                    max_removal_share,
                ),
                _refuse_mass_removal(
                    "enterprise catalog", stored_catalogs, incoming_catalogs, max_removal_share
                ),
            )
            if problem
        ]
        if problems:
            raise GuardrailTripped(
                f"refusing the catalog query listing: {'; '.join(problems)}. If that is really "
                "meant, re-run with run config confirm_mass_removal: true. Nothing was written."
            )
    sync = store.sync_catalog_queries(rows, catalogs, now)
    return QueryReport(rows, catalogs, sync, len(stored_catalogs - incoming_catalogs))


# --- 2. Content --------------------------------------------------------------------------------


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


def usable_filters(
    queries: Sequence[CatalogQueryRow],
) -> tuple[dict[str, CatalogQueryRow], dict[str, dict]]:
    """The valid queries and their parsed filters, each stored filter validated again.

    A filter stored as valid by older code may break a newer engine rule (a value nested too
    deeply, say): it is skipped like an invalid one rather than failing every other query.
    """
    valid, filters = {}, {}
    for query in queries:
        if not query.is_valid:
            continue
        try:
            content_filter = json.loads(query.content_filter)
            validate(content_filter)
        except (ValueError, RecursionError):
            continue
        valid[query.uuid], filters[query.uuid] = query, content_filter
    return valid, filters


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
    with store.transaction():
        # Serialised with the event lane: no key's record or pairs change between the load and
        # the write, so the difference applied is the difference computed.
        store.lock_writers()
        return _refresh_associations(store, now, hold_rule, confirmed, confirm_all, timer)


def _refresh_associations(
    store: CatalogStore,
    now: datetime,
    hold_rule: HoldRule,
    confirmed: Collection[str],
    confirm_all: bool,
    timer: Timer,
) -> AssociationReport:
    with timer.phase("load"):
        queries = store.catalog_queries()
        live = store.live_content()
        current = store.associations()
        applied = store.applied_filters()
    valid, filters = usable_filters(queries)
    with timer.phase("match"):
        records = [{**metadata, RECORD_KEY: key} for key, metadata in live]
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
        total=store.association_count(),
        changes=changes,
        zero_match=[c for c in changes if c.after == 0 and not c.held],
        invalid_kept=invalid_kept,
        data_warnings=result.data_warnings,
        timings=timer.seconds,
    )


def top_changes(changes: Sequence[QueryChange], limit: int = 10) -> list[QueryChange]:
    moved = [c for c in changes if c.added or c.removed]
    return sorted(moved, key=lambda c: (-(c.added + c.removed), c.uuid))[:limit]
