"""The event lane's operator commands: publish, dead-letters, replay --dry-run."""

from __future__ import annotations

import json

from confluent_kafka import Consumer, TopicPartition

from catalog_assets import cli
from catalog_assets.core.dead_letters import dead_letter
from catalog_assets.core.events import RawMessage, decode
from catalog_assets.store import open_store


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
        ("edX+DemoX", "content.upserted"),
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


def test_replay_dry_run_prints_the_rewound_cursor(
    kafka_bootstrap, kafka_topic, tmp_path, monkeypatch, capsys
):
    topic = kafka_topic()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("KAFKA_CONTENT_TOPICS", topic)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert cli.main(["replay", "--since", "2026-01-01T00:00:00+00:00", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f'{{"{topic}":{{"0":0}},"#replay":1}}' in out and "dagster sensor cursor" in out


def _now():
    from datetime import datetime

    return datetime(2026, 11, 27, 12, 0)
