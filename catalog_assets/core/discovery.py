"""A client for the Open edX course-discovery REST API.

It crawls ``search/all/`` (every course, course run, program and learner pathway), fetches the
full records of courses and programs, and looks single items up. Everything a catalog sync needs
to trust the result is here: JWT client-credentials auth with reuse and refresh, bounded retries
with backoff, strict reply validation, and dedupe of the items a shifting search index repeats.

Plain Python (no Dagster) so it can be tested against a real local HTTP server and reused by
sensors and scripts alike.

A crawl of a live index can skip items (a deletion shifts the pages after it) without any sign
in the counts, so nothing here decides that an item is gone: ``lookup_many`` asks discovery
about specific keys, and only its answer may justify a tombstone.

Longer than most modules, on purpose: it is one client class whose parts (auth, retries,
paging, crawl, lookups) share one session, one token and one set of request counters.
"""

from __future__ import annotations

import email.utils
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from catalog_assets.core import content
from catalog_assets.core.content import RejectedDocument, document_identity, screen_document
from catalog_assets.core.redaction import redact, remember_secret

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
# Network failures worth another attempt; anything else from requests is a bug or a config error.
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_BODY_SNIPPET = 300  # room for an error page that echoes a search request line (SEARCH_PARAMS)
_REDACT_SCAN = 65_536  # redact this much of a body before cutting the snippet, never a half secret
_PARSE_RECURSION_LIMIT = 20_000
"""How deep a reply may nest and still parse: json's C parser recurses once per level and stops
at the recursion limit (about 1,000), which one deep document would hit for its whole page. The
limit is raised to this for one retry only; 20,000 levels fit an 8 MiB thread stack."""


class DiscoveryError(RuntimeError):
    """course-discovery could not be read completely and correctly; never a partial result.

    The message is redacted: replies that echo a request must not put credentials in logs.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


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


class DiscoveryClient:
    """Reads course-discovery with an OAuth2 client-credentials JWT.

    ``session``, ``sleep``, ``clock`` and ``rand`` are injectable so tests can observe backoff
    delays, their jitter and token expiry without waiting. ``request_count`` counts every HTTP
    request made (token fetches and retries included) and ``token_fetches`` every token
    obtained, for run metadata. The client secret and every token are registered with
    ``remember_secret``, so no error message or log line can carry them.
    """

    def __init__(
        self,
        api_url: str,
        oauth2_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        page_size: int = 100,
        batch_size: int = 50,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if (
            max_retries < 0
            or page_size < 1
            or batch_size < 1
            or timeout <= 0
            or max_retry_after < 0
        ):
            raise ValueError(
                "need max_retries >= 0, page_size >= 1, batch_size >= 1, timeout > 0, "
                "max_retry_after >= 0"
            )
        remember_secret(client_secret)
        self.api_url = api_url.rstrip("/") + "/"
        self.oauth2_url = oauth2_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._page_size = page_size
        self._batch_size = batch_size
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self.request_count = 0
        self.token_fetches = 0
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

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> DiscoveryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

    # -- paging and replies -------------------------------------------------------------------

    def _pages(
        self, method: str, url: str, json_body: Any | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each page of a paged reply, following ``next`` until it is null."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen:
                raise DiscoveryError(f"{method} {next_url}: pagination loops back to a seen page")
            seen.add(next_url)
            page = self._call(method, next_url, json_body)
            yield page
            next_url = self._next_url(page, next_url)

    def _next_url(self, page: Mapping[str, Any], current: str) -> str | None:
        """The ``next`` link, moved onto ``api_url``'s scheme and host.

        Behind a TLS-terminating proxy the API can advertise ``http://`` or an internal host in
        its links; following them as-is would send the token in clear or to another host.
        """
        link = page.get("next")
        if link is None:
            return None
        if not isinstance(link, str) or not link:
            raise DiscoveryError(f"{current}: malformed reply, 'next' is {link!r:.80}")
        parts = urlsplit(urljoin(current, link))
        api = urlsplit(self.api_url)
        return urlunsplit(parts._replace(scheme=api.scheme, netloc=api.netloc))

    def _call(self, method: str, url: str, json_body: Any | None = None) -> dict[str, Any]:
        """One authenticated discovery request, with a single token refresh on 401."""
        response = self._send(method, url, headers=self._auth_header(), json=json_body)
        if response.status_code == 401:
            # The token may have been revoked or expired early (clock skew): refresh once only,
            # since a second 401 means the credentials themselves are not allowed in.
            self._token = None
            response = self._send(method, url, headers=self._auth_header(), json=json_body)
            if response.status_code == 401:
                raise DiscoveryError(
                    f"{method} {url}: HTTP 401 again after a token refresh{_snippet(response)}"
                )
        self._raise_for_status(method, url, response)
        payload = self._json(method, url, response)
        results = payload.get("results")
        if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
            raise DiscoveryError(f"{method} {url}: malformed reply, no list of 'results'")
        return payload

    # -- auth ---------------------------------------------------------------------------------

    def _auth_header(self) -> dict[str, str]:
        if self._token is None or self._clock() >= self._token_refresh_at:
            self._fetch_token()
        return {"Authorization": f"JWT {self._token}"}

    def _fetch_token(self) -> None:
        url = f"{self.oauth2_url}/access_token"
        requested_at = self._clock()
        response = self._send(
            "POST",
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "token_type": "jwt",
            },
        )
        self._raise_for_status("POST", url, response)
        payload = self._json("POST", url, response)
        token = payload.get("access_token")
        expires_in = payload.get("expires_in")
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(expires_in, int | float)
            or isinstance(expires_in, bool)
        ):
            raise DiscoveryError(f"POST {url}: malformed token reply, keys {sorted(payload)}")
        remember_secret(token)
        # Refresh a little early so a token never expires between check and use; the margin
        # is 60 s, or 10% of the lifetime for short-lived tokens.
        margin = min(60.0, 0.1 * expires_in)
        self._token = token
        self._token_refresh_at = requested_at + expires_in - margin
        self.token_fetches += 1

    # -- transport ----------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with retries on network errors, 5xx and 429; other replies are returned as-is."""
        attempts = self._max_retries + 1
        failure = ""
        for attempt in range(attempts):
            self.request_count += 1
            retry_after: float | None = None
            try:
                response = self._session.request(method, url, timeout=self._timeout, **kwargs)
            except _TRANSIENT_ERRORS as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status < 500 and status != 429:
                    return response
                failure = f"HTTP {status}{_snippet(response)}"
                retry_after = _retry_after(response)
            if attempt + 1 < attempts:
                self._sleep(self._delay(attempt, retry_after))
        raise DiscoveryError(f"{method} {url} failed after {attempts} attempts: {failure}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before retry ``attempt + 1``.

        The server's Retry-After is honoured up to ``max_retry_after``: a misconfigured or
        hostile "an hour" must fail this run (the schedule retries) rather than stall it. Without
        one, full jitter: sensors and runs that failed together must not retry in lockstep.
        """
        if retry_after is not None:
            return min(retry_after, self._max_retry_after)
        return self._rand(0.0, min(self._max_backoff, self._backoff_base * 2**attempt))

    @staticmethod
    def _raise_for_status(method: str, url: str, response: requests.Response) -> None:
        if response.status_code >= 400:
            raise DiscoveryError(f"{method} {url}: HTTP {response.status_code}{_snippet(response)}")

    @staticmethod
    def _json(method: str, url: str, response: requests.Response) -> dict[str, Any]:
        try:
            payload = _parse_json(response.content)
        except RecursionError as exc:
            raise DiscoveryError(
                f"{method} {url}: malformed reply, nested deeper than {_PARSE_RECURSION_LIMIT} "
                "levels (too deep to parse)"
            ) from exc
        except ValueError as exc:
            raise DiscoveryError(
                f"{method} {url}: malformed reply, not JSON{_snippet(response)}"
            ) from exc
        if not isinstance(payload, dict):
            raise DiscoveryError(f"{method} {url}: malformed reply, not a JSON object")
        return payload


def _parse_json(raw: bytes) -> Any:
    """``json.loads``, retried once with the recursion limit raised to
    ``_PARSE_RECURSION_LIMIT`` (and restored) when the reply nests too deeply for it, so that
    one deep document is rejected on its own rather than failing its whole page."""
    try:
        return json.loads(raw)
    except RecursionError:
        pass
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, _PARSE_RECURSION_LIMIT))
    try:
        return json.loads(raw)
    finally:
        sys.setrecursionlimit(previous)


def _snippet(response: requests.Response) -> str:
    """The start of a reply body for an error message, secrets masked before it is cut."""
    text = redact(response.text[:_REDACT_SCAN])[:_BODY_SNIPPET].strip()
    return f" ({text})" if text else ""


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait (delta-seconds or HTTP-date), if it said."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
