"""Bulk evaluation: every filter against every record in one polars query (``evaluate``,
``match_table``), always the same answer as the reference ``rules.matches``."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
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
        if set(map(type, values)) <= _STRING_OR_NULL:
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
        if not any(isinstance(k, tuple) for k in self.table):
            # No filter names an array or object: none equals a record's list or dict, and a
            # scalar is its own canonical form (NaN is in no table), so no value needs work.
            codes = [
                _OTHER
                if type(value) in _CONTAINERS
                else get(value, _OTHER)
                if type(value) in _SCALARS
                else get(_canonical(value), _OTHER)
                for value in values
            ]
        else:
            codes = [
                get(value if type(value) is str else _canonical(value), _OTHER) for value in values
            ]
        return pl.Series(codes, dtype=pl.UInt32)


_SCALARS = frozenset({str, int, float, bool, type(None)})
_STRING_OR_NULL = frozenset({str, type(None)})
_CONTAINERS = frozenset({list, dict})


@dataclass(frozen=True)
class BulkMatch:
    """The result of ``evaluate``.

    ``pairs``: columns ``query_id`` and ``content_key`` (strings), one row per match.
    ``data_warnings``: per field, the content keys of records whose value is a string that is
    not a number although a filter compares that field numerically (no match, as documented).
    """

    pairs: pl.DataFrame
    data_warnings: dict[str, list[str]]


def _record_keys(records: Sequence[Mapping], key: str) -> list[str]:
    keys = [record.get(key) for record in records]
    if None in keys:
        raise ValueError(f"record {keys.index(None)} has no {key!r} to identify it")
    if not all(type(k) is str for k in keys):
        keys = [str(k) for k in keys]
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


class Evaluation:
    """Every filter compiled against every record once; the matching pairs extracted a chunk
    of queries at a time (``chunks``), so that memory holds one chunk's pairs, never all.

    ``values(field)`` gives the records' values of one top-level field, in the order of
    ``keys`` (a missing field reads as None): only the fields the filters name are read, so a
    caller can hand over those columns (from SQL, say) instead of whole records.
    """

    def __init__(
        self,
        filters: Mapping[str, Mapping],
        keys: Sequence[str],
        values: Callable[[str], Sequence[Any]],
    ):
        parsed = _parse_all(filters)
        self.query_ids = list(parsed)
        self.keys = pl.Series("content_key", keys, dtype=pl.String)
        self.data_warnings: dict[str, list[str]] = {}
        self._query_id_series = pl.Series("query_id", self.query_ids, dtype=pl.String)
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
        for field_name in sorted(equality_values.keys() | numeric_fields) if keys else ():
            field_values = values(field_name)
            if field_name in equality_values:
                codes[field_name] = _FieldCodes(equality_values[field_name])
                name = code_columns[field_name] = f"c{len(columns)}"
                columns.append(codes[field_name].column(field_values).alias(name))
            if field_name in numeric_fields:
                name = number_columns[field_name] = f"n{len(columns)}"
                numbers, non_numeric = _number_column(field_values)
                columns.append(pl.Series(name, numbers, dtype=pl.Float64))
                if non_numeric:
                    self.data_warnings[field_name] = [keys[row] for row in non_numeric]
        compiler = _Compiler(codes, code_columns, number_columns)
        self._compiled = [compiler.compile(parsed[q]) for q in self.query_ids] if keys else []
        predicates = [expr for _, expr in compiler.predicates.values()]
        self._predicates = pl.DataFrame(columns).select(predicates) if predicates else None

    def rows(self, start: int = 0, stop: int | None = None) -> pl.DataFrame:
        """The matches of queries ``start`` to ``stop`` (positions in ``query_ids``) as two
        UInt32 columns: ``query`` (the position) and ``row`` (the record's position)."""
        everything = pl.int_range(0, self.keys.len(), dtype=pl.UInt32)
        # Queries with the same predicates (many differ only in title) share one row list.
        distinct: dict[Hashable, str] = {}
        lists, names, positions = [], [], []
        for position in range(start, min(stop or len(self._compiled), len(self._compiled))):
            outcome = self._compiled[position]
            if outcome is _NEVER:
                continue
            signature = outcome if outcome is _ALWAYS else tuple(sorted(outcome))
            if signature not in distinct:
                name = distinct[signature] = f"l{len(distinct)}"
                if outcome is _ALWAYS:
                    rows = everything
                else:
                    rows = pl.all_horizontal([pl.col(name) for name in outcome]).arg_true()
                lists.append(rows.implode().alias(name))
            names.append(distinct[signature])
            positions.append(position)
        if not lists:
            return pl.DataFrame(schema={"query": pl.UInt32, "row": pl.UInt32})
        source = self._predicates if self._predicates is not None else pl.DataFrame()
        return (
            source.select(lists)
            .select([pl.col(name).alias(str(i)) for i, name in enumerate(names)])
            .unpivot(value_name="row")
            .select(pl.Series("query", positions, dtype=pl.UInt32), "row")
            .explode("row")
            .drop_nulls("row")
        )

    def pairs(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` as (query id, content key) pairs of strings. The strings are not copied:
        each value is a view of the one stored string, so a pair costs a few bytes."""
        return rows.select(
            pl.lit(self._query_id_series).gather(pl.col("query")).alias("query_id"),
            pl.lit(self.keys).gather(pl.col("row")).alias("content_key"),
        )

    def chunks(self, queries_per_chunk: int) -> Iterator[pl.DataFrame]:
        """The pairs, ``queries_per_chunk`` queries at a time, in the order of the queries."""
        if queries_per_chunk < 1:
            raise ValueError(f"queries_per_chunk must be at least 1, not {queries_per_chunk}")
        for start in range(0, len(self.query_ids), queries_per_chunk):
            yield self.pairs(self.rows(start, start + queries_per_chunk))


def prepare(
    filters: Mapping[str, Mapping], records: Sequence[Mapping], key: str = "content_key"
) -> Evaluation:
    """An ``Evaluation`` over whole records, each identified by ``record[key]``."""
    keys = _record_keys(records, key)
    return Evaluation(filters, keys, lambda field: [record.get(field) for record in records])


def evaluate(
    filters: Mapping[str, Mapping], records: Sequence[Mapping], key: str = "content_key"
) -> BulkMatch:
    """Evaluate every filter against every record in bulk (see ``match_table``)."""
    evaluation = prepare(filters, records, key)
    return BulkMatch(evaluation.pairs(evaluation.rows()), evaluation.data_warnings)


def evaluate_chunks(
    filters: Mapping[str, Mapping],
    records: Sequence[Mapping],
    key: str = "content_key",
    queries_per_chunk: int = 500,
) -> Iterator[pl.DataFrame]:
    """``match_table``'s pairs, ``queries_per_chunk`` queries at a time: the same pairs in the
    same order, with memory bounded by one chunk's pairs."""
    return prepare(filters, records, key).chunks(queries_per_chunk)


def match_table(
    filters: Mapping[str, Mapping], records: Sequence[Mapping], key: str = "content_key"
) -> pl.DataFrame:
    """Every (query id, record key) pair where the query's filter matches the record.

    ``filters`` maps query ids to content filters; each record is identified by ``record[key]``.
    Returns columns ``query_id`` and ``content_key`` (strings), grouped by query in the order
    of ``filters`` and by record in the order of ``records``. Raises ``InvalidFilter`` naming
    the query id when any filter is invalid, and ``ValueError`` when a record has no key or two
    records share one. Gives exactly the answer ``matches`` gives for every pair.
    """
    return evaluate(filters, records, key).pairs
