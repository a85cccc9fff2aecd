"""Step 3 of the bulk lane: evaluate every valid query against every live record in bulk, add
the courses each query forces in, and apply only the difference, serialised with the event
lane; guarded against wild swings. The links between content are rebuilt in the same pass."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from catalog_assets.core.catalog_contents import declared_relations, forcing_queries
from catalog_assets.core.filters import ParsedFilter, parse
from catalog_assets.core.filters.bulk import Evaluation
from catalog_assets.core.refresh.common import (
    PAIR_COLUMNS,
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


@dataclass(frozen=True)
class UsableQuery:
    """A valid query with its filter as stored (JSON) and parsed, each parsed once."""

    row: CatalogQueryRow
    content_filter: dict
    parsed: ParsedFilter


def usable_queries(queries: Sequence[CatalogQueryRow]) -> dict[str, UsableQuery]:
    """The valid queries, each stored filter validated again.

    A filter stored as valid by older code may break a newer engine rule (a value nested too
    deeply, say): it is skipped like an invalid one rather than failing every other query.
    """
    usable = {}
    for query in queries:
        if not query.is_valid:
            continue
        try:
            content_filter = json.loads(query.content_filter)
            parsed = parse(content_filter)
        except (ValueError, RecursionError):
            continue
        usable[query.uuid] = UsableQuery(query, content_filter, parsed)
    return usable


def usable_filters(
    queries: Sequence[CatalogQueryRow],
) -> tuple[dict[str, CatalogQueryRow], dict[str, dict]]:
    """The valid queries and their filters (``usable_queries``), as the bulk engine takes them."""
    usable = usable_queries(queries)
    return (
        {uuid: query.row for uuid, query in usable.items()},
        {uuid: query.content_filter for uuid, query in usable.items()},
    )


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


QUERIES_PER_CHUNK = 250
"""How many queries a refresh evaluates, compares and applies at a time: memory holds one
chunk's pairs (a few million at production breadth), never every query's."""


def refresh_associations(
    store: CatalogStore,
    now: datetime,
    *,
    hold_rule: HoldRule = HoldRule(),
    confirmed: Collection[str] = (),
    confirm_all: bool = False,
    only_queries: Collection[str] | None = None,
    queries_per_chunk: int = QUERIES_PER_CHUNK,
    on_chunk: Callable[[int, int], None] | None = None,
    timer: Timer | None = None,
) -> AssociationReport:
    """Make ``catalog_query_content`` the pairs where a valid query matches a live record.

    A query's filter counts as changed when its hash differs from the one its associations
    were last computed with (``store.applied_filters()``; a new query has none). Held queries
    keep their current rows, and their old filter hash, unless their uuid is in ``confirmed``
    or ``confirm_all``.
    Invalid queries keep their rows from their last valid refresh (minus deleted content):
    a broken edit must not empty a catalog; the ``catalog_queries`` check reports them.

    ``only_queries``, when given, limits the refresh to those uuids that are valid queries:
    only their pairs are evaluated (against every live record), compared and written, and only
    their applied filter hashes move; every other query's rows, the invalid queries' rows and
    the relations are left as they are. None refreshes every query and rebuilds the relations.

    The records are read once; the queries are then evaluated, compared with their stored
    pairs and applied ``queries_per_chunk`` at a time, all in one transaction that commits at
    the end: a crash leaves the store as it was, and memory holds one chunk's pairs.
    ``on_chunk(done, chunks)`` is called as each chunk has been applied (progress).
    """
    if queries_per_chunk < 1:
        raise ValueError(f"queries_per_chunk must be at least 1, not {queries_per_chunk}")
    refresh = _Refresh(
        store,
        now,
        hold_rule,
        frozenset(confirmed),
        confirm_all,
        None if only_queries is None else frozenset(only_queries),
        timer or Timer(),
    )
    with store.transaction():
        # Serialised with the event lane: no key's record or pairs change between the load and
        # the write, so the difference applied is the difference computed.
        store.lock_writers()
        return refresh.run(queries_per_chunk, on_chunk)


@dataclass
class _Refresh:
    store: CatalogStore
    now: datetime
    hold_rule: HoldRule
    confirmed: frozenset[str]
    confirm_all: bool
    scope: frozenset[str] | None
    timer: Timer

    def __post_init__(self) -> None:
        self.seconds = dict.fromkeys(("load", "match", "diff", "write"), 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time spent in ``name``, summed over the chunks."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def run(
        self, queries_per_chunk: int, on_chunk: Callable[[int, int], None] | None
    ) -> AssociationReport:
        store, scope = self.store, self.scope
        with self.phase("load"):
            queries = store.catalog_queries()
            if scope is not None:
                queries = [query for query in queries if query.uuid in scope and query.is_valid]
            valid, filters = usable_filters(queries)
            applied = store.applied_filters()
            if scope is None:
                live = store.live_content()
            else:  # no relations to rebuild: the fields the filters read are enough
                live = store.live_content_fields(_fields_read(filters))
        with self.phase("match"):
            evaluation = _evaluation(filters, live)
            forced = forced_pairs(filters, set(evaluation.keys))
            relations = declared_relations(dict(live)) if scope is None else None
            del live  # the records: only the columns the filters read are kept
        report = AssociationReport(0, 0, 0, [], [], {}, evaluation.data_warnings, {})
        ids = _Ids(evaluation)
        forced_ids = ids.encode(forced, evaluation.query_ids, 0).select(_IDS)  # all live
        positions = range(0, len(evaluation.query_ids), queries_per_chunk)
        held: set[str] = set()
        for done, start in enumerate(positions, start=1):
            uuids = evaluation.query_ids[start : start + queries_per_chunk]
            with self.phase("match"):
                matched = evaluation.rows(start, start + len(uuids))
                in_chunk = pl.col("query").is_between(start, start + len(uuids) - 1)
                extra = forced_ids.filter(in_chunk).join(matched, on=_IDS, how="anti")
                desired = pl.concat([matched, extra])
                report.forced_pairs += extra.height
            with self.phase("load"):
                current = ids.encode(store.associations_of_queries(uuids), uuids, start)
            with self.phase("diff"):
                adds, removes, changes = self.compare(
                    uuids, start, valid, applied, desired, current
                )
                adds, removes = ids.decode(adds), ids.decode(removes)
                report.changes += changes
                held.update(change.uuid for change in changes if change.held)
            with self.phase("write"):
                added, removed = store.apply_association_diff(adds, removes, self.now)
                report.added, report.removed = report.added + added, report.removed + removed
            if on_chunk is not None:
                on_chunk(done, len(positions))
        with self.phase("write"):
            invalid_removes = empty = pl.DataFrame(schema=dict.fromkeys(PAIR_COLUMNS, pl.String))
            if scope is None:
                invalid = [query.uuid for query in queries if query.uuid not in valid]
                current_invalid = store.associations_of_queries(invalid)
                invalid_removes = current_invalid.join(
                    evaluation.keys.to_frame(), on="content_key", how="anti"
                )
                kept = current_invalid.join(invalid_removes, on=PAIR_COLUMNS, how="anti")
                report.invalid_kept = _counts(kept)
            now_applied = {u: q.filter_hash for u, q in valid.items() if u not in held}
            _, removed = store.apply_association_diff(empty, invalid_removes, self.now, now_applied)
            report.removed += removed
            if relations is not None:
                # The links records declare, from the same live content, under the same lock.
                added, removed = store.replace_relations(relations)
                report.relations_added, report.relations_removed = added, removed
                report.relations_total = len(relations)
            report.total = store.association_count()
        report.zero_match = [c for c in report.changes if c.after == 0 and not c.held]
        for name, seconds in self.seconds.items():
            self.timer.seconds[name] = round(seconds, 3)
            if self.timer.on_phase is not None:
                self.timer.on_phase(name, self.timer.seconds[name])
        report.timings = self.timer.seconds
        return report

    def compare(
        self,
        uuids: Sequence[str],
        start: int,
        valid: dict[str, CatalogQueryRow],
        applied: dict[str, str],
        desired: pl.DataFrame,
        current: pl.DataFrame,
    ) -> tuple[pl.DataFrame, pl.DataFrame, list[QueryChange]]:
        """The adds and removes of a chunk of queries, as ids (``_Ids``), less those the hold
        rule holds. A stored pair whose content is not live (``row`` null) is removed."""
        adds = desired.join(current, on=_IDS, how="anti")
        removes = current.join(desired, on=_IDS, how="anti")
        before, after = _counts_by_query(current), _counts_by_query(desired)
        added_per_query, removed_per_query = _counts_by_query(adds), _counts_by_query(removes)
        changes = []
        for position, uuid in enumerate(uuids, start=start):
            query = valid[uuid]
            change = QueryChange(
                uuid,
                query.title,
                before.get(position, 0),
                after.get(position, 0),
                added_per_query.get(position, 0),
                removed_per_query.get(position, 0),
            )
            filter_changed = applied.get(uuid) != query.filter_hash
            change.held = bool(
                (change.added or change.removed)
                and self.hold_rule.holds(change.before, change.after, filter_changed)
                and not (self.confirm_all or uuid in self.confirmed)
            )
            changes.append(change)
        held = [p for p, change in enumerate(changes, start=start) if change.held]
        if held:
            not_held = ~pl.col("query").is_in(held)
            adds, removes = adds.filter(not_held), removes.filter(not_held)
        return adds, removes, changes


_IDS = ["query", "row"]
"""A pair as ids: the query's position in the evaluation's queries, the record's row."""


class _Ids:
    """Pairs as two UInt32 ids while they are compared (``_IDS``), strings only to be written:
    a chunk's comparison hashes integers, not every pair's two strings."""

    def __init__(self, evaluation: Evaluation):
        self.evaluation = evaluation
        rows = pl.int_range(0, evaluation.keys.len(), dtype=pl.UInt32, eager=True)
        self.rows = pl.DataFrame({"content_key": evaluation.keys, "row": rows})

    def encode(self, pairs: pl.DataFrame, uuids: Sequence[str], start: int) -> pl.DataFrame:
        """String pairs of the queries ``uuids`` (positions from ``start``) as ids, keeping
        their ``content_key``; ``row`` is null for a key that is not live."""
        queries = pl.DataFrame(
            {PAIR_COLUMNS[0]: uuids, "query": range(start, start + len(uuids))},
            schema={PAIR_COLUMNS[0]: pl.String, "query": pl.UInt32},
        )
        return (
            pairs.join(queries, on=PAIR_COLUMNS[0], how="inner")
            .join(self.rows, on="content_key", how="left")
            .select("query", "row", "content_key")
        )

    def decode(self, ids: pl.DataFrame) -> pl.DataFrame:
        """Id pairs as the store's string pairs (a null ``row`` keeps its ``content_key``)."""
        uuids = pl.Series(self.evaluation.query_ids, dtype=pl.String)
        query = pl.lit(uuids).gather(pl.col("query")).alias(PAIR_COLUMNS[0])
        key = pl.lit(self.evaluation.keys).gather(pl.col("row"))
        if "content_key" in ids.columns:
            key = pl.when(pl.col("row").is_null()).then(pl.col("content_key")).otherwise(key)
        return ids.select(query, key.alias("content_key"))


def _counts_by_query(pairs: pl.DataFrame) -> dict[int, int]:
    return dict(pairs.group_by("query").len().iter_rows())


def _evaluation(filters: dict[str, dict], live: list[tuple[str, dict]]) -> Evaluation:
    keys = [key for key, _ in live]
    return Evaluation(filters, keys, lambda name: [metadata.get(name) for _, metadata in live])


def _fields_read(filters: dict[str, dict]) -> set[str]:
    """The top-level record fields that these (valid) filters compare."""
    return {condition.field for f in filters.values() for condition in parse(f).conditions}


def top_changes(changes: Sequence[QueryChange], limit: int = 10) -> list[QueryChange]:
    moved = [c for c in changes if c.added or c.removed]
    return sorted(moved, key=lambda c: (-(c.added + c.removed), c.uuid))[:limit]
