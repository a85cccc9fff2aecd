"""Step 1 of the bulk lane: validate every catalog query and store queries and catalogs,
guarded against a listing that would remove too much at once. Also what the query lane asks
before it runs: which queries and catalogs a listing changes (``compare_catalog_queries``)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from catalog_assets.core.filters import InvalidFilter, validate
from catalog_assets.core.refresh.common import (
    GuardrailTripped,
)
from catalog_assets.core.sources import CatalogQueryFile
from catalog_assets.store import (
    CatalogQueryRow,
    CatalogStore,
    EnterpriseCatalogRow,
    QuerySyncResult,
)

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


def listing_rows(
    loaded: CatalogQueryFile,
) -> tuple[list[CatalogQueryRow], list[EnterpriseCatalogRow]]:
    """The listing's queries (each filter validated) and catalogs as store rows; a malformed
    entry is a ValueError naming its position."""
    rows = [
        catalog_query_row(query, f"catalog_queries[{index}]")
        for index, query in enumerate(loaded.catalog_queries)
    ]
    catalogs = [
        enterprise_catalog_row(catalog, f"enterprise_catalogs[{index}]")
        for index, catalog in enumerate(loaded.enterprise_catalogs)
    ]
    return rows, catalogs


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


def check_removal(
    stored_queries: set[str],
    incoming_queries: set[str],
    stored_catalogs: set[str],
    incoming_catalogs: set[str],
    max_share: float,
) -> None:
    """Raise ``GuardrailTripped`` when the listing would remove too many stored queries or
    catalogs (``_refuse_mass_removal``); the message names the override."""
    problems = [
        problem
        for problem in (
            _refuse_mass_removal("catalog query", stored_queries, incoming_queries, max_share),
            _refuse_mass_removal(
                "enterprise catalog", stored_catalogs, incoming_catalogs, max_share
            ),
        )
        if problem
    ]
    if problems:
        raise GuardrailTripped(
            f"refusing the catalog query listing: {'; '.join(problems)}. If that is really "
            "meant, re-run with run config confirm_mass_removal: true. Nothing was written."
        )


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
    rows, catalogs = listing_rows(loaded)
    stored_catalogs = {c.uuid for c in store.enterprise_catalogs()}
    incoming_catalogs = {c.uuid for c in catalogs}
    if not confirm_mass_removal:
        check_removal(
            {q.uuid for q in store.catalog_queries()},
            {row.uuid for row in rows},
            stored_catalogs,
            incoming_catalogs,
            max_removal_share,
        )
    sync = store.sync_catalog_queries(rows, catalogs, now)
    return QueryReport(rows, catalogs, sync, len(stored_catalogs - incoming_catalogs))


def _text_digest(text: str | None) -> str:
    return hashlib.sha256(json.dumps(text).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class QueryChanges:
    """What a catalog query listing changes in the store, uuids sorted in each list.

    ``new``/``changed``/``removed`` are catalog queries; a query is changed when its stored row
    differs from the listing's (filter, title, validity) or, for a valid filter, when its
    associations were last computed with another filter hash (``store.applied_filters()``):
    an edit that was stored but never evaluated still counts. ``evaluate`` are the new or
    changed queries whose associations must be computed again (valid, filter hash not the
    applied one): what ``only_changed_queries`` of the association step evaluates. ``catalogs``
    are enterprise catalogs added, edited (title, enterprise, query pointer) or removed: a
    catalog's content is its query's associations, joined when read, so a pointer change needs
    the catalog row written and nothing evaluated.
    """

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    evaluate: list[str] = field(default_factory=list)
    catalogs: list[str] = field(default_factory=list)
    tokens: tuple[str, ...] = ()
    """One line per change (``query:UUID:FILTER_HASH:TITLE_DIGEST``, ``query:UUID:removed``,
    ``catalog:UUID:ROW_DIGEST``, ``catalog:UUID:removed``), sorted: what ``digest`` hashes."""

    @property
    def empty(self) -> bool:
        return not self.tokens

    @property
    def digest(self) -> str:
        """sha256 of the sorted change lines: equal change sets, equal digests."""
        return change_digest(self.tokens)

    def summary(self) -> str:
        return (
            f"{len(self.new)} new, {len(self.changed)} changed, {len(self.removed)} removed "
            f"catalog queries ({len(self.evaluate)} to evaluate), "
            f"{len(self.catalogs)} enterprise catalogs changed"
        )


def change_digest(tokens: Sequence[str]) -> str:
    """sha256 over the change lines, sorted, one per line."""
    return hashlib.sha256("\n".join(sorted(tokens)).encode("utf-8")).hexdigest()


def diff_catalog_queries(
    rows: Sequence[CatalogQueryRow],
    catalogs: Sequence[EnterpriseCatalogRow],
    stored_rows: Sequence[CatalogQueryRow],
    stored_catalogs: Sequence[EnterpriseCatalogRow],
    applied: Mapping[str, str],
) -> QueryChanges:
    """The change set between a listing (rows from ``catalog_query_row`` and
    ``enterprise_catalog_row``) and the store's rows and applied filter hashes."""
    stored = {row.uuid: replace(row, updated_at=None) for row in stored_rows}
    new, changed, evaluate, tokens = [], [], [], []
    for row in rows:
        before = stored.get(row.uuid)
        stale = row.is_valid and applied.get(row.uuid) != row.filter_hash
        if before is not None and before == row and not stale:
            continue
        (new if before is None else changed).append(row.uuid)
        if stale:
            evaluate.append(row.uuid)
        tokens.append(f"query:{row.uuid}:{row.filter_hash}:{_text_digest(row.title)}")
    removed = sorted(set(stored) - {row.uuid for row in rows})
    tokens += [f"query:{uuid}:removed" for uuid in removed]
    stored_catalogs_by_uuid = {catalog.uuid: catalog for catalog in stored_catalogs}
    catalog_changes = []
    for catalog in catalogs:
        if stored_catalogs_by_uuid.get(catalog.uuid) != catalog:
            catalog_changes.append(catalog.uuid)
            row_text = json.dumps(
                [catalog.title, catalog.enterprise_uuid, catalog.catalog_query_uuid]
            )
            tokens.append(f"catalog:{catalog.uuid}:{_text_digest(row_text)}")
    gone = set(stored_catalogs_by_uuid) - {catalog.uuid for catalog in catalogs}
    catalog_changes += gone
    tokens += [f"catalog:{uuid}:removed" for uuid in gone]
    return QueryChanges(
        new=sorted(new),
        changed=sorted(changed),
        removed=removed,
        evaluate=sorted(evaluate),
        catalogs=sorted(catalog_changes),
        tokens=tuple(sorted(tokens)),
    )


def compare_catalog_queries(
    loaded: CatalogQueryFile, store: CatalogStore, *, max_removal_share: float = 0.2
) -> QueryChanges:
    """What storing ``loaded`` would change (``diff_catalog_queries``), or ``GuardrailTripped``
    when ``sync_catalog_queries`` would refuse the listing as a mass removal. Reads only."""
    rows, catalogs = listing_rows(loaded)
    stored_rows, stored_catalogs = store.catalog_queries(), store.enterprise_catalogs()
    check_removal(
        {row.uuid for row in stored_rows},
        {row.uuid for row in rows},
        {catalog.uuid for catalog in stored_catalogs},
        {catalog.uuid for catalog in catalogs},
        max_removal_share,
    )
    return diff_catalog_queries(
        rows, catalogs, stored_rows, stored_catalogs, store.applied_filters()
    )
