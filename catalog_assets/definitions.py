"""The Dagster code location: assembles ``catalog_assets.defs`` and the sensors.

Definitions load lazily (``@dg.definitions``), so the environment is read and validated then
(``Settings.from_env``), never at import; so is the repository's git remote that source code
links point to.
"""

import warnings

import dagster as dg

from catalog_assets.defs.bulk_assets import GROUP, bulk_assets
from catalog_assets.defs.checks import associations_reference_live_content
from catalog_assets.defs.event_assets import apply_content_events, content_item, content_item_job
from catalog_assets.defs.jobs import (
    catalog_query_changes,
    full_refresh,
    full_refresh_schedule,
    refresh_freshness_policy,
)
from catalog_assets.defs.metadata import for_environment, read_git_remote
from catalog_assets.defs.parity import discovery_parity, parity_report, parity_report_schedule
from catalog_assets.defs.resources import build_resources
from catalog_assets.settings import Settings
from sensors.catalog_queries import build_catalog_queries_sensor
from sensors.content_events import build_content_events_sensor, build_event_resources
from sensors.failed_runs import build_failed_event_runs_sensor


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    assets = for_environment(
        [*bulk_assets, content_item, discovery_parity],
        store_url=settings.store_url,
        freshness={GROUP: refresh_freshness_policy(settings.full_refresh_cron)},
        remote=read_git_remote(),
    )
    definitions = dg.Definitions(
        assets=assets,
        asset_checks=[associations_reference_live_content],
        jobs=[
            full_refresh,
            catalog_query_changes,
            content_item_job,
            apply_content_events,
            parity_report,
        ],
        schedules=[full_refresh_schedule(settings.full_refresh_cron), parity_report_schedule()],
        sensors=[
            build_content_events_sensor(
                enabled=settings.kafka_enabled, interval_seconds=settings.sensor_interval_seconds
            ),
            build_failed_event_runs_sensor(),
            build_catalog_queries_sensor(settings.catalog_queries_poll_seconds),
        ],
        resources={**build_resources(settings), **build_event_resources(settings)},
        # DuckDB allows one writer per file: run each run's steps in one process.
        executor=dg.in_process_executor,
    )
    # Binding resources to the sensor's op job re-creates the sensor with `owners=[]`, and
    # Dagster 1.13 then warns that the sensor `owners` parameter (which we do not use) is in
    # beta, on every load. Resolve once here, where that one warning can be filtered; the
    # code server reuses the resolved definitions.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Parameter `owners` of initializer `SensorDefinition",
            category=dg.BetaWarning,
        )
        dg.Definitions.validate_loadable(definitions)
    return definitions
