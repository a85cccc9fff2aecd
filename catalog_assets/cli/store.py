"""Commands on the catalog store: migrate, and the event lane's dead letters (the lookups are
in ``catalog.py``)."""

from __future__ import annotations

import argparse
import json

from catalog_assets.cli.common import one_line, print_error, print_rows, resolved


def migrate(args: argparse.Namespace) -> int:
    from catalog_assets.core.redaction import redact
    from catalog_assets.store import open_store

    url = resolved("catalog_store").url
    with open_store(url) as store:
        store.ensure_schema()
        version = store.schema_version()
    # redact, not redact_url: that one drops the empty host of duckdb:///path URLs.
    print(f"catalog store {redact(url)}: schema version {version}")
    return 0


def dead_letters_list(args: argparse.Namespace) -> int:
    with resolved("catalog_store").open() as store:
        letters = store.dead_letters(include_replayed=args.all)
    rows = [
        {
            "id": d.id,
            "topic": d.topic,
            "partition": d.partition,
            "offset": d.offset,
            "received_at": d.received_at.isoformat(),
            "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
            "error": one_line(d.error),
        }
        for d in letters
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        columns = ["id", "topic", "partition", "offset", "received_at", "error"]
        print_rows(rows, [*columns[:5], "replayed_at", "error"] if args.all else columns)
    else:
        print("No dead letters.")
    return 0


def dead_letters_replay(args: argparse.Namespace) -> int:
    from catalog_assets.core import dead_letters as letters
    from catalog_assets.core.content import utcnow
    from catalog_assets.core.events import schema_registry
    from catalog_assets.settings import Settings

    registry = Settings.from_env().schema_registry()
    with resolved("catalog_store").open() as store:
        try:
            report = letters.replay(
                store,
                resolved("content_source"),
                utcnow(),
                ids=args.ids or None,
                registry=schema_registry(registry) if registry else None,
            )
        except ValueError as error:  # ids that name no dead letter waiting to be replayed
            print_error(args.command, error)
            return 1
    for line in report:
        print(f"dead letter {line.id}: {one_line(line.outcome)}")
    return 0 if all(line.outcome.startswith("applied") for line in report) else 1
