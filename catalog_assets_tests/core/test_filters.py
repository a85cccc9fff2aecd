"""The filter engine: reference cases, one case per rule, and bulk == reference properties."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog_assets.core.filters import (
    MAX_FILTER_BYTES,
    MAX_FILTER_DEPTH,
    InvalidFilter,
    evaluate,
    match_table,
    matches,
    parse,
    validate,
)

# The reference cases come from the team's shared folder (beside the repository); a copy is kept
# in the repository so the suite also runs on a clone that has no shared folder next to it.
_CASES_NAME = "filter_cases_public.jsonl"
_SHARED_CASES = Path(__file__).resolve().parents[3] / "shared" / _CASES_NAME
PUBLIC_CASES = (
    _SHARED_CASES if _SHARED_CASES.exists() else Path(__file__).parents[1] / "data" / _CASES_NAME
)


def _load_cases() -> list[dict[str, Any]]:
    # json.loads keeps object key order (dicts are ordered), which the semantics depend on.
    lines = PUBLIC_CASES.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def outcome_of_matches(content_filter: Any, record: dict[str, Any]) -> bool | str:
    try:
        return matches(content_filter, record)
    except InvalidFilter:
        return "error"


def outcome_of_match_table(content_filter: Any, record: dict[str, Any]) -> bool | str:
    keyed = {**record, "content_key": "the-record"}
    try:
        pairs = match_table({"the-query": content_filter}, [keyed])
    except InvalidFilter:
        return "error"
    assert pairs.columns == ["query_id", "content_key"]
    assert pairs.height in (0, 1)
    return pairs.height == 1


def assert_both(content_filter: Any, record: dict[str, Any], expected: bool | str) -> None:
    assert outcome_of_matches(content_filter, record) == expected, "matches"
    assert outcome_of_match_table(content_filter, record) == expected, "match_table"


def test_public_reference_cases_through_both_entry_points():
    cases = _load_cases()
    assert len(cases) == 25
    failures = [
        (case["name"], case["expected"], via)
        for case in cases
        for via in (outcome_of_matches, outcome_of_match_table)
        if via(case["content_filter"], case["content"]) != case["expected"]
    ]
    assert failures == []


# One row per rule of the semantics (README "Filter semantics"), each checked through both
# entry points: (rule, filter, record, expected).
RULE_CASES = [
    # a. exactly three whole-key rewrites, case-sensitive
    (
        "typo aggregration__key",
        {"aggregration__key": "course:A"},
        {"aggregation_key": "course:A"},
        True,
    ),
    (
        "typo aggregation__key",
        {"aggregation__key": "course:A"},
        {"aggregation_key": "course:A"},
        True,
    ),
    ("typo org__exempt", {"org__exempt": "MITx"}, {"org": "MITx"}, False),
    ("typo org__exempt other org", {"org__exempt": "MITx"}, {"org": "edX"}, True),
    ("rewrite is case-sensitive", {"ORG__exempt": "MITx"}, {"ORG": "edX"}, "error"),
    ("rewrite is whole-key only", {"x_aggregation__key": "a"}, {}, "error"),
    ("no lower-casing of values", {"org": "mitx"}, {"org": "MITx"}, False),
    ("no trimming of values", {"org": "MITx "}, {"org": "MITx"}, False),
    ("no trimming of keys", {" org": "MITx"}, {"org": "MITx"}, False),
    # b. key syntax and operators
    ("plain key is exact", {"org": "MITx"}, {"org": "MITx"}, True),
    ("explicit exact", {"org__exact": "MITx"}, {"org": "MITx"}, True),
    ("three parts invalid", {"a__b__c": 1}, {}, "error"),
    ("four underscores invalid", {"org____exclude": "x"}, {}, "error"),
    ("operator case-sensitive", {"org__EXCLUDE": "x"}, {}, "error"),
    ("empty operator invalid", {"org__": "MITx"}, {"org": "MITx"}, "error"),
    ("in unsupported", {"org__in": ["MITx"]}, {"org": "MITx"}, "error"),
    ("isnull unsupported", {"org__isnull": True}, {}, "error"),
    ("contains unsupported", {"title__contains": "x"}, {"title": "x"}, "error"),
    ("icontains unsupported", {"title__icontains": "x"}, {"title": "x"}, "error"),
    ("iexact unsupported", {"title__iexact": "x"}, {"title": "x"}, "error"),
    ("startswith unsupported", {"title__startswith": "x"}, {"title": "x"}, "error"),
    ("range unsupported", {"price__range": [1, 2]}, {"price": 1}, "error"),
    ("empty field legal", {"__exclude": "x"}, {"": "y"}, True),
    ("empty field exact", {"": "y"}, {"": "y"}, True),
    ("one bad key poisons the filter", {"org": "MITx", "x__in": [1]}, {"org": "MITx"}, "error"),
    ("bad key even after a false key", {"org": "edX", "x__bad": 1}, {"org": "MITx"}, "error"),
    # c. top-level lookup only; missing reads as null
    ("no dotted paths", {"course.org": "MITx"}, {"course": {"org": "MITx"}}, False),
    ("dotted key is a literal field", {"a.b": 1}, {"a.b": 1}, True),
    ("missing equals null", {"status": None}, {}, True),
    ("missing is not a value", {"status": "published"}, {}, False),
    ("missing is not-equal to a value", {"status__not": "published"}, {}, True),
    # d. arrays in the filter
    ("exact any element", {"org": ["edX", "MITx"]}, {"org": "MITx"}, True),
    ("exact no element", {"org": ["edX", "MITx"]}, {"org": "UQx"}, False),
    ("exact empty array never", {"org": []}, {"org": "MITx"}, False),
    ("exact empty array never (missing)", {"org": []}, {}, False),
    ("not all elements", {"org__not": ["edX", "MITx"]}, {"org": "UQx"}, True),
    ("not one element equal", {"org__not": ["edX", "MITx"]}, {"org": "MITx"}, False),
    ("exclude empty array matches", {"org__exclude": []}, {"org": "MITx"}, True),
    ("gt all elements", {"p__gt": ["1", "5"]}, {"p": 6}, True),
    ("gt not all elements", {"p__gt": ["1", "5"]}, {"p": 3}, False),
    ("gt empty array matches", {"p__gt": []}, {}, True),
    ("lte all elements", {"p__lte": [10, "5"]}, {"p": 5}, True),
    ("lt not all elements", {"p__lt": [10, "5"]}, {"p": 7}, False),
    ("gte not all elements", {"p__gte": ["1", 5]}, {"p": 3}, False),
    ("exact array element is an array", {"tags": [["a", "b"]]}, {"tags": ["a", "b"]}, True),
    ("exact object value", {"o": {"a": 1, "b": 2}}, {"o": {"b": 2, "a": 1}}, True),
    # e. exact equality
    ("string is not number", {"p": "49"}, {"p": 49}, False),
    ("number is not string", {"p": 49}, {"p": "49"}, False),
    ("int equals float", {"p": 49}, {"p": 49.0}, True),
    ("float equals int", {"p": 49.0}, {"p": 49}, True),
    ("true equals 1", {"b": True}, {"b": 1}, True),
    ("false equals 0", {"b": False}, {"b": 0}, True),
    ("false equals 0.0", {"b": 0.0}, {"b": False}, True),
    ("true is not 2", {"b": True}, {"b": 2}, False),
    ("bool inside arrays", {"v": [[True, 0]]}, {"v": [1, False]}, True),
    ("bool inside objects", {"v": {"a": True}}, {"v": {"a": 1.0}}, True),
    ("objects ignore key order", {"v": {"a": 1, "b": [1]}}, {"v": {"b": [1.0], "a": True}}, True),
    ("objects differ by a key", {"v": {"a": 1}}, {"v": {"a": 1, "b": 2}}, False),
    ("arrays in order", {"v": [[1, 2]]}, {"v": [2, 1]}, False),
    ("arrays same length only", {"v": [[1]]}, {"v": [1, 1]}, False),
    ("null equals null", {"v": None}, {"v": None}, True),
    ("null is not false", {"v": None}, {"v": False}, False),
    (
        "record array compared whole",
        {"availability": "Current"},
        {"availability": ["Current", "Upcoming"]},
        False,
    ),
    (
        "record array equals filter array element",
        {"availability": [["Current"]]},
        {"availability": ["Current"]},
        True,
    ),
    ("NaN record equals nothing", {"v": 1}, {"v": float("nan")}, False),
    ("NaN record not-equal everything", {"v__not": 1.5}, {"v": float("nan")}, True),
    ("NaN filter value invalid", {"v": float("nan")}, {"v": float("nan")}, "error"),
    ("infinite filter value invalid", {"v__not": [1, -math.inf]}, {}, "error"),
    ("NaN inside a filter object invalid", {"v": {"a": [math.nan]}}, {}, "error"),
    ("large int exactness", {"v": 2**53 + 1}, {"v": float(2**53)}, False),
    ("negative zero", {"v": -0.0}, {"v": 0}, True),
    # f. not and exclude are inequality
    ("not scalar", {"org__not": "MITx"}, {"org": "edX"}, True),
    ("exclude scalar equal", {"org__exclude": "MITx"}, {"org": "MITx"}, False),
    ("exclude numbers by value", {"p__exclude": 1}, {"p": 1.0}, False),
    ("not null on missing", {"org__not": None}, {}, False),
    # g. numeric comparisons
    ("numeric string filter", {"p__gt": "100"}, {"p": 101}, True),
    ("numeric string record", {"p__gt": 100}, {"p": "101"}, True),
    ("whitespace trimmed", {"p__gte": " 5 "}, {"p": " 5"}, True),
    ("exponent", {"p__lt": "1e2"}, {"p": 99.5}, True),
    ("inf filter", {"p__lt": "inf"}, {"p": 1e308}, True),
    ("inf record", {"p__gt": 10}, {"p": "inf"}, True),
    ("negative inf", {"p__gt": "-inf"}, {"p": -1e308}, True),
    ("NaN filter never", {"p__lt": "NaN"}, {"p": 1}, False),
    ("NaN filter never (gte)", {"p__gte": "nan"}, {"p": "nan"}, False),
    ("NaN record never", {"p__lt": 5}, {"p": "NaN"}, False),
    ("bool record is 1", {"p__gte": 1}, {"p": True}, True),
    ("bool filter is 1", {"p__lt": True}, {"p": 0}, True),
    ("null record", {"p__gt": 1}, {"p": None}, False),
    ("missing record", {"p__lt": 1}, {}, False),
    ("array record", {"p__gt": 1}, {"p": [5]}, False),
    ("object record", {"p__gt": 1}, {"p": {"a": 5}}, False),
    ("null filter", {"p__gt": None}, {"p": 5}, False),
    ("object filter", {"p__gt": {"a": 1}}, {"p": 5}, False),
    ("array element null", {"p__gt": [1, None]}, {"p": 5}, False),
    ("array element array", {"p__gt": [[1]]}, {"p": 5}, False),
    ("non-numeric record string", {"p__gt": 1}, {"p": "free"}, False),
    ("non-numeric filter string", {"p__gt": "cheap"}, {"p": 5}, "error"),
    ("non-numeric filter string in array", {"p__lte": ["5", "cheap"]}, {"p": 5}, "error"),
    ("non-numeric filter even if record missing", {"p__gt": "cheap"}, {}, "error"),
    ("equal bounds", {"p__gte": "301", "q__lte": 301.0}, {"p": 301, "q": "301"}, True),
    ("huge int record overflows", {"p__gt": 1}, {"p": 10**400}, False),
    ("huge int filter invalid", {"p__gt": 10**400}, {"p": 1}, "error"),
    # h. last key per field wins; all fields must hold; empty matches all
    (
        "last bound wins (lte decides)",
        {"price__gte": "50", "price__lte": "100"},
        {"price": 10},
        True,
    ),
    (
        "last bound wins (lte fails)",
        {"price__gte": "50", "price__lte": "100"},
        {"price": 500},
        False,
    ),
    ("exclude then exact", {"org__exclude": ["edX"], "org": "edX"}, {"org": "edX"}, True),
    ("exact then exclude", {"org": "edX", "org__exclude": ["edX"]}, {"org": "edX"}, False),
    (
        "rewrite shares the field",
        {"aggregation_key__exclude": "a", "aggregation__key": "a"},
        {"aggregation_key": "a"},
        True,
    ),
    (
        "all fields must hold",
        {"org": "edX", "level": "Advanced"},
        {"org": "edX", "level": "Intro"},
        False,
    ),
    ("empty filter matches all", {}, {"anything": 1}, True),
    ("empty filter matches empty", {}, {}, True),
    # i. directive keys are plain fields
    ("directive compared as data", {"include_learner_pathways": "True"}, {}, False),
    (
        "directive equal in data",
        {"include_learner_pathways": "True"},
        {"include_learner_pathways": "True"},
        True,
    ),
    (
        "restricted_runs_allowed as data",
        {"restricted_runs_allowed": {"course:A": ["r1"]}},
        {"key": "A"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("content_filter", "record", "expected"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_rule(content_filter, record, expected):
    assert_both(content_filter, record, expected)


def test_invalid_filter_names_each_bad_key_and_reason():
    with pytest.raises(InvalidFilter) as raised:
        matches({"org": "edX", "title__icontains": "py", "p__gt": "cheap", "a__b__c": 1}, {})
    error = raised.value
    assert isinstance(error, ValueError)
    assert [key for key, _ in error.problems] == ["title__icontains", "p__gt", "a__b__c"]
    message = str(error)
    assert "'title__icontains'" in message and "unsupported operator 'icontains'" in message
    assert "'cheap' is not one" in message and "at most one" in message


def test_match_table_names_the_query_id_of_an_invalid_filter():
    filters = {"good": {"org": "edX"}, "query-42": {"org__in": ["edX"]}}
    with pytest.raises(InvalidFilter, match="catalog query 'query-42'") as raised:
        match_table(filters, [{"content_key": "a", "org": "edX"}])
    assert raised.value.query_id == "query-42"


@pytest.mark.parametrize("not_an_object", [["org", "edX"], "org=edX", None, 3])
def test_filter_must_be_an_object(not_an_object):
    with pytest.raises(InvalidFilter, match="JSON object"):
        matches(not_an_object, {})


def test_filter_values_must_be_json():
    with pytest.raises(InvalidFilter, match="set is not a JSON value"):
        validate({"org": {"edX"}})


def test_validate_warns_about_suspicious_but_legal_filters():
    warnings = validate(
        {
            "price__gte": "50",
            "price__lte": "100",
            "include_learner_pathways": True,
            "aggregation__key": ["course:A"],
            "__exclude": "x",
        }
    )
    assert any("'price__gte' and 'price__lte'" in w and "only the last" in w for w in warnings)
    assert any("'include_learner_pathways'" in w and "instruction" in w for w in warnings)
    assert any("'aggregation__key'" in w and "typo" in w for w in warnings)
    assert any("empty field" in w for w in warnings)
    assert validate({"content_type": "course", "partner": "edx"}) == []


def test_parse_keeps_the_last_condition_per_field():
    parsed = parse({"org__exclude": ["edX"], "partner": "edx", "org": "MITx"})
    assert [(c.field, c.operator, c.value) for c in parsed.conditions] == [
        ("partner", "exact", "edx"),
        ("org", "exact", "MITx"),
    ]


def test_match_table_pairs_and_order():
    records = [
        {"content_key": "c1", "org": "edX", "price": 50},
        {"content_key": "c2", "org": "MITx", "price": "150"},
        {"content_key": "c3", "org": "edX", "price": None},
    ]
    filters = {
        "edx": {"org": "edX"},
        "cheap": {"price__lt": 100},
        "none": {"org": "UQx"},
        "all": {},
        "not-edx": {"org__not": "edX"},
    }
    pairs = match_table(filters, records)
    assert pairs.schema == pl.Schema({"query_id": pl.String, "content_key": pl.String})
    assert pairs.rows() == [
        ("edx", "c1"),
        ("edx", "c3"),
        ("cheap", "c1"),
        ("all", "c1"),
        ("all", "c2"),
        ("all", "c3"),
        ("not-edx", "c2"),
    ]


def test_match_table_custom_key_and_non_string_keys():
    pairs = match_table({"q": {"v": 1}}, [{"id": 7, "v": 1}, {"id": 8, "v": 2}], key="id")
    assert pairs.rows() == [("q", "7")]


def test_match_table_empty_inputs():
    assert match_table({}, [{"content_key": "a"}]).height == 0
    assert match_table({"q": {}}, []).height == 0
    assert match_table({"q": {}}, []).columns == ["query_id", "content_key"]


def test_match_table_rejects_records_without_or_with_duplicate_keys():
    with pytest.raises(ValueError, match="record 1 has no 'content_key'"):
        match_table({"q": {}}, [{"content_key": "a"}, {"key": "b"}])
    with pytest.raises(ValueError, match=r"duplicate 'content_key'.*'a'"):
        match_table({"q": {}}, [{"content_key": "a"}, {"content_key": "a"}])


def test_evaluate_reports_non_numeric_record_values_as_data_warnings():
    records = [
        {"content_key": "c1", "price": "free"},
        {"content_key": "c2", "price": 10},
        {"content_key": "c3", "price": "n/a", "org": "free"},
    ]
    result = evaluate({"q": {"price__lt": 100}, "r": {"org": "free"}}, records)
    assert result.pairs.rows() == [("q", "c2"), ("r", "c3")]
    assert result.data_warnings == {"price": ["c1", "c3"]}


def test_match_table_does_not_loop_over_pairs_in_python(monkeypatch):
    """The bulk engine must not fall back to the reference per (filter, record) pair."""
    import catalog_assets.core.filters.rules as filters_module

    def forbidden(*args, **kwargs):
        raise AssertionError("match_table called the per-pair reference")

    records = [{"content_key": str(i), "v": i % 7, "p": i} for i in range(1000)]
    filters = {"a": {"v": [1, 2]}, "b": {"p__gte": 990}, "c": {"v__not": 3}}
    expected = {(q, r["content_key"]) for q, f in filters.items() for r in records if matches(f, r)}
    for name in ("_compare", "_condition_holds", "_json_equal"):
        monkeypatch.setattr(filters_module, name, forbidden)
    pairs = match_table(filters, records)
    assert set(pairs.iter_rows()) == expected
    assert pairs.filter(pl.col("query_id") == "b").height == 10


# --- Limits: what the engine cannot evaluate is invalid, never a crash ----------------------


def nested(levels: int, leaf: Any = "x") -> Any:
    """``leaf`` inside ``levels`` arrays, alternating with objects: depth ``levels``."""
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


def test_deeply_nested_value_is_invalid_not_a_recursion_error():
    poison = {"org": nested(500)}
    reason = f"key 'org': nested more than {MAX_FILTER_DEPTH} levels deep"
    with pytest.raises(InvalidFilter, match=reason):
        validate(poison)
    with pytest.raises(InvalidFilter, match=reason):
        matches(poison, {"org": "x"})
    filters = {"good": {"org": "x"}, "poison": poison}
    with pytest.raises(InvalidFilter, match=f"catalog query 'poison': .*{reason}") as raised:
        match_table(filters, [{"content_key": "a", "org": "x"}])
    assert raised.value.query_id == "poison"
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(InvalidFilter, match="nested more than"):
        validate({"org": looped})


def test_a_poison_filter_is_stored_invalid_and_the_others_still_match():
    from catalog_assets.core.refresh import catalog_query_row

    queries = [
        {"uuid": "poison", "content_filter": {"org": nested(500)}},
        {"uuid": "nan", "content_filter": {"price__lt": math.nan}},
        {"uuid": "good", "content_filter": {"org": "edX"}},
    ]
    rows = [catalog_query_row(query) for query in queries]
    assert [(row.uuid, row.is_valid) for row in rows] == [
        ("poison", False),
        ("nan", False),
        ("good", True),
    ]
    assert "'org': nested more than" in rows[0].error
    assert "'price__lt': NaN is not a JSON number" in rows[1].error
    valid = {row.uuid: json.loads(row.content_filter) for row in rows if row.is_valid}
    assert match_table(valid, [{"content_key": "a", "org": "edX"}]).rows() == [("good", "a")]


def test_deep_but_allowed_values_still_work_through_both_entry_points():
    deepest = nested(MAX_FILTER_DEPTH - 1)
    content_filter = {"v": [deepest]}  # depth MAX_FILTER_DEPTH: the array holds the value
    assert validate(content_filter) == []
    assert_both(content_filter, {"v": nested(MAX_FILTER_DEPTH - 1)}, True)
    assert_both(content_filter, {"v": nested(MAX_FILTER_DEPTH - 1, leaf="y")}, False)
    assert_both({"v__not": [deepest]}, {"v": nested(MAX_FILTER_DEPTH + 5)}, True)
    assert_both({"v": [[deepest]]}, {"v": [deepest]}, "error")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        ([1, -math.inf], "-Infinity"),
        ({"a": [{"b": math.nan}]}, "NaN"),
    ],
)
def test_nan_and_infinite_numbers_are_invalid_anywhere_in_a_value(value, shown):
    for key in ("price", "price__lte", "price__not"):
        with pytest.raises(InvalidFilter, match=f"key '{key}': {shown} is not a JSON number"):
            validate({key: value})


def test_nan_and_infinity_strings_are_still_numeric_filter_values():
    assert validate({"p__lt": "NaN", "q__gt": ["inf", "-Infinity"], "r": "NaN"}) == []
    assert_both({"p__lt": "inf"}, {"p": 1e308}, True)


def test_filter_size_limit_counts_canonical_utf8_json():
    def canonical_size(content_filter: dict[str, Any]) -> int:
        text = json.dumps(content_filter, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return len(text.encode("utf-8"))

    head = {"org": "edX", "tags__not": ["é"] * 10}
    room = MAX_FILTER_BYTES - canonical_size({**head, "title": ""})
    at_limit = {**head, "title": "t" * room}
    assert canonical_size(at_limit) == MAX_FILTER_BYTES
    assert validate(at_limit) == []
    over = {**head, "title": "é" * (room // 2 + 1)}  # two bytes each in UTF-8
    size = canonical_size(over)
    assert size > MAX_FILTER_BYTES
    with pytest.raises(InvalidFilter, match=f"key 'title': the filter is {size} bytes") as raised:
        matches(over, {})
    assert f"limit of {MAX_FILTER_BYTES}" in str(raised.value)
    many_keys = {f"field_{i}": "v" * 100 for i in range(3000)}
    with pytest.raises(InvalidFilter, match="bytes of JSON"):
        match_table({"q": many_keys}, [{"content_key": "a"}])
    with pytest.raises(InvalidFilter, match=f"key 'org': larger than {MAX_FILTER_BYTES} bytes"):
        validate({"org": [0] * (MAX_FILTER_BYTES + 1)})


# --- Property: match_table == matches, pair for pair ----------------------------------------

FIELDS = ["a", "b", "price", "", "status", "org", "aggregation_key"]
TYPO_KEYS = ["aggregration__key", "aggregation__key", "org__exempt"]  # whole-key rewrites
OPERATOR_SUFFIXES = ["", "__exact", "__not", "__exclude", "__gt", "__gte", "__lt", "__lte"]
INVALID_SUFFIXES = ["__in", "__EXCLUDE", "__", "__x__y"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.integers(-(2**70), 2**70),
    st.integers(-(2**1100), 2**1100),  # beyond float range: OverflowError in float()
    st.sampled_from([0.0, -0.0, 1.0, 2.5, -1.5, 1e308, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, width=64),
    st.sampled_from(["", "a", "b", "1", "2", " 2 ", "2.5", "1e2", "NaN", "inf", "free", "True"]),
    st.text(max_size=3),
)
# Numeric filter values: mostly convertible, so that filters stay valid and bounds interact.
numeric_values = st.one_of(
    st.integers(-5, 5),
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from(["1", "2.5", " 3 ", "1e1", "-2", "NaN", "inf", "-inf"]),
    st.booleans(),
    st.none(),
)


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    )


json_values = st.recursive(scalars, _containers, max_leaves=6)
# Filter values: JSON numbers only (NaN and infinities make a filter invalid; records may hold
# them), so that most generated filters stay valid.
filter_json_values = st.recursive(
    scalars.filter(lambda v: not isinstance(v, float) or math.isfinite(v)),
    _containers,
    max_leaves=6,
)


@st.composite
def content_filters(draw) -> dict[str, Any]:
    keys = draw(
        st.lists(
            st.tuples(
                st.sampled_from(FIELDS),
                st.sampled_from(OPERATOR_SUFFIXES * 8 + INVALID_SUFFIXES),
            ),
            max_size=4,
        )
    )
    keys += [(typo, "") for typo in draw(st.lists(st.sampled_from(TYPO_KEYS), max_size=2))]
    keys = draw(st.permutations(keys))
    content_filter: dict[str, Any] = {}
    for field_name, suffix in keys:
        numeric = suffix in ("__gt", "__gte", "__lt", "__lte")
        numeric_pool = st.one_of(*[numeric_values] * 9, scalars)  # scalars: now and then invalid
        value = draw(
            st.lists(numeric_pool, max_size=3) | numeric_pool
            if numeric
            else st.lists(filter_json_values, max_size=3) | filter_json_values
        )
        content_filter[field_name + suffix] = value
    return content_filter


records_strategy = st.lists(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters=st.lists(content_filters(), min_size=1, max_size=5), records=records_strategy)
def test_match_table_equals_matches_pair_for_pair(filters, records):
    keyed = [{**record, "content_key": f"r{i}"} for i, record in enumerate(records)]
    by_id = {f"q{i}": f for i, f in enumerate(filters)}
    reference_errors = [qid for qid, f in by_id.items() if outcome_of_matches(f, {}) == "error"]
    if reference_errors:
        with pytest.raises(InvalidFilter) as raised:
            match_table(by_id, keyed)
        assert raised.value.query_id == reference_errors[0]
        return
    expected = {
        (qid, record["content_key"])
        for qid, f in by_id.items()
        for record in keyed
        if matches(f, record)
    }
    pairs = match_table(by_id, keyed)
    assert set(pairs.iter_rows()) == expected
    assert pairs.height == len(expected)


@settings(max_examples=1000, deadline=None)
@given(
    op=st.sampled_from(["gt", "gte", "lt", "lte"]),
    bounds=st.lists(numeric_values, max_size=4) | numeric_values,
    values=st.lists(numeric_values | st.text(max_size=2), min_size=1, max_size=8),
)
def test_numeric_bounds_equal_the_reference(op, bounds, values):
    """Numeric comparisons against several bounds at once, where bulk and reference could
    most easily part ways (ALL over the bounds, NaN, infinities, strings, booleans)."""
    content_filter = {f"p__{op}": bounds}
    records = [{"content_key": f"r{i}", "p": value} for i, value in enumerate(values)]
    expected = [r["content_key"] for r in records if matches(content_filter, r)]
    assert match_table({"q": content_filter}, records)["content_key"].to_list() == expected
