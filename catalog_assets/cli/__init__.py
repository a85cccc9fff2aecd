"""The catalog-assets command line: operator entry points next to the Dagster UI.

``commands.COMMANDS`` is the table of subcommands the parser is built from; ``main`` runs one
and turns bad input or setup into one redacted line on stderr (exit status 2).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from catalog_assets.cli.commands import COMMANDS, build_parser
from catalog_assets.cli.common import print_error

__all__ = ["COMMANDS", "build_parser", "main"]


def _setup_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or setup (a file, a URL, a server that is not there): the
    user needs one line saying what, not a traceback. Imported only once something failed."""
    import dagster as dg
    import duckdb
    import psycopg2
    from confluent_kafka import KafkaException

    from catalog_assets.core.api_client import ApiError
    from catalog_assets.core.events import SchemaRegistryUnavailable
    from catalog_assets.devtools.broker import BrokerError
    from catalog_assets.store import StoreSchemaMismatch, StoreUnavailable

    return (
        ValueError,
        OSError,
        ApiError,  # course-discovery, enterprise-catalog, the LMS token endpoint
        BrokerError,
        SchemaRegistryUnavailable,
        StoreSchemaMismatch,
        StoreUnavailable,
        KafkaException,  # a broker that cannot be reached
        psycopg2.OperationalError,
        duckdb.IOException,
        dg.DagsterInvalidConfigError,  # e.g. a resource's environment variable is not set
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse's 2 for bad usage, 0 for --help)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # --help, or bad usage: argparse has printed why
        return exit.code if isinstance(exit.code, int) else 2
    if args.handler is None:  # a command that needs one of its actions, or none at all
        args.parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except Exception as error:
        if not isinstance(error, _setup_errors()):
            raise
        print_error(args.command, error)
        return 2
