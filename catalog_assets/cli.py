"""The ``catalog-assets`` command line: operator entry points next to the Dagster UI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from catalog_assets.filters import InvalidFilter, evaluate, parse
from catalog_assets.sample_data import (
    SAMPLE_CONTENT_FILE,
    SAMPLE_QUERIES_FILE,
    content_key,
    load_bundled,
)


def demo(_: argparse.Namespace) -> int:
    """Evaluate the bundled sample catalog queries over the bundled sample content."""
    content = load_bundled(SAMPLE_CONTENT_FILE)
    queries = load_bundled(SAMPLE_QUERIES_FILE)["catalog_queries"]
    records = [{**document, "content_key": content_key(document)} for document in content]
    valid, invalid = {}, []
    for query in queries:
        try:
            parse(query["content_filter"])
        except InvalidFilter as error:
            invalid.append((query, error))
        else:
            valid[query["uuid"]] = query["content_filter"]
    result = evaluate(valid, records)
    counts = dict(result.pairs.group_by("query_id").len().iter_rows())
    print(f"{len(records)} sample records, {len(queries)} sample catalog queries\n")
    print(f"{'matches':>7}  query")
    for query in queries:
        if query["uuid"] in valid:
            print(f"{counts.get(query['uuid'], 0):>7}  {query['title']} ({query['uuid']})")
    for query, error in invalid:
        print(f"{'invalid':>7}  {query['title']} ({query['uuid']}): {error}")
    for field, keys in result.data_warnings.items():
        print(f"warning: {len(keys)} records have a non-numeric {field!r}, e.g. {keys[:3]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catalog-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help=demo.__doc__).set_defaults(handler=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
