"""The Kafka content-event sensor: events in, per-content-key runs out.

Each tick reads a bounded batch of messages from the cursor's offsets, decodes them (Open edX
event bus Avro, or JSON), keeps the ones that cannot be used in the ``event_dead_letter`` table,
collapses the rest into one update per content key, and asks for runs: one run per key when
few keys changed, a few batch runs when many did (a run costs seconds to launch; a batch run
applies hundreds of keys in bulk). The cursor (``{topic: {partition: next_offset}}``) moves only
when Dagster commits the tick with its run requests; run keys are derived from the events, so a
tick that is evaluated again asks for the same runs and Dagster launches them once.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
from pydantic import Field

from catalog_assets.content import utcnow
from catalog_assets.dead_letters import collapse, dead_letter
from catalog_assets.event_assets import (
    CONTENT_KEYS,
    apply_content_events,
    content_item_job,
)
from catalog_assets.event_lane import ContentUpdate
from catalog_assets.events import (
    BadEvent,
    ContentEvent,
    RawMessage,
    SchemaRegistry,
    SchemaRegistryUnavailable,
    decode,
)
from catalog_assets.resources import CatalogStoreResource
from catalog_assets.store import DeadLetter
from sensors.kafka_source import KafkaEventSource, Offsets

SENSOR_NAME = "content_events_sensor"


class TickLimits(dg.ConfigurableResource):
    """How much one tick may do: well under Dagster's 60 s sensor timeout."""

    max_messages: int = Field(default=5000, description="KAFKA_MAX_MESSAGES_PER_TICK")
    max_seconds: float = Field(default=20.0, description="KAFKA_MAX_SECONDS_PER_TICK")
    max_runs: int = Field(default=10, description="KAFKA_MAX_RUNS_PER_TICK")
    max_keys_per_batch: int = Field(default=500, description="keys one batch run applies")
    single_key_runs_up_to: int = Field(
        default=5, description="up to this many changed keys, one run per key"
    )


REPLAY_KEY = "#replay"
"""Cursor entry counting replays (``#`` cannot start a Kafka topic name). It is part of every
run key, so runs for replayed events are launched again rather than deduplicated away."""


def parse_cursor(cursor: str | None) -> Offsets:
    """``{topic: {partition: next_offset}}`` from the cursor."""
    raw = json.loads(cursor) if cursor else {}
    return {
        topic: {int(p): int(o) for p, o in parts.items()}
        for topic, parts in raw.items()
        if topic != REPLAY_KEY
    }


def replay_generation(cursor: str | None) -> int:
    return int(json.loads(cursor).get(REPLAY_KEY, 0)) if cursor else 0


def serialize_cursor(offsets: Offsets, generation: int = 0) -> str:
    raw: dict = {
        t: {str(p): o for p, o in sorted(parts.items())} for t, parts in sorted(offsets.items())
    }
    if generation:
        raw[REPLAY_KEY] = generation
    return json.dumps(raw, separators=(",", ":"))


def _run_key(updates: Sequence[ContentUpdate]) -> str:
    digest = hashlib.sha256()
    for update in updates:
        digest.update(update.content_key.encode())
        for event_id in update.event_ids:
            digest.update(b"\0" + event_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:24]


def plan_runs(
    updates: Sequence[ContentUpdate], limits: TickLimits, generation: int = 0
) -> list[dg.RunRequest]:
    """One run per key for a trickle; for a burst, at most ``max_runs`` batch runs."""
    replay = f"r{generation}:" if generation else ""
    if not updates:
        return []
    if len(updates) <= min(limits.single_key_runs_up_to, limits.max_runs):
        return [
            dg.RunRequest(
                run_key=f"{replay}{update.content_key}:{_run_key([update])}",
                job_name=content_item_job.name,
                partition_key=update.content_key,
                run_config={"ops": {"content_item": {"config": {"update": update.to_config()}}}},
                tags={"catalog/events": str(len(update.event_ids))},
            )
            for update in updates
        ]
    runs = min(limits.max_runs, math.ceil(len(updates) / limits.max_keys_per_batch))
    size = math.ceil(len(updates) / runs)
    chunks = [updates[i : i + size] for i in range(0, len(updates), size)]
    return [
        dg.RunRequest(
            run_key=f"{replay}batch:{_run_key(chunk)}",
            job_name=apply_content_events.name,
            run_config={
                "ops": {
                    "apply_content_updates": {
                        "config": {"updates": [update.to_config() for update in chunk]}
                    }
                }
            },
            tags={"catalog/keys": str(len(chunk))},
        )
        for chunk in chunks
    ]


@dataclass
class Decoded:
    events: list[ContentEvent]
    dead_letters: list[DeadLetter]


def decode_batch(
    messages: Sequence[RawMessage], registry: SchemaRegistry | None, now: datetime
) -> Decoded:
    """Decode every message; unusable ones become dead letters (registry outages raise)."""
    decoded = Decoded([], [])
    for message in messages:
        try:
            decoded.events.extend(decode(message, registry))
        except BadEvent as error:
            decoded.dead_letters.append(dead_letter(message, str(error), now))
    return decoded


def evaluate_tick(
    context: dg.SensorEvaluationContext,
    source: KafkaEventSource,
    limits: TickLimits,
    catalog_store: CatalogStoreResource,
) -> dg.SensorResult | dg.SkipReason:
    if not source.configured:
        return dg.SkipReason(
            "Kafka is not configured: set KAFKA_BOOTSTRAP_SERVERS (and KAFKA_CONTENT_TOPICS) "
            "to consume content events; the bulk refresh keeps catalogs current meanwhile."
        )
    from confluent_kafka import KafkaException

    offsets = parse_cursor(context.cursor)
    generation = replay_generation(context.cursor)
    try:
        batch = source.read(offsets, limits.max_messages, limits.max_seconds)
    except KafkaException as error:
        return dg.SkipReason(
            f"Kafka at {source.bootstrap_servers} could not be read ({error}); offsets unchanged"
        )
    note = f"; missing topics: {', '.join(batch.missing_topics)}" if batch.missing_topics else ""
    if not batch.messages:
        if batch.next_offsets != offsets:  # first sight of a partition: remember where it starts
            return dg.SensorResult(cursor=serialize_cursor(batch.next_offsets, generation))
        return dg.SkipReason(f"no new content events on {source.topics}{note}")

    now = utcnow()
    registry = SchemaRegistry(source.schema_registry_url) if source.schema_registry_url else None
    try:
        decoded = decode_batch(batch.messages, registry, now)
    except SchemaRegistryUnavailable as error:
        return dg.SkipReason(f"schema registry unavailable ({error}); offsets unchanged")
    if decoded.dead_letters:
        with catalog_store.open() as store:  # stored before the cursor moves: never lost
            store.add_dead_letters(decoded.dead_letters)
        context.log.warning(
            f"{len(decoded.dead_letters)} unusable messages kept in event_dead_letter, e.g. "
            f"{decoded.dead_letters[0].error}"
        )
    updates = collapse(decoded.events)
    known = set(context.instance.get_dynamic_partitions(CONTENT_KEYS.name))
    new_keys = sorted({u.content_key for u in updates} - known)
    runs = plan_runs(updates, limits, generation)
    context.log.info(
        f"{len(batch.messages)} messages ({batch.stopped_by}), {len(decoded.events)} events, "
        f"{len(updates)} content keys, {len(runs)} runs, {len(new_keys)} new partitions{note}"
    )
    try:
        source.commit_to_group(batch.next_offsets)
    except KafkaException as error:  # lag reporting only; the cursor is what counts
        context.log.warning(f"could not mirror offsets to the consumer group: {error}")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=(
            [CONTENT_KEYS.build_add_request(new_keys)] if new_keys else []
        ),
        cursor=serialize_cursor(batch.next_offsets, generation),
    )


def build_content_events_sensor(enabled: bool, interval_seconds: int = 5) -> dg.SensorDefinition:
    """The sensor; running by default only when Kafka is configured (``enabled``)."""

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=[content_item_job, apply_content_events],
        minimum_interval_seconds=interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED
        ),
        description="Kafka content events → per-content-key runs (batched in bursts).",
    )
    def content_events_sensor(
        context: dg.SensorEvaluationContext,
        content_events: KafkaEventSource,
        tick_limits: TickLimits,
        catalog_store: CatalogStoreResource,
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate_tick(context, content_events, tick_limits, catalog_store)

    return content_events_sensor


def build_event_resources(env: Mapping[str, str]) -> dict[str, dg.ConfigurableResource]:
    """The sensor's resources for the environment ``env`` (read when definitions load)."""
    source_settings = {
        "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
        "topics": "KAFKA_CONTENT_TOPICS",
        "schema_registry_url": "KAFKA_SCHEMA_REGISTRY_URL",
        "consumer_group": "KAFKA_CONSUMER_GROUP",
        "start_from": "KAFKA_START_FROM",
        "security_protocol": "KAFKA_SECURITY_PROTOCOL",
        "sasl_mechanism": "KAFKA_SASL_MECHANISM",
        "sasl_username": "KAFKA_SASL_USERNAME",
        "sasl_password": "KAFKA_SASL_PASSWORD",
    }
    source = KafkaEventSource(
        **{field: dg.EnvVar(name) for field, name in source_settings.items() if env.get(name)}
    )
    limit_settings = {
        "max_messages": "KAFKA_MAX_MESSAGES_PER_TICK",
        "max_seconds": "KAFKA_MAX_SECONDS_PER_TICK",
        "max_runs": "KAFKA_MAX_RUNS_PER_TICK",
    }
    limits = TickLimits(
        **{
            field: (float if field == "max_seconds" else int)(env[name])
            for field, name in limit_settings.items()
            if env.get(name)
        }
    )
    return {"content_events": source, "tick_limits": limits}
