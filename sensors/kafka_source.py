"""Reading content events from Kafka, as a Dagster resource.

Offsets are not kept in a consumer group: the sensor's cursor holds ``{topic: {partition:
next_offset}}``, the consumer assigns partitions explicitly and seeks to the cursor, so offsets
move only when Dagster commits the tick with its run requests. The same offsets are also
committed to a consumer group afterwards, so that standard lag tools show how far behind the
sensor is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg
from pydantic import Field

from catalog_assets.core.events import RawMessage, RegistrySettings, SchemaRegistry, schema_registry
from catalog_assets.core.redaction import remember_secret
from catalog_assets.settings import DEFAULT_TOPICS, KafkaSettings, content_topics

Offsets = dict[str, dict[int, int]]


@dataclass
class ReadBatch:
    """Messages read in one tick and the offsets to resume from (every assigned partition)."""

    messages: list[RawMessage] = field(default_factory=list)
    next_offsets: Offsets = field(default_factory=dict)
    missing_topics: list[str] = field(default_factory=list)
    stopped_by: str = "caught up"


class KafkaEventSource(dg.ConfigurableResource):
    """A bounded read of the content-event topics from explicit offsets."""

    bootstrap_servers: str = Field(default="", description="KAFKA_BOOTSTRAP_SERVERS")
    topics: str = Field(default=DEFAULT_TOPICS, description="KAFKA_CONTENT_TOPICS, comma-separated")
    topic_prefix: str = Field(default="", description="KAFKA_TOPIC_PREFIX: topics are PREFIX-name")
    schema_registry_url: str = Field(default="", description="KAFKA_SCHEMA_REGISTRY_URL")
    schema_registry_api_key: str = Field(default="", description="KAFKA_SCHEMA_REGISTRY_API_KEY")
    schema_registry_api_secret: str = Field(
        default="", description="KAFKA_SCHEMA_REGISTRY_API_SECRET"
    )
    schema_registry_ca_location: str = Field(
        default="", description="KAFKA_SCHEMA_REGISTRY_CA_LOCATION"
    )
    consumer_group: str = Field(default="catalog-assets", description="KAFKA_CONSUMER_GROUP")
    start_from: str = Field(default="earliest", description="earliest or latest, on first start")
    security_protocol: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    timeout_seconds: float = 10.0
    idle_polls: int = Field(default=3, description="empty polls in a row that end a read")
    poll_seconds: float = Field(default=0.1, description="how long one poll waits for messages")

    @property
    def configured(self) -> bool:
        return bool(self.bootstrap_servers)

    def topic_list(self) -> list[str]:
        """The topics read: ``topics``, each ``PREFIX-name`` when ``topic_prefix`` is set."""
        return content_topics(self.topics, self.topic_prefix)

    def registry(self) -> SchemaRegistry | None:
        """The process's registry client (one per process and settings), or None when no
        registry is configured (the bundled schemas are used)."""
        if not self.schema_registry_url:
            return None
        return schema_registry(
            RegistrySettings(
                self.schema_registry_url,
                self.schema_registry_api_key,
                self.schema_registry_api_secret,
                self.schema_registry_ca_location,
            )
        )

    def client_config(self) -> dict[str, str]:
        remember_secret(self.sasl_password)
        return KafkaSettings(
            self.bootstrap_servers,
            self.security_protocol,
            self.sasl_mechanism,
            self.sasl_username,
            self.sasl_password,
        ).client_config()

    def _consumer(self):
        from confluent_kafka import Consumer

        return Consumer(
            {
                **self.client_config(),
                "group.id": self.consumer_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": self.start_from,
                "socket.timeout.ms": int(self.timeout_seconds * 1000),
                "fetch.wait.max.ms": 100,
            }
        )

    def read(
        self, offsets: Offsets, max_messages: int, max_seconds: float, wait_seconds: float = 0.0
    ) -> ReadBatch:
        """Read from ``offsets`` (new partitions: ``start_from``) until caught up or a limit.

        When nothing has arrived, keep polling up to ``wait_seconds`` (within ``max_seconds``)
        for the first message: a message published meanwhile is read at once, instead of at
        the next tick. Once messages arrive, the read ends after ``idle_polls`` empty polls.

        Raises ``confluent_kafka.KafkaException`` when the cluster cannot be reached.
        """
        from confluent_kafka import KafkaException, TopicPartition

        started = time.monotonic()
        deadline = started + max_seconds
        wait_until = started + min(wait_seconds, max_seconds)
        # Start from every known offset: a topic that does not answer this tick keeps its own.
        batch = ReadBatch(next_offsets={t: dict(parts) for t, parts in offsets.items()})
        consumer = self._consumer()
        try:
            metadata = consumer.list_topics(timeout=self.timeout_seconds)
            assignment = []
            for topic in self.topic_list():
                described = metadata.topics.get(topic)
                if described is None or described.error is not None:
                    batch.missing_topics.append(topic)
                    continue
                for partition in sorted(described.partitions):
                    start = offsets.get(topic, {}).get(partition)
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=self.timeout_seconds
                    )
                    if start is None:  # a new partition (or first start)
                        start = low if self.start_from == "earliest" else high
                    start = max(start, low)  # retention may have removed older messages
                    batch.next_offsets.setdefault(topic, {})[partition] = start
                    assignment.append(TopicPartition(topic, partition, start))
            if not assignment:
                return batch
            consumer.assign(assignment)
            # Read until nothing more arrives. High watermarks are only a hint: some brokers
            # (Tansu among them) report them behind the last readable offset.
            idle_polls = 0
            while idle_polls < self.idle_polls or (
                not batch.messages and time.monotonic() < wait_until
            ):
                if len(batch.messages) >= max_messages:
                    batch.stopped_by = f"max_messages ({max_messages})"
                    break
                if time.monotonic() >= deadline:
                    batch.stopped_by = f"max_seconds ({max_seconds:g})"
                    break
                wanted = min(500, max_messages - len(batch.messages))
                received = consumer.consume(num_messages=wanted, timeout=self.poll_seconds)
                idle_polls = 0 if received else idle_polls + 1
                for message in received:
                    if message.error() is not None:
                        raise KafkaException(message.error())
                    topic, partition = message.topic(), message.partition()
                    batch.messages.append(RawMessage.from_kafka(message))
                    batch.next_offsets[topic][partition] = message.offset() + 1
            return batch
        finally:
            consumer.close()

    def commit_to_group(self, offsets: Offsets) -> None:
        """Mirror the cursor into the consumer group, for lag tools. Best effort."""
        from confluent_kafka import TopicPartition

        partitions = [
            TopicPartition(topic, partition, offset)
            for topic, by_partition in offsets.items()
            for partition, offset in by_partition.items()
        ]
        if not partitions:
            return
        consumer = self._consumer()
        try:
            consumer.commit(offsets=partitions, asynchronous=False)
        finally:
            consumer.close()
