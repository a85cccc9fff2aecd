"""The catalog store's interface and row types: what every backend does, and its errors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import polars as pl

from catalog_assets.core.catalog_contents import AllowLists, ContentRelation, Membership
from catalog_assets.core.content import ContentRecord

# --------------------------------------------------------------------------------------------
# Row types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentState:
    """What a full crawl needs to know about a stored content row to diff against it."""

    content_hash: str
    source_modified: datetime | None
    deleted: bool
    content_type: str = ""


@dataclass(frozen=True)
class StoredContent:
    """A `content_metadata` row, its JSON parsed."""

    content_key: str
    content_type: str
    parent_content_key: str | None
    content_uuid: str | None
    metadata: dict
    source_modified: datetime | None
    content_hash: str
    updated_at: datetime
    deleted_at: datetime | None


@dataclass
class ContentWriteResult:
    """The content keys of one `apply_content_changes`, by what happened to them."""

    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    tombstoned: list[str] = field(default_factory=list)
    associations_removed: int = 0  # the pairs of the tombstoned keys, removed with them


@dataclass(frozen=True)
class CatalogQueryRow:
    """A `catalog_query` row. `content_filter` is JSON text kept exactly as given."""

    uuid: str
    title: str | None
    content_filter: str
    filter_hash: str
    is_valid: bool
    error: str | None = None
    warnings: tuple[str, ...] = ()
    updated_at: datetime | None = None  # set by the store; ignored on input


@dataclass(frozen=True)
class EnterpriseCatalogRow:
    """An `enterprise_catalog` row."""

    uuid: str
    title: str | None
    enterprise_uuid: str | None
    catalog_query_uuid: str | None


@dataclass
class QuerySyncResult:
    """The catalog query uuids of one `sync_catalog_queries`, by what happened to them."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be processed, its key and value kept as the raw bytes received.

    `headers` is JSON text (the caller encodes the message headers); `id` is set by the store.
    """

    topic: str | None
    partition: int | None
    offset: int | None
    key: bytes | None
    headers: str | None
    value: bytes | None
    error: str
    received_at: datetime
    replayed_at: datetime | None = None
    id: int | None = None


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


class CatalogStore(ABC):
    """The catalog tables, behind the same methods on every backend. A context manager."""

    allow_lists: AllowLists = AllowLists()
    """What both lanes admit when they write content through this store (whoever opens the
    store sets the configured lists; enterprise-catalog's by default). Kept with the store so
    that every writer of the one store applies the same lists."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the tables, or bring them up to the current schema version. Idempotent, and
        free of DDL when the store is current; raises `StoreSchemaMismatch` for a newer store."""

    @abstractmethod
    def check_schema(self) -> None:
        """Raise `StoreSchemaMismatch` unless the store is at this code's schema version.

        Read-only (no DDL): for lookups, which must not need the rights to migrate."""

    @abstractmethod
    def schema_version(self) -> int:
        """The highest schema version applied, 0 when none is."""

    @abstractmethod
    def transaction(self) -> Any:
        """A context manager: everything the store does inside it is one transaction.

        Store methods called inside it join it (they nest), so several writes become visible
        together or not at all."""

    @abstractmethod
    def lock_writers(self) -> None:
        """Inside `transaction()`: wait until no other association writer holds the lock, and
        hold it until the transaction ends.

        The full refresh's association step and the event lane's applies each read content and
        write associations; serialised, neither can write pairs computed from what the other
        changed in the meantime. (PostgreSQL: an advisory transaction lock; DuckDB allows one
        process per file, which serialises them already.)"""

    # Content ------------------------------------------------------------------------------

    @abstractmethod
    def content_state(self) -> dict[str, ContentState]:
        """Every content row's hash, source modified time and whether it is tombstoned."""

    @abstractmethod
    def apply_content_changes(
        self,
        upserts: Sequence[ContentRecord],
        tombstones: Sequence[str],
        now: datetime,
        unchanged_since: datetime | None = None,
    ) -> ContentWriteResult:
        """Upsert records and tombstone keys, in one transaction.

        A tombstone applies only to a row not written since ``unchanged_since`` (default:
        ``now``): a full crawl that started before another writer (the event lane) inserted or
        updated a record must not tombstone it for being absent from the crawl.

        An upsert is `stale` (skipped) when its source_modified is older than the stored one,
        `unchanged` (skipped) when its hash equals the stored hash of a live row, else written,
        which brings a tombstoned row back to life. A tombstone marks a live row deleted.
        A key given more than once as an upsert counts once (its newest record is written);
        a key may not be both upserted and tombstoned. A tombstoned key loses its
        `catalog_query_content` rows in the same transaction.
        """

    @abstractmethod
    def tombstone_content(
        self, key: str, now: datetime, source_modified: datetime | None = None
    ) -> bool:
        """Tombstone one live row unless the stored row is newer than `source_modified`.

        `source_modified`, when given, is recorded, so that an older record arriving later is
        stale rather than a resurrection. True when the row was tombstoned; its
        `catalog_query_content` rows go in the same transaction.
        """

    @abstractmethod
    def live_content(self) -> list[tuple[str, dict]]:
        """(content_key, metadata) of every row that is not tombstoned, ordered by key."""

    @abstractmethod
    def live_content_fields(self, fields: Iterable[str]) -> list[tuple[str, dict]]:
        """(content_key, {field: value}) of every live row, ordered by key, with only these
        top-level fields of its metadata (a field the record lacks is left out, which a filter
        reads as null, like a missing field). Much less to read and parse than
        ``live_content`` when only a few filters are evaluated (the query lane)."""

    @abstractmethod
    def get_content(self, key: str) -> StoredContent | None:
        """One content row, tombstoned or not."""

    # Catalog queries ---------------------------------------------------------------------

    @abstractmethod
    def sync_catalog_queries(
        self,
        queries: Sequence[CatalogQueryRow],
        catalogs: Sequence[EnterpriseCatalogRow],
        now: datetime,
    ) -> QuerySyncResult:
        """Make the queries and enterprise catalogs exactly the given sets, in one transaction.

        Queries that are gone lose their catalog_query_content rows too. Refuses (ValueError,
        nothing written) a uuid that is not a non-empty string, a NUL character in any text
        (PostgreSQL cannot store one) and a `content_filter` that is not strict JSON.
        """

    @abstractmethod
    def catalog_queries(self) -> list[CatalogQueryRow]:
        """Every catalog query, ordered by uuid."""

    @abstractmethod
    def enterprise_catalogs(self) -> list[EnterpriseCatalogRow]:
        """Every enterprise catalog, ordered by uuid."""

    # Associations ------------------------------------------------------------------------

    @abstractmethod
    def associations(self) -> pl.DataFrame:
        """Every (catalog_query_uuid, content_key) pair, in no particular order."""

    @abstractmethod
    def associations_of_queries(self, uuids: Iterable[str]) -> pl.DataFrame:
        """The (catalog_query_uuid, content_key) pairs of these queries, in no particular
        order: what a refresh of a few queries at a time compares with."""

    @abstractmethod
    def apply_association_diff(
        self,
        adds: pl.DataFrame,
        removes: pl.DataFrame,
        now: datetime,
        applied_filters: Mapping[str, str] | None = None,
    ) -> tuple[int, int]:
        """Delete the `removes` pairs, then insert the `adds` pairs that are not there yet
        (and whose content is live).

        One transaction, which also records `applied_filters` (query uuid -> filter hash the
        query's associations now reflect; see `applied_filters`). Returns the numbers of rows
        actually added and removed.
        """

    @abstractmethod
    def association_count(self) -> int:
        """How many (catalog query, content) pairs the store holds."""

    @abstractmethod
    def dangling_associations(self, limit: int) -> tuple[int, list[tuple[str, str]]]:
        """How many pairs name content that is tombstoned or unknown, and the first ``limit``
        of them (query uuid, content key), counted by the database: no pair is loaded."""

    @abstractmethod
    def applied_filters(self) -> dict[str, str]:
        """Query uuid -> hash of the filter its associations were last computed with."""

    @abstractmethod
    def associations_of(self, content_key: str) -> dict[str, datetime]:
        """The catalog queries of one content key, each with the time its row was added."""

    @abstractmethod
    def replace_content_associations(
        self, content_key: str, query_uuids: Sequence[str], now: datetime
    ) -> tuple[int, int]:
        """Make one content key's queries exactly `query_uuids`; returns (added, removed)."""

    # Lookups -----------------------------------------------------------------------------

    @abstractmethod
    def catalogs_for(self, content_key: str) -> list[dict[str, Any]]:
        """The catalog queries that contain a key, with their enterprise catalogs.

        Keys: catalog_uuid, catalog_title, enterprise_uuid, catalog_query_uuid,
        catalog_query_title, rule (the strongest ``MembershipRule``), via_key (the associated
        record it goes through); the catalog fields are None for a query no catalog uses.
        Membership follows ``memberships``: a run's key finds its course's catalogs.
        """

    @abstractmethod
    def contents_of(self, uuid: str) -> list[dict[str, Any]]:
        """The content of a catalog query, or of an enterprise catalog through its query.

        Keys: content_key, content_type, title, deleted (content_type and title are None for
        a key that has no content row).
        """

    @abstractmethod
    def memberships(self, content_key: str) -> list[Membership]:
        """Every reason a key is in a catalog query's catalogs (``MembershipRule``): its own
        record is associated; it is the course of an associated live run; it is a live run
        whose course is associated. One per (query, rule, associated key)."""

    # Related content -----------------------------------------------------------------------

    @abstractmethod
    def replace_relations(
        self, relations: Sequence[ContentRelation], origins: Iterable[str] | None = None
    ) -> tuple[int, int]:
        """Make `content_relation` exactly `relations` (`origins` None), or make the rows that
        the records `origins` declare exactly those of `relations` that they declare; one
        transaction. Idempotent; returns the numbers of rows added and removed."""

    @abstractmethod
    def relations(self) -> list[ContentRelation]:
        """Every `content_relation` row, sorted."""

    @abstractmethod
    def related_content(self, content_key: str) -> list[dict[str, Any]]:
        """The links of one key, both ways. Keys: direction (``declares``: this key's record
        names the other; ``declared_by``: the other's record names this key), related_key,
        relation, content_type, title, deleted (content_type and title are None, deleted
        False, for a key without a content row)."""

    # Dead letters ------------------------------------------------------------------------

    @abstractmethod
    def add_dead_letters(self, rows: Sequence[DeadLetter]) -> int:
        """Store events that failed; returns how many were stored.

        A letter with a topic, partition and offset is stored once: the same message (and key)
        given again, say by a sensor tick that is evaluated twice, is skipped, unless its
        letter was replayed since, which opens it again with the new error."""

    @abstractmethod
    def dead_letters(self, include_replayed: bool = False) -> list[DeadLetter]:
        """Stored dead letters, oldest first."""

    @abstractmethod
    def mark_dead_letters_replayed(self, ids: Iterable[int], now: datetime) -> int:
        """Mark dead letters replayed; returns how many were not marked before."""

    # Event records waiting for their run ---------------------------------------------------

    @abstractmethod
    def save_event_payloads(self, payloads: Mapping[str, tuple[str, dict]], now: datetime) -> None:
        """Keep records that are too large for run config: ``{ref: (content_key, metadata)}``.

        Idempotent: a ref already kept is left as it is (a ref names its content)."""

    @abstractmethod
    def event_payload(self, ref: str) -> dict | None:
        """The record kept under `ref`, or None."""

    @abstractmethod
    def delete_event_payloads(self, refs: Iterable[str]) -> int:
        """Forget kept records once applied; returns how many went."""


class StoreUnavailable(RuntimeError):
    """The store's server cannot be reached (a transient failure: retry)."""


class StoreSchemaMismatch(RuntimeError):
    """The store's schema version is not the one this code works with; the message says what
    to do (migrate, or upgrade catalog-assets)."""
