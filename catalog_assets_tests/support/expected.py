"""What the filter engine says directly, for tests to compare the stored catalog against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from catalog_assets.core.filters import InvalidFilter, match_table, validate


def valid_filters(catalog_queries: Iterable[Mapping[str, Any]]) -> dict[str, dict]:
    """Query uuid -> filter, for the queries whose filter is valid (the others match nothing)."""
    filters = {}
    for query in catalog_queries:
        try:
            validate(query["content_filter"])
        except InvalidFilter:
            continue
        filters[query["uuid"]] = query["content_filter"]
    return filters


def expected_pairs(filters: Mapping[str, Mapping], records: Iterable[Mapping]) -> list[tuple]:
    """Sorted (query uuid, content key) pairs; each record carries its key in ``_key``."""
    return sorted(match_table(filters, list(records), key="_key").iter_rows())


def expected_queries(filters: Mapping[str, Mapping], record: Mapping) -> list[str]:
    """The sorted query uuids whose filter matches ``record``."""
    return [query for query, _ in expected_pairs(filters, [{**record, "_key": "k"}])]
