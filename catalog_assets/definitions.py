"""The Dagster code location. Definitions load lazily, so the environment is read then."""

import os

import dagster as dg

from catalog_assets.assets import bulk_assets
from catalog_assets.checks import associations_reference_live_content
from catalog_assets.resources import build_resources
from catalog_assets.schedules import DEFAULT_CRON, full_refresh, full_refresh_schedule


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=bulk_assets,
        asset_checks=[associations_reference_live_content],
        jobs=[full_refresh],
        schedules=[full_refresh_schedule(os.environ.get("FULL_REFRESH_CRON") or DEFAULT_CRON)],
        resources=build_resources(os.environ),
        # DuckDB allows one writer per file: run each run's steps in one process.
        executor=dg.in_process_executor,
    )
