"""Partition status that tells the truth: the full refresh records a ``content_item``
materialization for every live key whose record it wrote (inserted or updated) and for every
live key that has none yet, so that the UI shows each partition the store holds as materialized.

Dagster stores one event per partition. Written one at a time an event costs milliseconds
(about 13 ms on SQLite and PostgreSQL here: 45 minutes for 200,000 keys), so long stretches of
keys are recorded by runs over a partition-key range: one in-process run of `record_content_item`
(the ``content_item`` key, one output for the whole range) whose materializations Dagster writes
in batches (``DAGSTER_EVENT_BATCH_SIZE``), with one planned event for the range rather than one
per key (``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``); both are set only while those
runs execute. Scattered keys (a daily refresh's few updates) are logged one by one. A refresh
that changed nothing, on a store whose keys are all recorded, records nothing.

Tombstoned keys are not recorded: the refresh deletes their partitions.
"""

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg

from catalog_assets.defs.metadata import EVENTS_GROUP
from catalog_assets.defs.partitions import CONTENT_KEYS

CONTENT_ITEM = dg.AssetKey("content_item")
RECORD_JOB = "record_content_items"
MIN_RANGE = 200
"""A stretch of at least this many partitions is recorded by one range run (a run costs about
a second; one event written alone, about 13 ms)."""
GAP_LIMIT = 20
"""Up to this many partitions that need no record, between two that do, are recorded again
rather than splitting the stretch (cheaper than a split: about 0.5 ms each in a range run)."""
MAX_SINGLES = 1_000
"""More scattered keys than this are recorded by one range over all of them instead."""
EVENT_BATCH_SIZE = "1000"
BATCHED_WRITES = {
    "DAGSTER_EVENT_BATCH_SIZE": EVENT_BATCH_SIZE,
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}


@dataclass
class RecordPlan:
    """Partition-key ranges (first, last; inclusive, in partition order) recorded by range
    runs, and keys recorded one by one."""

    ranges: list[tuple[str, str]] = field(default_factory=list)
    singles: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.ranges and not self.singles


def plan_records(order: Sequence[str], wanted: set[str]) -> RecordPlan:
    """How to record ``wanted`` keys, given every partition key in ``order``: stretches of
    wanted keys (allowing gaps up to `GAP_LIMIT`) spanning at least `MIN_RANGE` partitions
    become ranges, the rest singles; too many singles become one range over everything."""
    positions = [i for i, key in enumerate(order) if key in wanted]
    plan = RecordPlan()
    if not positions:
        return plan
    stretches: list[list[int]] = [[positions[0]]]
    for position in positions[1:]:
        if position - stretches[-1][-1] - 1 <= GAP_LIMIT:
            stretches[-1].append(position)
        else:
            stretches.append([position])
    for stretch in stretches:
        if stretch[-1] - stretch[0] + 1 >= MIN_RANGE:
            plan.ranges.append((order[stretch[0]], order[stretch[-1]]))
        else:
            plan.singles.extend(order[i] for i in stretch)
    if len(plan.singles) > MAX_SINGLES:
        return RecordPlan(ranges=[(order[positions[0]], order[positions[-1]])])
    return plan


@dg.asset(
    key=CONTENT_ITEM,
    partitions_def=CONTENT_KEYS,
    group_name=EVENTS_GROUP,
)
def record_content_item(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Record that the store holds these keys' records, as the full refresh just wrote or
    verified them (it runs only inside that refresh, never in the code location)."""
    return dg.MaterializeResult(
        metadata={
            "outcome": "recorded",
            "recorded_by": "full refresh",
            "refresh_run_id": context.run.tags.get("catalog/refresh_run_id", ""),
            "keys_in_run": len(context.partition_keys),
        }
    )


_record_job: dg.JobDefinition | None = None


def _job() -> dg.JobDefinition:
    global _record_job
    if _record_job is None:
        job = dg.define_asset_job(RECORD_JOB, selection=[record_content_item])
        definitions = dg.Definitions(assets=[record_content_item], jobs=[job])
        _record_job = definitions.resolve_job_def(RECORD_JOB)
    return _record_job


@contextmanager
def batched_event_writes() -> Iterator[None]:
    """Dagster's batched event writes, for this process while the block runs (the range runs
    execute in-process, in the refresh's run worker, which runs nothing else meanwhile)."""
    saved = {name: os.environ.get(name) for name in BATCHED_WRITES}
    os.environ.update(BATCHED_WRITES)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def record_partition_status(
    context: dg.AssetExecutionContext, written: Sequence[str], live: Sequence[str]
) -> tuple[int, int]:
    """Record a ``content_item`` materialization for each live key the refresh ``written``
    (inserted or updated) and each live key that has none; (keys recorded, range runs)."""
    instance = context.instance
    live_set = set(live)
    recorded = instance.get_materialized_partitions(CONTENT_ITEM)
    wanted = (set(written) & live_set) | (live_set - recorded)
    plan = plan_records(instance.get_dynamic_partitions(CONTENT_KEYS.name), wanted)
    if plan.empty:
        return 0, 0
    tags = {"catalog/refresh_run_id": context.run.run_id, "catalog/lane": "bulk"}
    count = 0
    with batched_event_writes():
        for first, last in plan.ranges:
            result = _job().execute_in_process(
                instance=instance,
                tags={
                    **tags,
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                },
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            count += len(result.get_asset_materialization_events())
    for key in plan.singles:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=CONTENT_ITEM,
                partition=key,
                metadata={
                    "outcome": "recorded",
                    "recorded_by": "full refresh",
                    "refresh_run_id": context.run.run_id,
                },
            )
        )
    return count + len(plan.singles), len(plan.ranges)
