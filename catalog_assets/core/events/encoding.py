"""JSON content events: how a rejected update is kept as a dead letter, and what `publish`
sends to JSON topics."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from catalog_assets.core.events.messages import (
    EventType,
    iso_utc,
)


def encode_json_event(
    content_key: str,
    content_type: str,
    *,
    event_type: EventType = EventType.UPSERTED,
    metadata: dict | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A JSON content event: (Kafka key, value). Nothing is validated."""
    body: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "time": iso_utc(time or datetime.now(UTC)),
        "content_key": content_key,
        "content_type": content_type,
    }
    if metadata is not None:
        body["metadata"] = metadata
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return content_key.encode("utf-8"), value
