"""Catalog content filters: decide which content metadata records a catalog query contains.

A content filter is a JSON object such as ``{"content_type": "course", "partner": "edx",
"first_enrollable_paid_seat_price__lte": "100"}``. This module reproduces the semantics of
enterprise-catalog's ``apps.catalog.filters`` (the reference the catalog service was built
around), with two deliberate departures where the reference crashes (see ``_to_float``).

Public API (stable; other code and external tools import it):

- ``matches(content_filter, record) -> bool``: one filter against one record, the reference.
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
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

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
    "match_table",
    "matches",
    "parse",
    "validate",
]

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


def _to_float(value: Any) -> float | _NotNumeric | None:
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
            if _to_float(item) is NOT_NUMERIC:
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
    query_number, content_number = _to_float(query_value), _to_float(content_value)
    if not isinstance(query_number, float) or not isinstance(content_number, float):
        return False
    return NUMERIC_OPERATORS[op](content_number, query_number)


def _condition_holds(condition: Condition, content_value: Any) -> bool:
    op, value = condition.operator, condition.value
    if isinstance(value, list):
        results = (_compare(op, item, content_value) for item in value)
        return any(results) if op == "exact" else all(results)
    return _compare(op, value, content_value)


def matches(content_filter: Mapping, record: Mapping) -> bool:
    """Whether ``record`` belongs to the catalog query ``content_filter`` (the reference)."""
    parsed = parse(content_filter)
    return all(_condition_holds(c, record.get(c.field)) for c in parsed.conditions)


# --- Bulk evaluation -------------------------------------------------------------------------
#
# Records are turned into a polars frame once: for each field a filter compares for equality,
# a column of integer codes, where two values get the same code exactly when they are JSON-equal;
# for each field a filter compares numerically, a Float64 column (null where no number).
# Each distinct (field, operator, value) predicate across all filters becomes one boolean
# column, each filter is the AND of its predicate columns, and the matching row indices of all
# filters are extracted in the same polars query. Python touches each record once per field,
# never once per (filter, record) pair.

_NEVER_EQUAL = object()
"""Canonical form of values equal to nothing (NaN anywhere inside, non-JSON types)."""


def _canonical(value: Any) -> Hashable:
    """A hashable form where ``_canonical(a) == _canonical(b)`` iff ``_json_equal(a, b)``.

    Python already hashes ``True``, ``1`` and ``1.0`` alike, and strings never equal the tagged
    tuples used for arrays and objects, so only containers and NaN need work.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return _NEVER_EQUAL if value != value else value
    if isinstance(value, list | tuple):
        items = tuple(map(_canonical, value))
        return _NEVER_EQUAL if _NEVER_EQUAL in items else ("array", items)
    if isinstance(value, Mapping):
        pairs = frozenset((k, _canonical(v)) for k, v in value.items())
        return _NEVER_EQUAL if any(v is _NEVER_EQUAL for _, v in pairs) else ("object", pairs)
    return _NEVER_EQUAL


_OTHER = 0
"""The code of every record value that equals none of the values the filters name."""


class _FieldCodes:
    """Integer codes for one field: a code per distinct (canonical) value the filters name.

    Two values share a code exactly when they are JSON-equal; record values that equal no
    filter value all get ``_OTHER``, so only filter values need a table and the common case,
    a column of strings, is coded by polars without a Python loop over the records.
    """

    def __init__(self, filter_values: Iterable[Any]):
        self.table: dict[Hashable, int] = {}
        for value in filter_values:
            canonical = _canonical(value)
            if canonical is not _NEVER_EQUAL and canonical not in self.table:
                self.table[canonical] = len(self.table) + 1

    def lookup(self, value: Any) -> int | None:
        """The code of ``value``, or None when it equals nothing (NaN, non-JSON types)."""
        canonical = _canonical(value)
        return None if canonical is _NEVER_EQUAL else self.table[canonical]

    def column(self, values: list[Any]) -> pl.Series:
        if all(type(value) is str or value is None for value in values):
            # Only strings and nulls, the common case: let polars look them up.
            strings = pl.Series(values, dtype=pl.String)
            named = [(k, c) for k, c in self.table.items() if isinstance(k, str)]
            coded = strings.replace_strict(
                [k for k, _ in named], [c for _, c in named], default=_OTHER, return_dtype=pl.UInt32
            )
            null_code = pl.lit(self.table.get(None, _OTHER), dtype=pl.UInt32)
            return pl.select(
                pl.when(strings.is_null()).then(null_code).otherwise(coded)
            ).to_series()
        get = self.table.get
        codes = [
            get(value if type(value) is str else _canonical(value), _OTHER) for value in values
        ]
        return pl.Series(codes, dtype=pl.UInt32)


@dataclass(frozen=True)
class BulkMatch:
    """The result of ``evaluate``.

    ``pairs``: columns ``query_id`` and ``content_key`` (strings), one row per match.
    ``data_warnings``: per field, the content keys of records whose value is a string that is
    not a number although a filter compares that field numerically (no match, as documented).
    """

    pairs: pl.DataFrame
    data_warnings: dict[str, list[str]]


_PAIRS_SCHEMA = {"query_id": pl.String, "content_key": pl.String}


def _record_keys(records: Sequence[Mapping], key: str) -> list[str]:
    keys = []
    for index, record in enumerate(records):
        if key not in record or record[key] is None:
            raise ValueError(f"record {index} has no {key!r} to identify it")
        keys.append(str(record[key]))
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        duplicates = sorted({k for k in keys if k in seen or seen.add(k)})
        raise ValueError(f"duplicate {key!r} values in records: {duplicates[:5]}")
    return keys


def _number_column(values: Iterable[Any]) -> tuple[list[float | None], list[int]]:
    """Floats for a numeric comparison (None where nothing can match) and non-numeric rows."""
    numbers: list[float | None] = []
    non_numeric: list[int] = []
    for row, value in enumerate(values):
        number = _to_float(value)
        if number is NOT_NUMERIC:
            non_numeric.append(row)
            number = None
        elif number is not None and math.isnan(number):
            number = None
        numbers.append(number)
    return numbers, non_numeric


_ALWAYS = True
_NEVER = False


class _Compiler:
    """Turns parsed filters into boolean polars expressions over the records frame."""

    def __init__(
        self,
        codes: dict[str, _FieldCodes],
        code_columns: dict[str, str],
        number_columns: dict[str, str],
    ):
        self.codes = codes
        self.code_columns = code_columns
        self.number_columns = number_columns
        self.predicates: dict[Hashable, tuple[str, pl.Expr]] = {}

    def _predicate(self, signature: Hashable, build: Callable[[], pl.Expr]) -> str:
        """The name of the boolean column for ``signature``, built once across all filters."""
        if signature not in self.predicates:
            name = f"p{len(self.predicates)}"
            self.predicates[signature] = (name, build().alias(name))
        return self.predicates[signature][0]

    def _equality(self, condition: Condition) -> str | bool:
        value, op = condition.value, condition.operator
        equal = op == "exact"
        items = value if isinstance(value, list) else [value]
        lookup = self.codes[condition.field].lookup
        codes = sorted({c for c in map(lookup, items) if c is not None})
        if not codes:  # every value equals nothing (an empty list, NaN)
            return _NEVER if equal else _ALWAYS
        column = pl.col(self.code_columns[condition.field])
        if len(codes) == 1:
            signature = (condition.field, equal, codes[0])
            return self._predicate(
                signature, lambda: column == codes[0] if equal else column != codes[0]
            )
        in_set = pl.lit(codes, dtype=pl.List(pl.UInt32))
        signature = (condition.field, equal, tuple(codes))
        return self._predicate(
            signature, lambda: column.is_in(in_set) if equal else ~column.is_in(in_set)
        )

    def _numeric(self, condition: Condition) -> str | bool:
        value, op = condition.value, condition.operator
        bounds = [_to_float(item) for item in (value if isinstance(value, list) else [value])]
        if not bounds:
            return _ALWAYS  # all() of nothing
        if any(b is None or math.isnan(b) for b in bounds):  # validated: no NOT_NUMERIC here
            return _NEVER
        # ALL(x > b for b in bounds) is x > max(bounds); likewise for the other operators.
        bound = max(bounds) if op in ("gt", "gte") else min(bounds)
        column = pl.col(self.number_columns[condition.field])
        compare = NUMERIC_OPERATORS[op]
        return self._predicate(
            (condition.field, op, bound), lambda: compare(column, bound).fill_null(False)
        )

    def compile(self, parsed: ParsedFilter) -> list[str] | bool:
        """Predicate column names to AND together, or a constant answer for every record."""
        names: list[str] = []
        for condition in parsed.conditions:
            is_equality = condition.operator in EQUALITY_OPERATORS
            outcome = self._equality(condition) if is_equality else self._numeric(condition)
            if outcome is _NEVER:
                return _NEVER
            if outcome is not _ALWAYS:
                names.append(outcome)
        return names or _ALWAYS


def _parse_all(filters: Mapping[str, Mapping]) -> dict[str, ParsedFilter]:
    parsed: dict[str, ParsedFilter] = {}
    for query_id, content_filter in filters.items():
        try:
            parsed[str(query_id)] = parse(content_filter)
        except InvalidFilter as error:
            raise error.for_query(str(query_id)) from None
    return parsed


def evaluate(
    filters: Mapping[str, Mapping], records: Sequence[Mapping], key: str = "content_key"
) -> BulkMatch:
    """Evaluate every filter against every record in bulk (see ``match_table``)."""
    parsed = _parse_all(filters)
    keys = _record_keys(records, key)
    empty = BulkMatch(pl.DataFrame(schema=_PAIRS_SCHEMA), {})
    if not parsed or not records:
        return empty

    equality_values: dict[str, list[Any]] = {}
    numeric_fields: set[str] = set()
    for condition in (c for p in parsed.values() for c in p.conditions):
        if condition.operator in NUMERIC_OPERATORS:
            numeric_fields.add(condition.field)
        else:
            value = condition.value
            items = value if isinstance(value, list) else [value]
            equality_values.setdefault(condition.field, []).extend(items)

    codes: dict[str, _FieldCodes] = {}
    columns: list[pl.Series] = []
    code_columns: dict[str, str] = {}
    number_columns: dict[str, str] = {}
    data_warnings: dict[str, list[str]] = {}
    for field_name in sorted(equality_values.keys() | numeric_fields):
        values = [record.get(field_name) for record in records]
        if field_name in equality_values:
            codes[field_name] = _FieldCodes(equality_values[field_name])
            name = code_columns[field_name] = f"c{len(columns)}"
            columns.append(codes[field_name].column(values).alias(name))
        if field_name in numeric_fields:
            name = number_columns[field_name] = f"n{len(columns)}"
            numbers, non_numeric = _number_column(values)
            columns.append(pl.Series(name, numbers, dtype=pl.Float64))
            if non_numeric:
                data_warnings[field_name] = [keys[row] for row in non_numeric]

    compiler = _Compiler(codes, code_columns, number_columns)
    compiled = {query_id: compiler.compile(p) for query_id, p in parsed.items()}
    frame = pl.DataFrame(columns)
    predicate_frame = frame.select([expr for _, expr in compiler.predicates.values()])

    all_rows = pl.int_range(0, len(records), dtype=pl.UInt32)
    matched_rows = []
    query_ids = []
    for query_id, outcome in compiled.items():
        if outcome is _NEVER:
            continue
        if outcome is _ALWAYS:
            rows = all_rows
        else:
            rows = pl.all_horizontal([pl.col(name) for name in outcome]).arg_true()
        matched_rows.append(rows.implode().alias(f"q{len(query_ids)}"))
        query_ids.append(query_id)
    if not matched_rows:
        return BulkMatch(empty.pairs, data_warnings)

    aliases = {f"q{index}": query_id for index, query_id in enumerate(query_ids)}
    source = predicate_frame if predicate_frame.width else pl.DataFrame()
    rows_per_query = (
        source.select(matched_rows)
        .unpivot(variable_name="query_id", value_name="row")
        .with_columns(pl.col("query_id").replace_strict(aliases, return_dtype=pl.String))
    )
    # Exploding and gathering eagerly is several times faster here than one lazy query.
    pairs = (
        rows_per_query.explode("row")
        .drop_nulls("row")
        .select(
            "query_id",
            pl.lit(pl.Series(keys, dtype=pl.String)).gather(pl.col("row")).alias("content_key"),
        )
    )
    return BulkMatch(pairs, data_warnings)


def match_table(
    filters: Mapping[str, Mapping], records: Sequence[Mapping], key: str = "content_key"
) -> pl.DataFrame:
    """Every (query id, record key) pair where the query's filter matches the record.

    ``filters`` maps query ids to content filters; each record is identified by ``record[key]``.
    Returns columns ``query_id`` and ``content_key`` (strings), grouped by query in the order
    of ``filters`` and by record in the order of ``records``. Raises ``InvalidFilter`` naming
    the query id when any filter is invalid, and ``ValueError`` when a record has no key or
    two records share one. Gives exactly the answer ``matches`` gives for every pair.
    """
    return evaluate(filters, records, key).pairs
