"""Event runs that fail for good keep their events: a run-failure sensor stores them in
``event_dead_letter``, so that ``catalog-assets dead-letters replay`` applies them once the cause
is fixed.

The content-event sensor's cursor moves past a tick's messages when Dagster commits the tick,
before its runs execute; a run that then fails on every retry would be the only record of its
events. The sensor reads the failed run's own run config (one ``update`` for ``content_item``,
a list for ``apply_content_events``): each update becomes a dead letter, the JSON event it
amounts to, at its latest event's Kafka coordinates (so the same failure seen twice is stored
once), with the run's failure reason. A record the run would have read from ``event_payload``
goes into the letter, and out of ``event_payload``.

A run that Dagster will retry (run retries, the ``dagster/will_retry`` tag) is skipped: its
retry carries the same run config, and is watched in turn. Run-status sensors keep their cursor
in the instance, so failures while the daemon was down are picked up when it restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import dagster as dg

from catalog_assets.core.content import utcnow
from catalog_assets.core.content_updates import ContentUpdate
from catalog_assets.core.dead_letters import update_dead_letter
from catalog_assets.core.redaction import redact
from catalog_assets.defs.event_assets import (
    ContentUpdateConfig,
    apply_content_events,
    content_item_job,
)
from catalog_assets.defs.resources import CatalogStoreResource
from catalog_assets.store import CatalogStore

FAILED_RUNS_SENSOR = "failed_event_runs_sensor"
WILL_RETRY_TAG = "dagster/will_retry"
"""Set on a failed run by Dagster when run retries will start it again."""
MAX_REASON = 2000


def updates_of_run(run_config: Mapping[str, Any]) -> list[ContentUpdate]:
    """The content updates an event run was asked to apply (none for an operator's run of a
    ``content_item`` partition without run config: it carried no event)."""
    ops = run_config.get("ops") or {}
    single = ((ops.get("content_item") or {}).get("config") or {}).get("update")
    batch = ((ops.get("apply_content_updates") or {}).get("config") or {}).get("updates") or []
    configs = [single] if single else list(batch)
    return [ContentUpdate.from_config(ContentUpdateConfig(**config)) for config in configs]


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """The run's failure message and each failed step's error, redacted and bounded."""
    parts = [context.failure_event.message or "run failed"]
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:  # past retry and step wrappers
            error = error.cause
        if error is not None:
            parts.append(f"{event.step_key}: {error.cls_name}: {error.message.strip()}")
    return redact(" | ".join(parts))[:MAX_REASON]


def keep_failed_run(
    run_id: str,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any],
    reason: str,
    store: CatalogStore,
    now: datetime,
) -> int:
    """Store the events of a run that failed for good as dead letters; how many were stored
    (0 for a run Dagster retries, or one that carried no event)."""
    if tags.get(WILL_RETRY_TAG) == "true":
        return 0
    updates = updates_of_run(run_config)
    if not updates:
        return 0
    error = f"run {run_id} failed: {reason}"
    letters, refs = [], []
    for update in updates:
        if update.metadata_ref and update.metadata is None:
            record = store.event_payload(update.metadata_ref)
            refs.append(update.metadata_ref)
            # A record no longer kept: the letter fetches the current one when replayed.
            update = replace(update, metadata=record, metadata_ref=None)
        letters.append(update_dead_letter(update, error, now))
    with store.transaction():
        stored = store.add_dead_letters(letters)
        if refs:
            store.delete_event_payloads(refs)
    return stored


def evaluate_failed_run(
    context: dg.RunFailureSensorContext, catalog_store: CatalogStoreResource
) -> dg.SkipReason | None:
    run = context.dagster_run
    with catalog_store.open() as store:
        stored = keep_failed_run(
            run.run_id, run.tags, run.run_config, failure_reason(context), store, utcnow()
        )
    if stored:
        context.log.warning(
            f"run {run.run_id} failed for good: {stored} content updates kept in "
            "event_dead_letter (`catalog-assets dead-letters replay` applies them)"
        )
        return None
    return dg.SkipReason(
        f"run {run.run_id}: nothing new to keep (Dagster retries it, it carried no events, or "
        "they are kept already)"
    )


def build_failed_event_runs_sensor(
    jobs: Sequence[Any] = (content_item_job, apply_content_events),
) -> dg.SensorDefinition:
    """On by default: it only reads failed event runs, and keeps what they would lose."""

    @dg.run_failure_sensor(
        name=FAILED_RUNS_SENSOR,
        monitored_jobs=list(jobs),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=(
            "Event runs that failed for good (after their retries): their content updates go to "
            "event_dead_letter with the failure reason, for `catalog-assets dead-letters replay`."
        ),
    )
    def failed_event_runs_sensor(
        context: dg.RunFailureSensorContext, catalog_store: CatalogStoreResource
    ) -> dg.SkipReason | None:
        return evaluate_failed_run(context, catalog_store)

    return failed_event_runs_sensor
