"""Content documents: what cannot be stored and matched is a ValueError naming it, never a crash."""

from __future__ import annotations

import math
from typing import Any

import pytest

from catalog_assets.core.content import MAX_DOCUMENT_DEPTH, content_key_of, content_record


def document(**fields: Any) -> dict[str, Any]:
    return {"key": "edX+DemoX", "aggregation_key": "course:edX+DemoX", **fields}


def nested_document(depth: int) -> dict[str, Any]:
    """A document whose objects and arrays nest ``depth`` levels (the document is level 1)."""
    value: Any = "leaf"
    for level in range(depth - 1):
        value = [value] if level % 2 else {"inner": value}
    return document(extra=value)


def test_valid_documents_keep_their_key_uuid_and_type():
    record = content_record(document(uuid="u-1", title="Demo"))
    assert (record.content_key, record.content_uuid, record.content_type) == (
        "edX+DemoX",
        "u-1",
        "course",
    )
    program = {"key": None, "uuid": "p-1", "aggregation_key": "program:p-1"}
    assert content_key_of(program) == "p-1"
    assert content_key_of({"key": "", "uuid": "p-2"}) == "p-2"
    assert content_record({**program, "key": "p-1", "uuid": ""}).content_uuid is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"key": 12345}, "key is 12345, not a non-empty string"),
        ({"key": ["edX+DemoX"]}, r"key is \['edX\+DemoX'\], not a non-empty string"),
        ({"key": 0, "uuid": "u-1"}, "key is 0, not a non-empty string"),
        ({"key": None, "uuid": 7}, "uuid is 7, not a non-empty string"),
        ({"key": None, "uuid": {"hex": "ab"}}, "uuid is {'hex': 'ab'}, not a non-empty string"),
    ],
)
def test_a_key_or_uuid_that_is_not_a_non_empty_string_is_a_value_error(fields, reason):
    with pytest.raises(ValueError, match=reason):
        content_key_of(document(**fields))
    with pytest.raises(ValueError, match=reason):
        content_record(document(**fields))


def test_a_uuid_beside_a_good_key_must_be_a_string_too():
    with pytest.raises(ValueError, match="'edX\\+DemoX': its uuid is 7, not a non-empty string"):
        content_record(document(uuid=7))
    assert content_key_of(document(uuid=7)) == "edX+DemoX"  # the key itself is fine


@pytest.mark.parametrize(
    ("fields", "column"),
    [
        ({"key": "edX+Demo\x00X"}, "key"),
        ({"key": None, "uuid": "p-\x001"}, "uuid"),
        ({"uuid": "u-\x001"}, "uuid"),
        ({"aggregation_key": "cour\x00se:edX+DemoX"}, "content type"),
        ({"aggregation_key": "courserun:edX+\x00DemoX"}, "parent"),
    ],
)
def test_a_nul_character_in_a_stored_column_is_a_value_error(fields, column):
    with pytest.raises(ValueError, match=f"{column} .*NUL character, which PostgreSQL cannot"):
        content_record(document(**fields))


def test_nul_characters_inside_the_document_body_are_fine():
    # canonical JSON escapes them as \u0000, which any store keeps.
    record = content_record(document(title="Demo\x00"))
    assert record.metadata["title"] == "Demo\x00"


def test_a_document_nested_deeper_than_the_limit_is_a_value_error():
    assert content_record(nested_document(MAX_DOCUMENT_DEPTH)).content_key == "edX+DemoX"
    reason = f"'edX\\+DemoX' nests objects and arrays more than {MAX_DOCUMENT_DEPTH} levels"
    with pytest.raises(ValueError, match=reason):
        content_record(nested_document(MAX_DOCUMENT_DEPTH + 1))
    deep = nested_document(5000)  # json.dumps would raise RecursionError
    with pytest.raises(ValueError, match=reason):
        content_record(deep)
    assert content_key_of(deep) == "edX+DemoX"  # still known, so a refresh never tombstones it
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(ValueError, match=reason):
        content_record(document(extra=looped))
    with pytest.raises(ValueError, match=reason):  # checked before anything reads the fields
        content_record(document(aggregation_key=nested_document(5000)))


def test_messages_never_quote_a_deep_field_whole():
    deep_title = nested_document(5000)
    with pytest.raises(ValueError, match=r"neither a key nor a uuid .*title=\{.*\.\.\.") as raised:
        content_key_of({"aggregation_key": "course:x", "title": deep_title})
    assert len(str(raised.value)) < 300
    with pytest.raises(ValueError, match=r"key is \{.*\.\.\..*\}, not a non-empty string"):
        content_record({"key": deep_title})


@pytest.mark.parametrize("content_type", [3, ["course"], {"type": "course"}])
def test_a_content_type_that_is_not_a_string_is_a_value_error(content_type):
    with pytest.raises(ValueError, match=r"its content type is .*, not a non-empty string"):
        content_record({"key": "k", "content_type": content_type})
    assert content_record({"key": "k", "aggregation_key": ["x:y"], "content_type": "course"})


@pytest.mark.parametrize(
    ("value", "detail"), [(math.nan, "not JSON compliant"), ({"a", "b"}, "set is not JSON")]
)
def test_values_that_are_not_json_are_a_value_error_naming_the_document(value, detail):
    with pytest.raises(ValueError, match=f"'edX\\+DemoX' is not valid JSON: .*{detail}"):
        content_record(document(price=value))


@pytest.mark.parametrize("not_a_document", [["edX+DemoX"], "edX+DemoX", None])
def test_a_document_that_is_not_an_object_is_a_value_error(not_a_document):
    with pytest.raises(ValueError, match="a content document is a JSON object"):
        content_key_of(not_a_document)
    with pytest.raises(ValueError, match="a content document is a JSON object"):
        content_record(not_a_document)
