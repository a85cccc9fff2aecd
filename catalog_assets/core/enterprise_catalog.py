"""Catalog queries and enterprise catalogs read from enterprise-catalog's REST API.

In a real deployment the catalog queries live in enterprise-catalog (edx-enterprise writes them
there on every catalog change); this reads its two listings into the same ``CatalogQueryFile``
the JSON file gives, so ``core.refresh.queries.sync_catalog_queries`` and its removal guardrail
apply unchanged. A query absent from a complete listing is then removed with its associations;
a query that no catalog points at any more stays, as in enterprise-catalog.

What this relies on, taken from openedx/enterprise-catalog (``apps/api/v1``, read in 2026-01):

- ``GET catalog-queries/`` (``CatalogQueryViewSet``, read-only): ``CatalogQuerySerializer``
  gives ``uuid``, ``content_filter`` (a JSON object, key order as stored), ``content_filter_hash``
  (md5 of the filter dumped with sorted keys; not used here: the store hashes the filter text it
  keeps) and ``title`` (nullable). Paged by the default ``edx_rest_framework_extensions``
  ``DefaultPagination``: ``?page=N&page_size=M``, 10 a page unless asked, at most 100.
- ``GET enterprise-catalogs/`` (``EnterpriseCatalogCRUDViewSet``): ``EnterpriseCatalogSerializer``
  gives ``uuid``, ``title``, ``enterprise_customer`` (the enterprise uuid) and
  ``catalog_query_uuid`` (nullable), ordered by creation. Paged by ``PageNumberWithSizePagination``
  (DRF page numbers, ``page_size`` honoured, 10 by default).
- Both answer ``{"count", "next", "previous", "results"}`` and take the LMS JWT
  (``Authorization: JWT ...``); listing everything needs a service user with staff rights or an
  enterprise-catalog admin role for all enterprises (``*``), otherwise the listing is filtered
  to the user's enterprises, which the removal guardrail would refuse as a mass removal.

A listing is read completely, both endpoints, before anything is returned: a failing page or a
malformed one raises and nothing is written. Errors are named by cause:
``EnterpriseCatalogUnavailable`` (network, 5xx or 429 after the retries, or a listing that
changed while it was paged: retry later), ``EnterpriseCatalogRefused`` (a 4xx: credentials,
permissions, URL) and ``MalformedEnterpriseCatalogReply`` (a ``ValueError`` naming the page URL
and the item).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from catalog_assets.core.api_client import ApiError, OAuth2ApiClient
from catalog_assets.core.sources import CatalogQueryFile

__all__ = [
    "EnterpriseCatalogClient",
    "EnterpriseCatalogError",
    "EnterpriseCatalogQueries",
    "EnterpriseCatalogRefused",
    "EnterpriseCatalogUnavailable",
    "MalformedEnterpriseCatalogReply",
]

CATALOG_QUERIES = "catalog-queries/"
ENTERPRISE_CATALOGS = "enterprise-catalogs/"


class EnterpriseCatalogError(ApiError):
    """enterprise-catalog could not be read completely and correctly; nothing was returned."""


class EnterpriseCatalogUnavailable(EnterpriseCatalogError):
    """enterprise-catalog could not be reached, kept failing, or its listing changed while it
    was paged: worth another attempt later."""


class EnterpriseCatalogRefused(EnterpriseCatalogError):
    """enterprise-catalog refused the request (4xx): credentials, permissions or the URL."""


class MalformedEnterpriseCatalogReply(EnterpriseCatalogError, ValueError):
    """A reply is not the contract (not JSON, no results, a missing or mistyped field); the
    message names the page URL and the item."""


@dataclass(frozen=True)
class _Listing:
    """One paged endpoint: the fields each item must have, and which of them are uuids (a
    non-empty string without NUL, or null where ``nullable``). ``title`` is always optional,
    a string or null; ``content_filter`` may be any JSON (the sync stores an unusable filter
    invalid, with its error)."""

    endpoint: str
    required: tuple[str, ...]
    identifiers: tuple[str, ...]
    nullable: frozenset[str] = frozenset()


_QUERIES = _Listing(CATALOG_QUERIES, ("uuid", "content_filter"), ("uuid",))
_CATALOGS = _Listing(
    ENTERPRISE_CATALOGS,
    ("uuid", "enterprise_customer", "catalog_query_uuid"),
    ("uuid", "enterprise_customer", "catalog_query_uuid"),
    frozenset({"catalog_query_uuid"}),
)


class EnterpriseCatalogClient(OAuth2ApiClient):
    """Reads enterprise-catalog's catalog queries and enterprise catalogs, every page of each.

    Auth, retries (capped Retry-After, jittered backoff), ``next`` links moved onto
    ``api_url``'s host, reply parsing and redaction are ``OAuth2ApiClient``'s. Its default
    ``page_size`` of 100 is what both listings are asked for: enterprise-catalog serves 10 a
    page unless asked, and ``catalog-queries/`` caps a page at 100.
    """

    unavailable_error = EnterpriseCatalogUnavailable
    refused_error = EnterpriseCatalogRefused
    malformed_error = MalformedEnterpriseCatalogReply

    def catalog_queries(self) -> list[dict[str, Any]]:
        """Every catalog query as ``{"uuid", "title", "content_filter"}`` (filter key order
        kept)."""
        return [
            {
                "uuid": item["uuid"],
                "title": item.get("title"),
                "content_filter": item["content_filter"],
            }
            for item in self._listing(_QUERIES)
        ]

    def enterprise_catalogs(self) -> list[dict[str, Any]]:
        """Every enterprise catalog as ``{"uuid", "title", "enterprise_uuid",
        "catalog_query_uuid"}`` (``enterprise_customer`` is the enterprise's uuid)."""
        return [
            {
                "uuid": item["uuid"],
                "title": item.get("title"),
                "enterprise_uuid": item["enterprise_customer"],
                "catalog_query_uuid": item["catalog_query_uuid"],
            }
            for item in self._listing(_CATALOGS)
        ]

    def load(self) -> CatalogQueryFile:
        """Both listings, each read completely, or an error and nothing."""
        return CatalogQueryFile(self.catalog_queries(), self.enterprise_catalogs())

    def _listing(self, listing: _Listing) -> list[dict[str, Any]]:
        """Every item of one listing, each checked, in the server's order.

        The pages must agree on ``count`` and together deliver it without repeating a uuid;
        otherwise the listing changed while it was paged (an item may have been skipped, and a
        skipped query would be removed), so raise rather than return it.
        """
        query = urlencode({"page": 1, "page_size": self._page_size})
        first = f"{self.api_url}{listing.endpoint}?{query}"
        items: dict[str, dict[str, Any]] = {}
        counts: set[Any] = set()
        for url, page in self._located_pages("GET", first):
            counts.add(page.get("count"))
            for position, item in enumerate(page["results"], start=1):
                where = f"GET {url}: item {position}"
                uuid = _checked(item, listing, where)
                if uuid in items:
                    raise EnterpriseCatalogUnavailable(
                        f"{where}: uuid {uuid} repeats an earlier page; the listing changed "
                        "while it was paged"
                    )
                items[uuid] = item
        count = next(iter(counts)) if len(counts) == 1 else None
        if len(counts) > 1 or (isinstance(count, int) and count != len(items)):
            raise EnterpriseCatalogUnavailable(
                f"GET {first}: the listing changed while it was paged (counts "
                f"{sorted(map(str, counts))}, {len(items)} items received)"
            )
        return list(items.values())


def _checked(item: Mapping[str, Any], listing: _Listing, where: str) -> str:
    """The item's uuid, after checking the fields this listing needs; a missing or mistyped
    field is a ``MalformedEnterpriseCatalogReply`` naming it, the page and the item."""
    uuid = item.get("uuid")
    if isinstance(uuid, str) and uuid:
        where = f"{where} (uuid {uuid})"
    missing = [name for name in listing.required if name not in item]
    if missing:
        raise MalformedEnterpriseCatalogReply(
            f"{where}: {listing.endpoint} item has no {', '.join(map(repr, missing))}"
        )
    for name in listing.identifiers:
        value = item[name]
        if value is None and name in listing.nullable:
            continue
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise MalformedEnterpriseCatalogReply(
                f"{where}: {name} {value!r:.80} is not a non-empty string"
            )
    title = item.get("title")
    if title is not None and not isinstance(title, str):
        raise MalformedEnterpriseCatalogReply(f"{where}: title {title!r:.80} is not a string")
    return str(uuid)


@dataclass(frozen=True)
class EnterpriseCatalogQueries:
    """enterprise-catalog as the catalog-query source (``load`` is what the bulk lane and the
    query sensor call), authenticated with LMS OAuth2 client credentials."""

    api_url: str
    oauth2_url: str
    client_id: str
    client_secret: str
    timeout_seconds: float = 30.0
    max_retries: int = 5

    def client(self) -> EnterpriseCatalogClient:
        return EnterpriseCatalogClient(
            self.api_url,
            self.oauth2_url,
            self.client_id,
            self.client_secret,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
        )

    def load(self) -> CatalogQueryFile:
        with self.client() as client:
            return client.load()
