"""A real local HTTP server speaking the course-discovery contract, with fault injection.

Tests and benchmarks point a real ``DiscoveryClient`` (real ``requests``, real sockets) at it, so
they exercise paging, auth, retries and reply parsing end to end instead of a mock's idea of
them. The served content is mutable while it runs, so a test can change the source between runs,
or in the middle of one crawl (``after_page``) the way a live index changes under a crawler.

    with FakeDiscovery(documents, full_records) as fake:
        client = DiscoveryClient(fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret)
        fake.fail_next("/api/v1/search/all/", 503, times=2)
        client.crawl()

Like course-discovery, ``search/all/`` leaves learner pathways out unless asked
``include_learner_pathways=True``, and leaves expired course runs out when asked
``exclude_expired_course_run=True``: a run is expired when its ``end`` is before ``now`` (set
``now`` to a time; None, the default, expires nothing). ``courses/?keys=`` serves the full
records it holds, whether ``search/all/`` lists the course or not (an unlisted course).

``POST search/all/`` answers two kinds of body. ``{"key": [...]}`` and ``{"uuid": [...]}``
(lists only: the lookups the client makes) find documents by identifier. Any other JSON object
is a catalog query's content filter, as enterprise-catalog's per-query sync sends it: the
documents the reference ``catalog_assets.core.filters.matches`` accepts (an invalid filter is a
400), honouring the same two flags as the crawl, sorted by ``ordering`` (e.g.
``aggregation_key,start``) and paged by ``page``/``page_size``. ``search_override`` makes the
index disagree with the filter for one query (an extra or a missing key), the way a search
index can differ from the filter's semantics.

Paging slices a list and lookups go through dict indexes, so tens of thousands of documents and
hundreds of requests stay fast.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit

from catalog_assets.core.filters import InvalidFilter, matches, validate

API_PREFIX = "/api/v1/"
TOKEN_PATH = "/oauth2/access_token"
SEARCH_PATH = API_PREFIX + "search/all/"
COURSES_PATH = API_PREFIX + "courses/"
PROGRAMS_PATH = API_PREFIX + "programs/"
MAX_KEYS = 50
DEFAULT_LIMIT = 20
DEFAULT_PAGE_SIZE = 20
TRUE_PARAMS = ("true", "1")

Reply = tuple[int, Any, dict[str, str]]


class LoggedRequest(NamedTuple):
    """One served request. ``status`` is None when the fake dropped the connection."""

    method: str
    path: str
    query: dict[str, list[str]]
    token: str | None
    status: int | None
    body: bytes = b""


@dataclass
class _Fault:
    path_prefix: str
    remaining: int
    status: int | None = None
    body: bytes | None = None
    retry_after: float | str | None = None
    delay: float = 0.0
    disconnect: bool = False
    echo: bool = False


def _content_key(document: Mapping[str, Any]) -> str:
    key = _key_or_none(document)
    if key is None:
        raise ValueError(f"document has neither key nor uuid (title={document.get('title')!r:.80})")
    return key


def _key_or_none(document: Mapping[str, Any]) -> str | None:
    """A document's content key, or None for the broken documents a test may serve."""
    key = document.get("key") or document.get("uuid")
    return key if isinstance(key, str) and key else None


def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int | None:
    """A positive integer query parameter, or None when it is malformed."""
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        return None
    return value if value >= 0 else None


class FakeDiscovery:
    """course-discovery and its OAuth2 token endpoint on 127.0.0.1, on a free port."""

    client_id = "fake-discovery-client"
    client_secret = "fake-discovery-secret"

    def __init__(
        self,
        documents: Iterable[Mapping[str, Any]] = (),
        full_records: Mapping[str, Mapping[str, Any]] | None = None,
        token_ttl: int = 3600,
        max_page_size: int | None = None,
        now: datetime | None = None,
    ) -> None:
        self.token_ttl = token_ttl
        self.max_page_size = max_page_size  # like DRF's: a larger page_size is quietly clamped
        self._lock = threading.Lock()
        self._now = _aware(now)
        self._visible: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
        # (filter JSON, flags, ordering) -> the matching documents, sorted
        self._filtered: dict[tuple[str, bool, bool, str], list[dict[str, Any]]] = {}
        self._overrides: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._documents: list[dict[str, Any]] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self._by_uuid: dict[str, dict[str, Any]] = {}
        self._set_documents_locked([dict(doc) for doc in documents])
        self._full: dict[str, dict[str, Any]] = {
            key: dict(record) for key, record in (full_records or {}).items()
        }
        self._tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self._faults: list[_Fault] = []
        self._page_shifts: dict[int, int] = {}
        self._after_page: dict[int, list[Callable[[], None]]] = {}
        self._fail_from: tuple[int, int] | None = None
        self.requests: list[tuple[str, str]] = []
        self.request_log: list[LoggedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeDiscovery:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeDiscovery:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeDiscovery is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @property
    def oauth2_url(self) -> str:
        return f"{self.base_url}/oauth2"

    # -- content (mutable while running) --------------------------------------------------------

    def set_documents(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """Replace every search document (served in this order)."""
        copies = [dict(doc) for doc in documents]
        with self._lock:
            self._set_documents_locked(copies)

    def upsert_documents(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """Replace documents in place by content key; append the new ones at the end."""
        updates = {_content_key(doc): dict(doc) for doc in documents}
        with self._lock:
            merged = [updates.pop(_key_or_none(doc), doc) for doc in self._documents]
            self._set_documents_locked(merged + list(updates.values()))

    def remove_documents(self, content_keys: Iterable[str]) -> None:
        gone = set(content_keys)
        with self._lock:
            kept = [doc for doc in self._documents if _key_or_none(doc) not in gone]
            self._set_documents_locked(kept)

    def insert_documents(self, position: int, documents: Iterable[Mapping[str, Any]]) -> None:
        """Insert documents before ``position`` (0: in front of everything)."""
        copies = [dict(doc) for doc in documents]
        with self._lock:
            current = self._documents
            self._set_documents_locked([*current[:position], *copies, *current[position:]])

    def documents(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._documents)

    def set_full_records(self, full_records: Mapping[str, Mapping[str, Any]]) -> None:
        copies = {key: dict(record) for key, record in full_records.items()}
        with self._lock:
            self._full = copies

    def upsert_full_records(self, full_records: Mapping[str, Mapping[str, Any]]) -> None:
        with self._lock:
            self._full = {**self._full, **{k: dict(v) for k, v in full_records.items()}}

    def remove_full_records(self, content_keys: Iterable[str]) -> None:
        gone = set(content_keys)
        with self._lock:
            self._full = {k: v for k, v in self._full.items() if k not in gone}

    @property
    def now(self) -> datetime | None:
        """Course runs whose ``end`` is before this are expired (None: none is)."""
        return self._now

    @now.setter
    def now(self, value: datetime | None) -> None:
        with self._lock:
            self._now = _aware(value)
            self._visible = {}
            self._filtered = {}

    def _set_documents_locked(self, documents: list[dict[str, Any]]) -> None:
        # Copy-on-write: handlers grab references under the lock and then read without it.
        self._documents = documents
        self._visible = {}
        self._filtered = {}
        self._by_key = {doc["key"]: doc for doc in documents if isinstance(doc.get("key"), str)}
        self._by_uuid = {doc["uuid"]: doc for doc in documents if isinstance(doc.get("uuid"), str)}

    def search_override(
        self, content_filter: Mapping[str, Any], add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        """Make ``POST search/all/`` with this content filter also return the (visible)
        documents of the ``add`` keys and leave out those of the ``remove`` keys, whatever the
        filter says: an index that disagrees with the filter's semantics for one query."""
        with self._lock:
            self._overrides[_filter_text(content_filter)] = (frozenset(add), frozenset(remove))
            self._filtered = {}

    # -- fault injection ------------------------------------------------------------------------

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        times: int = 1,
        retry_after: float | str | None = None,
        body: bytes | str | None = None,
        echo_request: bool = False,
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status``.

        Rules queue up in order, so ``fail_next(p, 429)`` then ``fail_next(p, 503)`` gives a 429
        and then a 503. ``body`` replaces the default JSON error body; ``echo_request`` makes
        the body the request itself (request line, body, headers), as some servers and proxies
        do in error pages. ``retry_after`` is seconds, or a string sent as is (an HTTP date).
        """
        raw = body.encode() if isinstance(body, str) else body
        self._add_fault(_Fault(path_prefix, times, status, raw, retry_after, echo=echo_request))

    def malformed_next(self, path_prefix: str, body: bytes | str = b"<html>oops</html>") -> None:
        """Answer the next request under ``path_prefix`` with a 200 that is not the contract."""
        self.fail_next(path_prefix, 200, body=body)

    def disconnect_next(self, path_prefix: str, times: int = 1) -> None:
        """Close the connection without replying (the client sees a connection error)."""
        self._add_fault(_Fault(path_prefix, times, disconnect=True))

    def delay_next(self, path_prefix: str, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before answering normally (to trigger client read timeouts)."""
        self._add_fault(_Fault(path_prefix, times, delay=seconds))

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far: discovery answers 401 until a new one."""
        with self._lock:
            self._tokens.clear()

    def duplicate_on_page(self, page: int, count: int) -> None:
        """From search page ``page`` on, repeat the last ``count`` items of the page before.

        This is what items inserted before the crawl position do to offset paging.
        """
        self._shift_pages(page, count)

    def skip_on_page(self, page: int, count: int) -> None:
        """From search page ``page`` on, skip ``count`` items (as deletions mid-crawl do)."""
        self._shift_pages(page, -count)

    def after_page(self, page: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, right after ``GET search/all`` page ``page`` is served.

        It runs when the page's items are taken and before they are sent, so the client cannot
        ask for the next page first: ``fake.after_page(1, lambda: fake.remove_documents(...))``
        deletes items in the middle of one crawl, exactly at a page boundary.
        """
        with self._lock:
            self._after_page.setdefault(page, []).append(callback)

    def fail_from_page(self, page: int, status: int = 500) -> None:
        """Answer ``GET search/all`` with ``status`` for ``page`` and every later page."""
        with self._lock:
            self._fail_from = (page, status)

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._page_shifts.clear()
            self._after_page.clear()
            self._fail_from = None

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def _shift_pages(self, page: int, shift: int) -> None:
        if page < 2:
            raise ValueError("page shifts apply from page 2 on")
        with self._lock:
            self._page_shifts[page] = self._page_shifts.get(page, 0) + shift

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- observation ----------------------------------------------------------------------------

    def count(self, method: str, path: str) -> int:
        """How many ``method`` requests were served for exactly ``path``."""
        with self._lock:
            return sum(1 for entry in self.requests if entry == (method, path))

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_log.clear()

    # -- request handling -----------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        split = urlsplit(handler.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        authorization = handler.headers.get("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        token_or_none = token.strip() if scheme == "JWT" and token.strip() else None

        fault = self._take_fault(path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.disconnect:
            self._record(LoggedRequest(method, path, query, token_or_none, None, body))
            handler.close_connection = True
            return
        if fault is not None and fault.status is not None:
            payload: Any = fault.body
            if fault.echo:
                headers_text = "".join(f"{k}: {v}\r\n" for k, v in handler.headers.items())
                line = f"{method} {handler.path}\r\n".encode()
                payload = line + body + f"\r\n{headers_text}".encode()
            elif payload is None:
                payload = {"detail": f"injected failure {fault.status}"}
            headers = {}
            if isinstance(fault.retry_after, str):
                headers["Retry-After"] = fault.retry_after
            elif fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            status, reply_headers = fault.status, headers
        else:
            try:
                status, payload, reply_headers = self._route(
                    method, path, query, body, token_or_none
                )
                if method == "GET" and path == SEARCH_PATH and status == 200:
                    self._run_after_page(_int_param(query, "page", 1))
            except Exception as exc:  # a fake bug: make it visible to the test, not a hang
                status, payload, reply_headers = 500, {"detail": f"fake error: {exc!r}"}, {}
        # Log before replying, so a test that has its reply always sees its log entry.
        self._record(LoggedRequest(method, path, query, token_or_none, status, body))
        _reply(handler, status, payload, reply_headers)

    def _run_after_page(self, page: int | None) -> None:
        with self._lock:
            callbacks = self._after_page.pop(page, []) if page is not None else []
        for callback in callbacks:  # outside the lock: callbacks change the content
            callback()

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append((entry.method, entry.path))
            self.request_log.append(entry)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        token: str | None,
    ) -> Reply:
        if path == TOKEN_PATH:
            return self._issue_token(body) if method == "POST" else _error(405)
        if not path.startswith(API_PREFIX):
            return _error(404, "Not found.")
        if not self._token_valid(token):
            return _error(401, "Invalid or expired token.")
        if path == SEARCH_PATH and method == "GET":
            return self._search_page(query)
        if path == SEARCH_PATH and method == "POST":
            return self._search_filtered(query, body)
        if path == COURSES_PATH and method == "GET":
            return self._full_records(path, query, "keys")
        if path == PROGRAMS_PATH and method == "GET":
            return self._full_records(path, query, "uuids")
        if path in (SEARCH_PATH, COURSES_PATH, PROGRAMS_PATH):
            return _error(405)
        return _error(404, "Not found.")

    def _issue_token(self, body: bytes) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        if form.get("token_type", "").lower() != "jwt":
            return 400, {"error": "invalid_request", "error_description": "token_type=jwt"}, {}
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, {"error": "invalid_client"}, {}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic()
            self.tokens_issued += 1
        reply = {
            "access_token": token,
            "expires_in": self.token_ttl,
            "token_type": "JWT",
            "scope": "read write email profile",
        }
        return 200, reply, {}

    def _token_valid(self, token: str | None) -> bool:
        if token is None:
            return False
        with self._lock:
            issued = self._tokens.get(token)
        return issued is not None and time.monotonic() - issued < self.token_ttl

    def _visible_documents(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The documents ``search/all/`` shows for this request's flags (cached per flags)."""
        flags = (
            _flag(query, "exclude_expired_course_run"),
            _flag(query, "include_learner_pathways"),
        )
        with self._lock:
            if flags not in self._visible:
                self._visible[flags] = [
                    doc for doc in self._documents if self._shown_locked(doc, *flags)
                ]
            return self._visible[flags]

    def _shown_locked(
        self, document: dict[str, Any], exclude_expired: bool, pathways: bool
    ) -> bool:
        if document.get("content_type") == "learnerpathway":
            return pathways
        if not exclude_expired or self._now is None or document.get("content_type") != "courserun":
            return True
        end = _parse_time(document.get("end"))
        return end is None or end >= self._now

    def _search_page(self, query: dict[str, list[str]]) -> Reply:
        page = _int_param(query, "page", 1)
        size = self._page_size(query)
        if not page or not size:
            return _error(404, "Invalid page.")
        documents = self._visible_documents(query)
        with self._lock:
            shift = sum(s for p, s in self._page_shifts.items() if p <= page)
            fail_from = self._fail_from
        if fail_from is not None and page >= fail_from[0]:
            return _error(fail_from[1], f"injected failure from page {fail_from[0]}")
        start = max(0, (page - 1) * size - shift)
        end = max(start, page * size - shift)
        if page > 1 and start >= len(documents):
            return _error(404, "Invalid page.")
        links = self._page_links(SEARCH_PATH, query, page, has_next=end < len(documents))
        return 200, {"count": len(documents), **links, "results": documents[start:end]}, {}

    def _search_filtered(self, query: dict[str, list[str]], body: bytes) -> Reply:
        try:
            criteria = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(criteria, dict):
            return _error(400, "expected a JSON object: a content filter or a lookup")
        if _is_lookup(criteria):
            return self._search_lookup(query, criteria)
        try:
            validate(criteria)
        except (InvalidFilter, RecursionError) as error:
            return _error(400, f"invalid content filter: {error}")
        return self._paged(query, self._filter_results(query, criteria))

    def _filter_results(
        self, query: dict[str, list[str]], content_filter: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The visible documents the reference engine matches (plus the overrides), ordered
        as ``ordering`` asks; cached until the content changes."""
        text = _filter_text(content_filter)
        ordering = query.get("ordering", [""])[-1]
        flags = (
            _flag(query, "exclude_expired_course_run"),
            _flag(query, "include_learner_pathways"),
        )
        cache_key = (text, *flags, ordering)
        with self._lock:
            cache = self._filtered  # replaced (not cleared) when the content changes
            cached = cache.get(cache_key)
            add, remove = self._overrides.get(text, (frozenset(), frozenset()))
        if cached is not None:
            return cached
        results = []
        for document in self._visible_documents(query):
            key = _key_or_none(document)
            if key in remove:
                continue
            if key in add or matches(content_filter, document):
                results.append(document)
        results = _ordered(results, ordering)
        with self._lock:
            cache[cache_key] = results
        return results

    def _search_lookup(self, query: dict[str, list[str]], criteria: dict[str, Any]) -> Reply:
        """Documents by key and uuid (the client's lookups), in the order asked."""
        visible = {id(doc) for doc in self._visible_documents(query)}
        with self._lock:
            by_key, by_uuid = self._by_key, self._by_uuid
        found: dict[int, dict[str, Any]] = {}  # by identity: a document matches once
        for field, index in (("key", by_key), ("uuid", by_uuid)):
            values = criteria.get(field, [])
            if not isinstance(values, list):
                return _error(400, f"{field} must be a list")
            for value in values:
                if isinstance(value, str) and id(index.get(value)) in visible:
                    found[id(index[value])] = index[value]
        return self._paged(query, list(found.values()))

    def _paged(self, query: dict[str, list[str]], results: list[dict[str, Any]]) -> Reply:
        page = _int_param(query, "page", 1)
        size = self._page_size(query)
        if not page or not size:
            return _error(404, "Invalid page.")
        start, end = (page - 1) * size, page * size
        if page > 1 and start >= len(results):
            return _error(404, "Invalid page.")
        links = self._page_links(SEARCH_PATH, query, page, has_next=end < len(results))
        return 200, {"count": len(results), **links, "results": results[start:end]}, {}

    def _page_size(self, query: dict[str, list[str]]) -> int | None:
        size = _int_param(query, "page_size", DEFAULT_PAGE_SIZE)
        return min(size, self.max_page_size) if size and self.max_page_size else size

    def _full_records(self, path: str, query: dict[str, list[str]], param: str) -> Reply:
        raw = query.get(param, [""])[-1]
        keys = [key for key in raw.split(",") if key]
        if not keys:
            return _error(400, f"{param} is required")
        if len(keys) > MAX_KEYS:
            return _error(400, f"at most {MAX_KEYS} {param} per request, got {len(keys)}")
        limit = _int_param(query, "limit", DEFAULT_LIMIT)
        offset = _int_param(query, "offset", 0)
        if not limit or offset is None:
            return _error(400, "limit and offset must be non-negative integers")
        with self._lock:
            full = self._full
        found = [full[key] for key in dict.fromkeys(keys) if key in full]
        end = offset + limit
        links = {
            "next": self._url(path, query, limit=limit, offset=end) if end < len(found) else None,
            "previous": (
                self._url(path, query, limit=limit, offset=max(0, offset - limit))
                if offset > 0
                else None
            ),
        }
        return 200, {"count": len(found), **links, "results": found[offset:end]}, {}

    def _page_links(
        self, path: str, query: dict[str, list[str]], page: int, *, has_next: bool
    ) -> dict[str, str | None]:
        return {
            "next": self._url(path, query, page=page + 1) if has_next else None,
            "previous": self._url(path, query, page=page - 1) if page > 1 else None,
        }

    def _url(self, path: str, query: dict[str, list[str]], **updates: int) -> str:
        params: dict[str, Any] = {name: values[-1] for name, values in query.items()}
        params.update(updates)
        return f"{self.base_url}{path}?{urlencode(params, safe=',')}"


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive across a crawl's hundreds of requests.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body waits
    # for the client's delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; ``FakeDiscovery.request_log`` records requests."""


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    """A boolean query parameter as Django REST framework reads one (``True``, ``true``, 1)."""
    values = query.get(name)
    return bool(values) and values[-1].strip().lower() in TRUE_PARAMS


def _is_lookup(criteria: Mapping[str, Any]) -> bool:
    """Whether a ``POST search/all/`` body is a lookup by identifiers (``{"key": [...]}``,
    ``{"uuid": [...]}``) rather than a content filter: for one field both read the same."""
    return (
        bool(criteria)
        and criteria.keys() <= {"key", "uuid"}
        and all(isinstance(value, list) for value in criteria.values())
    )


def _filter_text(content_filter: Mapping[str, Any]) -> str:
    """A filter as text, key order kept (it matters: a later key for a field wins)."""
    return json.dumps(content_filter)


def _ordered(documents: list[dict[str, Any]], ordering: str) -> list[dict[str, Any]]:
    """``documents`` sorted as a DRF ``ordering`` asks (``field,-field``); missing values
    first, values of mixed types by their text."""
    for field in reversed([name for name in ordering.split(",") if name.strip("-")]):
        name = field.lstrip("-")
        documents = sorted(
            documents,
            key=lambda document: (document.get(name) is not None, str(document.get(name))),
            reverse=field.startswith("-"),
        )
    return documents


def _aware(moment: datetime | None) -> datetime | None:
    """A naive time is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as aware UTC; None when it is absent or not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _error(status: int, detail: str = "") -> Reply:
    return status, {"detail": detail or f"HTTP {status}"}, {}


def _dumps(payload: Any) -> str:
    """JSON text, also for the deeply nested documents tests serve on purpose (the encoder
    recurses once per level)."""
    try:
        return json.dumps(payload)
    except RecursionError:
        previous = sys.getrecursionlimit()
        sys.setrecursionlimit(max(previous, 25_000))
        try:
            return json.dumps(payload)
        finally:
            sys.setrecursionlimit(previous)


def _reply(
    handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]
) -> None:
    raw = payload if isinstance(payload, bytes) else _dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(raw)
    except (BrokenPipeError, ConnectionResetError):
        # The client gave up (e.g. its read timeout fired during an injected delay).
        handler.close_connection = True
