"""Bulk evaluation: every filter against every record in one polars query (``evaluate``,
``match_table``), always the same answer as the reference ``rules.matches``."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from catalog_assets.core.filters.rules import (
    EQUALITY_OPERATORS,
    NOT_NUMERIC,
    NUMERIC_OPERATORS,
    Condition,
    InvalidFilter,
    ParsedFilter,
    parse,
    to_float,
)

# --- How -------------------------------------------------------------------------
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
        number = to_float(value)
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
        bounds = [to_float(item) for item in (value if isinstance(value, list) else [value])]
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
