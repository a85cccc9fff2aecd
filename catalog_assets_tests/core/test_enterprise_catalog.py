"""EnterpriseCatalogClient against a real local enterprise-catalog server
(FakeEnterpriseCatalog): paging, auth, retries, named errors, redaction, nothing partial."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from catalog_assets.core.api_client import OAuth2ApiClient
from catalog_assets.core.enterprise_catalog import (
    EnterpriseCatalogClient,
    EnterpriseCatalogQueries,
    EnterpriseCatalogRefused,
    EnterpriseCatalogUnavailable,
    MalformedEnterpriseCatalogReply,
)
from catalog_assets.core.refresh.queries import sync_catalog_queries
from catalog_assets.core.sources import CatalogQueryFile
from catalog_assets.store import CatalogStore
from catalog_assets_tests.core.test_discovery import SleepRecorder, upper_bound
from catalog_assets_tests.support.fake_discovery import TOKEN_PATH
from catalog_assets_tests.support.fake_enterprise_catalog import (
    CATALOGS_PATH,
    QUERIES_PATH,
    FakeEnterpriseCatalog,
    api_catalog,
    api_query,
)

NOW = datetime(2026, 11, 29, 7, 0, 0)


def _uuid(kind: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://enterprise-catalog.example.com/{kind}/{n}"))


def listing(queries: int, catalogs: int) -> dict[str, list[dict[str, Any]]]:
    """A catalog-query file: ``queries`` queries (filter keys in a deliberate, unsorted order)
    and ``catalogs`` catalogs spread over them."""
    return {
        "catalog_queries": [
            {
                "uuid": _uuid("query", n),
                "title": f"Query {n}",
                "content_filter": {"partner": "edx", "content_type": "course", "org": f"Org{n}"},
            }
            for n in range(queries)
        ],
        "enterprise_catalogs": [
            {
                "uuid": _uuid("catalog", n),
                "title": f"Catalog {n}",
                "enterprise_uuid": _uuid("enterprise", n % 3),
                "catalog_query_uuid": _uuid("query", n % queries),
            }
            for n in range(catalogs)
        ],
    }


@pytest.fixture
def fake() -> Iterator[FakeEnterpriseCatalog]:
    with FakeEnterpriseCatalog.from_file(listing(25, 23)) as server:
        yield server


def make_client(fake: FakeEnterpriseCatalog, **kwargs: Any) -> EnterpriseCatalogClient:
    options: dict[str, Any] = {
        "timeout": 5.0,
        "max_retries": 2,
        "backoff_base": 0.001,
        "max_backoff": 0.01,
        "page_size": 10,
        "sleep": SleepRecorder(),
        "rand": upper_bound,
    }
    options.update(kwargs)
    return EnterpriseCatalogClient(
        fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret, **options
    )


def pages_served(fake: FakeEnterpriseCatalog, path: str) -> list[tuple[str, str]]:
    return [
        (entry.query["page"][-1], entry.query["page_size"][-1])
        for entry in fake.request_log
        if entry.path == path and entry.status == 200
    ]


def test_the_client_is_the_shared_oauth2_client() -> None:
    assert issubclass(EnterpriseCatalogClient, OAuth2ApiClient)


# -- paging ------------------------------------------------------------------------------------


def test_every_page_of_both_listings_is_read_and_mapped_to_the_file_format(
    fake: FakeEnterpriseCatalog,
) -> None:
    with make_client(fake) as client:
        loaded = client.load()
    expected = listing(25, 23)
    assert loaded == CatalogQueryFile(expected["catalog_queries"], expected["enterprise_catalogs"])
    # Filters keep the server's key order (the store hashes the filter text).
    assert list(loaded.catalog_queries[0]["content_filter"]) == ["partner", "content_type", "org"]
    assert pages_served(fake, QUERIES_PATH) == [("1", "10"), ("2", "10"), ("3", "10")]
    assert pages_served(fake, CATALOGS_PATH) == [("1", "10"), ("2", "10"), ("3", "10")]


def test_a_larger_page_size_is_asked_for_and_a_server_cap_is_followed() -> None:
    with FakeEnterpriseCatalog.from_file(listing(150, 5)) as fake:
        with EnterpriseCatalogClient(
            fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret
        ) as client:
            loaded = client.load()
        assert len(loaded.catalog_queries) == 150
        # catalog-queries/ caps a page at 100: the next link asks for page 2.
        assert pages_served(fake, QUERIES_PATH) == [("1", "100"), ("2", "100")]
        assert pages_served(fake, CATALOGS_PATH) == [("1", "100")]


def test_the_server_default_page_size_is_ten(fake: FakeEnterpriseCatalog) -> None:
    with make_client(fake) as client:
        token = client._auth_header()["Authorization"]
    reply = requests.get(f"{fake.api_url}catalog-queries/", headers={"Authorization": token})
    body = reply.json()
    assert (reply.status_code, body["count"], len(body["results"])) == (200, 25, 10)
    assert "page=2" in body["next"]


def test_an_empty_listing_is_one_empty_page() -> None:
    with FakeEnterpriseCatalog() as fake, make_client(fake) as client:
        assert client.load() == CatalogQueryFile([], [])


def test_a_listing_that_changes_while_paged_is_refused(fake: FakeEnterpriseCatalog) -> None:
    """A query inserted before the read position shifts the pages: a skipped item would be
    removed from the store, so the whole read fails and nothing is returned."""
    extra = api_query({"uuid": _uuid("query", 999), "content_filter": {"org": "New"}})
    fake.after_listing_page(
        QUERIES_PATH, 1, lambda: fake.set_queries([extra, *fake.items(QUERIES_PATH)])
    )
    with make_client(fake) as client, pytest.raises(EnterpriseCatalogUnavailable) as info:
        client.load()
    assert "changed while it was paged" in str(info.value)


def test_a_listing_that_loses_an_item_while_paged_is_refused(fake: FakeEnterpriseCatalog) -> None:
    first = fake.items(CATALOGS_PATH)[0]["uuid"]
    fake.after_listing_page(CATALOGS_PATH, 1, lambda: fake.remove_catalogs([first]))
    with make_client(fake) as client, pytest.raises(EnterpriseCatalogUnavailable) as info:
        client.load()
    assert "changed while it was paged" in str(info.value)


# -- auth --------------------------------------------------------------------------------------


def test_the_listings_need_the_jwt(fake: FakeEnterpriseCatalog) -> None:
    for path in (QUERIES_PATH, CATALOGS_PATH):
        assert requests.get(f"{fake.base_url}{path}").status_code == 401
    fake.clear_log()
    with make_client(fake) as client:
        client.load()
    served = [e for e in fake.request_log if e.path in (QUERIES_PATH, CATALOGS_PATH)]
    assert served and all(e.token is not None and e.status == 200 for e in served)
    assert fake.tokens_issued == 1


def test_an_expired_token_is_refreshed_once(fake: FakeEnterpriseCatalog) -> None:
    with make_client(fake) as client:
        client.catalog_queries()
        fake.expire_tokens()
        assert len(client.enterprise_catalogs()) == 23
        assert client.token_fetches == 2


def test_wrong_credentials_are_refused_and_the_secret_is_not_in_the_error(
    fake: FakeEnterpriseCatalog,
) -> None:
    secret = "not-the-right-secret-3f9a"
    client = EnterpriseCatalogClient(fake.api_url, fake.oauth2_url, fake.client_id, secret)
    with client, pytest.raises(EnterpriseCatalogRefused) as info:
        client.load()
    assert "access_token" in str(info.value) and "HTTP 401" in str(info.value)
    assert secret not in str(info.value)


def test_an_error_page_echoing_the_request_does_not_leak_the_secret(
    fake: FakeEnterpriseCatalog,
) -> None:
    fake.fail_next(TOKEN_PATH, 500, times=3, echo_request=True)
    with make_client(fake) as client, pytest.raises(EnterpriseCatalogUnavailable) as info:
        client.load()
    text = str(info.value)
    assert "HTTP 500" in text and "client_secret=***" in text
    assert fake.client_secret not in text


# -- failures: named, retried where worth it, nothing partial ---------------------------------


def test_a_page_that_fails_once_is_retried(fake: FakeEnterpriseCatalog) -> None:
    fake.fail_page(QUERIES_PATH, 2, 503)
    with make_client(fake) as client:
        assert len(client.load().catalog_queries) == 25
        assert client._sleep.delays == [0.001]


def test_retry_after_is_honoured_up_to_its_cap(fake: FakeEnterpriseCatalog) -> None:
    fake.fail_next(CATALOGS_PATH, 429, retry_after=3600)
    with make_client(fake, max_retry_after=7.0) as client:
        client.load()
        assert client._sleep.delays == [7.0]


def test_a_page_that_keeps_failing_is_unavailable_and_nothing_is_written(
    fake: FakeEnterpriseCatalog, store: CatalogStore
) -> None:
    with make_client(fake) as client:
        sync_catalog_queries(client.load(), store, NOW)
    before = (store.catalog_queries(), store.enterprise_catalogs())
    fake.edit_query(_uuid("query", 0), content_filter={"org": "Changed"})
    fake.remove_catalogs([_uuid("catalog", 1)])
    fake.fail_page(CATALOGS_PATH, 3, 502, times=3)
    with make_client(fake) as client, pytest.raises(EnterpriseCatalogUnavailable) as info:
        sync_catalog_queries(client.load(), store, NOW)
    assert "page=3" in str(info.value) and "after 3 attempts" in str(info.value)
    assert not isinstance(info.value, ValueError)  # retryable, not bad input
    assert (store.catalog_queries(), store.enterprise_catalogs()) == before


def test_a_malformed_page_names_the_page(fake: FakeEnterpriseCatalog) -> None:
    fake.malformed_page(CATALOGS_PATH, 2)
    with make_client(fake) as client, pytest.raises(MalformedEnterpriseCatalogReply) as info:
        client.load()
    assert isinstance(info.value, ValueError)
    assert "enterprise-catalogs/?page=2" in str(info.value) and "not JSON" in str(info.value)


def test_a_page_without_results_is_malformed(fake: FakeEnterpriseCatalog) -> None:
    fake.malformed_page(QUERIES_PATH, 1, body=b'{"count": 25, "next": null}')
    with make_client(fake) as client, pytest.raises(MalformedEnterpriseCatalogReply) as info:
        client.load()
    assert "no list of 'results'" in str(info.value)


@pytest.mark.parametrize(
    ("path", "n", "field"),
    [
        (QUERIES_PATH, 12, "content_filter"),
        (QUERIES_PATH, 3, "uuid"),
        (CATALOGS_PATH, 21, "enterprise_customer"),
        (CATALOGS_PATH, 0, "catalog_query_uuid"),
    ],
)
def test_a_missing_field_is_named_with_its_page_and_item(
    fake: FakeEnterpriseCatalog, path: str, n: int, field: str
) -> None:
    kind = "query" if path == QUERIES_PATH else "catalog"
    fake.drop_field(path, _uuid(kind, n), field)
    with make_client(fake) as client, pytest.raises(MalformedEnterpriseCatalogReply) as info:
        client.load()
    text = str(info.value)
    page = n // 10 + 1
    assert f"{path.removeprefix('/api/v1/')}?page={page}" in text
    assert f"item {n % 10 + 1}" in text and repr(field) in text
    if field != "uuid":
        assert _uuid(kind, n) in text


def test_a_mistyped_field_is_named(fake: FakeEnterpriseCatalog) -> None:
    catalogs = fake.items(CATALOGS_PATH)
    catalogs[4]["enterprise_customer"] = 42
    fake.set_catalogs(catalogs)
    with make_client(fake) as client, pytest.raises(MalformedEnterpriseCatalogReply) as info:
        client.load()
    assert "enterprise_customer 42 is not a non-empty string" in str(info.value)


def test_nullable_fields_may_be_null(fake: FakeEnterpriseCatalog) -> None:
    catalog = api_catalog({"uuid": _uuid("catalog", 500), "enterprise_uuid": _uuid("e", 1)})
    query = api_query({"uuid": _uuid("query", 500), "content_filter": {}})
    fake.set_catalogs([catalog])
    fake.set_queries([query])
    with make_client(fake) as client:
        loaded = client.load()
    assert loaded.enterprise_catalogs[0]["catalog_query_uuid"] is None
    assert loaded.enterprise_catalogs[0]["title"] is None
    assert loaded.catalog_queries[0]["title"] is None


def test_the_source_dataclass_reads_both_listings(fake: FakeEnterpriseCatalog) -> None:
    source = EnterpriseCatalogQueries(
        fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret, 5.0, 0
    )
    loaded = source.load()
    assert (len(loaded.catalog_queries), len(loaded.enterprise_catalogs)) == (25, 23)
