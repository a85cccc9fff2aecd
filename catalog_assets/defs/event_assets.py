"""The event lane's assets: one partition per content key, applied one key or a batch per run.

A trickle of events gets one run per key of the partitioned ``content_item`` asset. A burst is
batched: the ``apply_content_events`` job applies many keys in bulk and still records a
materialization of ``content_item`` for each key's partition, so every key's history is in the
UI either way. An operator can pick any content key in the UI and materialize it; without run
config the record is fetched from the content source.
"""

import logging
from dataclasses import replace

import dagster as dg
from pydantic import Field

from catalog_assets.core.content import utcnow
from catalog_assets.core.content_updates import AppliedUpdate, ContentUpdate, apply_updates
from catalog_assets.core.dead_letters import update_dead_letter
from catalog_assets.defs.metadata import (
    EVENTS_GROUP,
    OWNERS,
    describe,
    lane_tags,
    table_metadata,
)
from catalog_assets.defs.partitions import CONTENT_KEYS
from catalog_assets.defs.resources import STORE_POOL, CatalogStoreResource, ContentSourceResource
from catalog_assets.store import CatalogStore

EVENT_GROUP = EVENTS_GROUP


class ContentUpdateConfig(dg.Config):
    """One content key's update, as the sensor hands it to a run."""

    content_key: str
    content_type: str = ""
    deleted: bool = False
    time: str = Field(default="", description="ISO 8601 time of the latest event")
    metadata_json: str = Field(default="", description="The full record; empty: fetch it")
    metadata_ref: str = Field(
        default="", description="The record is too large for run config: its ref in the store"
    )
    event_ids: list[str] = Field(default_factory=list)
    also_fetch: bool = Field(default=False, description="Also fetch after the given record")
    topic: str = Field(default="", description="Kafka coordinates of the latest event")
    partition: int | None = None
    offset: int | None = None


class ContentItemConfig(dg.Config):
    update: ContentUpdateConfig | None = Field(
        default=None, description="From the sensor; none: fetch the record from the source"
    )


class ContentBatchConfig(dg.Config):
    updates: list[ContentUpdateConfig]


def _metadata(result: AppliedUpdate) -> dict:
    return {
        "outcome": str(result.outcome),
        "catalog_queries": len(result.queries),
        "associations_added": result.added,
        "associations_removed": result.removed,
        "event_ids": list(result.event_ids),
        **({"error": result.error} if result.error else {}),
        **({"course_of_run": result.course_of} if result.course_of else {}),
    }


def _record_courses(
    context: dg.OpExecutionContext | dg.AssetExecutionContext, applied: list[AppliedUpdate]
) -> None:
    """A ``content_item`` materialization for each course a fetched run refreshed (the run's
    own key is this run's partition or batch entry), its partition added first when new."""
    courses = [r for r in applied if r.course_of and r.outcome != "rejected"]
    new = [
        r.content_key
        for r in courses
        if not context.instance.has_dynamic_partition(CONTENT_KEYS.name, r.content_key)
    ]
    if new:
        context.instance.add_dynamic_partitions(CONTENT_KEYS.name, new)
    for result in courses:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=content_item.key, partition=result.content_key, metadata=_metadata(result)
            )
        )


def _resolve(update: ContentUpdate, store: CatalogStore, log: logging.Logger) -> ContentUpdate:
    """The update with the record the sensor kept in the store for it (too large for run config).

    A record no longer kept (pruned) is fetched from the source instead: the run goes on.
    """
    if update.metadata_ref is None or update.metadata is not None:
        return update
    record = store.event_payload(update.metadata_ref)
    if record is None:
        log.warning(
            f"{update.content_key}: the event's record {update.metadata_ref} is no longer kept "
            "in event_payload; fetching the current record from the content source instead"
        )
        return replace(update, also_fetch=True)
    return replace(update, metadata=record)


def _apply(
    updates: list[ContentUpdate],
    source: ContentSourceResource,
    catalog_store: CatalogStoreResource,
    log: logging.Logger,
) -> list[AppliedUpdate]:
    """Apply, and keep rejected updates as dead letters so that nothing is lost.

    A rejected update is stored as the JSON content event it amounts to (at its latest event's
    Kafka coordinates), so that ``catalog-assets dead-letters replay`` can apply it once its
    cause is fixed. Records kept for the run in ``event_payload`` go once they are applied.
    """
    now = utcnow()
    with catalog_store.open() as store:
        updates = [_resolve(update, store, log) for update in updates]
        applied = apply_updates(updates, source, store, now)
        by_key = {update.content_key: update for update in updates}
        rejected = []
        for result in applied:
            if result.outcome != "rejected":
                continue
            # A run's course that could not be refreshed: kept as an upsert that fetches it.
            update = by_key.get(result.content_key) or ContentUpdate(
                result.content_key, "course", event_ids=result.event_ids
            )
            rejected.append(update_dead_letter(update, f"update rejected: {result.error}", now))
        if rejected:
            store.add_dead_letters(rejected)
        done = [
            by_key[result.content_key].metadata_ref
            for result in applied
            if result.outcome != "rejected"
            and result.content_key in by_key  # not a run's course, which carried no record
            and by_key[result.content_key].metadata_ref
        ]
        if done:
            store.delete_event_payloads(done)
    return applied


# Transient failures (a store lock, a source timeout) are retried: the sensor's cursor has
# already moved past these events, and the full refresh is the only other repair.
EVENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


@dg.asset(
    partitions_def=CONTENT_KEYS,
    group_name=EVENT_GROUP,
    retry_policy=EVENT_RETRIES,
    description=describe(
        EVENT_GROUP,
        "One content key per partition: its record upserted or tombstoned from a Kafka "
        "content event (or fetched from the content source when materialized from the UI), "
        "and its catalog memberships re-evaluated (polars) in the same transaction. Updates "
        "that cannot be applied are kept as dead letters.",
        ["content_metadata", "catalog_query_content", "event_dead_letter", "event_payload"],
    ),
    owners=OWNERS,
    # The store is added per environment when definitions load (``metadata.for_environment``).
    kinds={"kafka", "polars"},
    tags=lane_tags("events"),
    pool=STORE_POOL,
    metadata=table_metadata(
        "content_metadata", "catalog_query_content", "event_dead_letter", "event_payload"
    ),
)
def content_item(
    context: dg.AssetExecutionContext,
    config: ContentItemConfig,
    content_source: ContentSourceResource,
    catalog_store: CatalogStoreResource,
) -> dg.MaterializeResult:
    """One content key: its record upserted or tombstoned, and its catalog memberships."""
    key = context.partition_key
    if config.update is None:
        update = ContentUpdate(key)
    else:
        update = ContentUpdate.from_config(config.update)
        if update.content_key != key:
            raise dg.Failure(f"run config is for {update.content_key!r}, partition is {key!r}")
    applied = _apply([update], content_source, catalog_store, context.log)
    (result,) = [r for r in applied if r.content_key == key]
    if result.outcome == "rejected":
        context.log.error(f"{key}: {result.error} (kept in event_dead_letter)")
    _record_courses(context, applied)
    return dg.MaterializeResult(metadata=_metadata(result))


@dg.op(out=dg.Out(dg.Nothing), retry_policy=EVENT_RETRIES, pool=STORE_POOL)
def apply_content_updates(
    context: dg.OpExecutionContext,
    config: ContentBatchConfig,
    content_source: ContentSourceResource,
    catalog_store: CatalogStoreResource,
):
    """Apply a batch of content updates in bulk; record each key's partition materialization."""
    updates = [ContentUpdate.from_config(update) for update in config.updates]
    applied = _apply(updates, content_source, catalog_store, context.log)
    outcomes: dict[str, int] = {}
    _record_courses(context, applied)
    for result in applied:
        outcomes[str(result.outcome)] = outcomes.get(str(result.outcome), 0) + 1
        if result.course_of:
            continue  # recorded above
        yield dg.AssetMaterialization(
            asset_key=content_item.key, partition=result.content_key, metadata=_metadata(result)
        )
    context.log.info(f"applied {len(applied)} content updates: {outcomes}")


@dg.job(
    description="Apply a burst of content events in bulk (the sensor batches them here).",
    tags={"catalog/lane": "events"},
)
def apply_content_events():
    apply_content_updates()


content_item_job = dg.define_asset_job(
    "apply_content_item",
    selection=[content_item],
    description="Apply one content key's events (the sensor's trickle path).",
    tags={"catalog/lane": "events"},
)
