"""Everything the SQL backends share: the store's behaviour written once over a few primitives
(run a statement, fetch rows, bulk-load a staging table) that each backend supplies.

Longer than most modules, on purpose: it is one class, and each method is one store operation
whose SQL lives in ``sql.py``; splitting it would scatter the contract it implements.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar

import polars as pl

from catalog_assets.core.catalog_contents import (
    ContentRelation,
    Membership,
    MembershipRule,
    RelationKind,
    best_memberships,
)
from catalog_assets.core.content import ContentRecord, canonical_json, naive_utc, utcnow
from catalog_assets.store import migrations
from catalog_assets.store import sql as store_sql
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
)

# --------------------------------------------------------------------------------------------
# The shared implementation
# --------------------------------------------------------------------------------------------


class SqlCatalogStore(CatalogStore):
    """Everything but the connection: the backends supply the primitives below."""

    # Extra statements per schema version for one backend (indexes that only it needs).
    _EXTRA_MIGRATIONS: ClassVar[dict[int, tuple[str, ...]]] = {}
    _JSON_FIELD: ClassVar[str]
    """SQL for one top-level field of the record as JSON text (NULL when absent) in
    ``_LIVE_FIELDS``, its path bound as the parameter ``_json_field_path`` gives."""
    _LIVE_FIELDS: ClassVar[str] = store_sql.SELECT_LIVE_FIELDS
    """The live rows: key, whole record text or NULL, ``{columns}`` (``_JSON_FIELD`` once per
    field; ``{nulls}`` as many NULLs); its parameters: the paths, then ``_LIVE_FIELDS_PARAMS``."""
    _LIVE_FIELDS_PARAMS: ClassVar[tuple[str, ...]] = ()

    def _json_field_path(self, name: str) -> str:
        return name

    _depth = 0  # how many `transaction()` blocks are open on this store

    # Backend primitives --------------------------------------------------------------------

    @abstractmethod
    def _begin(self) -> Any:
        """A context manager: one transaction, committed on success, rolled back on error."""

    @abstractmethod
    def _run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Execute a statement that returns no rows."""

    @abstractmethod
    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Execute a statement once per parameter row."""

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Execute a statement and fetch every row it returns."""

    @abstractmethod
    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute an INSERT/UPDATE/DELETE and return how many rows it changed."""

    @abstractmethod
    def _load_stage(self, table: str, frame: pl.DataFrame) -> None:
        """Bulk-load `frame` into the (empty) staging table `table`."""

    @abstractmethod
    def _lock_schema(self) -> None:
        """Serialise concurrent `ensure_schema` calls, where the backend needs it."""

    @abstractmethod
    def _lock_writers(self) -> None:
        """Take the association writers' lock for this transaction, where the backend needs it."""

    @abstractmethod
    def _bytes(self, value: Any) -> bytes | None:
        """A BLOB/BYTEA value as bytes."""

    @abstractmethod
    def _staged_queries_pairs(self) -> pl.DataFrame:
        """The pairs of the queries in `stage_query_uuids`, as `PAIRS_FRAME`."""

    def _remove_staged_pairs(self, staged: int) -> int:
        """Delete the pairs in `stage_removes`; returns how many rows went."""
        return self._count(store_sql.DELETE_STAGED_REMOVES)

    @contextmanager
    def _staged(self, table: str, frame: pl.DataFrame) -> Iterator[None]:
        """`frame` in the staging table `table` for the duration of the block."""
        self._run(store_sql.STAGE_DROP[table])
        self._run(store_sql.STAGE_DDL[table])
        if frame.height:
            self._load_stage(table, frame)
        yield
        self._run(store_sql.STAGE_DROP[table])

    # Transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._begin():
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0

    def lock_writers(self) -> None:
        if not self._depth:
            raise RuntimeError(
                "lock_writers() holds its lock for a transaction: call it inside one"
            )
        self._lock_writers()

    # Schema -------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        if _schema_problem(self.schema_version()) is None:
            return  # current: no DDL, no lock
        with self.transaction():
            self._lock_schema()
            self._run(migrations.CREATE_SCHEMA_VERSION)
            applied = {row[0] for row in self._rows(migrations.SELECT_SCHEMA_VERSIONS)}
            if max(applied, default=0) > migrations.SCHEMA_VERSION:
                raise StoreSchemaMismatch(_schema_problem(max(applied)))
            for version in sorted(migrations.MIGRATIONS):
                if version in applied:
                    continue
                extra = self._EXTRA_MIGRATIONS.get(version, ())
                for statement in migrations.MIGRATIONS[version] + extra:
                    self._run(statement)
                self._run(migrations.INSERT_SCHEMA_VERSION, (version, utcnow()))

    def check_schema(self) -> None:
        problem = _schema_problem(self.schema_version())
        if problem is not None:
            raise StoreSchemaMismatch(problem)

    def schema_version(self) -> int:
        with self.transaction():
            if not self._rows(migrations.SCHEMA_VERSION_TABLE_EXISTS)[0][0]:
                return 0
            return max((row[0] for row in self._rows(migrations.SELECT_SCHEMA_VERSIONS)), default=0)

    # Content ------------------------------------------------------------------------------

    def content_state(self) -> dict[str, ContentState]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_CONTENT_STATE)
        return {
            key: ContentState(h, modified, bool(deleted), content_type)
            for key, h, modified, deleted, content_type in rows
        }

    def apply_content_changes(
        self,
        upserts: Sequence[ContentRecord],
        tombstones: Sequence[str],
        now: datetime,
        unchanged_since: datetime | None = None,
    ) -> ContentWriteResult:
        now = _naive(now)
        since = _naive(unchanged_since) if unchanged_since is not None else now
        for record in upserts:
            _refuse_nul(
                f"content {record.content_key!r}",
                content_key=record.content_key,
                content_type=record.content_type,
                parent_content_key=record.parent_content_key,
                content_uuid=record.content_uuid,
            )
        records = _newest_per_key(upserts)
        doomed = list(dict.fromkeys(tombstones))
        both = records.keys() & set(doomed)
        if both:
            raise ValueError(f"content keys both upserted and tombstoned: {sorted(both)[:10]}")
        result = ContentWriteResult()
        with self.transaction():
            if doomed:
                frame = pl.DataFrame({"content_key": doomed}, schema=store_sql.KEYS_FRAME)
                with self._staged("stage_keys", frame):
                    gone = {
                        row[0]
                        for row in self._rows(store_sql.TOMBSTONE_STAGED_KEYS, (now, now, since))
                    }
                    result.associations_removed = self._count(
                        store_sql.DELETE_PAIRS_OF_STAGED_TOMBSTONES
                    )
                result.tombstoned = [key for key in doomed if key in gone]
            if records:
                with self._staged("stage_content", _content_frame(records.values())):
                    existing = {row[0] for row in self._rows(store_sql.SELECT_STAGED_EXISTING)}
                    written = {
                        row[0] for row in self._rows(store_sql.UPSERT_STAGED_CONTENT, (now,))
                    }
                    # What was not written is stale or unchanged, judged by the row that stopped
                    # it, which under concurrent writers may be newer than what `existing` saw.
                    stored = (
                        dict(self._rows(store_sql.SELECT_STAGED_STORED_MODIFIED))
                        if len(written) < len(records)
                        else {}
                    )
                for key, record in records.items():
                    if key in written:
                        (result.updated if key in existing else result.inserted).append(key)
                    elif _older(naive_utc(record.source_modified), stored.get(key)):
                        result.stale.append(key)
                    else:
                        result.unchanged.append(key)
        return result

    def tombstone_content(
        self, key: str, now: datetime, source_modified: datetime | None = None
    ) -> bool:
        now, modified = _naive(now), naive_utc(source_modified)
        with self.transaction():
            params = (now, now, modified, key, modified, modified)
            if self._count(store_sql.TOMBSTONE_ONE, params) == 0:
                return False
            self._run(store_sql.DELETE_PAIRS_OF_CONTENT, (key,))
            return True

    def live_content(self) -> list[tuple[str, dict]]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_LIVE_CONTENT)
        # Sorted here, by code point, so the order does not depend on the database's collation.
        return [(key, json.loads(text)) for key, text in sorted(rows)]

    def live_content_fields(self, fields: Iterable[str]) -> list[tuple[str, dict]]:
        names = sorted(set(fields))
        # One bound JSON-path expression per field (the backend's ``_JSON_FIELD``): the
        # database extracts the fields, and only their JSON text crosses the wire. A row may
        # come whole instead (its record text in the second column), for Python to read.
        query = self._LIVE_FIELDS.format(
            columns="".join(f", {self._JSON_FIELD}" for _ in names),
            nulls=", NULL" * len(names),
        )
        paths = [self._json_field_path(name) for name in names]
        with self.transaction():
            rows = self._rows(query, [*paths, *self._LIVE_FIELDS_PARAMS])
        rows.sort()  # by code point, whatever the database's collation
        # All values parsed as one JSON array: one parse, not one per value (4 s at 200,000).
        texts = [text for row in rows if row[1] is None for text in row[2:]]
        values = iter(json.loads("[" + ",".join(t or "null" for t in texts) + "]"))
        out = []
        for key, whole, *columns in rows:
            if whole is not None:
                record = json.loads(whole)
                out.append((key, {name: record[name] for name in names if name in record}))
            else:
                row_values = [next(values) for _ in names]
                out.append(
                    (
                        key,
                        {
                            n: v
                            for n, v, t in zip(names, row_values, columns, strict=True)
                            if t is not None
                        },
                    )
                )
        return out

    def get_content(self, key: str) -> StoredContent | None:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_CONTENT, (key,))
        if not rows:
            return None
        (ck, ctype, parent, cuuid, text, modified, chash, updated, deleted) = rows[0]
        return StoredContent(
            ck, ctype, parent, cuuid, json.loads(text), modified, chash, updated, deleted
        )

    # Catalog queries ----------------------------------------------------------------------

    def sync_catalog_queries(
        self,
        queries: Sequence[CatalogQueryRow],
        catalogs: Sequence[EnterpriseCatalogRow],
        now: datetime,
    ) -> QuerySyncResult:
        now = _naive(now)
        for q in queries:
            _refuse_bad_uuid("catalog query", q.uuid)
            where = f"catalog query {q.uuid!r}"
            _refuse_nul(where, title=q.title, filter_hash=q.filter_hash, error=q.error)
            _refuse_nul(where, content_filter=q.content_filter, warnings=_warnings_text(q.warnings))
            _refuse_non_json(where, q.content_filter)
        for c in catalogs:
            _refuse_bad_uuid("enterprise catalog", c.uuid)
            _refuse_nul(
                f"enterprise catalog {c.uuid!r}",
                title=c.title,
                enterprise_uuid=c.enterprise_uuid,
                catalog_query_uuid=c.catalog_query_uuid,
            )
        _refuse_duplicates("catalog query", [q.uuid for q in queries])
        _refuse_duplicates("enterprise catalog", [c.uuid for c in catalogs])
        query_frame = pl.DataFrame(
            [
                (
                    q.uuid,
                    q.title,
                    q.content_filter,
                    q.filter_hash,
                    bool(q.is_valid),
                    q.error,
                    _warnings_text(q.warnings),
                )
                for q in queries
            ],
            schema=store_sql.QUERIES_FRAME,
            orient="row",
        )
        catalog_frame = pl.DataFrame(
            [(c.uuid, c.title, c.enterprise_uuid, c.catalog_query_uuid) for c in catalogs],
            schema=store_sql.CATALOGS_FRAME,
            orient="row",
        )
        result = QuerySyncResult()
        with self.transaction():
            before = {row[0]: tuple(row[1:7]) for row in self._rows(store_sql.SELECT_QUERIES)}
            for query_row in query_frame.iter_rows():
                uuid, values = query_row[0], tuple(query_row[1:])
                if uuid not in before:
                    result.added.append(uuid)
                elif before[uuid] != values:
                    result.changed.append(uuid)
                else:
                    result.unchanged.append(uuid)
            incoming = set(query_frame["uuid"].to_list())
            result.removed = sorted(uuid for uuid in before if uuid not in incoming)
            with self._staged("stage_queries", query_frame):
                if result.removed:
                    self._run(store_sql.DELETE_CONTENT_OF_UNSTAGED_QUERIES)
                    self._run(store_sql.DELETE_UNSTAGED_QUERIES)
                self._run(store_sql.UPSERT_STAGED_QUERIES, (now,))
            with self._staged("stage_catalogs", catalog_frame):
                self._run(store_sql.DELETE_UNSTAGED_CATALOGS)
                self._run(store_sql.UPSERT_STAGED_CATALOGS)
        return result

    def catalog_queries(self) -> list[CatalogQueryRow]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_QUERIES)
        return [
            CatalogQueryRow(
                uuid=row[0],
                title=row[1],
                content_filter=row[2],
                filter_hash=row[3],
                is_valid=bool(row[4]),
                error=row[5],
                warnings=tuple(json.loads(row[6])),
                updated_at=row[7],
            )
            for row in rows
        ]

    def enterprise_catalogs(self) -> list[EnterpriseCatalogRow]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_CATALOGS)
        return [EnterpriseCatalogRow(*row) for row in rows]

    # Associations -------------------------------------------------------------------------

    def apply_association_diff(
        self,
        adds: pl.DataFrame,
        removes: pl.DataFrame,
        now: datetime,
        applied_filters: Mapping[str, str] | None = None,
    ) -> tuple[int, int]:
        now = _naive(now)
        adds, removes = _pairs(adds, "adds"), _pairs(removes, "removes")
        added = removed = 0
        with self.transaction():
            if removes.height:
                with self._staged("stage_removes", removes):
                    removed = self._remove_staged_pairs(removes.height)
            if adds.height:
                with self._staged("stage_adds", adds):
                    added = self._count(store_sql.INSERT_STAGED_ADDS, (now,))
            stored = dict(self._rows(store_sql.SELECT_APPLIED_FILTERS))
            for uuid, filter_hash in (applied_filters or {}).items():
                if stored.get(uuid) != filter_hash:
                    self._run(store_sql.DELETE_APPLIED_FILTER, (uuid,))
                    self._run(store_sql.INSERT_APPLIED_FILTER, (uuid, filter_hash, now))
        return added, removed

    def associations_of_queries(self, uuids: Iterable[str]) -> pl.DataFrame:
        frame = pl.DataFrame(
            {"uuid": list(dict.fromkeys(uuids))}, schema=store_sql.QUERY_UUIDS_FRAME
        )
        if not frame.height:
            return empty_pairs()
        with self.transaction(), self._staged("stage_query_uuids", frame):
            return self._staged_queries_pairs()

    def association_count(self) -> int:
        with self.transaction():
            return int(self._rows(store_sql.COUNT_ASSOCIATIONS)[0][0])

    def dangling_associations(self, limit: int) -> tuple[int, list[tuple[str, str]]]:
        with self.transaction():
            count = int(self._rows(store_sql.COUNT_DANGLING_ASSOCIATIONS)[0][0])
            examples = self._rows(store_sql.SELECT_DANGLING_ASSOCIATIONS, (limit,))
        return count, [(uuid, key) for uuid, key in examples]

    def applied_filters(self) -> dict[str, str]:
        with self.transaction():
            return dict(self._rows(store_sql.SELECT_APPLIED_FILTERS))

    def associations_of(self, content_key: str) -> dict[str, datetime]:
        with self.transaction():
            return dict(self._rows(store_sql.SELECT_QUERIES_OF_CONTENT, (content_key,)))

    def replace_content_associations(
        self, content_key: str, query_uuids: Sequence[str], now: datetime
    ) -> tuple[int, int]:
        now = _naive(now)
        wanted = list(dict.fromkeys(query_uuids))
        with self.transaction():
            current = {
                row[0] for row in self._rows(store_sql.SELECT_QUERIES_OF_CONTENT, (content_key,))
            }
            to_remove = sorted(current.difference(wanted))
            to_add = [uuid for uuid in wanted if uuid not in current]
            if to_remove:
                self._run_many(store_sql.DELETE_PAIR, [(uuid, content_key) for uuid in to_remove])
            if to_add:
                self._run_many(store_sql.INSERT_PAIR, [(uuid, content_key, now) for uuid in to_add])
        return len(to_add), len(to_remove)

    # Lookups ------------------------------------------------------------------------------

    def memberships(self, content_key: str) -> list[Membership]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_MEMBERSHIPS, (content_key,) * 3)
        return sorted(
            {Membership(uuid, MembershipRule(rule), via) for uuid, rule, via in rows},
            key=lambda m: (m.catalog_query_uuid, m.rule, m.via_key),
        )

    def catalogs_for(self, content_key: str) -> list[dict[str, Any]]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_CATALOGS_FOR, (content_key,) * 3)
        names = (
            "catalog_uuid",
            "catalog_title",
            "enterprise_uuid",
            "catalog_query_uuid",
            "catalog_query_title",
        )
        best = best_memberships(Membership(row[3], MembershipRule(row[5]), row[6]) for row in rows)
        found: dict[tuple, dict[str, Any]] = {}
        for row in rows:  # ordered by query, then catalog
            membership = best[row[3]]
            found.setdefault(
                (row[3], row[0]),
                {
                    **dict(zip(names, row[:5], strict=True)),
                    "rule": str(membership.rule),
                    "via_key": membership.via_key,
                },
            )
        return list(found.values())

    def contents_of(self, uuid: str) -> list[dict[str, Any]]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_CONTENTS_OF, (uuid, uuid))
        out = []
        for key, content_type, text, deleted in sorted(rows, key=lambda row: row[0]):
            metadata = json.loads(text) if text is not None else {}
            out.append(
                {
                    "content_key": key,
                    "content_type": content_type,
                    "title": metadata.get("title"),
                    "deleted": bool(deleted),
                }
            )
        return out

    # Related content ----------------------------------------------------------------------

    def replace_relations(
        self, relations: Sequence[ContentRelation], origins: Iterable[str] | None = None
    ) -> tuple[int, int]:
        scope = None if origins is None else list(dict.fromkeys(origins))
        in_scope = set(scope or ())
        rows = sorted(set(relations))
        for relation in rows:
            _refuse_nul("content relation", **_relation_values(relation))
            if scope is not None and relation.content_key not in in_scope:
                raise ValueError(
                    f"content relation {relation} is declared by {relation.content_key!r}, "
                    f"which is not among the records whose relations are replaced"
                )
        frame = pl.DataFrame(
            [(r.content_key, r.related_key, str(r.relation)) for r in rows],
            schema=store_sql.RELATIONS_FRAME,
            orient="row",
        )
        if scope == []:
            return 0, 0
        with self.transaction(), self._staged("stage_relations", frame):
            if scope is None:
                removed = self._count(store_sql.DELETE_UNSTAGED_RELATIONS)
            else:
                keys = pl.DataFrame({"content_key": scope}, schema=store_sql.KEYS_FRAME)
                with self._staged("stage_keys", keys):
                    removed = self._count(store_sql.DELETE_UNSTAGED_RELATIONS_OF_STAGED_KEYS)
            added = self._count(store_sql.INSERT_STAGED_RELATIONS) if rows else 0
        return added, removed

    def relations(self) -> list[ContentRelation]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_RELATIONS)
        return sorted(ContentRelation(key, other, RelationKind(kind)) for key, other, kind in rows)

    def related_content(self, content_key: str) -> list[dict[str, Any]]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_RELATED, (content_key, content_key))
        out = []
        for direction, other, relation, content_type, text, deleted in sorted(
            rows, key=lambda row: (row[1], row[0], row[2])
        ):
            out.append(
                {
                    "direction": direction,
                    "related_key": other,
                    "relation": relation,
                    "content_type": content_type,
                    "title": json.loads(text).get("title") if text is not None else None,
                    "deleted": bool(deleted),
                }
            )
        return out

    # Dead letters -------------------------------------------------------------------------

    def add_dead_letters(self, rows: Sequence[DeadLetter]) -> int:
        params, seen = [], set()
        for row in rows:
            dedupe = _dead_letter_dedupe_key(row)
            if dedupe is not None and dedupe in seen:
                continue
            seen.add(dedupe)
            params.append(
                (
                    _escape_nul(row.topic),
                    row.partition,
                    row.offset,
                    None if row.key is None else bytes(row.key),
                    _escape_nul(row.headers),
                    None if row.value is None else bytes(row.value),
                    _escape_nul(row.error),
                    _naive(row.received_at),
                    naive_utc(row.replayed_at),
                    dedupe,
                )
            )
        if not params:
            return 0
        reopened = 0
        with self.transaction():
            fresh = []
            for p in params:
                if p[-1] is None or not self._rows(store_sql.DEAD_LETTER_EXISTS, (p[-1],))[0][0]:
                    fresh.append(p)
                else:
                    reopened += self._count(store_sql.REOPEN_DEAD_LETTER, (p[6], p[7], p[-1]))
            if fresh:
                self._run_many(store_sql.INSERT_DEAD_LETTER, fresh)
        return len(fresh) + reopened

    def dead_letters(self, include_replayed: bool = False) -> list[DeadLetter]:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_DEAD_LETTERS, (bool(include_replayed),))
        return [
            DeadLetter(
                topic=row[0],
                partition=row[1],
                offset=row[2],
                key=self._bytes(row[3]),
                headers=row[4],
                value=self._bytes(row[5]),
                error=row[6],
                received_at=row[7],
                replayed_at=row[8],
                id=row[9],
            )
            for row in rows
        ]

    def mark_dead_letters_replayed(self, ids: Iterable[int], now: datetime) -> int:
        now = _naive(now)
        marked = 0
        with self.transaction():
            for ident in dict.fromkeys(ids):
                marked += self._count(store_sql.MARK_DEAD_LETTER_REPLAYED, (now, int(ident)))
        return marked

    # Event records waiting for their run ---------------------------------------------------

    def save_event_payloads(self, payloads: Mapping[str, tuple[str, dict]], now: datetime) -> None:
        rows = [
            (ref, key, canonical_json(metadata), _naive(now))
            for ref, (key, metadata) in payloads.items()
        ]
        for ref, key, _, _ in rows:
            _refuse_nul(f"event payload {ref!r}", content_key=key)
        if rows:
            with self.transaction():
                self._run_many(store_sql.INSERT_EVENT_PAYLOAD, rows)

    def event_payload(self, ref: str) -> dict | None:
        with self.transaction():
            rows = self._rows(store_sql.SELECT_EVENT_PAYLOAD, (ref,))
        return json.loads(rows[0][0]) if rows else None

    def delete_event_payloads(self, refs: Iterable[str]) -> int:
        deleted = 0
        with self.transaction():
            for ref in dict.fromkeys(refs):
                deleted += self._count(store_sql.DELETE_EVENT_PAYLOAD, (ref,))
        return deleted


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _naive(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return naive_utc(value)  # type: ignore[return-value]


def _older(incoming: datetime | None, stored: datetime | None) -> bool:
    return incoming is not None and stored is not None and incoming < stored


def _newest_per_key(records: Iterable[ContentRecord]) -> dict[str, ContentRecord]:
    """One record per key: the newest by source_modified, the last given among equals."""
    out: dict[str, ContentRecord] = {}
    for record in records:
        previous = out.get(record.content_key)
        if previous is None or not _older(
            naive_utc(record.source_modified), naive_utc(previous.source_modified)
        ):
            out[record.content_key] = record
    return out


def _content_frame(records: Iterable[ContentRecord]) -> pl.DataFrame:
    rows = [
        (
            r.content_key,
            r.content_type,
            r.parent_content_key,
            r.content_uuid,
            canonical_json(r.metadata),
            naive_utc(r.source_modified),
            r.content_hash,
        )
        for r in records
    ]
    return pl.DataFrame(rows, schema=store_sql.CONTENT_FRAME, orient="row")


def _schema_problem(version: int) -> str | None:
    """What is wrong with a store at schema `version` for this code, or None when nothing is."""
    known = migrations.SCHEMA_VERSION
    if version == known:
        return None
    if version == 0:
        return "the catalog store has no tables yet: run `catalog-assets migrate` (or a refresh)"
    if version < known:
        return (
            f"the catalog store is at schema version {version} and this code needs {known}: "
            "run `catalog-assets migrate`"
        )
    return (
        f"the catalog store is at schema version {version}, newer than this code knows "
        f"({known}): upgrade catalog-assets before using this store"
    )


def _refuse_nul(where: str, **values: str | None) -> None:
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{where}: {name} contains a NUL character, which no store can keep")


def _relation_values(relation: ContentRelation) -> dict[str, str]:
    return {"content_key": relation.content_key, "related_key": relation.related_key}


def _escape_nul(value: str | None) -> str | None:
    """Dead letters keep everything: a NUL is written as the text ``\\x00`` instead."""
    return value.replace("\x00", "\\x00") if value is not None else None


def _refuse_bad_uuid(what: str, uuid: object) -> None:
    if not isinstance(uuid, str) or not uuid.strip():
        raise ValueError(f"{what} uuid {uuid!r} is not a non-empty string")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _refuse_non_json(where: str, text: str) -> None:
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise ValueError(f"{where}: content_filter is not strict JSON ({error})") from None


def _dead_letter_dedupe_key(row: DeadLetter) -> str | None:
    """The same message (and key) gives the same key; None for letters without coordinates."""
    if row.topic is None or row.partition is None or row.offset is None:
        return None
    digest = hashlib.sha256(f"{row.topic}\x00{row.partition}\x00{row.offset}\x00".encode())
    digest.update(bytes(row.key or b""))
    return digest.hexdigest()


def _warnings_text(warnings: Sequence[str]) -> str:
    return json.dumps(list(warnings), ensure_ascii=False)


def _refuse_duplicates(what: str, uuids: Sequence[str]) -> None:
    duplicates = sorted(uuid for uuid, n in Counter(uuids).items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate {what} uuids: {duplicates[:10]}")


def empty_pairs() -> pl.DataFrame:
    return pl.DataFrame(schema=store_sql.PAIRS_FRAME)


def _pairs(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """The two association columns as strings, each pair once; nulls are refused."""
    missing = [column for column in store_sql.PAIRS_FRAME if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame lacks columns {missing}")
    pairs = frame.select(list(store_sql.PAIRS_FRAME)).cast(store_sql.PAIRS_FRAME)
    if pairs.null_count().sum_horizontal().item():
        raise ValueError(f"{name} frame has null catalog_query_uuid or content_key")
    # Sorted, so that the database's own sort before the index inserts has little left to do.
    return pairs.unique().sort(list(store_sql.PAIRS_FRAME))
