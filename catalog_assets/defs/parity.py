"""The parity check in Dagster: the asset ``discovery_parity`` (group ``parity``), the job
``parity_report`` and its weekly schedule, off by default.

The asset compares, query by query, the store's associations with what course-discovery's
search gives enterprise-catalog's per-query sync (``catalog_assets.core.parity``); it writes
nothing, and is in no job the full refresh runs. Its metadata is a markdown table and numeric
counts that the UI plots over weeks, the evidence for switching over.
"""

import dagster as dg
from pydantic import Field

from catalog_assets.core.discovery import DiscoveryError
from catalog_assets.core.parity import EXAMPLES, ParityReport, Reason, UnknownQuery, check_parity
from catalog_assets.defs.checks import markdown_table
from catalog_assets.defs.metadata import GROUP_PURPOSES, OWNERS, PARITY_GROUP, lane_tags
from catalog_assets.defs.resources import STORE_POOL, CatalogStoreResource, ContentSourceResource

GROUP = PARITY_GROUP
KINDS = {"python"}  # the store's kind is added per environment (``metadata.for_environment``)
REPORT_ROWS = 100
"""At most this many queries (those that differ first) in the markdown table."""
DEFAULT_PARITY_CRON = "0 6 * * 1"
"""Mondays 06:00 UTC: two hours after the default daily refresh."""

REPORT_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("catalog_query_uuid", "text", description="A valid catalog query."),
        dg.TableColumn("title", "text", description="Its title."),
        dg.TableColumn("verdict", "text", description="equal or differs."),
        dg.TableColumn("matched", "integer", description="Keys on both sides."),
        dg.TableColumn("only_local", "integer", description="Keys the store associates only."),
        dg.TableColumn(
            "only_discovery", "integer", description="Keys only discovery's answer has."
        ),
        dg.TableColumn(
            "reasons",
            "text",
            description="Differences per reason: not_in_store, tombstoned, modified_differs, "
            "excluded_by_allow_list, other.",
        ),
    ]
)
"""The columns of the report's markdown table (the asset writes no store table)."""


class ParityConfig(dg.Config):
    queries: list[str] = Field(
        default_factory=list,
        description="Compare only these catalog query uuids (empty: every valid query).",
    )
    sample: int | None = Field(
        default=None,
        description="Compare at most this many queries, the first by uuid (none: all).",
    )


@dg.asset(
    group_name=GROUP,
    deps=["catalog_content_associations"],
    description=(
        "Compares each valid catalog query's associations with what course-discovery's "
        "`POST search/all/` gives enterprise-catalog's per-query sync for it (its forced "
        "courses and the allow-lists applied), and names the reason of each difference. "
        "Run config: `queries`, `sample`.\n\nReads `catalog_query_content`, `content_metadata` "
        f"and `catalog_query` in the catalog store; writes nothing.\n\n{GROUP_PURPOSES[GROUP]}"
    ),
    owners=OWNERS,
    kinds=KINDS,
    # The bulk lane's tag: the run queue runs it between full refreshes, never during one
    # (half-applied associations would read as differences).
    tags=lane_tags("bulk"),
    pool=STORE_POOL,
    metadata={"dagster/column_schema": REPORT_SCHEMA},
)
def discovery_parity(
    context: dg.AssetExecutionContext,
    config: ParityConfig,
    content_source: ContentSourceResource,
    catalog_store: CatalogStoreResource,
) -> dg.MaterializeResult:
    """Each chosen query's associations against course-discovery's search; writes nothing."""
    with catalog_store.open() as store:
        try:
            report = check_parity(
                store, content_source, query_uuids=config.queries, sample=config.sample
            )
        except UnknownQuery as unknown:
            raise dg.Failure(description=str(unknown), allow_retries=False) from unknown
        except DiscoveryError as error:
            raise dg.Failure(description=f"course-discovery cannot be reached: {error}") from error
    context.log.info(report.summary())
    reasons = report.reasons()
    return dg.MaterializeResult(
        metadata={
            **report.counts(),
            **{f"reason_{reason}": reasons.get(reason, 0) for reason in Reason},
            "summary": report.summary(),
            "queries_table": dg.MetadataValue.md(_queries_table(report)),
            "differences_preview": dg.MetadataValue.md(_differences_table(report)),
        }
    )


def _queries_table(report: ParityReport) -> str:
    ordered = sorted(report.queries, key=lambda q: (q.equal, q.uuid))
    rows = [
        [
            q.uuid,
            q.title or "",
            "equal" if q.equal else "differs",
            q.matched,
            q.only_local,
            q.only_discovery,
            ", ".join(f"{reason} {count}" for reason, count in q.reasons.items()),
        ]
        for q in ordered[:REPORT_ROWS]
    ]
    table = markdown_table([c.name for c in REPORT_SCHEMA.columns], rows) if rows else "None."
    more = len(ordered) - REPORT_ROWS
    return f"{table}\n\n... and {more} more queries" if more > 0 else table


def _differences_table(report: ParityReport) -> str:
    rows = [
        [q.uuid, d.side, d.content_key, d.reason, d.detail]
        for q in report.queries
        for d in [*q.local_examples, *q.discovery_examples]
    ]
    if not rows:
        return "None: every chosen query is equal."
    header = ["catalog query", "side", "content key", "reason", "detail"]
    note = f"\n\nUp to {EXAMPLES} examples of each side per query."
    return markdown_table(header, rows[: REPORT_ROWS * 2]) + note


parity_report = dg.define_asset_job(
    "parity_report",
    selection=dg.AssetSelection.assets(discovery_parity),
    description=(
        "Compare each catalog query's associations with course-discovery's search "
        "(`discovery_parity`); writes nothing."
    ),
    tags=lane_tags("bulk"),
)


def parity_report_schedule(cron: str = DEFAULT_PARITY_CRON) -> dg.ScheduleDefinition:
    """Weekly, and off by default: each run asks course-discovery one search per query."""
    return dg.ScheduleDefinition(
        name="parity_report_schedule",
        job=parity_report,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Runs `parity_report` at `{cron}` UTC. Off by default: each run asks "
            "course-discovery one search per catalog query; turn it on while preparing to "
            "switch over."
        ),
    )
