"""A real local HTTP server speaking enterprise-catalog's two listings, with fault injection.

It is ``FakeDiscovery`` extended, so one server on one port is the LMS (its OAuth2 token
endpoint, whose JWTs both services accept, as in a deployment), course-discovery and
enterprise-catalog; the lifecycle, request log and path faults (``fail_next``,
``malformed_next``, ``disconnect_next``, ``expire_tokens``) are FakeDiscovery's.

    with FakeEnterpriseCatalog.from_file(queries) as fake:
        client = EnterpriseCatalogClient(
            fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret
        )
        fake.fail_page(QUERIES_PATH, 2, 503)
        client.load()

As enterprise-catalog answers (``apps/api/v1``): ``GET catalog-queries/`` lists
``{uuid, content_filter, content_filter_hash, title}`` paged by ``DefaultPagination`` (``page``,
``page_size``, 10 a page by default, at most 100, and ``num_pages``/``current_page``/``start``
beside ``count``/``next``/``previous``); ``GET enterprise-catalogs/`` lists ``{uuid, title,
enterprise_customer, catalog_query_uuid, ...}`` in creation order, paged by DRF page numbers
(10 by default, ``page_size`` unbounded). Both need the JWT (401 without it); a page past the
end is a 404 ``Invalid page.``. The listings are mutable while the server runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from catalog_assets_tests.support.fake_discovery import (
    API_PREFIX,
    FakeDiscovery,
    Reply,
    _error,
    _int_param,
)

QUERIES_PATH = API_PREFIX + "catalog-queries/"
CATALOGS_PATH = API_PREFIX + "enterprise-catalogs/"
DEFAULT_PAGE_SIZE = 10  # enterprise-catalog's REST_FRAMEWORK PAGE_SIZE
MAX_PAGE_SIZES: dict[str, int | None] = {QUERIES_PATH: 100, CATALOGS_PATH: None}


@dataclass
class _PageFault:
    status: int
    body: bytes | None
    remaining: int


def content_filter_hash(content_filter: Any) -> str:
    """enterprise-catalog's ``get_content_filter_hash``: md5 of the filter with sorted keys."""
    return hashlib.md5(json.dumps(content_filter, sort_keys=True).encode()).hexdigest()


def api_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """A catalog-query file entry as ``catalog-queries/`` serves it."""
    return {
        "uuid": query["uuid"],
        "content_filter": query["content_filter"],
        "content_filter_hash": content_filter_hash(query["content_filter"]),
        "title": query.get("title"),
    }


def api_catalog(catalog: Mapping[str, Any]) -> dict[str, Any]:
    """An enterprise-catalog file entry as ``enterprise-catalogs/`` serves it."""
    return {
        "uuid": catalog["uuid"],
        "title": catalog.get("title"),
        "enterprise_customer": catalog.get("enterprise_uuid"),
        "catalog_query_uuid": catalog.get("catalog_query_uuid"),
        "content_last_modified": None,
        "catalog_modified": "2026-01-01T00:00:00Z",
        "query_title": None,
    }


class FakeEnterpriseCatalog(FakeDiscovery):
    """enterprise-catalog (plus course-discovery and the LMS token endpoint) on 127.0.0.1."""

    client_id = "fake-enterprise-catalog-client"
    client_secret = "fake-enterprise-catalog-secret"

    def __init__(
        self,
        queries: Iterable[Mapping[str, Any]] = (),
        catalogs: Iterable[Mapping[str, Any]] = (),
        **discovery: Any,
    ) -> None:
        super().__init__(**discovery)
        self._listings: dict[str, list[dict[str, Any]]] = {QUERIES_PATH: [], CATALOGS_PATH: []}
        self._page_faults: dict[tuple[str, int], list[_PageFault]] = {}
        self._dropped: dict[tuple[str, str], set[str]] = {}
        self._after_listing_page: dict[tuple[str, int], list[Callable[[], None]]] = {}
        self.set_queries(queries)
        self.set_catalogs(catalogs)

    @classmethod
    def from_file(cls, listing: Mapping[str, Any], **options: Any) -> FakeEnterpriseCatalog:
        """Serve a catalog-query file's content (``{"catalog_queries", "enterprise_catalogs"}``,
        ``enterprise_uuid`` served as ``enterprise_customer``)."""
        fake = cls(**options)
        fake.set_file(listing)
        return fake

    # -- the listings (mutable while running) -------------------------------------------------

    def set_file(self, listing: Mapping[str, Any]) -> None:
        self.set_queries(api_query(query) for query in listing["catalog_queries"])
        self.set_catalogs(api_catalog(c) for c in listing.get("enterprise_catalogs", []))

    def set_queries(self, queries: Iterable[Mapping[str, Any]]) -> None:
        """Replace the ``catalog-queries/`` items (served as given, in this order)."""
        self._set(QUERIES_PATH, queries)

    def set_catalogs(self, catalogs: Iterable[Mapping[str, Any]]) -> None:
        """Replace the ``enterprise-catalogs/`` items (served as given, in this order)."""
        self._set(CATALOGS_PATH, catalogs)

    def edit_query(self, uuid: str, **fields: Any) -> None:
        """Change a served query's fields; a new ``content_filter`` gets its new hash."""
        if "content_filter" in fields:
            fields.setdefault("content_filter_hash", content_filter_hash(fields["content_filter"]))
        with self._lock:
            items = self._listings[QUERIES_PATH]
            matches = [item for item in items if item.get("uuid") == uuid]
            if not matches:
                raise KeyError(f"no catalog query {uuid}")
            self._listings[QUERIES_PATH] = [
                {**item, **fields} if item.get("uuid") == uuid else item for item in items
            ]

    def remove_query(self, uuid: str) -> None:
        """Delete a query (and, as enterprise-catalog's foreign key does, point its catalogs at
        nothing)."""
        with self._lock:
            self._listings[QUERIES_PATH] = [
                item for item in self._listings[QUERIES_PATH] if item.get("uuid") != uuid
            ]
            self._listings[CATALOGS_PATH] = [
                {**item, "catalog_query_uuid": None}
                if item.get("catalog_query_uuid") == uuid
                else item
                for item in self._listings[CATALOGS_PATH]
            ]

    def remove_catalogs(self, uuids: Iterable[str]) -> None:
        gone = set(uuids)
        with self._lock:
            self._listings[CATALOGS_PATH] = [
                item for item in self._listings[CATALOGS_PATH] if item.get("uuid") not in gone
            ]

    def items(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item) for item in self._listings[path]]

    def _set(self, path: str, items: Iterable[Mapping[str, Any]]) -> None:
        copies = [dict(item) for item in items]
        with self._lock:
            self._listings[path] = copies

    # -- fault injection ----------------------------------------------------------------------

    def fail_page(
        self, path: str, page: int, status: int = 500, times: int = 1, body: bytes | None = None
    ) -> None:
        """Answer the next ``times`` requests for page ``page`` of ``path`` with ``status``
        (``body`` replaces the default JSON error; a 200 with a body is a malformed page)."""
        with self._lock:
            self._page_faults.setdefault((path, page), []).append(_PageFault(status, body, times))

    def malformed_page(self, path: str, page: int, body: bytes = b"<html>oops</html>") -> None:
        """Answer page ``page`` of ``path`` once with a 200 that is not JSON (or ``body``)."""
        self.fail_page(path, page, 200, body=body)

    def drop_field(self, path: str, uuid: str, field: str) -> None:
        """Serve the item ``uuid`` of ``path`` without ``field`` (until ``reset_faults``)."""
        with self._lock:
            self._dropped.setdefault((path, uuid), set()).add(field)

    def after_listing_page(self, path: str, page: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, after page ``page`` of ``path`` is taken and before it is
        sent: a listing that changes while a client pages through it."""
        with self._lock:
            self._after_listing_page.setdefault((path, page), []).append(callback)

    def reset_faults(self) -> None:
        super().reset_faults()
        with self._lock:
            self._page_faults.clear()
            self._dropped.clear()
            self._after_listing_page.clear()

    # -- request handling ---------------------------------------------------------------------

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        token: str | None,
    ) -> Reply:
        if path not in self._listings:
            return super()._route(method, path, query, body, token)
        if not self._token_valid(token):
            return _error(401, "Authentication credentials were not provided.")
        if method != "GET":
            return _error(405)
        return self._listing_page(path, query)

    def _listing_page(self, path: str, query: dict[str, list[str]]) -> Reply:
        page = _int_param(query, "page", 1)
        size = _int_param(query, "page_size", DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE
        cap = MAX_PAGE_SIZES[path]
        size = min(size, cap) if cap else size
        if not page:
            return _error(404, "Invalid page.")
        fault = self._take_page_fault(path, page)
        if fault is not None:
            payload: Any = fault.body if fault.body is not None else {"detail": "injected"}
            return fault.status, payload, {}
        with self._lock:
            items = self._listings[path]
            dropped = {
                uuid: set(fields) for (p, uuid), fields in self._dropped.items() if p == path
            }
            callbacks = self._after_listing_page.pop((path, page), [])
        num_pages = max(1, math.ceil(len(items) / size))
        if page > num_pages:
            return _error(404, "Invalid page.")
        start, end = (page - 1) * size, page * size
        results = [
            {k: v for k, v in item.items() if k not in dropped.get(item.get("uuid"), ())}
            for item in items[start:end]
        ]
        for callback in callbacks:
            callback()
        reply: dict[str, Any] = {
            "count": len(items),
            **self._page_links(path, query, page, has_next=end < len(items)),
        }
        if path == QUERIES_PATH:  # edx_rest_framework_extensions' DefaultPagination
            reply |= {"num_pages": num_pages, "current_page": page, "start": start}
        return 200, {**reply, "results": results}, {}

    def _take_page_fault(self, path: str, page: int) -> _PageFault | None:
        with self._lock:
            faults = self._page_faults.get((path, page))
            if not faults:
                return None
            fault = faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.pop(0)
            return fault
