"""Which catalogs contain a piece of content, and what a catalog contains.

For operators (``catalog-assets catalogs-for`` / ``contents-of``) and downstream code; reads
the catalog store named by ``CATALOG_STORE_URL`` (default: the embedded DuckDB file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from catalog_assets.settings import Settings
from catalog_assets.store import open_store


def store_url(env: Mapping[str, str] | None = None) -> str:
    """The environment's catalog store (``CATALOG_STORE_URL``), as the definitions use it."""
    url = Settings.from_env(env).store_url
    path = url.removeprefix("duckdb:///")
    if url.startswith("duckdb:///") and path != ":memory:" and not Path(path).exists():
        raise FileNotFoundError(
            f"no catalog store at {Path(path).resolve()}: run `make run` here first, or set "
            "CATALOG_STORE_URL"
        )
    return url


def catalogs_for(content_key: str, url: str | None = None) -> list[dict[str, Any]]:
    """The enterprise catalogs and catalog queries that contain ``content_key``.

    One row per (catalog query, enterprise catalog): ``catalog_query_uuid``,
    ``catalog_query_title``, ``catalog_uuid``, ``catalog_title``, ``enterprise_uuid`` (the
    catalog fields are None for a query that no catalog uses).
    """
    with open_store(url or store_url()) as store:
        store.check_schema()  # read-only: a lookup needs no DDL rights
        return store.catalogs_for(content_key)


def contents_of(uuid: str, url: str | None = None) -> list[dict[str, Any]]:
    """The content of a catalog query, or of an enterprise catalog through its query.

    One row per content key: ``content_key``, ``content_type``, ``title``, ``deleted``.
    """
    with open_store(url or store_url()) as store:
        store.check_schema()  # read-only: a lookup needs no DDL rights
        return store.contents_of(uuid)
