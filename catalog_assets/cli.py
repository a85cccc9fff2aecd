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


def _local_instance():
    """The Dagster instance of ``DAGSTER_HOME``, else a local SQLite one in ./.dagster_home."""
    import dagster as dg

    home = Path(os.environ.get("DAGSTER_HOME") or LOCAL_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config, project_config = home / "dagster.yaml", Path(__file__).parents[1] / "dagster.yaml"
    if not config.exists() and project_config.exists():  # the project's local instance config
        config.write_text(project_config.read_text())
    return dg.DagsterInstance.from_config(str(home))


def refresh(args: argparse.Namespace) -> int:
    """Run the full_refresh job (on the environment's resources) and print a summary."""
    from catalog_assets.definitions import defs

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
                print(f"  step {event.step_key} failed: {event.step_failure_data.error.message}")
    return 0 if result.success else 1


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
    from catalog_assets import lookup

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catalog-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("refresh", help=refresh.__doc__).set_defaults(handler=refresh)
    for name, (_, argument, _, description) in LOOKUPS.items():
        command = commands.add_parser(name, help=description)
        command.add_argument(argument)
        command.add_argument("--json", action="store_true", help="machine-readable output")
        command.set_defaults(handler=run_lookup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
