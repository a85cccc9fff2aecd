"""A tick that finds nothing waits for a first message instead of leaving it to the next tick
(the daemon evaluates sensors at most every 5 seconds), against a real broker."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

from catalog_assets.core.events import encode_json_event
from sensors.kafka_source import KafkaEventSource


def test_a_read_that_finds_nothing_takes_a_message_published_while_it_waits(
    kafka_bootstrap, kafka_topic
):
    topic = kafka_topic()
    source = KafkaEventSource(bootstrap_servers=kafka_bootstrap, topics=topic)
    start = source.read({}, max_messages=100, max_seconds=20.0).next_offsets  # empty topic
    key, value = encode_json_event("edX+Waited", "course", event_id="w-1")

    def publish_later() -> None:
        time.sleep(0.5)  # after the read has started and found nothing
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(topic, key=key, value=value)
        producer.flush(10)

    publisher = threading.Thread(target=publish_later)
    publisher.start()
    batch = source.read(start, max_messages=100, max_seconds=20.0, wait_seconds=15.0)
    publisher.join()
    assert [message.value for message in batch.messages] == [value]
    assert batch.next_offsets == {topic: {0: 1}}
    assert batch.stopped_by == "caught up"


def test_a_read_that_finds_messages_does_not_wait_for_more(kafka_bootstrap, kafka_topic):
    topic = kafka_topic()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(3):
        key, value = encode_json_event(f"edX+Now{i}", "course", event_id=f"n-{i}")
        producer.produce(topic, key=key, value=value)
    producer.flush(10)
    source = KafkaEventSource(bootstrap_servers=kafka_bootstrap, topics=topic)
    # A wait longer than the read's own bound: ending on max_seconds would mean it waited.
    batch = source.read({}, max_messages=100, max_seconds=30.0, wait_seconds=30.0)
    assert len(batch.messages) == 3
    assert batch.stopped_by == "caught up"
