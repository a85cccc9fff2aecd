"""The ``catalog-assets`` command line: operator entry points next to the Dagster UI."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOCAL_DAGSTER_HOME = ".dagster_home"


def _dagster_home() -> Path:
    """``DAGSTER_HOME``, else ./.dagster_home (what `make run` and `make dev` use)."""
    return Path(os.environ.get("DAGSTER_HOME") or LOCAL_DAGSTER_HOME).resolve()


def _local_instance():
    """The Dagster instance of ``DAGSTER_HOME``, else a local SQLite one in ./.dagster_home."""
    import dagster as dg

    home = _dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config, project_config = home / "dagster.yaml", Path(__file__).parents[1] / "dagster.yaml"
    if not config.exists() and project_config.exists():  # the project's local instance config
        config.write_text(project_config.read_text())
    return dg.DagsterInstance.from_config(str(home))


def refresh(args: argparse.Namespace) -> int:
    """Run the full_refresh job (on the environment's resources) and print a summary."""
    import warnings

    import dagster as dg

    from catalog_assets.definitions import defs

    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # Dagster's own, not actionable
    job = defs().resolve_job_def("full_refresh")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with _local_instance() as instance:
        result = job.execute_in_process(instance=instance, run_config=quiet, raise_on_error=False)
        print(f"full_refresh run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
        for event in result.get_asset_materialization_events():
            metadata = {k: v.value for k, v in event.materialization.metadata.items()}
            shown = {k: v for k, v in metadata.items() if isinstance(v, int | float)}
            print(f"  {event.asset_key.to_user_string()}: {_inline(shown)}")
            if "seconds" in metadata:
                print(f"    seconds: {_inline(metadata['seconds'])}")
        for evaluation in result.get_asset_check_evaluations():
            severity = evaluation.severity.value
            status = "passed" if evaluation.passed else f"did not pass ({severity})"
            print(f"  check {evaluation.check_name}: {status}")
        for event in result.all_events:
            if event.is_step_failure:
                cause = _failure_cause(event.step_failure_data)
                print(f"  step {event.step_key} failed: {_one_line(cause, first=True)}")
    return 0 if result.success else 1


def _failure_cause(failure: Any) -> str:
    """The most specific human message of a failed step (its ``StepFailureData``).

    A ``dg.Failure`` says it in its description; otherwise Dagster's own wrapper ("Error occurred
    while executing op ...") says nothing, so take the first exception it wraps, whose message
    is the one the project wrote (naming the file, the store, the key).
    """
    if failure.user_failure_data is not None and failure.user_failure_data.description:
        return failure.user_failure_data.description
    error = failure.error
    if error is None:
        return "no error recorded"
    while error.cause is not None and (
        error.cls_name.startswith("Dagster") or error.cls_name == "Failure"
    ):
        error = error.cause
    qualified, colon, text = error.message.strip().partition(": ")
    if colon and qualified.endswith(error.cls_name):  # "json.decoder.JSONDecodeError: ..."
        return f"{error.cls_name}: {text}"
    return error.message


def _one_line(text: object, *, first: bool = False) -> str:
    """``text`` redacted, on one line: its lines joined, or with ``first`` its first line."""
    from catalog_assets.core.redaction import redact

    lines = [line.strip() for line in redact(text).splitlines() if line.strip()]
    return (lines[0] if first else " ".join(lines)) if lines else ""


def _error(command: str, message: object) -> None:
    """Print one error line of ``command`` to stderr, redacted."""
    text = _one_line(message) or type(message).__name__  # an exception without a message
    print(f"catalog-assets {command}: {text}", file=sys.stderr)


def _inline(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


LOOKUPS = {
    "catalogs-for": (
        "catalogs_for",
        "content_key",
        ("catalog_query_uuid", "catalog_query_title", "catalog_uuid", "catalog_title"),
        "Which enterprise catalogs and catalog queries contain a content key.",
    ),
    "contents-of": (
        "contents_of",
        "uuid",
        ("content_key", "content_type", "title", "deleted"),
        "The content of a catalog query or enterprise catalog (by uuid).",
    ),
}


def run_lookup(args: argparse.Namespace) -> int:
    from catalog_assets.core import lookup

    function, argument, columns, _ = LOOKUPS[args.command]
    value = getattr(args, argument)
    rows = getattr(lookup, function)(value)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        _print_rows(rows, columns)
    else:
        print(f"Nothing found for {value!r}.")
    return 0


def _resolved(name: str):
    """One of the environment's resources, its EnvVar settings resolved."""
    from catalog_assets.defs.resources import build_resources
    from catalog_assets.settings import Settings

    return build_resources(Settings.from_env())[name].process_config_and_initialize()


def migrate(args: argparse.Namespace) -> int:
    """Create the catalog store's tables, or bring them up to this code's schema version."""
    from catalog_assets.core.redaction import redact
    from catalog_assets.store import open_store

    url = _resolved("catalog_store").url
    with open_store(url) as store:
        store.ensure_schema()
        version = store.schema_version()
    # redact, not redact_url: that one drops the empty host of duckdb:///path URLs.
    print(f"catalog store {redact(url)}: schema version {version}")
    return 0


def dead_letters(args: argparse.Namespace) -> int:
    """List dead-lettered events, or replay them once their cause is fixed."""
    from catalog_assets.core import dead_letters as letters
    from catalog_assets.core.content import utcnow
    from catalog_assets.core.events import SchemaRegistry

    with _resolved("catalog_store").open() as store:
        if args.action == "list":
            rows = [
                {
                    "id": d.id,
                    "topic": d.topic,
                    "partition": d.partition,
                    "offset": d.offset,
                    "received_at": d.received_at.isoformat(),
                    "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
                    "error": _one_line(d.error),
                }
                for d in store.dead_letters(include_replayed=args.all)
            ]
            if args.json:
                print(json.dumps(rows, indent=2))
            elif rows:
                _print_rows(rows, ("id", "topic", "partition", "offset", "received_at", "error"))
            else:
                print("No dead letters.")
            return 0
        registry_url = os.environ.get("KAFKA_SCHEMA_REGISTRY_URL")
        source = _resolved("content_source")
        try:
            report = letters.replay(
                store,
                source,
                utcnow(),
                ids=args.ids or None,
                registry=SchemaRegistry(registry_url) if registry_url else None,
            )
        except ValueError as error:  # ids that name no dead letter waiting to be replayed
            _error("dead-letters replay", error)
            return 1
    for line in report:
        print(f"dead letter {line.id}: {_one_line(line.outcome)}")
    return 0 if all(line.outcome.startswith("applied") for line in report) else 1


def broker(args: argparse.Namespace) -> int:
    """Run a local Kafka-compatible broker (Tansu) for development, until Ctrl-C."""
    from catalog_assets.devtools.broker import main_broker

    return main_broker(args.port)


def publish(args: argparse.Namespace) -> int:
    """Publish one test content event to KAFKA_BOOTSTRAP_SERVERS, in either format."""
    from confluent_kafka import Producer

    from catalog_assets.core.events import encode_json_event
    from catalog_assets.devtools.encoders import encode_openedx_catalog_info_changed
    from catalog_assets.settings import Settings

    if args.format == "openedx":
        topic = args.topic or "course-catalog-info-changed"
        value, headers = encode_openedx_catalog_info_changed(args.content_key)
        key = args.content_key.encode()
    else:
        topic = args.topic or "content-metadata-changed"
        metadata = json.loads(Path(args.metadata).read_text()) if args.metadata else None
        event_type = "content.deleted" if args.delete else "content.upserted"
        key, value = encode_json_event(
            args.content_key, args.content_type, event_type=event_type, metadata=metadata
        )
        headers = None
    producer = Producer(Settings.from_env().kafka().client_config())
    producer.produce(topic, key=key, value=value, headers=headers)
    if producer.flush(15):
        _error("publish", f"could not deliver to {topic} within 15 s")
        return 1
    print(f"published a {args.format} event for {args.content_key} to {topic}")
    return 0


def replay_events(args: argparse.Namespace) -> int:
    """Rewind the sensor's cursor to a point in time; the events after it are applied again."""
    from datetime import datetime

    from sensors.replay import current_cursor, rewind_cursor

    since = datetime.fromisoformat(args.since)
    with _local_instance() as instance:
        current = current_cursor(instance, args.sensor)
    cursor = rewind_cursor(os.environ, since, topics=args.topic or None, current=current)
    print(f"cursor for {args.sensor}: {cursor}")
    command = ["dagster", "sensor", "cursor", args.sensor, "--set", cursor]
    command += ["-m", "catalog_assets.definitions"]
    if args.dry_run:
        print("dry run; to apply: " + " ".join(command))
        return 0
    import subprocess

    home = str(_dagster_home())
    executable = str(Path(sys.executable).parent / command[0])
    done = subprocess.run([executable, *command[1:]], env={**os.environ, "DAGSTER_HOME": home})
    return done.returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catalog-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("refresh", help=refresh.__doc__).set_defaults(handler=refresh)
    commands.add_parser("migrate", help=migrate.__doc__).set_defaults(handler=migrate)
    for name, (_, argument, _, description) in LOOKUPS.items():
        command = commands.add_parser(name, help=description)
        command.add_argument(argument)
        command.add_argument("--json", action="store_true", help="machine-readable output")
        command.set_defaults(handler=run_lookup)

    letters = commands.add_parser("dead-letters", help=dead_letters.__doc__)
    letters.add_argument("action", choices=("list", "replay"))
    letters.add_argument("ids", nargs="*", type=int, help="replay only these ids")
    letters.add_argument("--all", action="store_true", help="list replayed ones too")
    letters.add_argument("--json", action="store_true", help="machine-readable output")
    letters.set_defaults(handler=dead_letters)

    local_broker = commands.add_parser("broker", help=broker.__doc__)
    local_broker.add_argument("--port", type=int, default=None, help="default: a free port")
    local_broker.set_defaults(handler=broker)

    event = commands.add_parser("publish", help=publish.__doc__)
    event.add_argument("content_key", help="a content key, or a course-run key for openedx")
    event.add_argument("--format", choices=("json", "openedx"), default="json")
    event.add_argument("--content-type", default="course")
    event.add_argument("--delete", action="store_true", help="a content.deleted event (json)")
    event.add_argument("--metadata", help="JSON file with the full record (json)")
    event.add_argument("--topic", help="default: the format's default topic")
    event.set_defaults(handler=publish)

    replay = commands.add_parser("replay", help=replay_events.__doc__)
    replay.add_argument("--since", required=True, help="ISO 8601 time, e.g. 2026-11-27T10:00Z")
    replay.add_argument("--topic", action="append", help="only these topics (repeatable)")
    replay.add_argument("--sensor", default="content_events_sensor")
    replay.add_argument("--dry-run", action="store_true", help="print the cursor only")
    replay.set_defaults(handler=replay_events)
    return parser


def _setup_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or setup (a file, a URL, a server that is not there): the
    user needs one line saying what, not a traceback. Imported only once something failed."""
    import dagster as dg
    import duckdb
    import psycopg2

    from catalog_assets.core.discovery import DiscoveryError
    from catalog_assets.core.events import SchemaRegistryUnavailable
    from catalog_assets.devtools.broker import BrokerError
    from catalog_assets.store import StoreSchemaMismatch, StoreUnavailable

    return (
        ValueError,
        OSError,
        DiscoveryError,
        BrokerError,
        SchemaRegistryUnavailable,
        StoreSchemaMismatch,
        StoreUnavailable,
        psycopg2.OperationalError,
        duckdb.IOException,
        dg.DagsterInvalidConfigError,  # e.g. a resource's environment variable is not set
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except Exception as error:
        if not isinstance(error, _setup_errors()):
            raise
        _error(args.command, error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
