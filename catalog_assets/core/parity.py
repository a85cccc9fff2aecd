"""Shadow parity: does the local evaluation give, query by query, what course-discovery gives?

Nobody switches from enterprise-catalog's per-query sync (``update_content_metadata``) to the
bulk lane without that evidence. For each chosen valid catalog query, ``check_parity`` asks the
content source's search for the key set the old sync computes (``ContentSource.search``: the
filter as ``POST search/all/``'s body, expired runs out, pathways in), adds the courses the query
forces in (``courses/?keys=``), removes what the allow-lists exclude, and compares it with the
store's associations for that query. Each difference gets the reason the store can tell.

It only reads: associations are never written. A source that cannot answer raises its own
error (``DiscoveryError`` for course-discovery), never a partial report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from catalog_assets.core.catalog_contents import (
    AllowLists,
    as_course_document,
    force_included,
    forced_course_keys,
)
from catalog_assets.core.content import parse_modified
from catalog_assets.core.filters import matches
from catalog_assets.core.refresh.associations import usable_filters
from catalog_assets.store import CatalogQueryRow, CatalogStore, ContentState

EXAMPLES = 5
"""How many keys of each kind (matched, only local, only discovery) a query's result shows."""


class Reason(StrEnum):
    """Why a key is on one side only, as far as the store can tell."""

    NOT_IN_STORE = "not_in_store"  # discovery returns it; the store has no record of it
    TOMBSTONED = "tombstoned"  # the store's record is tombstoned
    MODIFIED_DIFFERS = "modified_differs"  # the store's `modified` is not discovery's document's
    EXCLUDED_BY_ALLOW_LIST = "excluded_by_allow_list"  # one side's document is not admitted
    OTHER = "other"  # the same record on both sides: the search and the filter engine disagree


class Side(StrEnum):
    ONLY_LOCAL = "only_local"  # the store associates it; discovery's answer lacks it
    ONLY_DISCOVERY = "only_discovery"  # discovery's answer has it; the store does not associate it


class UnknownQuery(ValueError):
    """A catalog query uuid the store does not know, or one whose filter is invalid (parity
    compares valid queries only)."""


class SearchSource(Protocol):
    """What parity asks of a content source (``core.sources.ContentSource`` has both)."""

    def search(self, content_filter: Mapping[str, Any]) -> dict[str, dict[str, Any]]: ...

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...


@dataclass(frozen=True)
class Difference:
    """A key on one side only, why (``reason``), and what the store can say (``detail``)."""

    content_key: str
    side: Side
    reason: Reason
    detail: str = ""

    def as_json(self) -> dict[str, str]:
        return {"content_key": self.content_key, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class QueryParity:
    """One query's comparison: counts, up to ``EXAMPLES`` keys of each kind, and the reasons
    of all its differences."""

    uuid: str
    title: str | None
    matched: int
    only_local: int
    only_discovery: int
    reasons: Mapping[Reason, int]
    matched_examples: tuple[str, ...] = ()
    local_examples: tuple[Difference, ...] = ()
    discovery_examples: tuple[Difference, ...] = ()

    @property
    def equal(self) -> bool:
        return not self.differences

    @property
    def differences(self) -> int:
        return self.only_local + self.only_discovery

    def as_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "title": self.title,
            "equal": self.equal,
            "matched": self.matched,
            "only_local": self.only_local,
            "only_discovery": self.only_discovery,
            "reasons": {str(reason): count for reason, count in self.reasons.items()},
            "examples": {
                "matched": list(self.matched_examples),
                "only_local": [d.as_json() for d in self.local_examples],
                "only_discovery": [d.as_json() for d in self.discovery_examples],
            },
        }


@dataclass(frozen=True)
class ParityReport:
    """Every chosen query's comparison, in uuid order."""

    queries: tuple[QueryParity, ...] = field(default_factory=tuple)

    @property
    def equal(self) -> int:
        return sum(1 for query in self.queries if query.equal)

    @property
    def differ(self) -> int:
        return len(self.queries) - self.equal

    @property
    def differences(self) -> int:
        return sum(query.differences for query in self.queries)

    def reasons(self) -> dict[Reason, int]:
        """Differences per reason, over all queries, in ``Reason`` order."""
        total: Counter[Reason] = Counter()
        for query in self.queries:
            total.update(query.reasons)
        return {reason: total[reason] for reason in Reason if total[reason]}

    def summary(self) -> str:
        return (
            f"{len(self.queries)} queries, {self.equal} equal, {self.differ} differ, "
            f"{self.differences} differences"
        )

    def counts(self) -> dict[str, int]:
        """The numbers a dashboard plots."""
        return {
            "queries": len(self.queries),
            "equal": self.equal,
            "differ": self.differ,
            "differences": self.differences,
            "only_local": sum(query.only_local for query in self.queries),
            "only_discovery": sum(query.only_discovery for query in self.queries),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            **self.counts(),
            "reasons": {str(reason): count for reason, count in self.reasons().items()},
            "results": [query.as_json() for query in self.queries],
        }


def choose_queries(
    rows: Iterable[CatalogQueryRow],
    query_uuids: Collection[str] = (),
    sample: int | None = None,
) -> list[tuple[CatalogQueryRow, dict]]:
    """The queries to compare, with their parsed filters, in uuid order: ``query_uuids`` (each
    must be a stored valid query) or every valid query, then the first ``sample`` of them.
    Raises UnknownQuery naming each uuid that is unknown or invalid, ValueError for a
    ``sample`` below 1."""
    if sample is not None and sample < 1:
        raise ValueError(f"the sample size must be at least 1, not {sample}")
    rows = list(rows)
    valid, filters = usable_filters(rows)
    known = {row.uuid for row in rows}
    if query_uuids:
        problems = [
            f"{uuid!r} is not a catalog query in the store"
            if uuid not in known
            else f"{uuid!r} has an invalid filter (parity compares valid queries only)"
            for uuid in dict.fromkeys(query_uuids)
            if uuid not in valid
        ]
        if problems:
            raise UnknownQuery("; ".join(problems))
        chosen = sorted(set(query_uuids))
    else:
        chosen = sorted(valid)
    return [(valid[uuid], filters[uuid]) for uuid in chosen[:sample]]


def check_parity(
    store: CatalogStore,
    source: SearchSource,
    *,
    query_uuids: Collection[str] = (),
    sample: int | None = None,
    allow: AllowLists | None = None,
) -> ParityReport:
    """Compare, for each chosen query (``choose_queries``), the source's answer as the old
    per-query sync computes it with the store's associations. ``allow`` defaults to the
    store's allow-lists. Reads only; the source's errors propagate."""
    allow = allow if allow is not None else store.allow_lists
    chosen = choose_queries(store.catalog_queries(), query_uuids, sample)
    # Only the chosen queries' pairs: the store may hold tens of millions in all.
    local: dict[str, set[str]] = {row.uuid: set() for row, _ in chosen}
    pairs = store.associations_of_queries(list(local))
    for uuid, key in pairs.select("catalog_query_uuid", "content_key").iter_rows():
        local[uuid].add(key)
    forced = _forced_documents(source, [content_filter for _, content_filter in chosen])
    comparison = _Comparison(store, allow, store.content_state())
    answers = [
        (
            row,
            content_filter,
            comparison.answer(content_filter, source.search(content_filter), forced),
        )
        for row, content_filter in chosen
    ]
    return ParityReport(
        tuple(
            comparison.query(row, content_filter, answer, local[row.uuid])
            for row, content_filter, answer in answers
        )
    )


def _forced_documents(
    source: SearchSource, filters: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The forced courses of these filters as the old sync stores them (marked forced), for
    the keys the source returns; fetched once for all queries."""
    keys = list(dict.fromkeys(key for f in filters for key in forced_course_keys(f)))
    fetched = source.fetch_courses(keys) if keys else {}
    return {key: force_included(as_course_document(key, fetched[key])) for key in fetched}


@dataclass(frozen=True)
class _Answer:
    """Discovery's key set for one query, kept small: each admitted key's ``modified``, and
    why the allow-lists exclude the others it returned."""

    remote: dict[str, Any]
    excluded: dict[str, str]
    forced: frozenset[str]


@dataclass
class _Comparison:
    """What the comparison of every query shares: the store's view, and the ``modified`` of
    every document discovery returned for any chosen query."""

    store: CatalogStore
    allow: AllowLists
    states: Mapping[str, ContentState]
    seen: dict[str, Any] = field(default_factory=dict)

    def answer(
        self,
        content_filter: Mapping[str, Any],
        documents: Mapping[str, Mapping[str, Any]],
        forced_documents: Mapping[str, Mapping[str, Any]],
    ) -> _Answer:
        """The old sync's key set: the search's documents plus the query's forced courses that
        the source has, less what the allow-lists exclude."""
        forced = forced_course_keys(content_filter)
        found = {**documents, **{k: forced_documents[k] for k in forced if k in forced_documents}}
        remote: dict[str, Any] = {}
        excluded: dict[str, str] = {}
        for key, document in found.items():
            self.seen[key] = document.get("modified")
            if (exclusion := self.allow.exclusion(document)) is None:
                remote[key] = document.get("modified")
            else:
                excluded[key] = f"discovery's {exclusion[0]} is {exclusion[1]}"
        return _Answer(remote, excluded, frozenset(forced))

    def query(
        self,
        row: CatalogQueryRow,
        content_filter: Mapping[str, Any],
        answer: _Answer,
        local: set[str],
    ) -> QueryParity:
        remote = answer.remote
        only_discovery = [
            self._only_discovery(key, remote[key], content_filter)
            for key in sorted(remote.keys() - local)
        ]
        only_local = [
            self._only_local(key, answer, content_filter) for key in sorted(local - remote.keys())
        ]
        matched = sorted(local & remote.keys())
        reasons = Counter(d.reason for d in [*only_local, *only_discovery])
        return QueryParity(
            uuid=row.uuid,
            title=row.title,
            matched=len(matched),
            only_local=len(only_local),
            only_discovery=len(only_discovery),
            reasons={reason: reasons[reason] for reason in Reason if reasons[reason]},
            matched_examples=tuple(matched[:EXAMPLES]),
            local_examples=tuple(only_local[:EXAMPLES]),
            discovery_examples=tuple(only_discovery[:EXAMPLES]),
        )

    def _only_discovery(
        self, key: str, modified: Any, content_filter: Mapping[str, Any]
    ) -> Difference:
        """Why the store does not associate a key discovery's answer has."""

        def found(reason: Reason, detail: str) -> Difference:
            return Difference(key, Side.ONLY_DISCOVERY, reason, detail)

        state = self.states.get(key)
        if state is None:
            return found(Reason.NOT_IN_STORE, "the store has no record with this key")
        if state.deleted:
            return found(Reason.TOMBSTONED, "the store's record is tombstoned")
        theirs = parse_modified(modified)
        if theirs != state.source_modified:
            return found(Reason.MODIFIED_DIFFERS, _modified(state.source_modified, theirs))
        stored = self.store.get_content(key)
        metadata = stored.metadata if stored is not None else {}
        if (exclusion := self.allow.exclusion(metadata)) is not None:
            detail = f"the store's {exclusion[0]} is {exclusion[1]}"
            return found(Reason.EXCLUDED_BY_ALLOW_LIST, detail)
        if matches(content_filter, metadata):
            return found(Reason.OTHER, "the filter matches the stored record: stale associations")
        return found(Reason.OTHER, "same modified, but the filter does not match the stored record")

    def _only_local(
        self, key: str, answer: _Answer, content_filter: Mapping[str, Any]
    ) -> Difference:
        """Why discovery's answer lacks a key the store associates."""

        def found(reason: Reason, detail: str) -> Difference:
            return Difference(key, Side.ONLY_LOCAL, reason, detail)

        if key in answer.excluded:
            return found(Reason.EXCLUDED_BY_ALLOW_LIST, answer.excluded[key])
        state = self.states.get(key)
        if state is None:
            return found(Reason.NOT_IN_STORE, "associated, but the store has no record of it")
        if state.deleted:
            return found(Reason.TOMBSTONED, "associated, but the store's record is tombstoned")
        if key in self.seen:
            theirs = parse_modified(self.seen[key])
            if theirs != state.source_modified:
                return found(Reason.MODIFIED_DIFFERS, _modified(state.source_modified, theirs))
        if key in answer.forced:
            return found(Reason.OTHER, "a forced course that course-discovery does not return")
        stored = self.store.get_content(key)
        if stored is not None and matches(content_filter, stored.metadata):
            return found(Reason.OTHER, "the filter matches the stored record; the search does not")
        return found(
            Reason.OTHER, "the filter does not match the stored record: stale associations"
        )


def _modified(ours: datetime | None, theirs: datetime | None) -> str:
    def text(value: datetime | None) -> str:
        return value.isoformat() if value is not None else "none"

    return f"store {text(ours)}, discovery {text(theirs)}"
