"""Step 1 of the bulk lane: validate every catalog query and store queries and catalogs,
guarded against a listing that would remove too much at once."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
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
