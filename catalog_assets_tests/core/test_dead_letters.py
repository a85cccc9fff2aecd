"""Collapsing a tick's events into one update per key, and replaying dead letters (no Dagster):
the latest event by time decides, nothing an event carried is dropped, and a replay applies
exactly the letters that now decode, on both store backends."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta

import pytest

from catalog_assets.core.content import ContentSnapshot
from catalog_assets.core.dead_letters import (
    collapse,
    dead_letter,
    headers_from_json,
    headers_json,
    replay,
)
from catalog_assets.core.events import (
    ContentEvent,
    ContentType,
    EventFormat,
    EventType,
    RawMessage,
    encode_json_event,
)
from catalog_assets.core.refresh import refresh_associations, refresh_content, sync_catalog_queries
from catalog_assets.core.sources import CatalogQueryFile, SampleContent
from catalog_assets.devtools.encoders import encode_openedx_catalog_info_changed
from catalog_assets_tests.support import expected

T0 = datetime(2030, 1, 1)
NOW = datetime(2030, 6, 1, 12, 0)


def event(
    event_id: str,
    seconds: int | None,
    *,
    key: str = "edX+K1x",
    deleted: bool = False,
    metadata: dict | None = None,
) -> ContentEvent:
    """An event ``seconds`` after T0 (None: an event without a time), at offset ``seconds``."""
    return ContentEvent(
        event_id=event_id,
        event_type=EventType.DELETED if deleted else EventType.UPSERTED,
        content_key=key,
        content_type=ContentType.COURSE,
        time=None if seconds is None else T0 + timedelta(seconds=seconds),
        metadata=metadata,
        source=EventFormat.JSON,
        topic="content",
        partition=0,
        offset=seconds if seconds is not None else -1,
    )


def record(version: int) -> dict:
    return {"key": "edX+K1x", "title": f"version {version}"}


# --- collapse -------------------------------------------------------------------------------------


def test_the_latest_event_by_time_decides_whatever_the_arrival_order():
    events = [event("e3", 3, metadata=record(3)), event("e1", 1), event("e2", 2, deleted=True)]
    (update,) = collapse(events)
    assert not update.deleted and update.metadata == record(3) and not update.also_fetch
    assert update.event_ids == ("e1", "e2", "e3")
    assert (update.time, update.offset) == (T0 + timedelta(seconds=3), 3)

    (update,) = collapse([event("e2", 2, deleted=True), event("e1", 1, metadata=record(1))])
    assert update.deleted and update.metadata is None and not update.also_fetch
    assert update.event_ids == ("e1", "e2") and update.offset == 2


def test_a_record_carried_before_a_deletion_is_not_brought_back():
    """Deleted, then upserted without a record: the record from before the deletion is dead;
    the upsert fetches the current one."""
    (update,) = collapse(
        [event("e1", 1, metadata=record(1)), event("e2", 2, deleted=True), event("e3", 3)]
    )
    assert not update.deleted and update.metadata is None and not update.also_fetch

    (update,) = collapse([event("e1", 1, deleted=True), event("e2", 2, metadata=record(2))])
    assert not update.deleted and update.metadata == record(2) and not update.also_fetch


def test_the_latest_carried_record_is_kept_and_a_later_fetch_asked_for():
    (update,) = collapse(
        [event("e1", 1, metadata=record(1)), event("e2", 2, metadata=record(2)), event("e3", 3)]
    )
    assert update.metadata == record(2) and update.also_fetch  # the stale guard picks the newer

    (update,) = collapse(
        [event("e1", 1, metadata=record(1)), event("e2", 2), event("e3", 3, metadata=record(3))]
    )
    assert update.metadata == record(3) and not update.also_fetch


def test_without_times_arrival_order_decides():
    (update,) = collapse([event("e1", None, metadata=record(1)), event("e2", None, deleted=True)])
    assert update.deleted
    (update,) = collapse([event("e1", 9, metadata=record(1)), event("e2", None, deleted=True)])
    assert update.deleted  # one event has no time: times cannot order the key's events


def test_an_untimed_event_of_another_key_does_not_reorder_this_key():
    timed = [event("late-upsert", 9, metadata=record(9)), event("early-delete", 1, deleted=True)]
    (alone,) = collapse(timed)
    assert not alone.deleted
    updates = {u.content_key: u for u in collapse([*timed, event("other", None, key="B")])}
    assert updates["edX+K1x"] == alone


def test_one_update_per_key_in_first_arrival_order_with_each_event_id_once():
    events = [
        event("b1", 1, key="B"),
        event("a1", 2, key="A", metadata={"key": "A", "title": "a"}),
        event("b1", 1, key="B"),  # redelivered
        event("b2", 3, key="B", deleted=True),
    ]
    updates = collapse(events)
    assert [u.content_key for u in updates] == ["B", "A"]
    assert updates[0].event_ids == ("b1", "b2") and updates[0].deleted
    assert updates[1].event_ids == ("a1",) and updates[1].metadata == {"key": "A", "title": "a"}
    assert collapse([]) == []


def test_headers_survive_as_json_whatever_their_bytes():
    headers = [("ce_id", b"\x00\xff\xfe"), ("empty", b""), ("none", None), ("ce_id", b"again")]
    assert headers_from_json(headers_json(headers)) == headers
    assert json.loads(headers_json(headers))  # plain JSON text, for the store
    assert headers_from_json(headers_json(None)) is None


# --- replay ---------------------------------------------------------------------------------------


class Letters:
    """A store loaded by the bulk lane, its content file, and dead letters written into it."""

    def __init__(self, store, content: list[dict], queries: dict, tmp_path):
        self.store, self.content = store, content
        self.path = tmp_path / "content.json"
        self.path.write_text(json.dumps(content))
        self.source = SampleContent(str(self.path))
        sync_catalog_queries(CatalogQueryFile(**copy.deepcopy(queries)), store, T0)
        refresh_content(ContentSnapshot(content), store, T0)
        refresh_associations(store, T0)
        self.offset = 0

    def add(self, key: bytes | None, value: bytes, headers: list | None = None) -> int:
        self.offset += 1
        message = RawMessage("content", 0, self.offset, key, value, headers)
        self.store.add_dead_letters([dead_letter(message, "failed once", T0)])
        return self.store.dead_letters()[-1].id

    def add_json(self, document: dict, *, deleted: bool = False, minutes: int = 0) -> int:
        key, value = encode_json_event(
            document["key"],
            "course",
            event_type=EventType.DELETED if deleted else EventType.UPSERTED,
            metadata=None if deleted else document,
            event_id=f"event-{self.offset + 1}",
            time=T0 + timedelta(minutes=minutes),
        )
        return self.add(key, value)

    def course(self, index: int = 0) -> dict:
        return [d for d in self.content if d["content_type"] == "course"][index]

    def open_ids(self) -> list[int]:
        return [letter.id for letter in self.store.dead_letters()]


@pytest.fixture
def letters(store, content, queries, tmp_path) -> Letters:
    return Letters(store, content, queries, tmp_path)


def deep(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_replay_applies_what_now_decodes_and_keeps_the_rest(letters):
    course = {**letters.course(), "title": "Replayed", "modified": "2031-01-01T00:00:00Z"}
    good = letters.add_json(course)
    garbage = letters.add(b"k", b"still not an event")
    rejected = letters.add_json({**letters.course(1), "nested": deep(100)})
    report = replay(letters.store, letters.source, NOW)

    assert [line.id for line in report] == [good, garbage, rejected]
    assert report[0].outcome == f"applied: {course['key']}"
    assert report[1].outcome.startswith("still bad: ")
    assert report[2].outcome.startswith("still rejected: ") and "64" in report[2].outcome
    assert letters.store.get_content(course["key"]).metadata["title"] == "Replayed"
    filters = {
        q.uuid: json.loads(q.content_filter) for q in letters.store.catalog_queries() if q.is_valid
    }
    queries = expected.expected_queries(filters, course)
    assert sorted(letters.store.associations_of(course["key"])) == queries
    assert "nested" not in letters.store.get_content(letters.course(1)["key"]).metadata
    assert letters.open_ids() == [garbage, rejected]
    replayed = {d.id: d.replayed_at for d in letters.store.dead_letters(include_replayed=True)}
    assert replayed == {good: NOW, garbage: None, rejected: None}

    assert [line.id for line in replay(letters.store, letters.source, NOW)] == [garbage, rejected]


@pytest.mark.parametrize("deletion_last", [True, False])
def test_letters_for_one_key_apply_in_event_time_order(letters, deletion_last):
    """A deletion and an upsert stored in one order and timed in the other: time decides."""
    course = {**letters.course(), "title": "Upserted", "modified": "2029-01-01T00:00:00Z"}
    upsert = letters.add_json(course, minutes=1)
    deletion = letters.add_json(course, deleted=True, minutes=2 if deletion_last else 0)
    report = replay(letters.store, letters.source, NOW)
    assert [line.outcome for line in report] == [f"applied: {course['key']}"] * 2
    assert sorted(line.id for line in report) == [upsert, deletion]
    stored = letters.store.get_content(course["key"])
    assert (stored.deleted_at is not None) is deletion_last
    if not deletion_last:
        assert stored.metadata["title"] == "Upserted"
    assert letters.open_ids() == []


def test_an_open_edx_letter_replays_with_its_headers(letters):
    """The Avro event names a run; it needs its CloudEvent headers, stored as JSON, to decode.
    Both the run and its course are fetched from the source."""
    run = next(d for d in letters.content if d["content_type"] == "courserun")
    course_key = run["aggregation_key"].removeprefix("courserun:")
    edited = [
        {**d, "title": "Fetched", "modified": "2031-01-01T00:00:00Z"}
        if d.get("key") in (run["key"], course_key)
        else d
        for d in letters.content
    ]
    letters.path.write_text(json.dumps(edited))
    value, headers = encode_openedx_catalog_info_changed(run["key"], event_id="avro-1")
    letter = letters.add(run["key"].encode(), value, headers)
    (line,) = replay(letters.store, letters.source, NOW)
    assert line.id == letter
    assert sorted(line.outcome.removeprefix("applied: ").split(", ")) == sorted(
        [run["key"], course_key]
    )
    for key in (run["key"], course_key):
        assert letters.store.get_content(key).metadata["title"] == "Fetched"


def test_replay_by_id_replays_only_those(letters):
    first = letters.add_json({**letters.course(0), "title": "One", "modified": "2031-01-01"})
    second = letters.add_json({**letters.course(1), "title": "Two", "modified": "2031-01-01"})
    (line,) = replay(letters.store, letters.source, NOW, ids=[second])
    assert line.id == second and line.outcome.startswith("applied")
    assert letters.open_ids() == [first]
    assert letters.store.get_content(letters.course(0)["key"]).metadata["title"] != "One"


def test_unknown_or_replayed_ids_are_refused_before_anything_is_replayed(letters):
    done = letters.add_json({**letters.course(0), "title": "Done", "modified": "2031-01-01"})
    waiting = letters.add_json({**letters.course(1), "title": "Waiting", "modified": "2031-01-01"})
    replay(letters.store, letters.source, NOW, ids=[done])
    unknown = max(done, waiting) + 100
    with pytest.raises(ValueError, match=f"no dead letter with id {unknown}"):
        replay(letters.store, letters.source, NOW, ids=[waiting, unknown])
    with pytest.raises(ValueError, match=f"dead letter {done} already replayed") as refused:
        replay(letters.store, letters.source, NOW, ids=[waiting, done, unknown])
    assert f"no dead letter with id {unknown}" in str(refused.value)
    assert letters.open_ids() == [waiting]
    assert letters.store.get_content(letters.course(1)["key"]).metadata["title"] != "Waiting"
