"""A client for the Open edX course-discovery REST API.

It crawls ``search/all/`` (every course, course run, program and learner pathway), fetches the
full records of courses and programs, and looks single items up, deduplicating the items a
shifting search index repeats. JWT client-credentials auth with reuse and refresh, bounded
retries with backoff and strict reply validation come from ``core.api_client.OAuth2ApiClient``,
which the enterprise-catalog client shares.

Plain Python (no Dagster) so it can be tested against a real local HTTP server and reused by
sensors and scripts alike.

A crawl of a live index can skip items (a deletion shifts the pages after it) without any sign
in the counts, so nothing here decides that an item is gone: ``lookup_many`` asks discovery
about specific keys, and only its answer may justify a tombstone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from catalog_assets.core import content
from catalog_assets.core.api_client import ApiError, OAuth2ApiClient
from catalog_assets.core.content import RejectedDocument, document_identity, screen_document

__all__ = [
    "DiscoveryClient",
    "DiscoveryError",
    "UnusableDocument",
    "content_key_of",
]

# content_type -> (endpoint, query parameter, search-document field identifying the item).
# Course runs and learner pathways have no full-record call: the search document is the record.
FULL_RECORD_ENDPOINTS: dict[str, tuple[str, str, str]] = {
    "course": ("courses/", "keys", "key"),
    "program": ("programs/", "uuids", "uuid"),
}
# content_type -> the field ``POST search/all/`` filters on for a single lookup.
LOOKUP_FIELDS: dict[str, str] = {
    "course": "key",
    "courserun": "key",
    "program": "uuid",
    "learnerpathway": "uuid",
}
# What enterprise-catalog asks of ``search/all/``, for crawls and lookups alike: without the
# first, course-discovery returns expired course runs; without the second, it leaves learner
# pathways out. An expired run then vanishes from the crawl and the lookup, and is tombstoned.
SEARCH_PARAMS: dict[str, str] = {
    "exclude_expired_course_run": "True",
    "include_learner_pathways": "True",
}
# How enterprise-catalog's per-query sync orders ``POST search/all/`` (``search``), so that page
# paging walks a stable order.
QUERY_SEARCH_ORDERING = "aggregation_key,start"


class DiscoveryError(ApiError):
    """course-discovery could not be read completely and correctly; never a partial result.

    The message is redacted: replies that echo a request must not put credentials in logs.
    """


class UnusableDocument(DiscoveryError, ValueError):
    """course-discovery has the item, but its document cannot be used (so it is not gone).

    A ValueError too, so the event lane rejects that one update instead of failing the batch.
    """


def content_key_of(document: Mapping[str, Any]) -> str:
    """A search document's content key; a document without one is a broken reply."""
    try:
        return content.content_key_of(document)
    except ValueError as error:
        raise DiscoveryError(f"search document without identity: {error}") from error


class DiscoveryClient(OAuth2ApiClient):
    """Reads course-discovery with an OAuth2 client-credentials JWT (``OAuth2ApiClient``: auth,
    retries, paging and reply parsing; every failure is a ``DiscoveryError``).

    ``batch_size`` bounds the keys of one full-record or lookup request; the other options are
    ``OAuth2ApiClient``'s.
    """

    unavailable_error = DiscoveryError
    refused_error = DiscoveryError
    malformed_error = DiscoveryError

    def __init__(
        self,
        api_url: str,
        oauth2_url: str,
        client_id: str,
        client_secret: str,
        *,
        batch_size: int = 50,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError("need batch_size >= 1")
        super().__init__(api_url, oauth2_url, client_id, client_secret, **options)
        self._batch_size = batch_size
        self.last_crawl_duplicates: list[str] = []
        self.last_crawl_reported_count: int | None = None
        self.last_crawl_rejected: list[RejectedDocument] = []

    # -- public API ---------------------------------------------------------------------------

    def crawl(self) -> list[dict[str, Any]]:
        """Every usable search document, deduplicated by content key (the last occurrence wins).

        A search index that changes mid-crawl shifts its pages, so an item can show up twice;
        each repeat is recorded in ``last_crawl_duplicates`` (one entry per extra occurrence).
        An item can also be skipped, with nothing to show for it: see ``lookup_many``.
        A document that cannot be stored (no usable key, too deep) is left out and recorded in
        ``last_crawl_rejected``: one bad document must not stop the catalog from syncing.
        Raises DiscoveryError rather than return a partial crawl.
        """
        self.last_crawl_duplicates = []
        self.last_crawl_rejected = []
        query = urlencode({"page": 1, "page_size": self._page_size, **SEARCH_PARAMS})
        documents: dict[str, dict[str, Any]] = {}
        duplicates: list[str] = []
        rejected: list[RejectedDocument] = []
        reported = None
        position = 0
        pages = self._pages("GET", f"{self.api_url}search/all/?{query}")
        for number, page in enumerate(pages, start=1):
            reported = page.get("count", reported)
            for document in page["results"]:
                position += 1
                rejection = self._screen(document, f"search/all item {position} (page {number})")
                if rejection is not None:
                    rejected.append(rejection)
                    continue
                key = content_key_of(document)
                if key in documents:
                    duplicates.append(key)
                documents[key] = document
        self.last_crawl_duplicates = duplicates
        self.last_crawl_rejected = rejected
        self.last_crawl_reported_count = reported if isinstance(reported, int) else None
        return list(documents.values())

    def fetch_full_records(
        self, documents: Iterable[Mapping[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Full records of the courses and programs among ``documents``, keyed by content key.

        Keys go at most ``batch_size`` per call, since the endpoints cap how many they accept
        (and URLs have a length limit). Items the endpoints no longer return are simply absent.
        """
        wanted: dict[str, dict[str, str]] = {
            content_type: {} for content_type in FULL_RECORD_ENDPOINTS
        }
        for document in documents:
            content_type = document.get("content_type")
            if content_type in FULL_RECORD_ENDPOINTS:
                field = FULL_RECORD_ENDPOINTS[content_type][2]
                identifier = document.get(field)
                if not isinstance(identifier, str) or not identifier:
                    raise DiscoveryError(f"{content_type} search document has no {field}")
                wanted[content_type][identifier] = content_key_of(document)

        records: dict[str, dict[str, Any]] = {}
        for content_type, identifiers in wanted.items():
            endpoint, param, field = FULL_RECORD_ENDPOINTS[content_type]
            batch_ids = list(identifiers)
            for start in range(0, len(batch_ids), self._batch_size):
                batch = batch_ids[start : start + self._batch_size]
                query = urlencode({param: ",".join(batch)}, safe=",")
                url = f"{self.api_url}{endpoint}?{query}"
                for page in self._pages("GET", url):
                    for record in page["results"]:
                        identifier = record.get(field)
                        if identifier not in identifiers:
                            continue  # not asked for: never let it overwrite another item
                        records[identifiers[identifier]] = record
        return records

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The full records (``GET courses/?keys=``, ``batch_size`` keys a call) of the courses
        ``keys`` names, keyed by course key, whether ``search/all`` lists them or not (a forced
        course may be unlisted). A key course-discovery does not return is absent."""
        return self.fetch_full_records({"content_type": "course", "key": key} for key in keys)

    def crawl_records(self) -> list[dict[str, Any]]:
        """The crawl with each document updated by its full record (the full record wins).

        A record that its full record makes unusable (too deep) joins ``last_crawl_rejected``,
        under the search document's key.
        """
        documents = self.crawl()
        full = self.fetch_full_records(documents)
        records, rejected = [], []
        for document in documents:
            key = content_key_of(document)
            record = {**document, **full.get(key, {})}
            rejection = None
            if key in full:
                rejection = self._screen(record, f"{key!r} with its full record")
            if rejection is None:
                records.append(record)
            else:
                rejected.append(replace(rejection, content_key=key))
        self.last_crawl_rejected = [*self.last_crawl_rejected, *rejected]
        return records

    def lookup_many(self, keys: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """The merged record of each of ``keys`` (``{content_key: content_type}``) that
        course-discovery still has; a key absent from the answer is confirmed gone.

        This, not a crawl's silence, is what may justify a tombstone. Uses ``POST search/all/``
        filtered by key (courses, course runs) or uuid (programs, learner pathways), at most
        ``batch_size`` identifiers a request, and a document counts only when its field AND its
        content type match. Raises ValueError for an unknown content type, DiscoveryError
        rather than answer partially, and UnusableDocument when an item exists but its document
        cannot be used (it is not gone either).
        """
        wanted: dict[str, dict[str, str]] = {field: {} for field in LOOKUP_FIELDS.values()}
        for key, content_type in keys.items():
            field = LOOKUP_FIELDS.get(content_type)
            if field is None:
                raise ValueError(
                    f"unknown content_type {content_type!r} for {key!r}; expected one of "
                    f"{sorted(LOOKUP_FIELDS)}"
                )
            wanted[field][key] = content_type
        matches: dict[str, dict[str, Any]] = {}
        for field, types in wanted.items():
            identifiers = list(types)
            for start in range(0, len(identifiers), self._batch_size):
                batch = identifiers[start : start + self._batch_size]
                matches |= self._lookup_batch(field, batch, types)

        for key, document in matches.items():
            self._require_usable(key, document)
        full = self.fetch_full_records(matches.values())
        records: dict[str, dict[str, Any]] = {}
        for key, document in matches.items():
            record = {**document, **full.get(content_key_of(document), {})}
            self._require_usable(key, record)
            records[key] = record
        return records

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        """One item's merged record, or None when course-discovery no longer has it."""
        return self.lookup_many({content_key: content_type}).get(content_key)

    # -- documents ----------------------------------------------------------------------------

    def _screen(self, document: Mapping[str, Any], where: str) -> RejectedDocument | None:
        """``screen_document``, plus: a course or program needs its identifier for its full
        record (without it the item would be stored incomplete)."""
        rejection = screen_document(document, where)
        content_type = document.get("content_type")
        if rejection is None and content_type in FULL_RECORD_ENDPOINTS:
            field = FULL_RECORD_ENDPOINTS[content_type][2]
            identifier = document.get(field)
            if not isinstance(identifier, str) or not identifier:
                rejection = RejectedDocument(
                    f"{content_type} document without a string {field}, needed for its full "
                    f"record: {where} ({document_identity(document)})",
                    content_key_of(document),
                )
        return rejection

    def _require_usable(self, key: str, document: Mapping[str, Any]) -> None:
        rejection = self._screen(document, f"lookup of {key!r}")
        if rejection is not None:
            raise UnusableDocument(f"{rejection.reason}; the item exists, so it is not gone")

    def _lookup_batch(
        self, field: str, batch: list[str], types: Mapping[str, str]
    ) -> dict[str, dict[str, Any]]:
        """The matching document of each identifier in ``batch`` (the last one wins).

        One page normally holds a batch; when the answer is paged, every page must report the
        same count and together deliver it, or the index shifted between pages and an item may
        have been skipped: raise rather than call it gone.
        """
        page_size = max(self._page_size, self._batch_size)
        url = f"{self.api_url}search/all/?{urlencode({'page_size': page_size, **SEARCH_PARAMS})}"
        matches: dict[str, dict[str, Any]] = {}
        counts: set[Any] = set()
        received = 0
        for page in self._pages("POST", url, {field: batch}):
            counts.add(page.get("count"))
            received += len(page["results"])
            for document in page["results"]:
                identifier = document.get(field)
                if isinstance(identifier, str) and types.get(identifier) == document.get(
                    "content_type"
                ):
                    matches[identifier] = document
        count = next(iter(counts)) if len(counts) == 1 else None
        if len(counts) > 1 or (isinstance(count, int) and received < count):
            raise DiscoveryError(
                f"POST {url}: the search index changed while a lookup of {len(batch)} "
                f"{field}s was paged (counts {sorted(map(str, counts))}, {received} received)"
            )
        return matches

    # -- one catalog query's search (the parity check) ----------------------------------------

    def search(self, content_filter: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """What ``POST search/all/`` answers for one catalog query's content filter (the JSON
        body), asked as enterprise-catalog's per-query sync asks (``SEARCH_PARAMS``,
        ``page_size``, ``ordering=aggregation_key,start``, page paging): content key -> search
        document, the last occurrence winning. A document the crawl would reject is left out
        (the store never holds one). Every page must report the same count and together
        deliver it, or the index shifted while paging: DiscoveryError, never a partial answer.
        """
        params = {"page": 1, "page_size": self._page_size, **SEARCH_PARAMS}
        query = urlencode({**params, "ordering": QUERY_SEARCH_ORDERING}, safe=",")
        url = f"{self.api_url}search/all/?{query}"
        documents: dict[str, dict[str, Any]] = {}
        counts: set[Any] = set()
        received = 0
        for number, page in enumerate(self._pages("POST", url, dict(content_filter)), start=1):
            counts.add(page.get("count"))
            for document in page["results"]:
                received += 1
                if self._screen(document, f"search item {received} (page {number})") is None:
                    documents[content_key_of(document)] = document
        count = next(iter(counts)) if len(counts) == 1 else None
        if len(counts) > 1 or (isinstance(count, int) and received < count):
            raise DiscoveryError(
                f"POST {url}: the search index changed while a catalog query's search was "
                f"paged (counts {sorted(map(str, counts))}, {received} received)"
            )
        return documents
