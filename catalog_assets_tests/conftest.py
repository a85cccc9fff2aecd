"""Shared fixtures.

PostgreSQL: `postgres_url` starts a private PostgreSQL cluster for the test session (or uses the
server named by CATALOG_TEST_POSTGRES_URL). `store` runs a test against both backends.
Sample data: `content` and `queries` are generated from `sample_seed`, which a test module
overrides to keep the data its assertions were written against; `lane` is a bulk lane on them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg2
import pytest
from psycopg2 import sql as pgsql

from catalog_assets.core.redaction import forget_secrets
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import CatalogStore, open_store
from catalog_assets_tests.support.kafka import kafka_bootstrap, kafka_topic  # noqa: F401 (fixtures)
from catalog_assets_tests.support.postgres_cluster import PostgresUnavailable, running_cluster

if TYPE_CHECKING:
    from catalog_assets_tests.support.lanes import Lane


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets one test registers (a client secret, a token) must not mask another's text."""
    yield
    forget_secrets()


# --------------------------------------------------------------------------------------------
# A private PostgreSQL cluster
# --------------------------------------------------------------------------------------------

POSTGRES_URL_ENV = "CATALOG_TEST_POSTGRES_URL"
_TEST_DATABASE = "catalog_test"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the session: CATALOG_TEST_POSTGRES_URL, or a private cluster."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield given
        return
    try:
        with running_cluster(_TEST_DATABASE) as url:
            yield url
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """`postgres_url` with a fresh, empty schema first on the search path; dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
        separator = "&" if "?" in postgres_url else "?"
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("DROP SCHEMA {} CASCADE").format(pgsql.Identifier(schema)))
    finally:
        admin.close()


# --------------------------------------------------------------------------------------------
# The store, on both backends
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=["duckdb", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: a new DuckDB file, or a new PostgreSQL schema, per test."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'catalog.duckdb'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def store(store_url: str) -> Iterator[CatalogStore]:
    """An open store on `store_url` (so on both backends) with its schema created."""
    with open_store(store_url) as opened:
        opened.ensure_schema()
        yield opened


# --------------------------------------------------------------------------------------------
# Sample data, and a bulk lane on it
# --------------------------------------------------------------------------------------------


@pytest.fixture
def sample_seed() -> int:
    """The seed of `content` and `queries`. A module whose assertions depend on particular
    data overrides this fixture with its own seed."""
    return 17


@pytest.fixture
def content(sample_seed: int) -> list[dict]:
    """Search documents shaped like course-discovery's, new for each test (tests edit it): 300
    generated, less the courses the default allow-lists exclude and their runs, so that a
    refresh stores them all."""
    from catalog_assets_tests.support.expected import storable_sample

    return storable_sample(generate_content(300, seed=sample_seed))


@pytest.fixture
def queries(content: list[dict], sample_seed: int) -> dict:
    """20 catalog queries over `content` (all valid), and enterprise catalogs that use them."""
    return generate_catalog_queries(20, content, seed=sample_seed)


@pytest.fixture
def lane(tmp_path: Path, store_url: str, content: list[dict], queries: dict) -> Lane:
    """A bulk lane on `content` and `queries`, on both store backends (`store_url`)."""
    from catalog_assets_tests.support.lanes import Lane  # imports Dagster: only where used

    return Lane(tmp_path, store_url, content, queries)
