"""Catalog content filters: decide which content metadata records a catalog query contains.

This package reproduces the semantics of enterprise-catalog's ``apps.catalog.filters`` (see
``rules`` for the rules and the reference ``matches``, ``bulk`` for the evaluation of every
filter against every record at once). Public API (stable; other code and tools import it):

- ``matches(content_filter, record) -> bool``: one filter against one record, the reference;
  ``holds(parse(content_filter), record)`` is the same for a filter parsed once.
- ``validate(content_filter) -> list[str]``: raises ``InvalidFilter`` or returns warnings.
- ``match_table(filters, records, key) -> polars.DataFrame``: every (query id, content key)
  pair that matches, evaluated in bulk; always the same answer as ``matches``.
- ``evaluate(filters, records, key) -> BulkMatch``: ``match_table`` plus data warnings.
- ``InvalidFilter``: a ``ValueError`` naming the offending key (and query id) and the reason.
"""

from catalog_assets.core.filters.bulk import BulkMatch, evaluate, match_table
from catalog_assets.core.filters.rules import (
    DIRECTIVE_KEYS,
    KEY_REWRITES,
    MAX_FILTER_BYTES,
    MAX_FILTER_DEPTH,
    OPERATORS,
    Condition,
    InvalidFilter,
    ParsedFilter,
    holds,
    matches,
    parse,
    validate,
)

__all__ = [
    "DIRECTIVE_KEYS",
    "KEY_REWRITES",
    "MAX_FILTER_BYTES",
    "MAX_FILTER_DEPTH",
    "OPERATORS",
    "BulkMatch",
    "Condition",
    "InvalidFilter",
    "ParsedFilter",
    "evaluate",
    "holds",
    "match_table",
    "matches",
    "parse",
    "validate",
]
