"""Asset checks: data quality of the catalog tables.

Findings known while an asset materializes (invalid filters, duplicate source keys, held
guardrail changes, queries with no match) are reported by that asset through the specs and
result builders here; ``associations_reference_live_content`` re-reads the store on its own.
"""

from collections.abc import Sequence

import dagster as dg

from catalog_assets.core.content import RejectedDocument
from catalog_assets.core.refresh import QueryChange
from catalog_assets.defs.resources import CatalogStoreResource
from catalog_assets.store import CatalogQueryRow, EnterpriseCatalogRow

PREVIEW_ROWS = 20

VALID_FILTERS = dg.AssetCheckSpec(
    "valid_filters",
    asset="catalog_queries",
    description="Every catalog query's filter is valid (invalid ones are stored and skipped).",
)
NO_DUPLICATE_SOURCE_KEYS = dg.AssetCheckSpec(
    "no_duplicate_source_keys",
    asset="content_metadata",
    description="The source returned each content key once (a shifting index repeats items).",
)
CATALOGS_REFERENCE_KNOWN_QUERIES = dg.AssetCheckSpec(
    "catalogs_reference_known_queries",
    asset="catalog_queries",
    description="Every enterprise catalog names a catalog query in the listing.",
)
NO_REJECTED_DOCUMENTS = dg.AssetCheckSpec(
    "no_rejected_documents",
    asset="content_metadata",
    description="Every document the source returned could be stored (rejected ones are listed).",
)
NO_HELD_CHANGES = dg.AssetCheckSpec(
    "no_held_changes",
    asset="catalog_content_associations",
    description="No query's association change was held by the swing guardrail.",
)
EVERY_QUERY_MATCHES = dg.AssetCheckSpec(
    "every_query_matches",
    asset="catalog_content_associations",
    description="Every valid catalog query matches at least one live record.",
)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def valid_filters_result(invalid: Sequence[CatalogQueryRow]) -> dg.AssetCheckResult:
    rows = [[q.uuid, q.title, q.error] for q in invalid[:PREVIEW_ROWS]]
    return dg.AssetCheckResult(
        check_name=VALID_FILTERS.name,
        passed=not invalid,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "invalid_queries": len(invalid),
            "preview": dg.MetadataValue.md(
                markdown_table(["catalog query", "title", "error"], rows) if rows else "None."
            ),
        },
    )


def unknown_query_catalogs_result(
    catalogs: Sequence[EnterpriseCatalogRow],
) -> dg.AssetCheckResult:
    rows = [[c.uuid, c.title, c.catalog_query_uuid] for c in catalogs[:PREVIEW_ROWS]]
    return dg.AssetCheckResult(
        check_name=CATALOGS_REFERENCE_KNOWN_QUERIES.name,
        passed=not catalogs,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "catalogs_with_unknown_query": len(catalogs),
            "preview": dg.MetadataValue.md(
                markdown_table(["enterprise catalog", "title", "catalog query (unknown)"], rows)
                if rows
                else "None."
            ),
        },
    )


def rejected_documents_result(rejected: Sequence[RejectedDocument]) -> dg.AssetCheckResult:
    rows = [[r.content_key or "(none)", r.reason] for r in rejected[:PREVIEW_ROWS]]
    return dg.AssetCheckResult(
        check_name=NO_REJECTED_DOCUMENTS.name,
        passed=not rejected,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected_documents": len(rejected),
            "preview": dg.MetadataValue.md(
                markdown_table(["content key", "reason"], rows) if rows else "None."
            ),
        },
    )


def duplicate_keys_result(duplicate_keys: Sequence[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=NO_DUPLICATE_SOURCE_KEYS.name,
        passed=not duplicate_keys,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "duplicate_keys": len(duplicate_keys),
            "examples": list(duplicate_keys[:PREVIEW_ROWS]),
        },
    )


def held_changes_result(held: Sequence[QueryChange]) -> dg.AssetCheckResult:
    rows = [[c.uuid, c.title, c.before, c.after, c.added, c.removed] for c in held[:PREVIEW_ROWS]]
    return dg.AssetCheckResult(
        check_name=NO_HELD_CHANGES.name,
        passed=not held,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "held_queries": len(held),
            "held_uuids": [c.uuid for c in held],
            "held": dg.MetadataValue.md(
                markdown_table(["catalog query", "title", "stored", "proposed", "+", "-"], rows)
                + "\n\nTo apply: run config `confirm_held_queries: [uuid, ...]` or "
                "`confirm_all_held: true` for catalog_content_associations."
                if rows
                else "None."
            ),
        },
    )


def zero_match_result(zero_match: Sequence[QueryChange]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=EVERY_QUERY_MATCHES.name,
        passed=not zero_match,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "zero_match_queries": len(zero_match),
            "preview": dg.MetadataValue.md(
                markdown_table(
                    ["catalog query", "title"],
                    [[c.uuid, c.title] for c in zero_match[:PREVIEW_ROWS]],
                )
                if zero_match
                else "None."
            ),
        },
    )


@dg.asset_check(
    asset="catalog_content_associations",
    description="No association points at tombstoned or unknown content.",
)
def associations_reference_live_content(
    catalog_store: CatalogStoreResource,
) -> dg.AssetCheckResult:
    # Counted in the database: loading every pair and record took GiBs at production scale.
    with catalog_store.open() as store:
        count, examples = store.dangling_associations(PREVIEW_ROWS)
    return dg.AssetCheckResult(
        passed=count == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "dangling_associations": count,
            "examples": [list(row) for row in examples],
        },
    )
