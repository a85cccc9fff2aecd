"""The catalog store: one interface, two backends.

DuckDB (an embedded file) is the default, PostgreSQL the production backend. The tables are the
product's interface for downstream services, so their names and columns are fixed.

Both backends share the SQL, all of it in store_sql.py. It is written with `?` placeholders;
the PostgreSQL backend turns them into psycopg2's `%s`. Values are always bound, never formatted
into SQL. Bulk data goes through a temporary staging table that each backend fills its fastest
way (DuckDB scans the polars frame through the Arrow C stream interface, PostgreSQL takes a CSV
`COPY`), followed by one set-based statement over the staging table. (DuckDB removes rows from
an index one at a time, so removing a large part of the associations rebuilds that table.)

Timestamps are naive UTC in both backends.
"""

from __future__ import annotations

from pathlib import Path

from catalog_assets.core.redaction import redact_url
from catalog_assets.store.base import (
    CatalogQueryRow,
    CatalogStore,
    ContentState,
    ContentWriteResult,
    DeadLetter,
    EnterpriseCatalogRow,
    QuerySyncResult,
    StoredContent,
    StoreSchemaMismatch,
    StoreUnavailable,
)

__all__ = [
    "CatalogQueryRow",
    "CatalogStore",
    "ContentState",
    "ContentWriteResult",
    "DeadLetter",
    "EnterpriseCatalogRow",
    "QuerySyncResult",
    "StoreSchemaMismatch",
    "StoreUnavailable",
    "StoredContent",
    "open_store",
]


def open_store(url: str) -> CatalogStore:
    """A store for `duckdb:///<path>` (or `duckdb:///:memory:`) or `postgresql://...`.

    The schema is not created here: call `ensure_schema()`.
    """
    if url.startswith("duckdb:///"):
        path = url.removeprefix("duckdb:///")
        if not path:
            raise ValueError(f"no database path in {url!r}; use duckdb:///<path>")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        from catalog_assets.store.duckdb import DuckDBCatalogStore

        return DuckDBCatalogStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from catalog_assets.store.postgres import PostgresCatalogStore

        return PostgresCatalogStore(url)
    raise ValueError(
        f"unsupported store url {redact_url(url)!r}: use duckdb:///<path> or postgresql://..."
    )
