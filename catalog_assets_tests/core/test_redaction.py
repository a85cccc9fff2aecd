"""The one redaction helper: secrets masked by shape and by value, everything else kept."""

from __future__ import annotations

import pytest

from catalog_assets.core.redaction import redact, redact_url, remember_secret


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://admin:p%40ss@db:5432/catalog", "postgresql://admin:***@db:5432/catalog"),
        ("postgresql://admin@db/catalog?password=zz&x=1", "postgresql://admin@db/catalog?password=***&x=1"),
        ("duckdb:///data/catalog.duckdb", "duckdb:///data/catalog.duckdb"),
        ("duckdb:////tmp/c.duckdb", "duckdb:////tmp/c.duckdb"),
        ("https://:token-only@host/x", "https://:***@host/x"),
    ],
)  # fmt: skip
def test_urls_keep_everything_but_their_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_secrets_are_masked_by_shape() -> None:
    text = (
        "POST /oauth2/access_token client_id=app&client_secret=s3cr3t&grant_type=x; "
        '{"client_secret": "s3\\"cr3t", "password": "pw", "ok": 1}; '
        "Authorization: JWT eyJhbGciOiJIUzI1NiJ9.payload.sig; mysql://u:pw@h/db"
    )
    shown = redact(text)
    for secret in ("s3cr3t", 's3\\"cr3t', '"pw"', "eyJhbGciOiJIUzI1NiJ9", "u:pw@"):
        assert secret not in shown
    assert "client_id=app" in shown and '"ok": 1' in shown and "mysql://u:***@h/db" in shown


def test_remembered_secrets_are_masked_wherever_they_appear() -> None:
    remember_secret("echoed-secret-value", None, "ab")  # None and too-short values are ignored
    assert redact("the server said: echoed-secret-value!") == "the server said: ***!"
    assert redact("ab abc") == "ab abc"
    assert redact("given explicitly: one-off-secret", secrets=["one-off-secret"]).endswith("***")
