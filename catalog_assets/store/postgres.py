"""The PostgreSQL backend: the production store, shared by many processes."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import polars as pl

from catalog_assets.core.redaction import redact, redact_url
from catalog_assets.store import migrations
from catalog_assets.store import sql as store_sql
from catalog_assets.store.base import (
    StoreUnavailable,
)
from catalog_assets.store.shared import (
    SqlCatalogStore,
    empty_pairs,
)

# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

_PG_BULK_ROWS = 50_000  # a staged frame this large gets statistics and more work_mem
# Advisory lock keys: any constants shared by every catalog-assets process.
_PG_SCHEMA_LOCK_KEY = 0x0CA7A106
_PG_WRITER_LOCK_KEY = 0x0CA7A107


@cache
def _pg(sql: str) -> str:
    """`?` placeholders as psycopg2's `%s`."""
    if "%" in sql:
        raise ValueError("shared SQL must not contain '%'")
    return sql.replace("?", "%s")


class PostgresCatalogStore(SqlCatalogStore):
    """PostgreSQL through one psycopg2 connection; autocommit off, one `with conn:` per call."""

    _EXTRA_MIGRATIONS = migrations.PG_EXTRA_MIGRATIONS
    _JSON_FIELD = "(m -> ?)::text"
    _LIVE_FIELDS = store_sql.PG_SELECT_LIVE_FIELDS
    _LIVE_FIELDS_PARAMS = ("\\u0000", "\\u0000")  # the escape JSON writes a NUL as

    def __init__(self, url: str) -> None:
        import psycopg2

        self.url = url
        try:
            self._conn = psycopg2.connect(url)
        except psycopg2.OperationalError as error:
            # psycopg2 names the host, never the password; redact anyway, and say which store.
            raise StoreUnavailable(
                f"cannot connect to the catalog store {redact_url(url)}: {redact(error)}"
            ) from None
        self._conn.autocommit = False
        self._cur = self._conn.cursor()

    def close(self) -> None:
        if not self._conn.closed:
            self._cur.close()
            self._conn.close()

    @contextmanager
    def _begin(self) -> Iterator[None]:
        with self._conn:
            yield

    def _run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cur.execute(_pg(sql), tuple(params))

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(_pg(sql), [tuple(row) for row in rows])

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self._cur.execute(_pg(sql), tuple(params))
        return self._cur.fetchall()

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cur.execute(_pg(sql), tuple(params))
        return self._cur.rowcount

    def _load_stage(self, table: str, frame: pl.DataFrame) -> None:
        from psycopg2 import sql as pgsql

        # CSV with every non-numeric value quoted: an empty string is "" and a null is nothing,
        # which is how COPY tells them apart.
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, quote_style="non_numeric")
        buffer.seek(0)
        copy = pgsql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(pgsql.Identifier(table))
        self._cur.copy_expert(copy, buffer)
        if frame.height >= _PG_BULK_ROWS:
            # Statistics for the planner (it knows nothing of a fresh temporary table) and room
            # for the hash joins against it, for this transaction only.
            self._cur.execute(pgsql.SQL("ANALYZE {}").format(pgsql.Identifier(table)))
            self._cur.execute(store_sql.PG_BULK_WORK_MEM)

    def _lock_schema(self) -> None:
        self._rows(store_sql.PG_ADVISORY_XACT_LOCK, (_PG_SCHEMA_LOCK_KEY,))

    def _lock_writers(self) -> None:
        self._rows(store_sql.PG_ADVISORY_XACT_LOCK, (_PG_WRITER_LOCK_KEY,))

    def _bytes(self, value: Any) -> bytes | None:
        return None if value is None else bytes(value)

    def _staged_queries_pairs(self) -> pl.DataFrame:
        return self._copy_pairs_out(store_sql.PG_COPY_ASSOCIATIONS_OF_STAGED_QUERIES_OUT)

    def associations(self) -> pl.DataFrame:
        with self.transaction():
            return self._copy_pairs_out(store_sql.PG_COPY_ASSOCIATIONS_OUT)

    def _copy_pairs_out(self, copy: str) -> pl.DataFrame:
        buffer = io.BytesIO()
        self._cur.copy_expert(copy, buffer)
        if not buffer.getbuffer().nbytes:
            return empty_pairs()
        buffer.seek(0)
        return pl.read_csv(
            buffer,
            has_header=False,
            new_columns=list(store_sql.PAIRS_FRAME),
            schema=store_sql.PAIRS_FRAME,
        )
