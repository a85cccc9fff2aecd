"""The event lane's operator commands: publish, dead-letters, replay (its time, its cursor from
Kafka alone, its dry run without a broker); and no private Dagster API in the sensors."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from catalog_assets import cli
from catalog_assets.core.dead_letters import dead_letter
from catalog_assets.core.events import RawMessage, decode, encode_json_event
from catalog_assets.store import open_store
from catalog_assets_tests.support.kafka import client_config
from sensors.content_events import SENSOR_NAME, parse_cursor, replay_generation
from sensors.kafka_source import KafkaEventSource
from sensors.replay import event_source, parse_since, rewind_cursor

REPO = Path(__file__).resolve().parents[1]


def test_publish_sends_a_decodable_event_in_each_format(kafka_bootstrap, kafka_topic, monkeypatch):
    topic = kafka_topic()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert cli.main(["publish", "edX+DemoX", "--topic", topic, "--delete"]) == 0
    run_key = "course-v1:edX+DemoX+2026"
    assert cli.main(["publish", run_key, "--format", "openedx", "--topic", topic]) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "cli-test"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages = []
    for _ in range(40):
        messages += consumer.consume(10, timeout=0.25)
        if len(messages) >= 2:
            break
    consumer.close()
    events = [e for m in messages for e in decode(RawMessage.from_kafka(m))]
    assert [(e.content_key, e.event_type) for e in events] == [
        ("edX+DemoX", "content.deleted"),
        (run_key, "content.upserted"),
    ]
    # The Open edX key as event-bus-kafka writes it: a Confluent-framed Avro string.
    avro_key = messages[1].key()
    assert avro_key[0] == 0 and avro_key[5:] == bytes([len(run_key) * 2]) + run_key.encode()
    assert [name for name, _ in messages[1].headers()][:3] == [
        "ce_specversion",
        "content-type",
        "ce_datacontenttype",
    ]


def test_dead_letters_list_and_replay(tmp_path, monkeypatch, capsys):
    store_url = f"duckdb:///{tmp_path}/catalog.duckdb"
    monkeypatch.setenv("CATALOG_STORE_URL", store_url)
    with open_store(store_url) as store:
        store.ensure_schema()
        message = RawMessage("events", 2, 41, b"k", b"\xff\xfe", None)
        store.add_dead_letters([dead_letter(message, "value is not UTF-8", _now())])
    assert cli.main(["dead-letters", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["topic"], row["partition"], row["offset"]) == ("events", 2, 41)
    assert "UTF-8" in row["error"]
    assert cli.main(["dead-letters", "replay"]) == 1  # still bad: reported, kept
    assert "still bad" in capsys.readouterr().out
    assert cli.main(["dead-letters", "list"]) == 0
    assert "events" in capsys.readouterr().out


def test_dead_letters_replay_of_unknown_or_replayed_ids_fails_and_replays_nothing(
    tmp_path, monkeypatch, capsys
):
    store_url = f"duckdb:///{tmp_path}/catalog.duckdb"
    monkeypatch.setenv("CATALOG_STORE_URL", store_url)
    with open_store(store_url) as store:
        store.ensure_schema()
        messages = [RawMessage("events", 0, offset, b"k", b"\xff", None) for offset in (1, 2)]
        store.add_dead_letters([dead_letter(m, "value is not UTF-8", _now()) for m in messages])
        waiting, done = (letter.id for letter in store.dead_letters())
        store.mark_dead_letters_replayed([done], _now())

    assert cli.main(["dead-letters", "replay", "99999"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "catalog-assets dead-letters replay: no dead letter with id 99999\n"
    assert captured.out == ""

    assert cli.main(["dead-letters", "replay", str(waiting), "424242", "99999", str(done)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "catalog-assets dead-letters replay: no dead letter with id 99999, 424242; "
        f"dead letter {done} already replayed\n"
    )
    assert captured.out == ""  # the known id was not replayed either
    with open_store(store_url) as store:
        assert [letter.id for letter in store.dead_letters()] == [waiting]


def test_dead_letters_without_an_action_prints_its_usage(capsys):
    assert cli.main(["dead-letters"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: catalog-assets dead-letters [-h] COMMAND")
    assert re.search(r"^  list +list dead letters", captured.err, re.M)
    assert re.search(r"^  replay +decode and apply", captured.err, re.M)


def test_publish_refuses_json_only_options_with_the_openedx_format(capsys):
    assert cli.main(["publish", "course-v1:edX+X+1", "--format", "openedx", "--delete"]) == 2
    assert capsys.readouterr().err == (
        "catalog-assets publish: --delete and --metadata apply to --format json only\n"
    )


# --- replay --------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("1d12h", NOW - timedelta(days=1, hours=12)),
        ("45s", NOW - timedelta(seconds=45)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00Z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T11:00:00+02:00", datetime(2026, 11, 27, 9, 0, tzinfo=UTC)),
        ("2026-11-27T10:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),  # naive: UTC
        ("2026-11-27", datetime(2026, 11, 27, tzinfo=UTC)),
    ],
)
def test_since_is_an_iso_time_or_a_duration_before_now(text, expected):
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2x", "h2", "-2h", "2 hours", "", "2026-13-01"])
def test_a_bad_since_says_which_forms_are_accepted(text):
    with pytest.raises(ValueError, match="is not an ISO time or a duration like 2h"):
        parse_since(text, NOW)


def test_a_since_in_the_future_or_before_the_year_1_is_refused():
    with pytest.raises(ValueError, match="in the future"):
        parse_since("2026-11-28T00:00Z", NOW)
    with pytest.raises(ValueError, match="reaches back past the year 1"):
        parse_since("999999d", NOW)


def test_replay_explains_a_bad_since_on_the_command_line(monkeypatch, capsys):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert cli.main(["replay", "--since", "yesterday", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: catalog-assets replay")
    assert (
        "catalog-assets replay: error: argument --since: 'yesterday' is not an ISO time or a "
        "duration like 2h"
    ) in err


def test_replay_dry_run_without_a_broker_prints_the_plan(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("KAFKA_CONSUMER_GROUP", raising=False)
    monkeypatch.setenv("KAFKA_CONTENT_TOPICS", "topic-a,topic-b")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    before = datetime.now(UTC)
    assert cli.main(["replay", "--since", "2h", "--topic", "topic-a", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    since = datetime.fromisoformat(lines[0].split(" from ")[1].split(" (")[0])
    assert lines[0].startswith("replay for sensor content_events_sensor from ")
    assert lines[0].endswith("(2:00:00 ago)")
    assert (
        before - timedelta(hours=2, seconds=1)
        <= since
        <= before - timedelta(hours=2) + (timedelta(seconds=5))
    )
    assert lines[1:] == [
        "  replayed topics: topic-a",
        "  other content topics (from consumer group catalog-assets): topic-b",
        "KAFKA_BOOTSTRAP_SERVERS is not set: the offsets, and so the cursor, need the broker.",
        "dry run: nothing changed",
    ]
    assert not (tmp_path / "home").exists()  # nothing written


def test_replay_without_a_broker_and_not_dry_run_says_what_to_set(monkeypatch, capsys):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert cli.main(["replay", "--since", "2h"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("catalog-assets replay: KAFKA_BOOTSTRAP_SERVERS is not set.")


def test_replay_dry_run_with_an_unreachable_broker_prints_the_plan(monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("KAFKA_CONTENT_TOPICS", "topic-a")
    assert cli.main(["replay", "--since", "1d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  replayed topics: topic-a\n" in out
    assert "Kafka at 127.0.0.1:1 could not be reached (" in out
    assert out.endswith("need the broker.\ndry run: nothing changed\n")


def test_replay_of_a_topic_the_sensor_does_not_read_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_CONTENT_TOPICS", "topic-a,topic-b")
    assert cli.main(["replay", "--since", "2h", "--topic", "other", "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        "catalog-assets replay: 'other' is not a content topic "
        "(KAFKA_CONTENT_TOPICS: topic-a, topic-b)\n"
    )


@pytest.fixture
def replay_env(kafka_bootstrap, kafka_topic, tmp_path, monkeypatch):
    """Two content topics (the second with two partitions), a consumer group with offsets
    committed for partition 0 of the second only, as the sensor mirrors its cursor."""
    replayed, other = kafka_topic(), kafka_topic(partitions=2)
    group = f"group-{replayed}"
    producer = Producer(client_config(kafka_bootstrap))
    for topic, partition, count in ((replayed, 0, 3), (other, 0, 4), (other, 1, 2)):
        for i in range(count):
            key, value = encode_json_event(f"edX+R{i}", "course", event_id=f"{topic}-{i}")
            producer.produce(topic, key=key, value=value, partition=partition)
    producer.flush(10)
    KafkaEventSource(bootstrap_servers=kafka_bootstrap, consumer_group=group).commit_to_group(
        {other: {0: 3}}
    )
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("KAFKA_CONTENT_TOPICS", f"{replayed},{other}")
    monkeypatch.setenv("KAFKA_CONSUMER_GROUP", group)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return replayed, other, group


def test_the_rewound_cursor_comes_from_offsets_for_times_and_the_group(replay_env):
    replayed, other, _ = replay_env
    now = datetime.now(UTC)
    source = event_source()
    rewind = rewind_cursor(source, now - timedelta(hours=1), [replayed], now=now)
    # Every message is younger than an hour: the replay starts at the first one (Tansu answers
    # 0 whatever the time). The other topic resumes where the group stands.
    assert rewind.replayed == {replayed: {0: 0}}
    assert rewind.resumed.offsets == {other: {0: 3}}
    assert rewind.resumed.uncommitted == [(other, 1)]
    assert parse_cursor(rewind.cursor) == {replayed: {0: 0}, other: {0: 3}}
    assert replay_generation(rewind.cursor) == rewind.generation == int(now.timestamp())
    later = rewind_cursor(source, now, [replayed], now=now + timedelta(seconds=1))
    assert replay_generation(later.cursor) > replay_generation(rewind.cursor)  # new each time


def test_replay_dry_run_prints_the_rewound_cursor(replay_env, capsys):
    replayed, other, group = replay_env
    before = int(time.time())
    assert cli.main(["replay", "--since", "1h", "--topic", replayed, "--dry-run"]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("cursor for ")]
    cursor = line.removeprefix("cursor for content_events_sensor: ")
    assert parse_cursor(cursor) == {replayed: {0: 0}, other: {0: 3}}
    assert before <= replay_generation(cursor) <= time.time()
    assert f"  replayed offsets: {replayed}[0]=0\n" in out
    assert f"  resumed offsets: {other}[0]=3\n" in out
    assert f"not committed in {group}, so the sensor starts them from the earliest" in out
    assert out.endswith(
        "dry run: nothing changed; to apply: dagster sensor cursor content_events_sensor "
        f"--set '{cursor}' -m catalog_assets.definitions\n"
    )


def test_replay_sets_the_cursor_in_the_dagster_instance(replay_env, tmp_path, capsys):
    replayed, other, _ = replay_env
    assert cli.main(["replay", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"cursor set in the Dagster instance at {tmp_path / 'home'}\n")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        (state,) = [s for s in instance.all_instigator_state() if s.name == SENSOR_NAME]
        cursor = state.instigator_data.cursor
    assert parse_cursor(cursor) == {replayed: {0: 0}, other: {0: 0, 1: 0}}
    assert replay_generation(cursor) > 0


def test_no_sensor_or_command_module_uses_dagster_private_api():
    paths = sorted((REPO / "sensors").glob("*.py")) + sorted(
        (REPO / "catalog_assets" / "cli").glob("*.py")
    )
    assert len(paths) > 5  # the folders are where this test looks
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bdagster\._", text), f"{path} names dagster's private API"


def _now():
    return datetime(2026, 11, 27, 12, 0)
