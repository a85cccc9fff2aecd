"""The ``full_refresh`` job over the bulk lane's assets, and its schedule."""

from __future__ import annotations

import dagster as dg

from catalog_assets.defs.bulk_assets import GROUP
from catalog_assets.settings import BY_NAME

DEFAULT_CRON = BY_NAME["FULL_REFRESH_CRON"].default

full_refresh = dg.define_asset_job(
    "full_refresh",
    selection=dg.AssetSelection.groups(GROUP),
    description="Fetch all content once, update what changed, re-evaluate every catalog query.",
)


def full_refresh_schedule(cron: str = DEFAULT_CRON) -> dg.ScheduleDefinition:
    """Daily by default; ``FULL_REFRESH_CRON`` sets another cron when definitions load."""
    return dg.ScheduleDefinition(
        name="full_refresh_schedule",
        job=full_refresh,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
