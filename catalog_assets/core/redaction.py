"""One redaction helper for every URL, error body and message the project prints or stores.

Secrets reach text in two ways: in a shape that says what they are (a URL's password, a form or
query field such as ``client_secret=``, a JSON field, an ``Authorization`` header), and verbatim,
when a server echoes a request back. ``redact`` masks the first by shape and the second by value:
every secret the process configures is registered with ``remember_secret`` (the discovery
client's client secret and tokens, the Kafka SASL password, registry credentials), and any
occurrence of one is masked wherever it appears.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "***"

SECRET_NAMES = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "api_secret",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "sasl.password",
    "basic.auth.user.info",
)
"""Field names whose values are secrets, in URLs, forms, JSON bodies and client settings."""

_NAMES = "|".join(re.escape(name) for name in sorted(SECRET_NAMES, key=len, reverse=True))
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)[^@\s/]*(?P<at>@)")
_FIELD = re.compile(rf"(?P<head>(?<![\w.])(?:{_NAMES})=)[^&\s\"',;]+", re.IGNORECASE)
_JSON_FIELD = re.compile(
    rf"(?P<head>[\"'](?:{_NAMES})[\"']\s*:\s*[\"'])(?:[^\"'\\]|\\.)*(?P<tail>[\"'])",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(r"(?P<head>\b(?:JWT|Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=\-]{8,}")

_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
_known: set[str] = set()
_lock = threading.Lock()


def remember_secret(*values: str | None) -> None:
    """Register secret values to mask wherever they appear (empty and short values are ignored)."""
    with _lock:
        _known.update(v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH)


def forget_secrets() -> None:
    """Forget every remembered secret (tests; a process whose credentials were rotated)."""
    with _lock:
        _known.clear()


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (any value, as ``str``) with every secret it carries masked as ``***``."""
    out = str(text)
    with _lock:
        values = set(_known)
    values.update(v for v in secrets if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH)
    # Longest first, so that a secret containing another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        out = out.replace(value, MASK)
    out = _USERINFO.sub(lambda m: f"{m['head']}{MASK}{m['at']}", out)
    out = _FIELD.sub(lambda m: f"{m['head']}{MASK}", out)
    out = _JSON_FIELD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", out)
    return _AUTH_HEADER.sub(lambda m: f"{m['head']}{MASK}", out)


def redact_url(url: str) -> str:
    """A URL safe to print: its password and secret query parameters masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact(url)
    if password is None:  # rebuilding would drop an empty host (duckdb:///path)
        return redact(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:" if parts.username is not None else ":"
    return redact(urlunsplit(SplitResult(parts.scheme, f"{user}{MASK}@{host}", *parts[2:])))
