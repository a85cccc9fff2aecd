"""The Kafka content-event sensor: events in, per-content-key runs out.

Each tick reads a bounded batch of messages from the cursor's offsets, decodes them (Open edX
event bus Avro, or JSON), keeps the ones that cannot be used in the ``event_dead_letter`` table,
collapses the rest into one update per content key, and asks for runs: one run per key when
few keys changed, a few batch runs when many did (a run costs seconds to launch; a batch run
applies hundreds of keys in bulk). The cursor (``{topic: {partition: next_offset}}``) moves only
when Dagster commits the tick with its run requests; run keys are derived from the events, so a
tick that is evaluated again asks for the same runs and Dagster launches them once.

Dagster sends a tick's run requests in one gRPC message of at most 100 MB; a tick over it fails,
and fails again on every retry, so the stream stalls. Run config therefore stays small whatever
the events hold: a large record waits in the store (``event_payload``) and the run config names
it; records inline add up to at most ``TICK_INLINE_LIMIT``; a batch whose config would exceed
``RUN_CONFIG_LIMIT`` is split; and each event adds at most a content key and an event id of
``MAX_ID_LENGTH`` (longer ones are no real ones: their messages become dead letters).

Longer than most modules, on purpose: a tick is one unit whose bounds (messages, seconds, run
config size, inline records, run count, partitions added) only make sense read together.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import dagster as dg
from pydantic import Field

from catalog_assets.core.content import content_hash, utcnow
from catalog_assets.core.content_updates import ContentUpdate
from catalog_assets.core.dead_letters import collapse, dead_letter
from catalog_assets.core.events import (
    BadEvent,
    ContentEvent,
    RawMessage,
    SchemaRegistry,
    SchemaRegistryUnavailable,
    decode,
)
from catalog_assets.core.redaction import redact
from catalog_assets.defs.event_assets import (
    apply_content_events,
    content_item_job,
)
from catalog_assets.defs.partitions import CONTENT_KEYS
from catalog_assets.defs.resources import CatalogStoreResource
from catalog_assets.settings import Settings
from catalog_assets.store import DeadLetter
from sensors.kafka_source import KafkaEventSource, Offsets

SENSOR_NAME = "content_events_sensor"

INLINE_RECORD_LIMIT = 16 * 1024
"""A record whose JSON is longer goes to the store; the run config carries its ref."""
TICK_INLINE_LIMIT = 4 * 1024 * 1024
"""The JSON of all records one tick carries inline; records past it go by ref too."""
RUN_CONFIG_LIMIT = 2_000_000
"""The serialized run config one run request may carry; a larger batch is split (a batch of
1,250 typical records, about 0.9 KB each in run config, fits)."""
EVENT_IDS_LIMIT = 16 * 1024
"""The JSON of one update's event ids in run config: the latest that fit (run keys use all)."""
MAX_ID_LENGTH = 1024
"""Content keys and event ids are far shorter; a message with a longer one is a dead letter."""


IDLE_WAIT_SECONDS = 3.5
"""How long a tick that finds no message keeps polling for one. The daemon evaluates sensors
at most every 5 seconds (its loop), so without waiting an event sits up to 5 s before a tick
reads it; a tick that waits 3.5 s reads it at once unless it arrives in the 1.5 s between ticks,
and still ends before the next loop (a longer tick would make the daemon skip a loop)."""


class TickLimits(dg.ConfigurableResource):
    """How much one tick may do: well under Dagster's 60 s sensor timeout."""

    max_messages: int = Field(default=5000, description="KAFKA_MAX_MESSAGES_PER_TICK")
    max_seconds: float = Field(default=20.0, description="KAFKA_MAX_SECONDS_PER_TICK")
    max_runs: int = Field(default=10, description="KAFKA_MAX_RUNS_PER_TICK")
    max_keys_per_batch: int = Field(
        default=1250,
        description="keys one batch run applies: a full tick (5,000 keys) makes 4 runs, as many "
        "as the run queue runs at once; a run costs seconds to start, so fewer, larger runs",
    )
    single_key_runs_up_to: int = Field(
        default=5, description="up to this many changed keys, one run per key"
    )
    wait_seconds: float = Field(
        default=0.0,
        description="how long a tick that finds nothing waits for a first message (the "
        "code location sets IDLE_WAIT_SECONDS)",
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


def by_reference(
    updates: Sequence[ContentUpdate],
) -> tuple[list[ContentUpdate], dict[str, tuple[str, dict]]]:
    """The updates with large records replaced by refs, and the records to keep under them.

    A record goes by ref when its JSON is over ``INLINE_RECORD_LIMIT``, or when the records
    inline so far would pass ``TICK_INLINE_LIMIT`` with it.
    """
    kept: dict[str, tuple[str, dict]] = {}
    bounded, inline = [], 0
    for update in updates:
        if update.metadata is not None:
            size = len(json.dumps(update.metadata))  # as ContentUpdate.to_config writes it
            if size > INLINE_RECORD_LIMIT or inline + size > TICK_INLINE_LIMIT:
                ref = content_hash(update.metadata)
                kept[ref] = (update.content_key, update.metadata)
                update = replace(update, metadata=None, metadata_ref=ref)
            else:
                inline += size
        bounded.append(update)
    return bounded, kept


def update_config(update: ContentUpdate) -> dict[str, Any]:
    """``update.to_config()`` with only the latest event ids that fit in ``EVENT_IDS_LIMIT``
    (thousands of events for one key would otherwise make one update too large)."""
    config = update.to_config()
    ids, size = [], 2
    for event_id in reversed(config["event_ids"]):
        size += len(json.dumps(event_id)) + 2
        if size > EVENT_IDS_LIMIT:
            break
        ids.append(event_id)
    config["event_ids"] = ids[::-1]
    return config


def _split_by_size(
    chunk: Sequence[ContentUpdate], configs: Mapping[str, dict[str, Any]]
) -> list[list[ContentUpdate]]:
    """``chunk`` in order, cut wherever its run config would pass ``RUN_CONFIG_LIMIT``."""
    budget = RUN_CONFIG_LIMIT - 1024  # room for the run config around the updates
    parts: list[list[ContentUpdate]] = [[]]
    used = 0
    for update in chunk:
        size = len(json.dumps(configs[update.content_key])) + 2
        if parts[-1] and used + size > budget:
            parts.append([])
            used = 0
        parts[-1].append(update)
        used += size
    return parts


def plan_runs(
    updates: Sequence[ContentUpdate], limits: TickLimits, generation: int = 0
) -> list[dg.RunRequest]:
    """One run per key for a trickle; for a burst, at most ``max_runs`` batch runs (more only
    when their run config would pass ``RUN_CONFIG_LIMIT``).

    Large records must already be refs (``by_reference``); run keys use every event id.
    """
    replay = f"r{generation}:" if generation else ""
    if not updates:
        return []
    configs = {update.content_key: update_config(update) for update in updates}
    if len(updates) <= min(limits.single_key_runs_up_to, limits.max_runs):
        return [
            dg.RunRequest(
                run_key=f"{replay}{update.content_key}:{_run_key([update])}",
                job_name=content_item_job.name,
                partition_key=update.content_key,
                run_config={
                    "ops": {"content_item": {"config": {"update": configs[update.content_key]}}}
                },
                tags={"catalog/events": str(len(update.event_ids))},
            )
            for update in updates
        ]
    runs = min(limits.max_runs, math.ceil(len(updates) / limits.max_keys_per_batch))
    size = math.ceil(len(updates) / runs)
    chunks = [
        part
        for i in range(0, len(updates), size)
        for part in _split_by_size(updates[i : i + size], configs)
    ]
    return [
        dg.RunRequest(
            run_key=f"{replay}batch:{_run_key(chunk)}",
            job_name=apply_content_events.name,
            run_config={
                "ops": {
                    "apply_content_updates": {
                        "config": {"updates": [configs[update.content_key] for update in chunk]}
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
            events = decode(message, registry)
        except BadEvent as error:
            decoded.dead_letters.append(dead_letter(message, str(error), now))
            continue
        too_long = _too_long(events)
        if too_long:
            decoded.dead_letters.append(dead_letter(message, too_long, now))
        else:
            decoded.events.extend(events)
    return decoded


def _too_long(events: Sequence[ContentEvent]) -> str | None:
    """Why the events cannot go into run config, or None: every event adds its content key and
    event id there (and the key is a partition key too)."""
    for event in events:
        for what, value in (("content key", event.content_key), ("event id", event.event_id)):
            if len(value) > MAX_ID_LENGTH:
                return (
                    f"{what} of {len(value)} characters (more than {MAX_ID_LENGTH}): "
                    f"{value[:80]!r}... (topic {event.topic!r}, partition {event.partition}, "
                    f"offset {event.offset})"
                )
    return None


KEYS_ASKED_ONE_BY_ONE = 50
"""Up to this many keys, ask the instance about each, and let the tick's partitions request add
the new ones (the daemon checks each key of it again, one query each); more: list every
partition once (as many as content keys, 200,000 and more in production) and add the new ones
in bulk from the tick."""


def _new_partitions(instance: dg.DagsterInstance, keys: set[str]) -> list[str]:
    """The keys that are not yet ``content_keys`` partitions."""
    if len(keys) <= KEYS_ASKED_ONE_BY_ONE:
        return sorted(k for k in keys if not instance.has_dynamic_partition(CONTENT_KEYS.name, k))
    return sorted(keys - set(instance.get_dynamic_partitions(CONTENT_KEYS.name)))


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
        batch = source.read(offsets, limits.max_messages, limits.max_seconds, limits.wait_seconds)
    except KafkaException as error:
        return dg.SkipReason(
            redact(
                f"Kafka at {source.bootstrap_servers} could not be read ({error}); "
                "offsets unchanged"
            )
        )
    note = f"; missing topics: {', '.join(batch.missing_topics)}" if batch.missing_topics else ""
    if not batch.messages:
        if batch.next_offsets != offsets:  # first sight of a partition: remember where it starts
            return dg.SensorResult(cursor=serialize_cursor(batch.next_offsets, generation))
        return dg.SkipReason(f"no new content events on {', '.join(source.topic_list())}{note}")

    now = utcnow()
    try:
        decoded = decode_batch(batch.messages, source.registry(), now)
    except SchemaRegistryUnavailable as error:  # refused credentials too: a setting to fix
        return dg.SkipReason(redact(f"schema registry unavailable ({error}); offsets unchanged"))
    updates, kept = by_reference(collapse(decoded.events))
    if decoded.dead_letters or kept:
        with catalog_store.open() as store:  # stored before the cursor moves: never lost
            stored = store.add_dead_letters(decoded.dead_letters)  # once, however many ticks
            store.save_event_payloads(kept, now)
        if decoded.dead_letters:
            context.log.warning(
                redact(
                    f"{len(decoded.dead_letters)} unusable messages kept in event_dead_letter "
                    f"({stored} not kept before), e.g. {decoded.dead_letters[0].error}"
                )
            )
    new_keys = _new_partitions(context.instance, {u.content_key for u in updates})
    requested = new_keys
    if len(new_keys) > KEYS_ASKED_ONE_BY_ONE:
        # The daemon checks each key of a partitions request with its own query (minutes for a
        # burst of thousands); added here in one statement instead, before any run names them.
        context.instance.add_dynamic_partitions(CONTENT_KEYS.name, new_keys)
        requested = []
    runs = plan_runs(updates, limits, generation)
    context.log.info(
        f"{len(batch.messages)} messages ({batch.stopped_by}), {len(decoded.events)} events, "
        f"{len(updates)} content keys ({len(kept)} records kept in event_payload), "
        f"{len(runs)} runs, {len(new_keys)} new partitions{note}"
    )
    try:
        source.commit_to_group(batch.next_offsets)
    except KafkaException as error:  # lag reporting only; the cursor is what counts
        context.log.warning(redact(f"could not mirror offsets to the consumer group: {error}"))
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=(
            [CONTENT_KEYS.build_add_request(requested)] if requested else []
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
        # Chosen when definitions load, so the UI says why the sensor is off without a tick.
        description=(
            "Kafka content events → per-content-key runs (batched in bursts). "
            + (
                "On by default: KAFKA_BOOTSTRAP_SERVERS is set."
                if enabled
                else "Off by default: KAFKA_BOOTSTRAP_SERVERS is not set, so there is no Kafka "
                "to read (starting it would only skip every tick). Set it, or start a local "
                "broker with `catalog-assets broker` and export what it prints, then reload "
                "the code location."
            )
        ),
    )
    def content_events_sensor(
        context: dg.SensorEvaluationContext,
        content_events: KafkaEventSource,
        tick_limits: TickLimits,
        catalog_store: CatalogStoreResource,
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate_tick(context, content_events, tick_limits, catalog_store)

    return content_events_sensor


SOURCE_SETTINGS = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "topics": "KAFKA_CONTENT_TOPICS",
    "topic_prefix": "KAFKA_TOPIC_PREFIX",
    "schema_registry_url": "KAFKA_SCHEMA_REGISTRY_URL",
    "schema_registry_api_key": "KAFKA_SCHEMA_REGISTRY_API_KEY",
    "schema_registry_api_secret": "KAFKA_SCHEMA_REGISTRY_API_SECRET",
    "schema_registry_ca_location": "KAFKA_SCHEMA_REGISTRY_CA_LOCATION",
    "consumer_group": "KAFKA_CONSUMER_GROUP",
    "start_from": "KAFKA_START_FROM",
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
}
"""``KafkaEventSource`` field -> environment variable (see ``catalog_assets.settings``)."""


def build_event_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The sensor's resources for the environment (read when definitions load)."""
    source = KafkaEventSource(
        **{
            field: dg.EnvVar(name)
            for field, name in SOURCE_SETTINGS.items()
            if settings.is_set(name)
        }
    )
    limits = TickLimits(
        max_messages=settings.max_messages_per_tick,
        max_seconds=settings.max_seconds_per_tick,
        max_runs=settings.max_runs_per_tick,
        wait_seconds=min(IDLE_WAIT_SECONDS, settings.max_seconds_per_tick),
    )
    return {"content_events": source, "tick_limits": limits}
