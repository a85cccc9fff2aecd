"""The catalog query sensor (the query lane): a catalog edited by an enterprise admin reaches the
store within a minute or so, not at the next daily refresh.

Each tick reads the catalog query listing through ``catalog_query_source`` (the JSON file or
enterprise-catalog) and the store's queries, catalogs and applied filter hashes, and compares
them (``core.refresh.queries.compare_catalog_queries``, which also applies the full refresh's
removal guardrail). When anything is new, changed or removed it asks for ONE run of
``catalog_query_changes``: ``catalog_queries`` stores the listing and
``catalog_content_associations`` evaluates only the queries whose filter is new or edited
(``only_changed_queries``) against all stored content; when no filter needs evaluating (queries
removed, titles or enterprise catalogs edited) the run is ``catalog_queries`` alone.

The cursor is small: the digest of the change set last acted on and how many runs the sensor
asked for. The run key is both (``run_key``), so a tick evaluated again (its cursor not
committed) asks for the same run and Dagster launches it once, while an admin who edits a
filter back and forth still gets a run each time (the count moved). Once the store is in step
with the listing, the digest is cleared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import dagster as dg

from catalog_assets.core.redaction import redact
from catalog_assets.core.refresh import GuardrailTripped
from catalog_assets.core.refresh.queries import QueryChanges, compare_catalog_queries
from catalog_assets.defs.bulk_assets import catalog_content_associations, catalog_queries
from catalog_assets.defs.jobs import QUERY_LANE_CONFIG, catalog_query_changes
from catalog_assets.defs.resources import CatalogQuerySource, CatalogStoreResource
from catalog_assets.store import StoreSchemaMismatch, StoreUnavailable, open_store

SENSOR_NAME = "catalog_queries_sensor"
LANE_TAG = "catalog/lane"
WRITER_LANES = ("bulk", "queries")
"""Runs of these lanes (``full_refresh``, ``catalog_query_changes``) write the catalog queries:
a tick during one skips (a full refresh applies listing edits itself; the sensor looks again
once the run is over)."""
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class QueryCursor:
    """``digest``: the change set the last run was asked for ("" once the store was seen in
    step); ``runs``: how many runs the sensor has asked for (part of every run key)."""

    digest: str = ""
    runs: int = 0


def parse_cursor(cursor: str | None) -> QueryCursor:
    if not cursor:
        return QueryCursor()
    raw = json.loads(cursor)
    return QueryCursor(str(raw.get("digest", "")), int(raw.get("runs", 0)))


def serialize_cursor(cursor: QueryCursor) -> str:
    return json.dumps({"digest": cursor.digest, "runs": cursor.runs}, separators=(",", ":"))


def run_key(digest: str, sequence: int) -> str:
    """The run key of the ``sequence``-th run, for the change set ``digest``."""
    return f"catalog-queries:{sequence}:{digest[:32]}"


def plan_run(changes: QueryChanges, cursor: QueryCursor) -> tuple[dg.RunRequest, QueryCursor]:
    """The one run for ``changes`` and the cursor that records it."""
    sequence = cursor.runs + 1
    steps = [catalog_queries, *([catalog_content_associations] if changes.evaluate else [])]
    request = dg.RunRequest(
        run_key=run_key(changes.digest, sequence),
        job_name=catalog_query_changes.name,
        asset_selection=[step.key for step in steps],
        # The checks each step reports itself (not the job's excluded store re-read).
        asset_check_keys=[key for step in steps for key in step.check_keys],
        run_config=QUERY_LANE_CONFIG if changes.evaluate else {},
        tags={
            "catalog/queries_new": str(len(changes.new)),
            "catalog/queries_changed": str(len(changes.changed)),
            "catalog/queries_removed": str(len(changes.removed)),
            "catalog/queries_evaluated": str(len(changes.evaluate)),
            "catalog/catalogs_changed": str(len(changes.catalogs)),
        },
    )
    return request, QueryCursor(changes.digest, sequence)


def writer_run(instance: dg.DagsterInstance, any_run: bool) -> dg.DagsterRun | None:
    """A run in progress that writes the catalog queries (or, with ``any_run``, any run: a
    DuckDB file admits one process, so the sensor must not wait on a run's lock)."""
    tags = None if any_run else {LANE_TAG: list(WRITER_LANES)}
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS, tags=tags), limit=1)
    return runs[0] if runs else None


def evaluate_tick(
    context: dg.SensorEvaluationContext,
    source: CatalogQuerySource,
    catalog_store: CatalogStoreResource,
    max_removal_share: float = 0.2,
) -> dg.SensorResult | dg.SkipReason:
    cursor = parse_cursor(context.cursor)
    busy = writer_run(context.instance, any_run=catalog_store.url.startswith("duckdb:"))
    if busy is not None:
        return dg.SkipReason(
            f"run {busy.run_id} ({busy.job_name}, {busy.status.value}) is writing the catalog "
            "store; the listing is compared again once it is over"
        )
    try:
        loaded = source.load()
    except Exception as error:  # any failure of the source (file, HTTP, parsing): a skip
        return dg.SkipReason(
            redact(
                f"the catalog query source could not be read ({type(error).__name__}: {error}); "
                "nothing launched, the store keeps its queries"
            )
        )
    try:
        with open_store(catalog_store.url) as store:
            store.check_schema()  # a reader: no DDL from a sensor
            if not store.catalog_queries():
                return dg.SkipReason(
                    "the store holds no catalog queries yet: the first full refresh "
                    "(full_refresh) loads them with the content; this sensor applies edits "
                    "after it"
                )
            changes = compare_catalog_queries(loaded, store, max_removal_share=max_removal_share)
    except (StoreUnavailable, StoreSchemaMismatch) as error:
        return dg.SkipReason(redact(f"the catalog store cannot be read: {error}"))
    except GuardrailTripped as tripped:
        return dg.SkipReason(
            f"{tripped} Nothing launched: run full_refresh with that run config, or fix the "
            "listing."
        )
    except ValueError as error:  # an entry without a usable uuid, say: the listing is wrong
        return dg.SkipReason(redact(f"the catalog query listing is malformed: {error}"))
    if changes.empty:
        result_cursor = serialize_cursor(QueryCursor("", cursor.runs))
        return dg.SensorResult(
            skip_reason="the store is in step with the catalog query listing",
            cursor=result_cursor if cursor.digest else None,
        )
    if changes.digest == cursor.digest:
        return dg.SkipReason(
            f"{changes.summary()}: already asked for (run key "
            f"{run_key(changes.digest, cursor.runs)}); waiting for that run to apply them (a "
            "failed run is not launched again for the same change set: re-execute it, or let "
            "the next full refresh apply the listing)"
        )
    request, next_cursor = plan_run(changes, cursor)
    context.log.info(f"{changes.summary()}: asking for run {request.run_key}")
    return dg.SensorResult(run_requests=[request], cursor=serialize_cursor(next_cursor))


def build_catalog_queries_sensor(interval_seconds: int = 30) -> dg.SensorDefinition:
    """The sensor, running by default: the listing is always configured (the bundled file at
    least), and an admin's edit should not wait for the daily refresh."""

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=[catalog_query_changes],
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Catalog query listing edits → one `catalog_query_changes` run that stores the "
            f"listing and re-evaluates only the new or edited filters, checked every "
            f"{interval_seconds} s (CATALOG_QUERIES_POLL_SECONDS). On by default: the listing "
            "(CATALOG_QUERIES_PATH or enterprise-catalog) is always configured, and an edited "
            "catalog should not wait for the daily full refresh. It skips, saying why, while a "
            "full refresh runs, before the first one, when the source cannot be read, and when "
            "the listing trips the removal guardrail. Stop it here to leave listing edits to "
            "the full refresh."
        ),
    )
    def catalog_queries_sensor(
        context: dg.SensorEvaluationContext,
        catalog_query_source: CatalogQuerySource,
        catalog_store: CatalogStoreResource,
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate_tick(context, catalog_query_source, catalog_store)

    return catalog_queries_sensor
