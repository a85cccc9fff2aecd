"""Dead letters: events that could not be used, kept with their raw bytes, and replayed.

The sensor stores a message here instead of blocking the topic on it; once the cause is fixed
(a schema bundled, a producer corrected, a bug fixed), ``replay`` decodes the stored bytes again
and applies what now decodes through the event lane, marking those replayed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from catalog_assets.core.content_updates import ContentUpdate, apply_updates
from catalog_assets.core.events import (
    BadEvent,
    ContentEvent,
    EventType,
    RawMessage,
    SchemaRegistry,
    decode,
    encode_json_event,
)
from catalog_assets.core.redaction import redact
from catalog_assets.core.sources import ContentSource
from catalog_assets.store import CatalogStore, DeadLetter


def headers_json(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """Headers as JSON text, values base64 so that any bytes survive for a replay."""
    if headers is None:
        return None
    return json.dumps(
        [
            [name, None if value is None else base64.b64encode(value).decode()]
            for name, value in headers
        ]
    )


def headers_from_json(text: str | None) -> list[tuple[str, bytes | None]] | None:
    if text is None:
        return None
    return [(name, None if v is None else base64.b64decode(v)) for name, v in json.loads(text)]


def dead_letter(message: RawMessage, error: str, now: datetime) -> DeadLetter:
    return DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        headers=headers_json(message.headers),
        value=message.value,
        error=error,
        received_at=now,
    )


def update_dead_letter(update: ContentUpdate, error: str, now: datetime) -> DeadLetter:
    """An update that could not be applied, kept as the JSON content event it amounts to (at
    its latest event's Kafka coordinates), so that ``replay`` applies it once the cause is
    fixed: an upsert without a record fetches the current one."""
    key, value = encode_json_event(
        update.content_key,
        update.content_type or "course",
        event_type=EventType.DELETED if update.deleted else EventType.UPSERTED,
        metadata=update.metadata,
        event_id=",".join(update.event_ids) or None,
        time=update.time,
    )
    return DeadLetter(
        topic=update.topic,
        partition=update.partition,
        offset=update.offset,
        key=key,
        headers=None,
        value=value,
        error=redact(error),
        received_at=now,
    )


def collapse(events: Iterable[ContentEvent]) -> list[ContentUpdate]:
    """One update per content key, from its events in time order (then arrival order).

    The latest event decides between a deletion and an upsert. An upsert applies the latest
    full record carried since the last deletion and, when the latest event carries none, also
    fetches the current record: nothing an event said is dropped, and the stale guard keeps
    whichever version is newer. The update keeps the latest event's topic, partition and offset,
    so that its dead letter, should it be rejected, names the message.
    """
    by_key: dict[str, list[tuple[int, ContentEvent]]] = {}
    for arrival, event in enumerate(events):
        by_key.setdefault(event.content_key, []).append((arrival, event))
    updates = []
    for key, arrived in by_key.items():
        # A key's events in time order when each has a time; otherwise in arrival order.
        all_timed = all(event.time is not None for _, event in arrived)
        ordered = [
            event
            for _, event in sorted(
                arrived, key=lambda item: (item[1].time, item[0]) if all_timed else (item[0],)
            )
        ]
        latest = ordered[-1]
        deleted = latest.event_type == EventType.DELETED
        since_delete = []
        for event in ordered:
            since_delete = [] if event.event_type == EventType.DELETED else [*since_delete, event]
        carried = [event.metadata for event in since_delete if event.metadata is not None]
        updates.append(
            ContentUpdate(
                content_key=key,
                content_type=latest.content_type,
                deleted=deleted,
                time=latest.time,
                metadata=None if deleted or not carried else carried[-1],
                event_ids=tuple(dict.fromkeys(event.event_id for event in ordered)),
                also_fetch=not deleted and bool(carried) and latest.metadata is None,
                topic=latest.topic,
                partition=latest.partition,
                offset=latest.offset,
            )
        )
    return updates


@dataclass
class Replayed:
    id: int
    outcome: str  # "applied: <keys>" or "still bad: <error>"


def replay(
    store: CatalogStore,
    source: ContentSource,
    now: datetime,
    ids: Iterable[int] | None = None,
    registry: SchemaRegistry | None = None,
) -> list[Replayed]:
    """Decode stored dead letters again; apply and mark replayed those that now decode.

    Raises ValueError, before replaying anything, when ``ids`` names dead letters that do not
    exist or were already replayed: a mistyped id must not pass as "nothing to do".
    """
    wanted = set(ids) if ids is not None else None
    letters = store.dead_letters(include_replayed=wanted is not None)
    if wanted is not None:
        was_replayed = {d.id: d.replayed_at is not None for d in letters}
        problems = []
        if unknown := sorted(wanted - was_replayed.keys()):
            problems.append(f"no dead letter with id {', '.join(map(str, unknown))}")
        if replayed := sorted(i for i in wanted if was_replayed.get(i)):
            problems.append(f"dead letter {', '.join(map(str, replayed))} already replayed")
        if problems:
            raise ValueError("; ".join(problems))
    report, events, replayable = [], [], []
    for letter in letters:
        if (wanted is not None and letter.id not in wanted) or letter.replayed_at is not None:
            continue
        message = RawMessage(
            topic=letter.topic or "",
            partition=letter.partition if letter.partition is not None else -1,
            offset=letter.offset if letter.offset is not None else -1,
            key=letter.key,
            value=letter.value,
            headers=headers_from_json(letter.headers),
        )
        try:
            decoded = decode(message, registry)
        except BadEvent as error:
            report.append(Replayed(letter.id, f"still bad: {error}"))
            continue
        events.extend(decoded)
        replayable.append((letter.id, [event.content_key for event in decoded]))
    applied = apply_updates(collapse(events), source, store, now)
    outcomes = {a.content_key: a for a in applied}
    done = []
    for letter_id, named in replayable:
        # A run's letter also refreshed the run's courses (those the source has).
        keys = [*named, *(a.content_key for a in applied if a.course_of in named)]
        errors = [outcomes[k].error for k in keys if outcomes[k].outcome == "rejected"]
        if errors:
            report.append(Replayed(letter_id, f"still rejected: {errors[0]}"))
        else:
            done.append(letter_id)
            report.append(Replayed(letter_id, f"applied: {', '.join(keys)}"))
    store.mark_dead_letters_replayed(done, now)
    return sorted(report, key=lambda line: line.id)
