"""``catalog-assets parity``: before switching over, compare the store's associations with what
course-discovery's search gives each catalog query (``catalog_assets.core.parity``)."""

from __future__ import annotations

import argparse
import json
from enum import IntEnum
from typing import TYPE_CHECKING

from catalog_assets.cli.common import aligned, print_error, resolved

if TYPE_CHECKING:  # imported when the command runs: --help stays free of the store
    from catalog_assets.core.parity import ParityReport


class ParityExit(IntEnum):
    EQUAL = 0  # every chosen query holds what discovery's search gives it
    DIFFERS = 1  # at least one query differs
    UNAVAILABLE = 2  # discovery cannot be reached (also: an unknown query uuid, bad setup)


EXIT_HELP = (
    "exit status: 0 every chosen query is equal; 1 at least one differs; 2 course-discovery "
    "cannot be reached, an unknown or invalid query uuid, bad usage or setup."
)


def parity(args: argparse.Namespace) -> int:
    from catalog_assets.core.discovery import DiscoveryError
    from catalog_assets.core.parity import UnknownQuery, check_parity
    from catalog_assets.settings import Settings
    from catalog_assets.store import open_store

    settings = Settings.from_env()
    source = resolved("content_source")
    with open_store(settings.store_url) as store:
        store.check_schema()  # read-only: parity needs no DDL rights
        store.allow_lists = settings.allow_lists
        try:
            report = check_parity(store, source, query_uuids=args.query or (), sample=args.sample)
        except UnknownQuery as unknown:
            print_error(args.command, unknown)
            return ParityExit.UNAVAILABLE
        except DiscoveryError as error:
            print_error(args.command, f"course-discovery cannot be reached: {error}")
            return ParityExit.UNAVAILABLE
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)
    return ParityExit.EQUAL if report.differ == 0 else ParityExit.DIFFERS


def _print_report(report: ParityReport) -> None:
    """The summary line, one row per query, then each differing query's examples."""
    print(report.summary())
    if not report.queries:
        return
    rows = [("catalog_query_uuid", "title", "verdict", "matched", "only_local", "only_discovery")]
    rows += [
        (
            q.uuid,
            q.title or "-",
            "equal" if q.equal else "differs",
            q.matched,
            q.only_local,
            q.only_discovery,
        )
        for q in report.queries
    ]
    print()
    for line in aligned(rows):
        print(line)
    for query in report.queries:
        if query.equal:
            continue
        reasons = ", ".join(f"{reason} {count}" for reason, count in query.reasons.items())
        print(f"\nquery {query.uuid} ({query.title or '-'}): {reasons}")
        examples = [*query.local_examples, *query.discovery_examples]
        table = [("side", "content_key", "reason", "detail")]
        table += [(d.side, d.content_key, d.reason, d.detail) for d in examples]
        for line in aligned(table):
            print(f"  {line}")
        shown = len(examples)
        if shown < query.differences:
            print(f"  ... and {query.differences - shown} more (--json: the counts per reason)")
