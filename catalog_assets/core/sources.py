"""Where content and catalog queries come from, behind small interfaces (no Dagster here).

``ContentSource`` is what both lanes ask of a content source: all content at once, one record,
or which of some keys still exist. ``SampleContent`` (a JSON file, by default the bundled
dataset) and ``DiscoveryContent`` (course-discovery's REST API) implement it; ``read_catalog_
queries`` reads catalog queries and enterprise catalogs from a JSON file. The Dagster resources
in ``catalog_assets.defs.resources`` are thin configurable wrappers around these.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from catalog_assets.core.content import (
    ContentSnapshot,
    RejectedDocument,
    content_key_of,
    content_type_of,
    screen_document,
    utcnow,
)
from catalog_assets.core.discovery import DiscoveryClient
from catalog_assets.core.filters import matches

BUNDLED_DATA_PACKAGE = "catalog_assets.data"
BUNDLED_CONTENT_FILE = "sample_content.json"
BUNDLED_QUERIES_FILE = "sample_catalog_queries.json"


def load_bundled(name: str) -> Any:
    """Read one of the bundled JSON files, keeping object key order."""
    text = resources.files(BUNDLED_DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


class ContentSource(Protocol):
    """All content at once (bulk lane), one record (event lane), or which of some keys still
    exist (the bulk lane, before it tombstones what a read did not return)."""

    def fetch_all(self) -> ContentSnapshot:
        """Everything, complete or not at all: raise rather than return a partial snapshot."""
        ...

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        """One record by key, or None when the source no longer has it."""
        ...

    def lookup_many(self, keys: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """``{content_key: content_type}`` in; the current record of each key the source still
        has out. A key missing from the answer is confirmed gone; raise rather than answer
        partially (``catalog_assets.core.content.ContentLookup``)."""
        ...

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of these course keys, listed by ``fetch_all`` or not (a course a catalog
        query forces in may be unlisted); a key the source does not have is absent."""
        ...

    def search(self, content_filter: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """What the source's own search answers for one catalog query's filter, as
        enterprise-catalog's per-query sync asks it (expired runs left out, pathways in):
        content key -> search document. For the parity check; raise rather than answer
        partially."""
        ...


def read_json(path: str, what: str) -> Any:
    """Parse a JSON file (object key order kept), naming the file and position on errors."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read {what} file {path!r}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path!r} is not valid JSON: {error}") from error
    except RecursionError:
        raise ValueError(f"{what} file {path!r} nests too deeply to read") from None


def _incomplete_reason(duplicates: list[str], seen: int, reported: int | None) -> str | None:
    """Why a read looks like the source shifted under it, or None when nothing says so."""
    reasons = []
    if duplicates:
        reasons.append(
            f"{len(duplicates)} content key(s) repeated, e.g. {duplicates[0]!r}: the source "
            "shifted during the read"
        )
    if reported is not None and seen < reported:
        reasons.append(f"{seen} items read but the source reported {reported}")
    return "; ".join(reasons) or None


def _deduplicated(documents: list[dict[str, Any]], where: str) -> ContentSnapshot:
    """The last document per content key wins, in first-seen order; a document that cannot be
    stored is rejected on its own (``where`` names its origin in the reason)."""
    by_key: dict[str, dict[str, Any]] = {}
    counts: Counter[str] = Counter()
    rejected: list[RejectedDocument] = []
    for position, document in enumerate(documents):
        rejection = screen_document(document, f"{where} [{position}]")
        if rejection is not None:
            rejected.append(rejection)
            continue
        key = content_key_of(document)
        by_key[key] = document
        counts[key] += 1
    duplicates = sorted(key for key, count in counts.items() if count > 1)
    return ContentSnapshot(
        list(by_key.values()),
        duplicates,
        complete=not duplicates,
        rejected=rejected,
        incomplete_reason=_incomplete_reason(duplicates, len(by_key), None),
    )


@dataclass(frozen=True)
class SampleContent:
    """Content from a JSON file of search documents; by default (no path) the bundled dataset."""

    path: str = ""

    def _documents(self) -> list[dict[str, Any]]:
        if not self.path:
            return load_bundled(BUNDLED_CONTENT_FILE)
        documents = read_json(self.path, "content")
        if not isinstance(documents, list) or not all(isinstance(d, dict) for d in documents):
            raise ValueError(f"content file {self.path!r} must hold a JSON array of objects")
        return documents

    def _where(self) -> str:
        return f"content file {self.path!r}" if self.path else f"bundled {BUNDLED_CONTENT_FILE}"

    def fetch_all(self) -> ContentSnapshot:
        started = utcnow()
        snapshot = _deduplicated(self._documents(), self._where())
        return replace(snapshot, started_at=started)

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        return self.lookup_many({content_key: content_type}).get(content_key)

    def lookup_many(self, keys: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """The file's document for each key in it (keys are unique there; the type is not
        checked). A key whose document is rejected exists: ValueError, never "gone"."""
        if not keys:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for position, document in enumerate(self._documents()):
            raw = document.get("key") or document.get("uuid")
            if not isinstance(raw, str) or raw not in keys:
                continue
            rejection = screen_document(document, f"{self._where()} [{position}]")
            if rejection is not None:
                raise ValueError(f"{rejection.reason}; the item exists, so it is not gone")
            found[raw] = document
        return found

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The file's course documents with these keys (the file lists every course it has)."""
        wanted = set(keys)
        return {
            document["key"]: document
            for document in self._documents()
            if document.get("key") in wanted and content_type_of(document) == "course"
        }

    def search(self, content_filter: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The documents ``fetch_all`` reads that the reference engine (``filters.matches``,
        document by document) accepts. The file has no expired runs or hidden pathways to
        leave out (``fetch_all`` keeps them all), so the search sees what the crawl sees.
        Raises ``InvalidFilter`` for an invalid filter."""
        documents = _deduplicated(self._documents(), self._where()).documents
        return {
            content_key_of(document): document
            for document in documents
            if matches(content_filter, document)
        }


@dataclass(frozen=True)
class DiscoveryContent:
    """course-discovery's REST API, authenticated with LMS OAuth2 client credentials."""

    api_url: str
    oauth2_url: str
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
        """The crawl's usable records, with its rejects and any sign that it shifted.

        ``complete`` is for reporting only: a deletion mid-crawl skips live items without
        upsetting the counts, so absent keys are checked with ``lookup_many`` before any
        tombstone.
        """
        started = utcnow()
        with self.client() as client:
            documents = client.crawl_records()
            rejected = list(client.last_crawl_rejected)
            duplicates = sorted(set(client.last_crawl_duplicates))
            reason = _incomplete_reason(
                duplicates, len(documents) + len(rejected), client.last_crawl_reported_count
            )
            return ContentSnapshot(
                documents,
                duplicates,
                client.request_count,
                complete=reason is None,
                started_at=started,
                rejected=rejected,
                incomplete_reason=reason,
            )

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        with self.client() as client:
            return client.lookup(content_key, content_type)

    def lookup_many(self, keys: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        with self.client() as client:
            return client.lookup_many(keys)

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        with self.client() as client:
            return client.fetch_courses(keys)

    def search(self, content_filter: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        with self.client() as client:
            return client.search(content_filter)


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


def read_catalog_queries(path: str = "") -> CatalogQueryFile:
    """Catalog queries and enterprise catalogs from a JSON file; by default the bundled sample.

    The file: ``{"catalog_queries": [{"uuid", "title", "content_filter"}],
    "enterprise_catalogs": [{"uuid", "title", "enterprise_uuid", "catalog_query_uuid"}]}``.
    A malformed file is an error naming the entry; a bad *filter* is not (it is validated and
    stored with its error by the bulk lane).
    """
    where = path or f"bundled {BUNDLED_QUERIES_FILE}"
    payload = read_json(path, "catalog query") if path else load_bundled(BUNDLED_QUERIES_FILE)
    _require(payload, where, ("catalog_queries",))
    queries = payload["catalog_queries"]
    catalogs = payload.get("enterprise_catalogs", [])
    for index, query in enumerate(queries):
        _require(query, f"{where}: catalog_queries[{index}]", ("uuid", "content_filter"))
    for index, catalog in enumerate(catalogs):
        _require(catalog, f"{where}: enterprise_catalogs[{index}]", ("uuid",))
    return CatalogQueryFile(queries, catalogs)
