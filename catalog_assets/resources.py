"""The catalog store resource, and the choice of resources for an environment.

``build_resources`` reads the environment once, when definitions load (never at import), to
choose implementations; their settings stay ``dg.EnvVar`` references that Dagster resolves at
run time, so secrets never land in the definitions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from catalog_assets.sources import CatalogQuerySource, DiscoveryContentSource, SampleContentSource
from catalog_assets.store import CatalogStore, open_store

DEFAULT_STORE_URL = "duckdb:///data/catalog.duckdb"
"""A DuckDB file in the project's local data folder (relative to the working directory)."""

CONTENT_SOURCES = ("sample", "discovery")


class CatalogStoreResource(dg.ConfigurableResource):
    """The catalog store: ``duckdb:///<path>`` (embedded default) or ``postgresql://...``."""

    url: str = Field(default=DEFAULT_STORE_URL, description="CATALOG_STORE_URL")

    @contextmanager
    def open(self) -> Iterator[CatalogStore]:
        store = open_store(self.url)
        try:
            store.ensure_schema()
            yield store
        finally:
            store.close()


def _env_or_default(env: Mapping[str, str], name: str, default: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if env.get(name) else default


def build_resources(env: Mapping[str, str]) -> dict[str, dg.ConfigurableResource]:
    """The resources for the environment ``env`` (``os.environ`` when definitions load).

    ``CONTENT_SOURCE``: ``sample`` (default) or ``discovery``, which needs
    ``DISCOVERY_API_URL``, ``LMS_OAUTH2_URL``, ``LMS_OAUTH2_CLIENT_ID`` and
    ``LMS_OAUTH2_CLIENT_SECRET``. ``CATALOG_QUERIES_PATH`` (default: the bundled sample) and
    ``CATALOG_STORE_URL`` (default: ``DEFAULT_STORE_URL``).
    """
    kind = env.get("CONTENT_SOURCE", "sample") or "sample"
    if kind == "sample":
        content_source = SampleContentSource(path=_env_or_default(env, "SAMPLE_CONTENT_PATH", ""))
    elif kind == "discovery":
        content_source = DiscoveryContentSource(
            api_url=dg.EnvVar("DISCOVERY_API_URL"),
            oauth2_url=dg.EnvVar("LMS_OAUTH2_URL"),
            client_id=dg.EnvVar("LMS_OAUTH2_CLIENT_ID"),
            client_secret=dg.EnvVar("LMS_OAUTH2_CLIENT_SECRET"),
        )
    else:
        raise ValueError(f"CONTENT_SOURCE={kind!r} is not one of {', '.join(CONTENT_SOURCES)}")
    return {
        "content_source": content_source,
        "catalog_query_source": CatalogQuerySource(
            path=_env_or_default(env, "CATALOG_QUERIES_PATH", "")
        ),
        "catalog_store": CatalogStoreResource(
            url=_env_or_default(env, "CATALOG_STORE_URL", DEFAULT_STORE_URL)
        ),
    }
