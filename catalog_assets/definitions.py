"""The Dagster code location. Definitions load lazily, so the environment is read then."""

import os

import dagster as dg

from catalog_assets.assets import bulk_assets
from catalog_assets.checks import associations_reference_live_content
from catalog_assets.event_assets import apply_content_events, content_item, content_item_job
from catalog_assets.resources import build_resources
from catalog_assets.schedules import DEFAULT_CRON, full_refresh, full_refresh_schedule
from sensors.content_events import build_content_events_sensor, build_event_resources


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[*bulk_assets, content_item],
        asset_checks=[associations_reference_live_content],
        jobs=[full_refresh, content_item_job, apply_content_events],
        schedules=[full_refresh_schedule(os.environ.get("FULL_REFRESH_CRON") or DEFAULT_CRON)],
        sensors=[
            build_content_events_sensor(
                enabled=bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")),
                interval_seconds=int(os.environ.get("KAFKA_SENSOR_INTERVAL_SECONDS") or 5),
            )
        ],
        resources={**build_resources(os.environ), **build_event_resources(os.environ)},
        # DuckDB allows one writer per file: run each run's steps in one process.
        executor=dg.in_process_executor,
    )
