"""The ``full_refresh`` job over the bulk lane's assets, its schedule, and the freshness policy
that says when the scheduled refresh is late; the query lane's ``catalog_query_changes`` job."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import dagster as dg

from catalog_assets.defs.bulk_assets import GROUP
from catalog_assets.settings import BY_NAME

DEFAULT_CRON = BY_NAME["FULL_REFRESH_CRON"].default
REFRESH_GRACE = timedelta(hours=2)
"""How long after its scheduled time the full refresh may take before the catalog is late."""

full_refresh = dg.define_asset_job(
    "full_refresh",
    selection=dg.AssetSelection.groups(GROUP),
    description="Fetch all content once, update what changed, re-evaluate every catalog query.",
    # The run tag that the production run queue limits to one run at a time (deploy/dagster.yaml).
    tags={"catalog/lane": "bulk"},
)

LIVE_CONTENT_CHECK = dg.AssetCheckKey(
    dg.AssetKey("catalog_content_associations"), "associations_reference_live_content"
)
QUERY_LANE_CONFIG = {
    "ops": {"catalog_content_associations": {"config": {"only_changed_queries": True}}}
}
"""The association step of the query lane evaluates the new and edited filters only."""

catalog_query_changes = dg.define_asset_job(
    "catalog_query_changes",
    # Without the check that scans every pair against the content table (seconds at tens of
    # millions of pairs, for a run meant to take a few): the lane writes pairs of live content
    # only, and the full refresh runs the check daily.
    selection=dg.AssetSelection.assets("catalog_queries", "catalog_content_associations")
    - dg.AssetSelection.checks(LIVE_CONTENT_CHECK),
    config=QUERY_LANE_CONFIG,
    description=(
        "The query lane: store the catalog query listing and re-evaluate only the queries whose "
        "filter is new or edited (launched by `catalog_queries_sensor`; a run that only "
        "removes queries or edits catalogs runs `catalog_queries` alone)."
    ),
    tags={"catalog/lane": "queries"},
)

_DAY_MINUTES = 24 * 60


def _hours(field: str) -> list[int] | None:
    """The hours a cron hour field names (``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, lists)."""
    hours: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = 0, 23
        elif "-" in span:
            low, _, high = span.partition("-")
            if not (low.isdigit() and high.isdigit()):
                return None
            first, last = int(low), int(high)
        elif span.isdigit():
            first = last = int(span)
            if step:
                last = 23
        else:
            return None
        if step and not step.isdigit():
            return None
        every = int(step) if step else 1
        if every < 1 or not 0 <= first <= last <= 23:
            return None
        hours.update(range(first, last + 1, every))
    return sorted(hours)


def refresh_deadline(cron: str, grace: timedelta = REFRESH_GRACE) -> tuple[str, timedelta] | None:
    """When a scheduled refresh is late: a deadline cron (the schedule's shifted by ``grace``)
    and a lower bound, so that only materializations since the scheduled time count (shorter
    when scheduled runs are closer together than ``grace``).

    None for a cron without a fixed minute (``*/15 * * * *``) or whose deadline would fall on
    the next day of a restricted day field (``0 23 * * 1-5``): no deadline rather than a wrong
    one.
    """
    minute, hour, day_of_month, month, day_of_week = cron.split()
    hours = _hours(hour)
    if not minute.isdigit() or int(minute) > 59 or not hours:
        return None
    times = [h * 60 + int(minute) for h in hours]
    shift = int(grace.total_seconds() // 60)
    every_day = day_of_month == month == day_of_week == "*"
    if not every_day and max(times) + shift >= _DAY_MINUTES:
        return None
    deadlines = sorted({(t + shift) % _DAY_MINUTES for t in times})
    gaps = [later - earlier for earlier, later in pairwise(times)]
    gaps.append(times[0] + _DAY_MINUTES - times[-1])
    deadline_hours = ",".join(str(t // 60) for t in deadlines)
    deadline = f"{deadlines[0] % 60} {deadline_hours} {day_of_month} {month} {day_of_week}"
    return deadline, min(grace, timedelta(minutes=min(gaps)))


def refresh_freshness_policy(cron: str) -> dg.FreshnessPolicy | None:
    """The catalog assets' freshness policy: late when the scheduled refresh is (see
    ``refresh_deadline``); none when the cron has no deadline."""
    deadline = refresh_deadline(cron)
    if deadline is None:
        return None
    deadline_cron, lower_bound = deadline
    return dg.FreshnessPolicy.cron(
        deadline_cron=deadline_cron, lower_bound_delta=lower_bound, timezone="UTC"
    )


def full_refresh_schedule(cron: str = DEFAULT_CRON) -> dg.ScheduleDefinition:
    """Daily by default; ``FULL_REFRESH_CRON`` sets another cron when definitions load.

    The description says that it is on by default and when the catalog counts as late, so the
    UI shows both without previewing a tick.
    """
    deadline = refresh_deadline(cron)
    late = (
        f" The catalog assets are late (their freshness policy) if it has not landed by "
        f"`{deadline[0]}` UTC."
        if deadline
        else " The catalog assets have no freshness policy: this cron has no deadline to derive."
    )
    return dg.ScheduleDefinition(
        name="full_refresh_schedule",
        job=full_refresh,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Runs `full_refresh` at `{cron}` UTC (FULL_REFRESH_CRON). On by default: it runs "
            f"whenever a dagster-daemon is running (`make dev` starts one).{late}"
        ),
    )
