"""The command table: every subcommand's name, help, arguments and handler, in one place.

The parser is built from ``COMMANDS``, so a command cannot lack a description, nor an argument
its help. Handlers import what they need when they run: ``--help`` stays fast and free of
Dagster.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalog_assets.cli.catalog import (
    EXIT_HELP,
    catalogs_for,
    contains,
    contents_of,
    explain,
    related,
)
from catalog_assets.cli.common import PROG
from catalog_assets.cli.events import broker, publish, replay, since
from catalog_assets.cli.parity import EXIT_HELP as PARITY_EXIT_HELP
from catalog_assets.cli.parity import parity
from catalog_assets.cli.refresh import OVERRIDES, refresh
from catalog_assets.cli.store import dead_letters_list, dead_letters_replay, migrate


@dataclass(frozen=True)
class Arg:
    """One argument: its name or flags, its help, and any other ``add_argument`` options."""

    names: tuple[str, ...]
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)


def arg(*names: str, help: str, **options: Any) -> Arg:
    return Arg(names, help, options)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``run`` it, or pick one of its ``actions`` (then ``run`` is None)."""

    name: str
    summary: str
    description: str
    run: Callable[[argparse.Namespace], int] | None = None
    args: tuple[Arg, ...] = ()
    actions: tuple[Command, ...] = ()
    examples: tuple[str, ...] = ()


JSON_OUTPUT = arg("--json", action="store_true", help="print JSON instead of a table")

COMMANDS: tuple[Command, ...] = (
    Command(
        "refresh",
        "run the full refresh once and print what changed",
        "Run the full_refresh job once, in this process, on the environment's content source\n"
        "and catalog store, recorded in the Dagster instance of DAGSTER_HOME. Prints what each\n"
        "asset changed, each check's outcome with why a failed one failed, and the cause of\n"
        "each failed step. Exits 1 when the run failed.\n\n"
        "Guardrails refuse a refresh that would remove or tombstone a large share of the\n"
        "catalog, and hold a query whose content count swings a lot; once you have checked\n"
        "that such a change is real, the --confirm options apply it.",
        refresh,
        args=tuple(
            arg(o.flag, help=o.help, dest=o.field, action="append", metavar=o.metavar)
            if o.metavar
            else arg(o.flag, help=o.help, dest=o.field, action="store_true")
            for o in OVERRIDES
        ),
        examples=(
            "refresh",
            "refresh --confirm-mass-tombstone",
            "refresh --confirm-held QUERY_UUID",
        ),
    ),
    Command(
        "migrate",
        "create the catalog store's tables, or upgrade them",
        "Create the tables of the catalog store at CATALOG_STORE_URL, or bring an older\n"
        "store up to this code's schema version, and print the version. Safe to repeat.",
        migrate,
    ),
    Command(
        "catalogs-for",
        "which catalogs contain a course, run, program or pathway",
        "List the enterprise catalogs and catalog queries whose content includes a content key,\n"
        "each with the rule that puts it there: its own record is associated, or it is the\n"
        "course of an associated run, or a run whose course is associated.\n\n" + EXIT_HELP,
        catalogs_for,
        args=(
            arg("content_key", metavar="CONTENT_KEY", help="e.g. edX+DemoX or a program uuid"),
            JSON_OUTPUT,
        ),
    ),
    Command(
        "contents-of",
        "what a catalog query or enterprise catalog contains",
        "List the content of a catalog query or of an enterprise catalog, tombstoned records\n"
        "included (marked deleted).\n\n" + EXIT_HELP,
        contents_of,
        args=(
            arg("uuid", metavar="UUID", help="a catalog query's or enterprise catalog's uuid"),
            JSON_OUTPUT,
        ),
    ),
    Command(
        "contains",
        "whether a catalog contains any of some keys",
        "Answer as enterprise-catalog's contains_content_items does: whether the catalog holds\n"
        "any of the keys (a course key also matches a catalog of its runs, a run key a catalog\n"
        'of its course). Prints each key\'s answer, then {"contains_content_items": true|false}.\n'
        "Exits 0 when it contains one, 1 when it contains none, 2 for an unknown catalog.",
        contains,
        args=(
            arg(
                "catalog_uuid",
                metavar="CATALOG_UUID",
                help="an enterprise catalog's or a catalog query's uuid",
            ),
            arg(
                "content_keys",
                nargs="+",
                metavar="KEY",
                help="course keys, course run keys or program uuids",
            ),
            arg("--json", action="store_true", help="print only the API's JSON answer"),
        ),
        examples=("contains CATALOG_UUID edX+DemoX course-v1:edX+DemoX+2026",),
    ),
    Command(
        "related",
        "what content a course, program or pathway is linked with",
        "List the links between content, both ways: a course's programs, a program's courses,\n"
        "a visible active learner pathway's programs and courses (table content_relation).\n\n"
        + EXIT_HELP,
        related,
        args=(
            arg("content_key", metavar="CONTENT_KEY", help="e.g. edX+DemoX or a program uuid"),
            JSON_OUTPUT,
        ),
    ),
    Command(
        "explain",
        "why a key is or is not in a catalog",
        "Explain the stored record's verdict: each filter key with its operator, the filter's\n"
        "value, the record's value and pass or fail, in the order the filter engine evaluates\n"
        "them; then the allow-lists, forced-course and membership verdicts, and the answer,\n"
        "which is what the store holds (it says so when the rules disagree with the store).\n"
        "Exits 0 when the key is in the catalog, 1 when it is not, 2 for an unknown uuid, 3 for\n"
        "an unknown content key.",
        explain,
        args=(
            arg(
                "uuid",
                metavar="QUERY_OR_CATALOG_UUID",
                help="a catalog query's or enterprise catalog's uuid",
            ),
            arg("content_key", metavar="CONTENT_KEY", help="e.g. edX+DemoX or a program uuid"),
            JSON_OUTPUT,
        ),
        examples=("explain CATALOG_UUID edX+DemoX",),
    ),
    Command(
        "parity",
        "compare each catalog query's content with course-discovery's search",
        "Before switching over from enterprise-catalog's per-query sync: for each chosen valid\n"
        "catalog query, ask the content source's search (course-discovery's POST search/all/)\n"
        "what the old sync computes (its filter, its forced courses, the allow-lists) and\n"
        "compare it with the store's associations. Prints a summary line, a row per query and\n"
        "up to 5 examples of each difference with its reason: not_in_store, tombstoned,\n"
        "modified_differs, excluded_by_allow_list, other. Reads only.\n\n" + PARITY_EXIT_HELP,
        parity,
        args=(
            arg(
                "--query",
                action="append",
                metavar="UUID",
                help="compare only this catalog query (repeatable; default: every valid one)",
            ),
            arg(
                "--sample",
                type=int,
                metavar="N",
                help="compare at most N queries, the first by uuid (default: all)",
            ),
            arg("--json", action="store_true", help="print the report as JSON"),
        ),
        examples=("parity", "parity --sample 50 --json", "parity --query QUERY_UUID"),
    ),
    Command(
        "dead-letters",
        "list the events that could not be used, or replay them",
        "Content events that could not be decoded or applied are kept in the catalog store\n"
        "(table event_dead_letter) with their raw bytes. List them, and replay them once their\n"
        "cause is fixed.",
        actions=(
            Command(
                "list",
                "list dead letters waiting to be replayed",
                "List the dead letters waiting to be replayed, with the error of each.",
                dead_letters_list,
                args=(
                    arg("--all", action="store_true", help="include those already replayed"),
                    JSON_OUTPUT,
                ),
            ),
            Command(
                "replay",
                "decode and apply dead letters again",
                "Decode the dead letters again and apply them; those that still fail stay\n"
                "dead letters. Exits 1 if any did not apply, or an id names no dead letter\n"
                "waiting to be replayed (then nothing is replayed).",
                dead_letters_replay,
                args=(
                    arg(
                        "ids",
                        nargs="*",
                        type=int,
                        metavar="ID",
                        help="replay only these (default: every one waiting)",
                    ),
                ),
            ),
        ),
        examples=("dead-letters list", "dead-letters replay 12 13"),
    ),
    Command(
        "broker",
        "run a local Kafka-compatible broker for development",
        "Run Tansu, a Kafka-compatible broker, on 127.0.0.1 until Ctrl-C, and print the\n"
        "export KAFKA_BOOTSTRAP_SERVERS=... line that points the other commands at it.\n"
        "Messages are kept in memory only.",
        broker,
        args=(
            arg(
                "--port", type=int, metavar="PORT", help="listen on this port (default: a free one)"
            ),
        ),
    ),
    Command(
        "publish",
        "send one test content event to Kafka",
        "Publish one content event to KAFKA_BOOTSTRAP_SERVERS, as JSON (content.upserted or\n"
        "content.deleted) or as the Open edX event bus sends catalog_info.changed: Avro key and\n"
        "value in Confluent framing, CloudEvent headers, schemas registered in\n"
        "KAFKA_SCHEMA_REGISTRY_URL when it is set.",
        publish,
        args=(
            arg(
                "content_key",
                metavar="CONTENT_KEY",
                help="the content key; for --format openedx, a course run key",
            ),
            arg(
                "--format",
                choices=("json", "openedx"),
                default="json",
                help="json (default) or openedx",
            ),
            arg(
                "--content-type",
                default="course",
                metavar="TYPE",
                help="json: the content type (default: course)",
            ),
            arg("--delete", action="store_true", help="json: a content.deleted event"),
            arg("--metadata", metavar="FILE", help="json: a JSON file with the full record"),
            arg(
                "--topic",
                metavar="TOPIC",
                help="default: content-metadata-changed (json), course-catalog-info-changed "
                "(openedx), as PREFIX-name when KAFKA_TOPIC_PREFIX is set",
            ),
        ),
        examples=("publish edX+DemoX", "publish course-v1:edX+DemoX+2026 --format openedx"),
    ),
    Command(
        "replay",
        "apply the content events since a time again",
        "Rewind the content-event sensor's cursor so that it reads the content topics again\n"
        "from a point in time. The replayed topics start at the first offsets at or after\n"
        "that time; the other content topics keep the offsets of the consumer group\n"
        "KAFKA_CONSUMER_GROUP; a new replay generation makes the replayed events run again.\n"
        "Applying is idempotent, so events applied before change nothing. The cursor is set\n"
        "with 'dagster sensor cursor' in the instance of DAGSTER_HOME.",
        replay,
        args=(
            arg(
                "--since",
                required=True,
                type=since,
                metavar="WHEN",
                help="an ISO 8601 time (UTC unless it has an offset), e.g. 2026-11-27T10:00Z, "
                "or a duration before now: 30m, 2h, 1d",
            ),
            arg(
                "--topic",
                action="append",
                metavar="TOPIC",
                help="replay only this content topic (repeatable; default: all of them)",
            ),
            arg(
                "--sensor",
                default="content_events_sensor",
                metavar="NAME",
                help="the sensor whose cursor to set (default: %(default)s)",
            ),
            arg(
                "--dry-run",
                action="store_true",
                help="print the plan and the cursor, change nothing (works without a broker)",
            ),
        ),
        examples=("replay --since 2h --dry-run", "replay --since 2026-11-27T10:00Z --topic T"),
    ),
)

DESCRIPTION = (
    "Operator commands for the catalog-assets Dagster project: run the full refresh, look up\n"
    "catalogs, and look after the content-event lane."
)
EPILOG = (
    "Settings come from environment variables (README.md, Configuration): CATALOG_STORE_URL,\n"
    "CONTENT_SOURCE, DAGSTER_HOME, KAFKA_BOOTSTRAP_SERVERS and others.\n"
    f"Run '{PROG} COMMAND --help' for a command's arguments.\n\n"
    "exit status: 0 done; 1 the work failed (a failed run, an event not applied);\n"
    "2 bad usage or setup (one line on stderr). The lookups say what they found:\n"
    "1 nothing, 2 an unknown uuid, 3 an unknown content key, 4 and 5 an invalid catalog query\n"
    "(each command's help has the details)."
)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; argument help is never broken inside a hyphenated
    word (a topic name, a flag), which would read as two words."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _listing(commands: Sequence[Command]) -> str:
    """The commands and their summaries, one a line (argparse's own listing cramps them)."""
    width = max(len(command.name) for command in commands) + 2
    lines = [f"  {command.name.ljust(width)}{command.summary}" for command in commands]
    return "commands:\n" + "\n".join(lines)


def _add_commands(parser: argparse.ArgumentParser, commands: Sequence[Command], path: str) -> None:
    """Add ``commands`` below ``parser``; a parser whose command is not given prints its help."""
    parser.set_defaults(handler=None, command=path, parser=parser)
    subparsers = parser.add_subparsers(metavar="COMMAND", help="one of the commands above")
    for command in commands:
        name = f"{path} {command.name}".strip()
        examples = "\n".join(f"  {PROG} {example}" for example in command.examples)
        description = command.description
        if command.actions:
            description += "\n\n" + _listing(command.actions)
        sub = subparsers.add_parser(
            command.name,
            description=description,
            epilog=f"examples:\n{examples}" if examples else None,
            formatter_class=_HelpFormatter,
        )
        for argument in command.args:
            sub.add_argument(*argument.names, help=argument.help, **argument.options)
        if command.actions:
            _add_commands(sub, command.actions, name)
        else:
            sub.set_defaults(handler=command.run, command=name, parser=sub)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=f"{DESCRIPTION}\n\n{_listing(COMMANDS)}",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    _add_commands(parser, COMMANDS, "")
    return parser
