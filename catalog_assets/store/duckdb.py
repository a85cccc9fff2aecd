"""The embedded DuckDB backend: one file, one writer process at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import polars as pl

from catalog_assets.store import sql as store_sql
from catalog_assets.store.shared import (
    SqlCatalogStore,
    empty_pairs,
)

# --------------------------------------------------------------------------------------------
# DuckDB
# --------------------------------------------------------------------------------------------


class DuckDBCatalogStore(SqlCatalogStore):
    """An embedded DuckDB file (or `:memory:`), through one connection: one writer per file."""

    # At least this many removes, and at least a tenth of the table, rebuild the table.
    REBUILD_MIN_REMOVES = 20_000
    _JSON_FIELD = "CAST(json_extract(json_metadata, ?) AS VARCHAR)"

    def _json_field_path(self, name: str) -> str:
        """A JSON Pointer (RFC 6901): any key, even one with dots, quotes or slashes."""
        return "/" + name.replace("~", "~0").replace("/", "~1")

    # DuckDB lets one process open a file at a time; another run (an event-lane run next to a
    # refresh) waits its turn for up to this long rather than failing at once.
    LOCK_WAIT_SECONDS = 120.0

    def __init__(self, path: str) -> None:
        import duckdb

        self.path = path
        deadline = time.monotonic() + self.LOCK_WAIT_SECONDS
        while True:
            try:
                self._con = duckdb.connect(path)
                return
            except duckdb.IOException as error:
                if "lock" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _begin(self) -> Iterator[None]:
        self._con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            with suppress(Exception):  # keep the error that failed the transaction
                self._con.execute("ROLLBACK")
            raise
        try:
            self._con.execute("COMMIT")
        except Exception:
            # A failed commit has already rolled the transaction back; make sure of it.
            with suppress(Exception):
                self._con.execute("ROLLBACK")
            raise

    def _run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(sql, list(params))

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._con.executemany(sql, [list(row) for row in rows])

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        # duckdb 2.0 results stream: fetch everything before the next statement runs.
        return self._con.execute(sql, list(params)).fetchall()

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        rows = self._con.execute(sql, list(params)).fetchall()
        return int(rows[0][0]) if rows else 0

    def _load_stage(self, table: str, frame: pl.DataFrame) -> None:
        # Through the Arrow PyCapsule interface: a polars frame is scanned where it lives, and
        # neither pyarrow nor SQL text is needed. Columns go in by position.
        self._con.from_arrow(frame.__arrow_c_stream__()).insert_into(table)

    def _remove_staged_pairs(self, staged: int) -> int:
        # DuckDB deletes from an ART index (the primary key) row by row, about 13 µs a row, while
        # building the table afresh costs about a tenth of that per kept row: a large removal
        # rebuilds the table from the rows that stay, with the table's own current definition.
        total = self._rows(store_sql.DUCK_COUNT_PAIRS)[0][0]
        if staged < self.REBUILD_MIN_REMOVES or staged * 10 < total:
            return self._count(store_sql.DELETE_STAGED_REMOVES)
        table_ddl = [row[0] for row in self._rows(store_sql.DUCK_PAIRS_TABLE_DDL)]
        index_ddl = [row[0] for row in self._rows(store_sql.DUCK_PAIRS_INDEX_DDL)]
        if len(table_ddl) != 1:
            return self._count(store_sql.DELETE_STAGED_REMOVES)
        self._run(store_sql.DUCK_DROP_KEEP_PAIRS)
        self._run(store_sql.DUCK_KEEP_PAIRS)
        kept = self._rows(store_sql.DUCK_COUNT_KEEP_PAIRS)[0][0]
        self._run(store_sql.DUCK_DROP_PAIRS)
        for statement in table_ddl + index_ddl:
            self._run(statement)
        self._run(store_sql.DUCK_RESTORE_PAIRS)
        self._run(store_sql.DUCK_DROP_KEEP_PAIRS)
        return total - kept

    def _lock_schema(self) -> None:
        """One writer per file: nothing to serialise."""

    def _lock_writers(self) -> None:
        """One process per file: nothing to serialise."""

    def _bytes(self, value: Any) -> bytes | None:
        return None if value is None else bytes(value)

    def _staged_queries_pairs(self) -> pl.DataFrame:
        frame = pl.DataFrame(self._con.sql(store_sql.SELECT_ASSOCIATIONS_OF_STAGED_QUERIES))
        return frame.cast(store_sql.PAIRS_FRAME) if frame.height else empty_pairs()

    def associations(self) -> pl.DataFrame:
        with self.transaction():
            # The relation exports an Arrow C stream that polars reads directly (duckdb 2.0's
            # `.pl()` needs pyarrow, which this project does not depend on).
            frame = pl.DataFrame(self._con.sql(store_sql.SELECT_ASSOCIATIONS))
        return frame.cast(store_sql.PAIRS_FRAME) if frame.width else empty_pairs()
