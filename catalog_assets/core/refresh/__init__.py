"""The bulk lane's three steps, free of Dagster so they can be read and tested on their own.

1. ``queries.sync_catalog_queries``: validate every catalog query's filter and store queries +
   catalogs; a listing that would remove too much at once is refused.
2. ``content.refresh_content``: diff a full content snapshot against the store; insert, update
   what changed, tombstone what the source confirms gone; guarded against a source that
   suddenly lost content.
3. ``associations.refresh_associations``: evaluate every valid query against every live record
   in bulk and apply only the difference; guarded against result sets that swing wildly.
"""

from catalog_assets.core.refresh.associations import (
    AssociationReport,
    HoldRule,
    QueryChange,
    UsableQuery,
    refresh_associations,
    top_changes,
    usable_filters,
    usable_queries,
)
from catalog_assets.core.refresh.common import PAIR_COLUMNS, RECORD_KEY, GuardrailTripped, Timer
from catalog_assets.core.refresh.content import ContentReport, forced_courses, refresh_content
from catalog_assets.core.refresh.queries import (
    QueryReport,
    catalog_query_row,
    enterprise_catalog_row,
    sync_catalog_queries,
)

__all__ = [
    "PAIR_COLUMNS",
    "RECORD_KEY",
    "AssociationReport",
    "ContentReport",
    "GuardrailTripped",
    "HoldRule",
    "QueryChange",
    "QueryReport",
    "Timer",
    "UsableQuery",
    "catalog_query_row",
    "enterprise_catalog_row",
    "forced_courses",
    "refresh_associations",
    "refresh_content",
    "sync_catalog_queries",
    "top_changes",
    "usable_filters",
    "usable_queries",
]
