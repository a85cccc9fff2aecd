"""The Dagster code location: assembles ``catalog_assets.defs`` and the sensors.

Definitions load lazily (``@dg.definitions``), so the environment is read and validated then
(``Settings.from_env``), never at import.
"""

import dagster as dg

from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.checks import associations_reference_live_content
from catalog_assets.defs.event_assets import apply_content_events, content_item, content_item_job
from catalog_assets.defs.jobs import full_refresh, full_refresh_schedule
from catalog_assets.defs.resources import build_resources
from catalog_assets.settings import Settings
from sensors.content_events import build_content_events_sensor, build_event_resources


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    return dg.Definitions(
        assets=[*bulk_assets, content_item],
        asset_checks=[associations_reference_live_content],
        jobs=[full_refresh, content_item_job, apply_content_events],
        schedules=[full_refresh_schedule(settings.full_refresh_cron)],
        sensors=[
            build_content_events_sensor(
                enabled=settings.kafka_enabled, interval_seconds=settings.sensor_interval_seconds
            )
        ],
        resources={**build_resources(settings), **build_event_resources(settings)},
        # DuckDB allows one writer per file: run each run's steps in one process.
        executor=dg.in_process_executor,
    )
