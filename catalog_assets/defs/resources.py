"""The Dagster resources, and the choice of resources for an environment.

Each resource is a typed, configurable wrapper around a plain implementation in
``catalog_assets.core`` (sources) or ``catalog_assets.store``. ``build_resources`` chooses the
implementations from the validated settings when definitions load (never at import); values
set in the environment stay ``dg.EnvVar`` references that Dagster resolves at run time, so
secrets never land in the definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import Field

from catalog_assets.core.catalog_contents import AllowLists
from catalog_assets.core.content import ContentSnapshot
from catalog_assets.core.enterprise_catalog import EnterpriseCatalogQueries
from catalog_assets.core.sources import (
    CatalogQueryFile,
    ContentSource,
    DiscoveryContent,
    SampleContent,
    read_catalog_queries,
)
from catalog_assets.settings import (
    BY_NAME,
    DEFAULT_STORE_URL,
    CatalogQueriesSourceKind,
    ContentSourceKind,
    Settings,
)
from catalog_assets.store import CatalogStore, open_store

STORE_POOL = "catalog_store"
"""The Dagster concurrency pool of every op that writes the catalog store: the instance's pool
limit (1 in the local ``dagster.yaml``, DuckDB allowing one writer) makes further writer runs
wait in the run queue instead of failing on a store lock."""


class CatalogStoreResource(dg.ConfigurableResource):
    """The catalog store: ``duckdb:///<path>`` (embedded default) or ``postgresql://...``."""

    url: str = Field(default=DEFAULT_STORE_URL, description="CATALOG_STORE_URL")
    product_source_allow_list: str = Field(
        default=BY_NAME["CONTENT_PRODUCT_SOURCE_ALLOW_LIST"].default,
        description="CONTENT_PRODUCT_SOURCE_ALLOW_LIST, comma-separated",
    )
    course_type_allow_list: str = Field(
        default=BY_NAME["CONTENT_COURSE_TYPE_ALLOW_LIST"].default,
        description="CONTENT_COURSE_TYPE_ALLOW_LIST, comma-separated",
    )

    @contextmanager
    def open(self) -> Iterator[CatalogStore]:
        """The store, its schema brought up to date (no DDL when it already is), with the
        allow-lists every lane applies when it writes content through it."""
        allow_lists = AllowLists.from_text(
            self.product_source_allow_list, self.course_type_allow_list
        )
        store = open_store(self.url)
        try:
            store.ensure_schema()
            store.allow_lists = allow_lists
            yield store
        finally:
            store.close()


class ContentSourceResource(dg.ConfigurableResource):
    """What the assets ask of a content source (``core.sources.ContentSource``), delegated to
    the implementation the subclass configures."""

    def source(self) -> ContentSource:
        raise NotImplementedError

    def fetch_all(self) -> ContentSnapshot:
        return self.source().fetch_all()

    def lookup(self, content_key: str, content_type: str) -> dict[str, Any] | None:
        return self.source().lookup(content_key, content_type)

    def lookup_many(self, keys: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        return self.source().lookup_many(keys)

    def fetch_courses(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.source().fetch_courses(keys)

    def search(self, content_filter: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return self.source().search(content_filter)


class SampleContentSource(ContentSourceResource):
    """Content from a JSON file of search documents; by default the bundled sample dataset."""

    path: str = Field(default="", description="SAMPLE_CONTENT_PATH; empty: bundled")

    def source(self) -> SampleContent:
        return SampleContent(self.path)


class DiscoveryContentSource(ContentSourceResource):
    """course-discovery's REST API, authenticated with LMS OAuth2 client credentials."""

    api_url: str = Field(
        description="DISCOVERY_API_URL, e.g. https://discovery.example.com/api/v1/"
    )
    oauth2_url: str = Field(description="LMS_OAUTH2_URL, e.g. https://lms.example.com/oauth2")
    client_id: str = Field(description="LMS_OAUTH2_CLIENT_ID")
    client_secret: str = Field(description="LMS_OAUTH2_CLIENT_SECRET")
    timeout_seconds: float = 30.0
    max_retries: int = 5

    def source(self) -> DiscoveryContent:
        return DiscoveryContent(
            self.api_url,
            self.oauth2_url,
            self.client_id,
            self.client_secret,
            self.timeout_seconds,
            self.max_retries,
        )


class CatalogQuerySource(dg.ConfigurableResource):
    """Where catalog queries and enterprise catalogs come from (resource key
    ``catalog_query_source``): ``load`` reads the whole listing, complete or an error, and the
    subclass chosen by ``CATALOG_QUERIES_SOURCE`` says from where."""

    def load(self) -> CatalogQueryFile:
        raise NotImplementedError


class FileCatalogQuerySource(CatalogQuerySource):
    """Catalog queries and enterprise catalogs from a JSON file; by default the bundled sample
    (the format: ``core.sources.read_catalog_queries``)."""

    path: str = Field(default="", description="CATALOG_QUERIES_PATH; empty: bundled sample")

    def load(self) -> CatalogQueryFile:
        return read_catalog_queries(self.path)


class EnterpriseCatalogQuerySource(CatalogQuerySource):
    """Catalog queries and enterprise catalogs from enterprise-catalog's REST API
    (``core.enterprise_catalog``), authenticated with LMS OAuth2 client credentials."""

    api_url: str = Field(
        description="ENTERPRISE_CATALOG_API_URL, e.g. https://enterprise-catalog.example.com/api/v1/"
    )
    oauth2_url: str = Field(description="LMS_OAUTH2_URL, e.g. https://lms.example.com/oauth2")
    client_id: str = Field(description="LMS_OAUTH2_CLIENT_ID")
    client_secret: str = Field(description="LMS_OAUTH2_CLIENT_SECRET")
    timeout_seconds: float = 30.0
    max_retries: int = 5

    def load(self) -> CatalogQueryFile:
        return EnterpriseCatalogQueries(
            self.api_url,
            self.oauth2_url,
            self.client_id,
            self.client_secret,
            self.timeout_seconds,
            self.max_retries,
        ).load()


def env_or_default(settings: Settings, name: str) -> str | dg.EnvVar:
    """A reference to the variable when it is set (resolved at run time), else its default."""
    return dg.EnvVar(name) if settings.is_set(name) else settings.value(name)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The bulk lane's resources for the environment (see ``catalog_assets.settings``)."""
    if settings.content_source is ContentSourceKind.DISCOVERY:
        content_source: ContentSourceResource = DiscoveryContentSource(
            api_url=dg.EnvVar("DISCOVERY_API_URL"),
            oauth2_url=dg.EnvVar("LMS_OAUTH2_URL"),
            client_id=dg.EnvVar("LMS_OAUTH2_CLIENT_ID"),
            client_secret=dg.EnvVar("LMS_OAUTH2_CLIENT_SECRET"),
        )
    else:
        content_source = SampleContentSource(path=env_or_default(settings, "SAMPLE_CONTENT_PATH"))
    if settings.catalog_queries_source is CatalogQueriesSourceKind.ENTERPRISE_CATALOG:
        query_source: CatalogQuerySource = EnterpriseCatalogQuerySource(
            api_url=dg.EnvVar("ENTERPRISE_CATALOG_API_URL"),
            oauth2_url=dg.EnvVar("LMS_OAUTH2_URL"),
            client_id=dg.EnvVar("LMS_OAUTH2_CLIENT_ID"),
            client_secret=dg.EnvVar("LMS_OAUTH2_CLIENT_SECRET"),
        )
    else:
        query_source = FileCatalogQuerySource(path=env_or_default(settings, "CATALOG_QUERIES_PATH"))
    return {
        "content_source": content_source,
        "catalog_query_source": query_source,
        "catalog_store": CatalogStoreResource(
            url=env_or_default(settings, "CATALOG_STORE_URL"),
            product_source_allow_list=env_or_default(settings, "CONTENT_PRODUCT_SOURCE_ALLOW_LIST"),
            course_type_allow_list=env_or_default(settings, "CONTENT_COURSE_TYPE_ALLOW_LIST"),
        ),
    }
