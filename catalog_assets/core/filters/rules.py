"""Catalog content filters, one at a time: parsing, validation and the reference ``matches``.

A content filter is a JSON object such as ``{"content_type": "course", "partner": "edx",
"first_enrollable_paid_seat_price__lte": "100"}``. This module reproduces the semantics of
enterprise-catalog's ``apps.catalog.filters`` (the reference the catalog service was built
around), with two deliberate departures where the reference crashes (see ``to_float``).

Public API (stable; other code and external tools import it):

- ``matches(content_filter, record) -> bool``: one filter against one record, the reference;
  ``holds(parse(content_filter), record)`` is the same for a filter parsed once.
- ``validate(content_filter) -> list[str]``: raises ``InvalidFilter`` or returns warnings.
- ``match_table(filters, records, key) -> polars.DataFrame``: every (query id, content key)
  pair that matches, evaluated in bulk; always the same answer as ``matches``.
- ``evaluate(filters, records, key) -> BulkMatch``: ``match_table`` plus data warnings.
- ``InvalidFilter``: a ``ValueError`` naming the offending key (and query id) and the reason.

Rules, in brief (the README has the full list):

- three whole-key typo rewrites happen first (``KEY_REWRITES``);
- a key is ``field`` or ``field__operator``; operators are case-sensitive (``OPERATORS``);
- fields are read from the top level of the record; a missing field reads as null;
- a list value means ANY element for ``exact`` and ALL elements for the other operators;
- ``exact`` is JSON equality (``1 == 1.0 == true``, objects ignore key order, no string/number
  coercion); ``not`` and ``exclude`` are its negation; ``gt``/``gte``/``lt``/``lte`` compare
  both sides as floats and never match null, arrays, objects or NaN;
- when several keys name one field, the last key decides that field;
- a filter the engine cannot evaluate safely is invalid: a value nested deeper than
  ``MAX_FILTER_DEPTH``, canonical JSON larger than ``MAX_FILTER_BYTES``, NaN or an infinity.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KEY_REWRITES: Mapping[str, str] = {
    "aggregration__key": "aggregation_key",
    "aggregation__key": "aggregation_key",
    "org__exempt": "org__exclude",
}
"""Typos that real production filters carry; rewritten as whole keys before parsing."""

EQUALITY_OPERATORS = ("exact", "not", "exclude")
NUMERIC_OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
OPERATORS = (*EQUALITY_OPERATORS, *NUMERIC_OPERATORS)

DIRECTIVE_KEYS = (
    "include_learner_pathways",
    "enterprise_force_include_aggregation_keys",
    "restricted_runs_allowed",
)
"""Keys that real filters use as instructions to other services; here they are plain fields."""

MAX_FILTER_DEPTH = 32
"""How deeply a filter value may nest arrays and objects (``"x"`` is 0, ``["x"]`` is 1). Real
filters nest one or two levels; the bulk engine recurses through values, so a filter nested
hundreds of levels deep would fail every refresh with RecursionError instead of being invalid."""

MAX_FILTER_BYTES = 256 * 1024
"""The largest filter, as UTF-8 canonical JSON; real filters are a few kilobytes at most."""


class InvalidFilter(ValueError):
    """A content filter that cannot be evaluated. The message names each bad key and why."""

    def __init__(self, problems: Sequence[tuple[str, str]], query_id: str | None = None):
        self.problems = list(problems)
        self.query_id = query_id
        where = f"catalog query {query_id!r}: " if query_id is not None else ""
        detail = "; ".join(f"key {key!r}: {reason}" for key, reason in self.problems)
        super().__init__(f"{where}invalid content filter: {detail}")

    def for_query(self, query_id: str) -> InvalidFilter:
        return InvalidFilter(self.problems, query_id=query_id)


@dataclass(frozen=True)
class Condition:
    """One key of a filter after rewriting and parsing: ``record[field] <operator> value``."""

    key: str
    field: str
    operator: str
    value: Any


@dataclass(frozen=True)
class ParsedFilter:
    """The conditions that decide a filter (the last one per field) and its warnings."""

    conditions: tuple[Condition, ...]
    warnings: tuple[str, ...]


class _NotNumeric:
    """Marks a string that does not parse as a float (the reference raises ValueError there)."""

    def __repr__(self) -> str:
        return "NOT_NUMERIC"


NOT_NUMERIC = _NotNumeric()


def to_float(value: Any) -> float | _NotNumeric | None:
    """Convert one side of a numeric comparison the way the reference's ``float()`` does.

    Returns None where the reference's ``float()`` raises TypeError (null, arrays, objects):
    those never match. Returns NOT_NUMERIC where it raises ValueError or OverflowError (a
    string such as "free", an integer too large for a float): the reference crashes there;
    a record value like that gives no match, a filter value like that makes the filter invalid.
    """
    if isinstance(value, bool | int | float):
        try:
            return float(value)
        except OverflowError:
            return NOT_NUMERIC
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return NOT_NUMERIC
    return None


def _json_equal(left: Any, right: Any) -> bool:
    """JSON equality as Python's ``==`` gives it for decoded JSON values.

    ``1 == 1.0 == true``, objects ignore key order, arrays compare in order, strings never
    equal numbers, NaN equals nothing. Values that are not JSON types equal nothing.
    """
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool | int | float) and isinstance(right, bool | int | float):
        return left == right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    return False


def _json_value_problem(value: Any) -> str | None:
    """Why a filter value is not a JSON value the engine can evaluate, or None when it is one.

    Iterative, and it stops at ``MAX_FILTER_DEPTH`` and after ``MAX_FILTER_BYTES`` nodes, so it
    is safe on any input (a value nested thousands deep, a list that contains itself); every
    recursive helper runs only on values that passed it. Problems are found in document order.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_FILTER_BYTES:  # every JSON value takes at least one byte
            return f"larger than {MAX_FILTER_BYTES} bytes of JSON"
        if item is None or isinstance(item, str | bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{json.dumps(item)} is not a JSON number"  # NaN, Infinity, -Infinity
            continue
        if not isinstance(item, list | Mapping):
            return f"a {type(item).__name__} is not a JSON value"
        if depth >= MAX_FILTER_DEPTH:
            return f"nested more than {MAX_FILTER_DEPTH} levels deep (arrays and objects)"
        if isinstance(item, Mapping):
            if not all(isinstance(k, str) for k in item):
                return "an object key is not a string"
            item = list(item.values())
        stack.extend((child, depth + 1) for child in reversed(item))
    return None


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as canonical JSON (sorted keys, no spaces, UTF-8). Raises ValueError
    when it cannot be written (an integer with more digits than Python converts to text)."""
    text = json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=dict,  # Mappings that are not dicts
    )
    return len(text.encode("utf-8", "surrogatepass"))


def _parse_key(raw_key: Any) -> tuple[str, str]:
    """Split a filter key into (field, operator); raises ValueError with the reason."""
    if not isinstance(raw_key, str):
        raise ValueError(f"keys must be strings, not {type(raw_key).__name__}")
    parts = KEY_REWRITES.get(raw_key, raw_key).split("__")
    if len(parts) > 2:
        raise ValueError('invalid syntax: a key has at most one "__" (field__operator)')
    field_name, op = parts if len(parts) == 2 else (parts[0], "exact")
    if op not in OPERATORS:
        raise ValueError(f"unsupported operator {op!r}; supported: {', '.join(OPERATORS)}")
    return field_name, op


def _value_problem(op: str, value: Any) -> str | None:
    """Why a filter value cannot be used with its operator, or None."""
    if problem := _json_value_problem(value):
        return problem
    if op in NUMERIC_OPERATORS:
        for item in value if isinstance(value, list) else [value]:
            if to_float(item) is NOT_NUMERIC:
                return f"{op} needs a number, and {item!r} is not one"
    return None


def parse(content_filter: Mapping) -> ParsedFilter:
    """Parse and validate every key of a filter; raises ``InvalidFilter`` listing bad keys."""
    if not isinstance(content_filter, Mapping):
        raise InvalidFilter(
            [("", f"a filter is a JSON object, not {type(content_filter).__name__}")]
        )
    problems: list[tuple[str, str]] = []
    warnings: list[str] = []
    by_field: dict[str, Condition] = {}
    sizes: dict[str, int] = {}
    for raw_key, value in content_filter.items():
        try:
            field_name, op = _parse_key(raw_key)
        except ValueError as error:
            problems.append((str(raw_key), str(error)))
            continue
        if problem := _value_problem(op, value):
            problems.append((raw_key, problem))
            continue
        try:
            sizes[raw_key] = _json_size(raw_key) + 1 + _json_size(value)
        except ValueError as error:
            problems.append((raw_key, f"cannot be written as JSON: {error}"))
            continue
        if raw_key in KEY_REWRITES:
            warnings.append(f"key {raw_key!r} is a known typo, read as {KEY_REWRITES[raw_key]!r}")
        if field_name in DIRECTIVE_KEYS:
            warnings.append(
                f"key {raw_key!r} is an instruction to other services, but here it is compared "
                f"against the record field {field_name!r} like any other key"
            )
        if field_name == "":
            warnings.append(f"key {raw_key!r} names the empty field, which records rarely have")
        if previous := by_field.pop(field_name, None):
            warnings.append(
                f"keys {previous.key!r} and {raw_key!r} both name field {field_name!r}; "
                f"only the last one ({raw_key!r}) counts"
            )
        by_field[field_name] = Condition(raw_key, field_name, op, value)
    size = 1 + max(len(sizes), 1) + sum(sizes.values())  # braces, commas, "key":value
    if size > MAX_FILTER_BYTES and not problems:
        largest = max(sizes, key=sizes.__getitem__)
        reason = f"the filter is {size} bytes of JSON, over the limit of {MAX_FILTER_BYTES}"
        problems.append((largest, f"{reason} (this key's value is the largest)"))
    if problems:
        raise InvalidFilter(problems)
    return ParsedFilter(tuple(by_field.values()), tuple(warnings))


def validate(content_filter: Mapping) -> list[str]:
    """Raise ``InvalidFilter`` for an invalid filter; otherwise return its warnings."""
    return list(parse(content_filter).warnings)


def _compare(op: str, query_value: Any, content_value: Any) -> bool:
    if op == "exact":
        return _json_equal(content_value, query_value)
    if op in ("not", "exclude"):
        return not _json_equal(content_value, query_value)
    query_number, content_number = to_float(query_value), to_float(content_value)
    if not isinstance(query_number, float) or not isinstance(content_number, float):
        return False
    return NUMERIC_OPERATORS[op](content_number, query_number)


def _condition_holds(condition: Condition, content_value: Any) -> bool:
    op, value = condition.operator, condition.value
    if isinstance(value, list):
        results = (_compare(op, item, content_value) for item in value)
        return any(results) if op == "exact" else all(results)
    return _compare(op, value, content_value)


def holds(parsed: ParsedFilter, record: Mapping) -> bool:
    """``matches`` for a filter parsed once: what a caller judging many records uses."""
    return all(_condition_holds(c, record.get(c.field)) for c in parsed.conditions)


def matches(content_filter: Mapping, record: Mapping) -> bool:
    """Whether ``record`` belongs to the catalog query ``content_filter`` (the reference)."""
    return holds(parse(content_filter), record)
