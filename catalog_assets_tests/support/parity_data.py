"""Data for the parity tests: content served by the local course-discovery server, catalog
queries, a store loaded from that server as the full refresh loads it, and one planted
difference of each reason (``plant_differences``, ``PLANTED``)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from catalog_assets.core.parity import Reason, Side
from catalog_assets.core.refresh import (
    forced_courses,
    refresh_associations,
    refresh_content,
    sync_catalog_queries,
)
from catalog_assets.core.sources import CatalogQueryFile, DiscoveryContent
from catalog_assets.store import CatalogStore
from catalog_assets_tests.support.fake_discovery import FakeDiscovery

LOADED = datetime(2026, 7, 1, 9, 0)
NOW = datetime(2026, 7, 1)  # the server's clock: runs that ended before it are expired
MODIFIED = "2026-01-01T00:00:00Z"
CHANGED = "2026-06-01T00:00:00Z"
FORCE = "enterprise_force_include_aggregation_keys"


def course(key: str, org: str, **fields: Any) -> dict[str, Any]:
    return {
        "key": key,
        "aggregation_key": f"course:{key}",
        "content_type": "course",
        "title": f"Course {key}",
        "org": org,
        "course_type": "verified-audit",
        "modified": MODIFIED,
        **fields,
    }


def run(key: str, course_key: str, end: str) -> dict[str, Any]:
    return {
        "key": key,
        "aggregation_key": f"courserun:{course_key}",
        "content_type": "courserun",
        "title": f"Run {key}",
        "end": end,
        "modified": MODIFIED,
    }


DOCUMENTS = [
    course("edX+A", "edX"),
    course("edX+B", "edX"),
    course("edX+D", "edX"),
    course("MITx+C", "MITx"),
    course("HarvardX+H", "HarvardX"),
    course("edX+Boot", "edX", course_type="bootcamp-2u"),  # never stored: not allowed
    run("course-v1:edX+A+1", "edX+A", "2030-01-01T00:00:00Z"),
    run("course-v1:edX+A+old", "edX+A", "2026-06-01T00:00:00Z"),  # expired at NOW
    {
        "uuid": "p1",
        "aggregation_key": "program:p1",
        "content_type": "program",
        "title": "Program 1",
        "modified": MODIFIED,
    },
    {
        "uuid": "lp1",
        "aggregation_key": "learnerpathway:lp1",
        "content_type": "learnerpathway",
        "title": "Pathway 1",
        "modified": MODIFIED,
    },
]
FULL_RECORDS = {
    # Unlisted: search/all does not return it, courses/?keys= does (a query forces it in).
    "edX+F": {"key": "edX+F", "title": "Forced", "course_type": "verified", "modified": MODIFIED},
}


def query(uuid: str, content_filter: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": uuid, "title": f"Query {uuid}", "content_filter": content_filter}


QUERIES = [
    query("q-edx", {"org": "edX"}),
    query("q-excl", {"content_type": "program"}),
    query("q-forced", {"content_type": "learnerpathway", FORCE: ["edX+F"]}),
    query("q-harv", {"org": "HarvardX"}),
    query("q-mod", {"org": "MITx"}),
    query("q-new", {"org": "NewX"}),
    query("q-runs", {"content_type": "courserun"}),
    query("q-tomb", {"key": "edX+B"}),
    query("q-z-invalid", {"org__in": ["edX"]}),  # invalid: never compared
]
VALID = sorted(q["uuid"] for q in QUERIES if q["uuid"] != "q-z-invalid")

# (query, side, content key) -> the reason each planted difference must be given.
PLANTED: dict[tuple[str, Side, str], Reason] = {
    ("q-new", Side.ONLY_DISCOVERY, "NewX+1"): Reason.NOT_IN_STORE,
    ("q-tomb", Side.ONLY_DISCOVERY, "edX+B"): Reason.TOMBSTONED,
    ("q-edx", Side.ONLY_DISCOVERY, "edX+B"): Reason.TOMBSTONED,
    ("q-mod", Side.ONLY_DISCOVERY, "edX+D"): Reason.MODIFIED_DIFFERS,
    ("q-edx", Side.ONLY_LOCAL, "edX+D"): Reason.MODIFIED_DIFFERS,
    ("q-excl", Side.ONLY_LOCAL, "p1"): Reason.EXCLUDED_BY_ALLOW_LIST,
    ("q-runs", Side.ONLY_DISCOVERY, "edX+A"): Reason.OTHER,
    ("q-harv", Side.ONLY_LOCAL, "HarvardX+H"): Reason.OTHER,
}
PLANTED_SUMMARY = "8 queries, 1 equal, 7 differ, 8 differences"


def serve() -> FakeDiscovery:
    """The local course-discovery server on ``DOCUMENTS`` (not started)."""
    return FakeDiscovery(copy.deepcopy(DOCUMENTS), copy.deepcopy(FULL_RECORDS), now=NOW)


def source(fake: FakeDiscovery) -> DiscoveryContent:
    return DiscoveryContent(
        fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret, max_retries=0
    )


def load(store: CatalogStore, fake: FakeDiscovery) -> None:
    """What a full refresh against ``fake`` leaves in ``store``."""
    discovery = source(fake)
    sync_catalog_queries(CatalogQueryFile(copy.deepcopy(QUERIES), []), store, LOADED)
    forced = forced_courses([q.content_filter for q in store.catalog_queries()])
    snapshot = discovery.fetch_all()
    refresh_content(snapshot, store, LOADED, lookup=discovery, courses=discovery, forced=forced)
    refresh_associations(store, LOADED)


def plant_differences(store: CatalogStore, fake: FakeDiscovery) -> None:
    """One difference of each reason (``PLANTED``), made after ``load``: discovery changes
    without a refresh, the store tombstones a record discovery still has, and the search
    index disagrees with the filter for two queries."""
    fake.upsert_documents(
        [
            course("NewX+1", "NewX"),  # not in the store
            course("edX+D", "MITx", modified=CHANGED),  # moved, the store has the old record
            {**DOCUMENTS[8], "product_source": {"slug": "other"}},  # p1 now from elsewhere
        ]
    )
    store.tombstone_content("edX+B", LOADED)
    fake.search_override({"content_type": "courserun"}, add=["edX+A"])
    fake.search_override({"org": "HarvardX"}, remove=["HarvardX+H"])
