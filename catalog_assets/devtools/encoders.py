"""Open edX event-bus messages as edx-event-bus-kafka sends them, for tests, `publish` and
benchmarks."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import fastavro

from catalog_assets.core.events.messages import CATALOG_INFO_CHANGED, frame_confluent, iso_utc
from catalog_assets.core.events.schemas import bundled_schema


def _iso(value: datetime | str | None) -> str | None:
    return iso_utc(value) if isinstance(value, datetime) else value


def encode_openedx_catalog_info_changed(
    course_run_key: str,
    *,
    name: str = "Demonstration Course",
    event_id: str | None = None,
    time: datetime | None = None,
    schema_id: int = 1,
    start: datetime | str = "2024-01-01T00:00:00+00:00",
    pacing: str = "instructor",
    end: datetime | str | None = None,
    enrollment_start: datetime | str | None = None,
    enrollment_end: datetime | str | None = None,
    hidden: bool = False,
    invitation_only: bool = False,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A COURSE_CATALOG_INFO_CHANGED event as event-bus-kafka sends it: the Confluent-framed Avro
    value (bundled schema) and the CloudEvent headers. The run key is not validated."""
    record = {
        "catalog_info": {
            "course_key": course_run_key,
            "name": name,
            "schedule_data": {
                "start": _iso(start),
                "pacing": pacing,
                "end": _iso(end),
                "enrollment_start": _iso(enrollment_start),
                "enrollment_end": _iso(enrollment_end),
            },
            "hidden": hidden,
            "invitation_only": invitation_only,
        }
    }
    payload = io.BytesIO()
    fastavro.schemaless_writer(payload, bundled_schema(CATALOG_INFO_CHANGED), record)
    headers = [
        ("ce_type", CATALOG_INFO_CHANGED.encode()),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_source", b"openedx/cms/web"),
        ("ce_specversion", b"1.0"),
        ("ce_time", iso_utc(time or datetime.now(UTC)).encode()),
        ("content-type", b"application/avro"),
    ]
    return frame_confluent(schema_id, payload.getvalue()), headers
