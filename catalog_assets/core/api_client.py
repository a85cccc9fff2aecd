"""The HTTP machinery the Open edX REST clients share: an OAuth2 client-credentials JWT from
the LMS, bounded retries, paged replies and strict reply parsing.

``OAuth2ApiClient`` is the base of ``DiscoveryClient`` (course-discovery) and
``EnterpriseCatalogClient`` (enterprise-catalog): both services sit behind the same LMS OAuth2
provider and answer with Django REST framework pages (``{"next", "results"}``). A subclass
names the error types it raises, so each service's failures keep their own names.

Plain Python (no Dagster), testable against real local HTTP servers.
"""

from __future__ import annotations

import email.utils
import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Self
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from catalog_assets.core.redaction import redact, remember_secret

__all__ = ["ApiError", "OAuth2ApiClient"]

# Network failures worth another attempt; anything else from requests is a bug or a config error.
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_BODY_SNIPPET = 300  # room for an error page that echoes a search request line
_REDACT_SCAN = 65_536  # redact this much of a body before cutting the snippet, never a half secret
_PARSE_RECURSION_LIMIT = 20_000
"""How deep a reply may nest and still parse: json's C parser recurses once per level and stops
at the recursion limit (about 1,000), which one deep document would hit for its whole page. The
limit is raised to this for one retry only; 20,000 levels fit an 8 MiB thread stack."""


class ApiError(RuntimeError):
    """A service could not be read completely and correctly; never a partial result.

    The message is redacted: replies that echo a request must not put credentials in logs.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class OAuth2ApiClient:
    """Reads a REST API with an OAuth2 client-credentials JWT (``Authorization: JWT ...``).

    ``session``, ``sleep``, ``clock`` and ``rand`` are injectable so tests can observe backoff
    delays, their jitter and token expiry without waiting. ``request_count`` counts every HTTP
    request made (token fetches and retries included) and ``token_fetches`` every token
    obtained, for run metadata. The client secret and every token are registered with
    ``remember_secret``, so no error message or log line can carry them.

    Subclasses choose the error raised for each cause: ``unavailable_error`` (the service could
    not be reached or kept failing: network errors, 5xx and 429 after the retries; worth a
    later retry), ``refused_error`` (a 4xx: credentials or request rejected) and
    ``malformed_error`` (a reply that is not the contract).
    """

    unavailable_error: ClassVar[type[ApiError]] = ApiError
    refused_error: ClassVar[type[ApiError]] = ApiError
    malformed_error: ClassVar[type[ApiError]] = ApiError

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
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if max_retries < 0 or page_size < 1 or timeout <= 0 or max_retry_after < 0:
            raise ValueError(
                "need max_retries >= 0, page_size >= 1, timeout > 0, max_retry_after >= 0"
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
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self.request_count = 0
        self.token_fetches = 0

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- paging and replies -------------------------------------------------------------------

    def _pages(
        self, method: str, url: str, json_body: Any | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each page of a paged reply, following ``next`` until it is null."""
        for _, page in self._located_pages(method, url, json_body):
            yield page

    def _located_pages(
        self, method: str, url: str, json_body: Any | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each page of a paged reply with the URL it was read from (for error messages)."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen:
                raise self.malformed_error(
                    f"{method} {next_url}: pagination loops back to a seen page"
                )
            seen.add(next_url)
            page = self._call(method, next_url, json_body)
            yield next_url, page
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
            raise self.malformed_error(f"{current}: malformed reply, 'next' is {link!r:.80}")
        parts = urlsplit(urljoin(current, link))
        api = urlsplit(self.api_url)
        return urlunsplit(parts._replace(scheme=api.scheme, netloc=api.netloc))

    def _call(self, method: str, url: str, json_body: Any | None = None) -> dict[str, Any]:
        """One authenticated request for a page, with a single token refresh on 401."""
        response = self._send(method, url, headers=self._auth_header(), json=json_body)
        if response.status_code == 401:
            # The token may have been revoked or expired early (clock skew): refresh once only,
            # since a second 401 means the credentials themselves are not allowed in.
            self._token = None
            response = self._send(method, url, headers=self._auth_header(), json=json_body)
            if response.status_code == 401:
                raise self.refused_error(
                    f"{method} {url}: HTTP 401 again after a token refresh{_snippet(response)}"
                )
        self._raise_for_status(method, url, response)
        payload = self._json(method, url, response)
        results = payload.get("results")
        if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
            raise self.malformed_error(f"{method} {url}: malformed reply, no list of 'results'")
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
            raise self.malformed_error(f"POST {url}: malformed token reply, keys {sorted(payload)}")
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
        raise self.unavailable_error(f"{method} {url} failed after {attempts} attempts: {failure}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before retry ``attempt + 1``.

        The server's Retry-After is honoured up to ``max_retry_after``: a misconfigured or
        hostile "an hour" must fail this run (the schedule retries) rather than stall it. Without
        one, full jitter: sensors and runs that failed together must not retry in lockstep.
        """
        if retry_after is not None:
            return min(retry_after, self._max_retry_after)
        return self._rand(0.0, min(self._max_backoff, self._backoff_base * 2**attempt))

    def _raise_for_status(self, method: str, url: str, response: requests.Response) -> None:
        if response.status_code >= 400:
            raise self.refused_error(
                f"{method} {url}: HTTP {response.status_code}{_snippet(response)}"
            )

    def _json(self, method: str, url: str, response: requests.Response) -> dict[str, Any]:
        try:
            payload = _parse_json(response.content)
        except RecursionError as exc:
            raise self.malformed_error(
                f"{method} {url}: malformed reply, nested deeper than {_PARSE_RECURSION_LIMIT} "
                "levels (too deep to parse)"
            ) from exc
        except ValueError as exc:
            raise self.malformed_error(
                f"{method} {url}: malformed reply, not JSON{_snippet(response)}"
            ) from exc
        if not isinstance(payload, dict):
            raise self.malformed_error(f"{method} {url}: malformed reply, not a JSON object")
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
