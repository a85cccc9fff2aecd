"""Why a piece of content is (not) in a catalog: each filter key's verdict on the record, then
the allow-lists, forced courses and membership, and whether the store agrees.

The filter keys are judged by the refresh's own engine (``filters.parse`` for the keys that
count and their order, ``filters.evaluate`` for each verdict), never by a second
implementation, so an explanation cannot contradict the refresh it explains.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalog_assets.core.catalog_contents import (
    AllowLists,
    Membership,
    MembershipRule,
    forced_course_keys,
)
from catalog_assets.core.filters import InvalidFilter, evaluate, parse
from catalog_assets.store import CatalogQueryRow, EnterpriseCatalogRow, StoredContent

_KEY = "__explained"  # where the record carries its key for the engine (no filter names it)


@dataclass(frozen=True)
class KeyVerdict:
    """One filter key: how the engine reads it, the record's value, and its verdict.

    ``passed`` is None for a key that does not count (a later key names the same field)."""

    key: str
    field: str
    operator: str
    filter_value: Any
    record_value: Any
    present: bool
    passed: bool | None


@dataclass
class Explanation:
    """Everything ``catalog-assets explain`` prints, in the order it prints it."""

    query_uuid: str
    query_title: str | None
    catalog_uuid: str | None
    catalog_title: str | None
    content_key: str
    content_type: str
    deleted: bool
    filter_error: str | None
    keys: list[KeyVerdict]
    filter_matches: bool | None  # None: the filter is invalid
    allow_list: str
    admitted: bool
    forced: bool
    associated: bool  # what the store holds for the key itself
    memberships: list[Membership]  # through a related run or course, from the store
    expected: bool  # what the rules say of the key's own record
    notes: list[str] = field(default_factory=list)

    @property
    def in_catalog(self) -> bool:
        """What the store answers: the key's own pair, or a related run or course."""
        return self.associated or bool(self.memberships)

    @property
    def rules_say(self) -> bool:
        """What the rules answer for the stored record (the next refresh's verdict)."""
        return self.expected or bool(self.memberships)

    @property
    def store_agrees(self) -> bool:
        return self.in_catalog == self.rules_say


def judge_keys(content_filter: Mapping[str, Any], record: Mapping[str, Any]) -> list[KeyVerdict]:
    """Each key of a valid filter against ``record``, in the order the engine evaluates the
    keys that count, followed by those a later key overrides. Raises ``InvalidFilter``."""
    conditions = parse(content_filter).conditions
    single = {str(i): {c.key: c.value} for i, c in enumerate(conditions)}
    matched = {q for q, _ in evaluate(single, [{**record, _KEY: "k"}], key=_KEY).pairs.iter_rows()}
    verdicts = [
        KeyVerdict(
            c.key,
            c.field,
            c.operator,
            c.value,
            record.get(c.field),
            c.field in record,
            str(i) in matched,
        )
        for i, c in enumerate(conditions)
    ]
    counted = {c.key for c in conditions}
    for key, value in content_filter.items():
        if key not in counted:
            verdicts.append(KeyVerdict(key, "", "", value, None, False, None))
    return verdicts


def filter_matches(content_filter: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """The engine's verdict on the whole filter, exactly as the refresh computes it."""
    pairs = evaluate({"q": dict(content_filter)}, [{**record, _KEY: "k"}], key=_KEY).pairs
    return pairs.height > 0


def explain(
    *,
    query: CatalogQueryRow,
    catalog: EnterpriseCatalogRow | None,
    record: StoredContent,
    associated: bool,
    memberships: Sequence[Membership],
    allow: AllowLists,
) -> Explanation:
    """The explanation of ``record`` in ``query``, reached directly or through ``catalog``,
    given what the store holds: the key's own pair (``associated``) and its ``memberships``
    in the query's catalogs."""
    content_filter = json.loads(query.content_filter)
    metadata = record.metadata
    keys: list[KeyVerdict] = []
    matches: bool | None = None
    error = None if query.is_valid else query.error
    if query.is_valid:
        try:
            keys = judge_keys(content_filter, metadata)
            matches = filter_matches(content_filter, metadata)
        except (InvalidFilter, RecursionError) as invalid:  # stored valid by older code
            error = str(invalid)
    admitted = allow.exclusion(metadata) is None
    forced = error is None and record.content_key in forced_course_keys(content_filter)
    live = record.deleted_at is None
    notes = []
    if error is not None:
        # An invalid filter keeps the pairs of its last valid refresh: nothing to recompute.
        expected = associated
        notes.append(
            "the filter is invalid, so the query keeps the content of its last valid refresh "
            "(minus deleted content)"
        )
    else:
        expected = live and admitted and bool(matches or forced)
    if not live:
        notes.append("the record is tombstoned: deleted content is in no catalog")
    others = [m for m in memberships if m.rule is not MembershipRule.ASSOCIATED]
    result = Explanation(
        query_uuid=query.uuid,
        query_title=query.title,
        catalog_uuid=catalog.uuid if catalog is not None else None,
        catalog_title=catalog.title if catalog is not None else None,
        content_key=record.content_key,
        content_type=record.content_type,
        deleted=not live,
        filter_error=error,
        keys=keys,
        filter_matches=matches,
        allow_list=allow.explain(metadata),
        admitted=admitted,
        forced=forced,
        associated=associated,
        memberships=others,
        expected=expected,
        notes=notes,
    )
    if not result.store_agrees:
        result.notes.append(
            "the store disagrees: it holds "
            + ("the pair" if associated else "no pair")
            + " for this record; the record or the filter changed since the last refresh, or "
            "the swing guardrail holds the query's change (run a refresh)"
        )
    return result
