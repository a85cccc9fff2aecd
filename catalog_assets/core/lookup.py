"""Which catalogs contain a piece of content, what a catalog contains, and why.

For operators (``catalog-assets catalogs-for``, ``contents-of``, ``contains``, ``related``,
``explain``) and downstream code; reads the catalog store named by ``CATALOG_STORE_URL``
(default: the embedded DuckDB file), read-only. Membership follows enterprise-catalog's
``get_matching_content``: a key is in a catalog when its own record is associated with the
catalog's query, when it is the course of an associated run, or when it is a run whose course
is associated (``core.catalog_contents.MembershipRule``).

Each ``find_*`` lookup says what it found (``Found``), so that a miss is told apart from an
unknown key or uuid and from a query whose filter is invalid.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from catalog_assets.core.catalog_contents import AllowLists, Membership, best_memberships
from catalog_assets.core.explain import Explanation, explain
from catalog_assets.settings import Settings
from catalog_assets.store import (
    CatalogQueryRow,
    CatalogStore,
    EnterpriseCatalogRow,
    StoredContent,
    open_store,
)


def store_url(env: Mapping[str, str] | None = None) -> str:
    """The environment's catalog store (``CATALOG_STORE_URL``), as the definitions use it."""
    url = Settings.from_env(env).store_url
    path = url.removeprefix("duckdb:///")
    if url.startswith("duckdb:///") and path != ":memory:" and not Path(path).exists():
        raise FileNotFoundError(
            f"no catalog store at {Path(path).resolve()}: run `make run` here first, or set "
            "CATALOG_STORE_URL"
        )
    return url


@contextmanager
def _reading(url: str | None) -> Iterator[CatalogStore]:
    with open_store(url or store_url()) as store:
        store.check_schema()  # read-only: a lookup needs no DDL rights
        yield store


class Found(StrEnum):
    """What a lookup found."""

    FOUND = "found"
    NOTHING = "nothing"  # a known key or uuid that is in, or holds, nothing
    UNKNOWN_CONTENT = "unknown_content"  # no record has this key
    UNKNOWN_UUID = "unknown_uuid"  # neither a catalog query nor an enterprise catalog
    INVALID_QUERY = "invalid_query"  # the catalog query's filter is invalid
    INVALID_CATALOG_QUERY = "invalid_catalog_query"  # the enterprise catalog's query is


@dataclass(frozen=True)
class LookupResult:
    """A lookup's rows, and what it found in one sentence."""

    found: Found
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


class UnknownCatalog(LookupError):
    """The uuid names neither a catalog query nor an enterprise catalog in the store."""


@dataclass(frozen=True)
class Target:
    """A uuid resolved: the catalog query it is, or the enterprise catalog and its query."""

    uuid: str
    query: CatalogQueryRow | None
    catalog: EnterpriseCatalogRow | None = None

    @property
    def query_uuid(self) -> str | None:
        if self.catalog is not None:
            return self.catalog.catalog_query_uuid
        return self.query.uuid if self.query is not None else None

    def problem(self) -> tuple[Found, str] | None:
        """Why this target's content cannot be trusted to follow its filter, or None."""
        where = f"enterprise catalog {self.uuid!r}" if self.catalog else "catalog query"
        if self.query is None:
            return Found.NOTHING, (
                f"{where} names catalog query {self.query_uuid!r}, which is not in the catalog "
                "store: it contains nothing"
            )
        if self.query.is_valid:
            return None
        found = Found.INVALID_CATALOG_QUERY if self.catalog else Found.INVALID_QUERY
        return found, (
            f"{where + ': its ' if self.catalog else ''}catalog query {self.query.uuid!r} has "
            f"an invalid filter ({self.query.error}); it keeps the content of its last valid "
            "refresh, minus deleted content"
        )


def resolve(store: CatalogStore, uuid: str) -> Target:
    """The catalog query or enterprise catalog ``uuid`` names; raises ``UnknownCatalog``."""
    queries = {query.uuid: query for query in store.catalog_queries()}
    if uuid in queries:
        return Target(uuid, queries[uuid])
    catalog = next((c for c in store.enterprise_catalogs() if c.uuid == uuid), None)
    if catalog is None:
        raise UnknownCatalog(
            f"no catalog query or enterprise catalog has the uuid {uuid!r} in the catalog store"
        )
    return Target(uuid, queries.get(catalog.catalog_query_uuid or ""), catalog)


# --- Lookups by content key ----------------------------------------------------------------


def find_catalogs(content_key: str, url: str | None = None) -> LookupResult:
    """The catalogs (with their queries) that contain ``content_key``; see ``catalogs_for``."""
    with _reading(url) as store:
        rows = store.catalogs_for(content_key)
        record = store.get_content(content_key)
    if rows:
        return LookupResult(Found.FOUND, rows, f"{content_key!r} is in {len(rows)} catalog(s)")
    return _nothing_for(content_key, record, "in no catalog")


def catalogs_for(content_key: str, url: str | None = None) -> list[dict[str, Any]]:
    """The enterprise catalogs and catalog queries that contain ``content_key``.

    One row per (catalog query, enterprise catalog): ``catalog_query_uuid``,
    ``catalog_query_title``, ``catalog_uuid``, ``catalog_title``, ``enterprise_uuid`` (the
    catalog fields are None for a query that no catalog uses), and ``rule`` and ``via_key``:
    why the key is in it (a run's key finds the catalogs of its course, a course's key those
    of its runs).
    """
    return find_catalogs(content_key, url).rows


def find_related(content_key: str, url: str | None = None) -> LookupResult:
    """The content ``content_key`` is linked with, both ways (``content_relation``)."""
    with _reading(url) as store:
        rows = store.related_content(content_key)
        record = store.get_content(content_key)
    if rows:
        return LookupResult(Found.FOUND, rows, f"{content_key!r} has {len(rows)} link(s)")
    return _nothing_for(content_key, record, "linked with nothing")


def _nothing_for(content_key: str, record: StoredContent | None, what: str) -> LookupResult:
    """A key-based lookup that found nothing: an unknown key, or a known one (and its state)."""
    if record is None:
        return LookupResult(
            Found.UNKNOWN_CONTENT, [], f"no content with the key {content_key!r} in the store"
        )
    state = "tombstoned" if record.deleted_at is not None else "live"
    return LookupResult(
        Found.NOTHING, [], f"{content_key!r} is known ({record.content_type}, {state}) but {what}"
    )


# --- Lookups by catalog --------------------------------------------------------------------


def find_contents(uuid: str, url: str | None = None) -> LookupResult:
    """What a catalog query, or an enterprise catalog through its query, contains."""
    with _reading(url) as store:
        try:
            target = resolve(store, uuid)
        except UnknownCatalog as unknown:
            return LookupResult(Found.UNKNOWN_UUID, [], str(unknown))
        rows = store.contents_of(target.query_uuid) if target.query_uuid else []
    if problem := target.problem():
        return LookupResult(problem[0], rows, problem[1])
    if not rows:
        return LookupResult(Found.NOTHING, [], f"{uuid!r} contains nothing")
    return LookupResult(Found.FOUND, rows, f"{uuid!r} contains {len(rows)} item(s)")


def contents_of(uuid: str, url: str | None = None) -> list[dict[str, Any]]:
    """The content of a catalog query, or of an enterprise catalog through its query.

    One row per content key: ``content_key``, ``content_type``, ``title``, ``deleted``.
    """
    return find_contents(uuid, url).rows


@dataclass(frozen=True)
class MembershipCheck:
    """Which of some keys a catalog contains: each key's strongest reason, or None."""

    target: Target
    memberships: dict[str, Membership | None]

    @property
    def contained(self) -> set[str]:
        return {key for key, found in self.memberships.items() if found is not None}


def check_membership(
    catalog_uuid: str, keys: Iterable[str], url: str | None = None
) -> MembershipCheck:
    """Which of ``keys`` the catalog query or enterprise catalog ``catalog_uuid`` contains, by
    the membership rules; raises ``UnknownCatalog``."""
    with _reading(url) as store:
        target = resolve(store, catalog_uuid)
        found: dict[str, Membership | None] = {}
        for key in dict.fromkeys(keys):
            best = best_memberships(store.memberships(key))
            found[key] = best.get(target.query_uuid or "") if target.query_uuid else None
    return MembershipCheck(target, found)


def contains(catalog_uuid: str, keys: Iterable[str], url: str | None = None) -> bool:
    """Whether the catalog contains any of ``keys`` (enterprise-catalog's
    ``contains_content_keys``: a course key, a run key or a program uuid); raises
    ``UnknownCatalog`` for a uuid the store does not know."""
    return bool(check_membership(catalog_uuid, keys, url).contained)


def filter_content_keys(catalog_uuid: str, keys: Iterable[str], url: str | None = None) -> set[str]:
    """The ``keys`` the catalog contains, by the same rules as ``contains``."""
    return check_membership(catalog_uuid, keys, url).contained


# --- Why -----------------------------------------------------------------------------------


def find_explanation(
    uuid: str, content_key: str, url: str | None = None, allow: AllowLists | None = None
) -> tuple[Found, Explanation | None, str]:
    """Why ``content_key`` is (not) in the catalog query or enterprise catalog ``uuid``: the
    outcome, the explanation (None for an unknown uuid or key, or a catalog without a query)
    and a sentence. ``allow`` defaults to the environment's allow-lists."""
    allow = allow if allow is not None else Settings.from_env().allow_lists
    with _reading(url) as store:
        try:
            target = resolve(store, uuid)
        except UnknownCatalog as unknown:
            return Found.UNKNOWN_UUID, None, str(unknown)
        record = store.get_content(content_key)
        if record is None:
            return Found.UNKNOWN_CONTENT, None, f"no content with the key {content_key!r}"
        if target.query is None:
            problem = target.problem()
            return Found.NOTHING, None, problem[1] if problem else ""
        associated = target.query.uuid in store.associations_of(content_key)
        memberships = [
            m for m in store.memberships(content_key) if m.catalog_query_uuid == target.query.uuid
        ]
    explained = explain(
        query=target.query,
        catalog=target.catalog,
        record=record,
        associated=associated,
        memberships=memberships,
        allow=allow,
    )
    found = Found.FOUND if explained.in_catalog else Found.NOTHING
    verdict = "in" if explained.in_catalog else "not in"
    return found, explained, f"{content_key!r} is {verdict} {uuid!r}"
