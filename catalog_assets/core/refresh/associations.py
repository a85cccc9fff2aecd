"""Step 3 of the bulk lane: evaluate every valid query against every live record in bulk, add
the courses each query forces in, and apply only the difference, serialised with the event
lane; guarded against wild swings. The links between content are rebuilt in the same pass."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from catalog_assets.core.catalog_contents import declared_relations, forcing_queries
from catalog_assets.core.filters import evaluate, validate
from catalog_assets.core.refresh.common import (
    PAIR_COLUMNS,
    RECORD_KEY,
    Timer,
)
from catalog_assets.store import (
    CatalogQueryRow,
    CatalogStore,
)


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
    forced_pairs: int = 0  # pairs a query's forced courses add beyond its filter's matches
    relations_added: int = 0
    relations_removed: int = 0
    relations_total: int = 0

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


def forced_pairs(filters: dict[str, dict], live_keys: set[str]) -> pl.DataFrame:
    """(query, course) for each live course a valid query forces in, whatever its filter says:
    enterprise-catalog adds forced courses to the query's results."""
    rows = [
        (uuid, key)
        for key, uuids in forcing_queries(filters).items()
        if key in live_keys
        for uuid in uuids
    ]
    return pl.DataFrame(rows, schema={column: pl.String for column in PAIR_COLUMNS}, orient="row")


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
        matched = result.pairs.rename(
            {"query_id": "catalog_query_uuid", "content_key": "content_key"}
        )
        forced = forced_pairs(filters, {key for key, _ in live})
        desired = pl.concat([matched, forced.join(matched, on=PAIR_COLUMNS, how="anti")])
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
        # The links records declare, from the same live content, under the same lock.
        relations = declared_relations(dict(live))
        relations_added, relations_removed = store.replace_relations(relations)
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
        forced_pairs=desired.height - matched.height,
        relations_added=relations_added,
        relations_removed=relations_removed,
        relations_total=len(relations),
    )


def top_changes(changes: Sequence[QueryChange], limit: int = 10) -> list[QueryChange]:
    moved = [c for c in changes if c.added or c.removed]
    return sorted(moved, key=lambda c: (-(c.added + c.removed), c.uuid))[:limit]
