"""What the filter engine says directly, for tests to compare the stored catalog against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from catalog_assets.core.catalog_contents import AllowLists
from catalog_assets.core.filters import InvalidFilter, match_table, validate


def admitted(documents: Iterable[Mapping[str, Any]]) -> list[dict]:
    """The documents the default allow-lists admit: the content that a refresh stores."""
    return [dict(d) for d in documents if AllowLists().exclusion(d) is None]


def storable_sample(documents: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Generated sample content without what the default allow-lists exclude, nor the runs of
    the courses they exclude: content that a refresh stores whole, every run with its course
    (tests of the exclusions use the rest)."""
    documents = list(documents)
    kept = admitted(documents)
    excluded = {d.get("key") for d in documents if d.get("content_type") == "course"} - {
        d.get("key") for d in kept
    }
    parent = "aggregation_key"
    return [d for d in kept if str(d.get(parent, "")).partition(":")[2] not in excluded]


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
