"""The bulk lane's assets (group ``catalog``): catalog queries, content, and their associations.

Each asset writes to the catalog store and returns a ``MaterializeResult`` whose metadata says
what changed, with one ``seconds_<phase>`` entry per phase so that the UI can plot each;
data-quality findings that are known while materializing come back as asset check results
(the specs are in ``checks.py``). What the UI shows about each asset is in ``metadata.py``.
"""

from collections import Counter
from collections.abc import Mapping, Sequence

import dagster as dg
from pydantic import Field

from catalog_assets.core.catalog_contents import Excluded, Exclusion
from catalog_assets.core.content import utcnow
from catalog_assets.core.refresh import (
    GuardrailTripped,
    HoldRule,
    Timer,
    forced_courses,
    refresh_associations,
    refresh_content,
    sync_catalog_queries,
    top_changes,
)
from catalog_assets.defs import checks
from catalog_assets.defs.checks import markdown_table
from catalog_assets.defs.metadata import (
    CATALOG_GROUP,
    OWNERS,
    describe,
    lane_tags,
    table_metadata,
)
from catalog_assets.defs.partition_status import record_partition_status
from catalog_assets.defs.partitions import CONTENT_KEYS
from catalog_assets.defs.resources import (
    STORE_POOL,
    CatalogQuerySource,
    CatalogStoreResource,
    ContentSourceResource,
)
from catalog_assets.store import CatalogStore

GROUP = CATALOG_GROUP
# The store is added per environment when definitions load (``metadata.for_environment``).
KINDS = {"python"}


def logged_timer(context: dg.AssetExecutionContext) -> Timer:
    """A timer that logs each phase as it ends: a long refresh shows where it is."""
    return Timer(on_phase=lambda name, seconds: context.log.info(f"{name} done in {seconds:.3f} s"))


def phase_seconds(seconds: Mapping[str, float]) -> dict[str, float]:
    """One numeric entry per phase (``seconds_fetch``, ...), which the UI plots over runs."""
    return {f"seconds_{name}": float(value) for name, value in seconds.items()}


class QueryRefreshConfig(dg.Config):
    max_removal_share: float = Field(
        default=0.2,
        description="Refuse a listing that removes more of the stored queries or catalogs.",
    )
    confirm_mass_removal: bool = Field(
        default=False,
        description="Apply a listing that the removal guardrail refused (or an empty one).",
    )


@dg.asset(
    group_name=GROUP,
    check_specs=[checks.VALID_FILTERS, checks.CATALOGS_REFERENCE_KNOWN_QUERIES],
    description=describe(
        GROUP,
        "Catalog queries and enterprise catalogs from their listing, each filter validated "
        "and stored with its error; invalid filters are skipped by matching, never fatal.",
        ["catalog_query", "enterprise_catalog"],
    ),
    owners=OWNERS,
    kinds=KINDS,
    tags=lane_tags("bulk"),
    pool=STORE_POOL,
    metadata=table_metadata("catalog_query", "enterprise_catalog"),
)
def catalog_queries(
    context: dg.AssetExecutionContext,
    config: QueryRefreshConfig,
    catalog_query_source: CatalogQuerySource,
    catalog_store: CatalogStoreResource,
) -> dg.MaterializeResult:
    """Catalog queries and enterprise catalogs, each filter validated and stored with its error."""
    timer = logged_timer(context)
    with timer.phase("load"):
        loaded = catalog_query_source.load()
    with timer.phase("write"), catalog_store.open() as store:
        try:
            report = sync_catalog_queries(
                loaded,
                store,
                utcnow(),
                max_removal_share=config.max_removal_share,
                confirm_mass_removal=config.confirm_mass_removal,
            )
        except GuardrailTripped as tripped:
            raise dg.Failure(description=str(tripped), allow_retries=False) from tripped
    invalid = report.invalid
    return dg.MaterializeResult(
        metadata={
            "queries": len(report.rows),
            "valid": len(report.rows) - len(invalid),
            "invalid": len(invalid),
            "enterprise_catalogs": len(report.catalogs),
            "added": len(report.sync.added),
            "changed": len(report.sync.changed),
            "unchanged": len(report.sync.unchanged),
            "removed": len(report.sync.removed),
            "catalogs_removed": report.catalogs_removed,
            **phase_seconds(timer.seconds),
        },
        check_results=[
            checks.valid_filters_result(invalid),
            checks.unknown_query_catalogs_result(report.unknown_query_catalogs),
        ],
    )


class ContentRefreshConfig(dg.Config):
    max_tombstone_share: float = Field(
        default=0.2, description="Refuse a refresh that tombstones more of the live content."
    )
    confirm_mass_tombstone: bool = Field(
        default=False, description="Apply a refresh that the tombstone guardrail refused."
    )


def sync_content_partitions(instance: dg.DagsterInstance, live_keys: list[str]) -> tuple[int, int]:
    """Keep one ``content_keys`` partition per live content key: add new, drop tombstoned."""
    existing = set(instance.get_dynamic_partitions(CONTENT_KEYS.name))
    live = set(live_keys)
    added = sorted(live - existing)
    if added:
        instance.add_dynamic_partitions(CONTENT_KEYS.name, added)
    removed = sorted(existing - live)
    for key in removed:
        instance.delete_dynamic_partition(CONTENT_KEYS.name, key)
    return len(added), len(removed)


@dg.asset(
    group_name=GROUP,
    check_specs=[checks.NO_DUPLICATE_SOURCE_KEYS, checks.NO_REJECTED_DOCUMENTS],
    description=describe(
        GROUP,
        "All content from its source of truth (course-discovery or the sample), fetched once "
        "and diffed against the store: new records inserted, changed ones updated, confirmed "
        "vanished ones tombstoned (with their associations). A stale record never overwrites "
        "a newer one; one `content_item` partition is kept per live key. Records the "
        "allow-lists exclude are not stored (tombstoned if live); courses a catalog query "
        "forces in are fetched by key when the crawl lacks them.",
        ["content_metadata", "catalog_query_content"],
    ),
    owners=OWNERS,
    kinds=KINDS,
    tags=lane_tags("bulk"),
    pool=STORE_POOL,
    metadata=table_metadata("content_metadata", "catalog_query_content"),
)
def content_metadata(
    context: dg.AssetExecutionContext,
    config: ContentRefreshConfig,
    content_source: ContentSourceResource,
    catalog_query_source: CatalogQuerySource,
    catalog_store: CatalogStoreResource,
) -> dg.MaterializeResult:
    """All content from its source of truth: new records inserted, changed ones updated,
    vanished ones tombstoned. A stale record never overwrites a newer one."""
    timer = logged_timer(context)
    with timer.phase("fetch"):
        snapshot = content_source.fetch_all()
    with catalog_store.open() as store:
        forced = forced_courses(
            [query.content_filter for query in store.catalog_queries() if query.is_valid],
            listing_filters(catalog_query_source),
        )
        try:
            report = refresh_content(
                snapshot,
                store,
                utcnow(),
                lookup=content_source,
                courses=content_source,
                forced=forced,
                max_tombstone_share=config.max_tombstone_share,
                confirm_mass_tombstone=config.confirm_mass_tombstone,
                timer=timer,
            )
        except GuardrailTripped as tripped:
            raise dg.Failure(description=str(tripped), allow_retries=False) from tripped
        with timer.phase("partitions"):
            live = [key for key, state in store.content_state().items() if not state.deleted]
            partitions_added, partitions_removed = sync_content_partitions(context.instance, live)
        with timer.phase("partition_status"):  # the UI's partition status follows the store
            recorded, record_runs = record_partition_status(
                context, [*report.written.inserted, *report.written.updated], live
            )
    written = report.written
    for problem in report.rejected[:20]:
        context.log.warning(f"content document rejected: {problem.reason}")
    if report.incomplete_reason:
        context.log.warning(f"the source shifted while it was read: {report.incomplete_reason}")
    if report.forced_not_found:
        context.log.warning(
            f"{len(report.forced_not_found)} courses forced in by catalog queries are not in the "
            f"content source, e.g. {report.forced_not_found[:5]}"
        )
    changed = [("inserted", k) for k in written.inserted[:10]]
    changed += [("updated", k) for k in written.updated[:10]]
    changed += [("tombstoned", k) for k in written.tombstoned[:10]]
    return dg.MaterializeResult(
        metadata={
            "source_records": report.source_records,
            "inserted": len(written.inserted),
            "updated": len(written.updated),
            "unchanged": len(written.unchanged),
            "tombstoned": len(written.tombstoned),
            "stale_skipped": len(written.stale),
            "rejected_documents": len(report.rejected),
            "absent_but_still_in_source": len(report.still_present),
            "tombstones_deferred": report.deferred_tombstones,
            "associations_removed_with_tombstones": written.associations_removed,
            "partitions_added": partitions_added,
            "partitions_removed": partitions_removed,
            "partitions_recorded": recorded,
            "partition_record_runs": record_runs,
            "source_requests": report.request_count,
            **exclusion_counts(report.excluded),
            "forced_courses": len(report.forced),
            "forced_courses_unlisted": len(report.forced_unlisted),
            "forced_courses_not_found": len(report.forced_not_found),
            **phase_seconds(timer.seconds),
            "exclusions_preview": dg.MetadataValue.md(
                markdown_table(
                    ["reason", "value", "content_key"],
                    [[e.reason, e.value, e.content_key] for e in report.excluded[:10]],
                )
                if report.excluded
                else "None."
            ),
            "changes_preview": dg.MetadataValue.md(
                markdown_table(["change", "content_key"], [list(row) for row in changed])
                if changed
                else "No changes."
            ),
        },
        check_results=[
            checks.duplicate_keys_result(report.duplicate_keys),
            checks.rejected_documents_result(report.rejected),
        ],
    )


def listing_filters(source: CatalogQuerySource) -> list:
    """The filters of the catalog query listing, for the courses they force in; none when the
    listing cannot be read (``catalog_queries`` fails on it and says why)."""
    try:
        return [query["content_filter"] for query in source.load().catalog_queries]
    except (ValueError, OSError):
        return []


def exclusion_counts(excluded: Sequence[Excluded]) -> dict[str, int]:
    """One numeric entry per allow-list reason (``excluded_course_type``, ...), zero included,
    so that the UI plots each over runs."""
    counts = Counter(str(e.reason) for e in excluded)
    return {f"excluded_{reason}": counts[str(reason)] for reason in Exclusion}


class AssociationRefreshConfig(dg.Config):
    hold_min_items: int = Field(default=50, description="Hold only queries above this count.")
    hold_max_swing: float = Field(default=0.8, description="Hold when the count moves more.")
    confirm_held_queries: list[str] = Field(
        default=[], description="Catalog query uuids whose held change to apply."
    )
    confirm_all_held: bool = Field(default=False, description="Apply every held change.")
    only_changed_queries: bool = Field(
        default=False,
        description=(
            "Evaluate only the valid queries whose filter is new or edited since their "
            "associations were last computed; leave every other query and the relations as "
            "they are."
        ),
    )


def changed_queries(store: CatalogStore) -> list[str]:
    """The valid queries whose stored filter differs from the one their associations were
    last computed with (new or edited queries)."""
    applied = store.applied_filters()
    return [
        query.uuid
        for query in store.catalog_queries()
        if query.is_valid and applied.get(query.uuid) != query.filter_hash
    ]


@dg.asset(
    group_name=GROUP,
    deps=[catalog_queries, content_metadata],
    check_specs=[checks.NO_HELD_CHANGES, checks.EVERY_QUERY_MATCHES],
    description=describe(
        GROUP,
        "Which content each catalog query contains: every valid query evaluated against "
        "every live record in bulk (polars), plus the courses the query forces in, and only "
        "the difference written, in one transaction. Large swings of an unchanged filter are "
        "held for confirmation. The links records declare (course and program, pathway "
        "steps) are rebuilt in the same pass.",
        ["catalog_query_content", "catalog_query_applied_filter", "content_relation"],
    ),
    owners=OWNERS,
    kinds={"polars"},
    tags=lane_tags("bulk"),
    pool=STORE_POOL,
    metadata=table_metadata(
        "catalog_query_content", "catalog_query_applied_filter", "content_relation"
    ),
)
def catalog_content_associations(
    context: dg.AssetExecutionContext,
    config: AssociationRefreshConfig,
    catalog_store: CatalogStoreResource,
) -> dg.MaterializeResult:
    """Which content each catalog query contains: every valid query evaluated against every
    live record in bulk, and only the difference written, in one transaction."""
    timer = logged_timer(context)
    with catalog_store.open() as store:
        report = refresh_associations(
            store,
            utcnow(),
            hold_rule=HoldRule(config.hold_min_items, config.hold_max_swing),
            confirmed=set(config.confirm_held_queries),
            confirm_all=config.confirm_all_held,
            only_queries=changed_queries(store) if config.only_changed_queries else None,
            on_chunk=lambda done, chunks: context.log.info(f"chunk {done}/{chunks} applied"),
            timer=timer,
        )
    top = top_changes(report.changes)
    for field_name, keys in report.data_warnings.items():
        context.log.warning(
            f"{len(keys)} records have a non-numeric {field_name!r} compared numerically "
            f"(no match), e.g. {keys[:5]}"
        )
    return dg.MaterializeResult(
        metadata={
            "added": report.added,
            "removed": report.removed,
            "total": report.total,
            "queries_changed": sum(1 for c in report.changes if c.added or c.removed),
            "queries_held": len(report.held),
            "invalid_queries_kept": len(report.invalid_kept),
            "forced_pairs": report.forced_pairs,
            "relations_added": report.relations_added,
            "relations_removed": report.relations_removed,
            "relations_total": report.relations_total,
            "data_warnings": {k: len(v) for k, v in report.data_warnings.items()},
            **phase_seconds(timer.seconds),
            "top_changes": dg.MetadataValue.md(
                markdown_table(
                    ["catalog query", "title", "before", "after", "added", "removed", "held"],
                    [[c.uuid, c.title, c.before, c.after, c.added, c.removed, c.held] for c in top],
                )
                if top
                else "No changes."
            ),
        },
        check_results=[
            checks.held_changes_result(report.held),
            checks.zero_match_result(report.zero_match),
        ],
    )


bulk_assets = [catalog_queries, content_metadata, catalog_content_associations]
