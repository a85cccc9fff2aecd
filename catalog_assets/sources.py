"""Where content and catalog queries come from, as Dagster resources with one interface each.

``ContentSource`` is the interface the assets use; ``SampleContentSource`` (the bundled dataset,
no network) and ``DiscoveryContentSource`` (course-discovery's REST API) implement it.
``CatalogQuerySource`` reads catalog queries and enterprise catalogs from a JSON file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from catalog_assets.content import content_key_of, utcnow
from catalog_assets.discovery import DiscoveryClient
from catalog_assets.sample_data import SAMPLE_CONTENT_FILE, SAMPLE_QUERIES_FILE, load_bundled


@dataclass(frozen=True)
class ContentSnapshot:
    """All content of a source at one moment: documents deduplicated by content key.

    ``complete`` is False when the source showed signs of having shifted during the read
    (repeated items, fewer items than it reported): items may have been skipped, so nothing
    may be tombstoned for being absent. ``started_at`` (naive UTC) is when the read began.
    """

    documents: list[dict[str, Any]]
    duplicate_keys: list[str] = field(default_factory=list)
    request_count: int = 0
    complete: bool = True
    started_at: datetime | None = None


class ContentSource(dg.ConfigurableResource):
    """The interface: all content at once (bulk lane), or one record (event lane)."""

    def fetch_all(self) -> ContentSnapshot:
        """Everything, complete or not at all: raise rather than return a partial snapshot."""
        raise NotImplementedError

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        """One record by key, or None when the source no longer has it."""
        raise NotImplementedError


def _read_json(path: str, what: str) -> Any:
    """Parse a JSON file (object key order kept), naming the file and position on errors."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read {what} file {path!r}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path!r} is not valid JSON: {error}") from error


def _deduplicated(documents: list[dict[str, Any]]) -> ContentSnapshot:
    """The last document per content key wins, in first-seen order."""
    by_key: dict[str, dict[str, Any]] = {}
    for document in documents:
        by_key[content_key_of(document)] = document
    counts = Counter(content_key_of(document) for document in documents)
    duplicates = sorted(key for key, count in counts.items() if count > 1)
    return ContentSnapshot(list(by_key.values()), duplicates, complete=not duplicates)


class SampleContentSource(ContentSource):
    """Content from a JSON file of search documents; by default the bundled sample dataset."""

    path: str = Field(default="", description="JSON array of documents; empty: bundled")

    def _documents(self) -> list[dict[str, Any]]:
        if not self.path:
            return load_bundled(SAMPLE_CONTENT_FILE)
        documents = _read_json(self.path, "content")
        if not isinstance(documents, list) or not all(isinstance(d, dict) for d in documents):
            raise ValueError(f"content file {self.path!r} must hold a JSON array of objects")
        return documents

    def fetch_all(self) -> ContentSnapshot:
        started = utcnow()
        snapshot = _deduplicated(self._documents())
        return replace(snapshot, started_at=started)

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        return next(
            (d for d in self._documents() if content_key_of(d) == content_key),
            None,
        )


class DiscoveryContentSource(ContentSource):
    """course-discovery's REST API, authenticated with LMS OAuth2 client credentials."""

    api_url: str = Field(description="e.g. https://discovery.example.com/api/v1/")
    oauth2_url: str = Field(description="e.g. https://lms.example.com/oauth2")
    client_id: str
    client_secret: str
    timeout_seconds: float = 30.0
    max_retries: int = 5

    def client(self) -> DiscoveryClient:
        return DiscoveryClient(
            self.api_url,
            self.oauth2_url,
            self.client_id,
            self.client_secret,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
        )

    def fetch_all(self) -> ContentSnapshot:
        started = utcnow()
        with self.client() as client:
            documents = client.crawl_records()
            reported = client.last_crawl_reported_count
            duplicates = sorted(set(client.last_crawl_duplicates))
            return ContentSnapshot(
                documents,
                duplicates,
                client.request_count,
                complete=not duplicates and (reported is None or len(documents) >= reported),
                started_at=started,
            )

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        with self.client() as client:
            return client.lookup(content_key, content_type)


@dataclass(frozen=True)
class CatalogQueryFile:
    """The catalog queries and enterprise catalogs of one load; filters keep their key order."""

    catalog_queries: list[dict[str, Any]]
    enterprise_catalogs: list[dict[str, Any]]


def _require(item: Any, where: str, fields: tuple[str, ...]) -> None:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a JSON object")
    missing = [name for name in fields if name not in item]
    if missing:
        raise ValueError(f"{where} has no {', '.join(map(repr, missing))}")


class CatalogQuerySource(dg.ConfigurableResource):
    """Catalog queries and enterprise catalogs from a JSON file; by default the bundled sample.

    The file: ``{"catalog_queries": [{"uuid", "title", "content_filter"}],
    "enterprise_catalogs": [{"uuid", "title", "enterprise_uuid", "catalog_query_uuid"}]}``.
    A malformed file is an error naming the entry; a bad *filter* is not (it is validated and
    stored with its error by the ``catalog_queries`` asset).
    """

    path: str = Field(default="", description="JSON file of queries; empty: bundled sample")

    def load(self) -> CatalogQueryFile:
        where = self.path or f"bundled {SAMPLE_QUERIES_FILE}"
        payload = (
            _read_json(self.path, "catalog query")
            if self.path
            else (load_bundled(SAMPLE_QUERIES_FILE))
        )
        _require(payload, where, ("catalog_queries",))
        queries = payload["catalog_queries"]
        catalogs = payload.get("enterprise_catalogs", [])
        for index, query in enumerate(queries):
            _require(query, f"{where}: catalog_queries[{index}]", ("uuid", "content_filter"))
        for index, catalog in enumerate(catalogs):
            _require(catalog, f"{where}: enterprise_catalogs[{index}]", ("uuid",))
        return CatalogQueryFile(queries, catalogs)
