"""``catalog-assets refresh``: the full_refresh job in-process, its guardrail overrides as
flags, and a summary that says why a check did not pass or a step failed."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from catalog_assets.cli.common import (
    PROG,
    aligned,
    inline,
    is_number,
    local_instance,
    one_line,
    wrapped,
)

PREVIEW_ROWS = 5
"""Rows of a failed check's preview table (and items of its lists) that the summary prints."""
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Override:
    """A guardrail override of the full_refresh job: a flag, and the run config it sets."""

    flag: str
    op: str
    field: str
    """A field of the op's config class in ``catalog_assets.defs.bulk_assets``."""
    help: str
    metavar: str | None = None
    """Set for an override that names queries (repeatable); else the flag is a switch."""

    @property
    def usage(self) -> str:
        return f"{self.flag} {self.metavar}" if self.metavar else self.flag


OVERRIDES = (
    Override(
        "--confirm-mass-removal",
        "catalog_queries",
        "confirm_mass_removal",
        "apply a catalog query listing that removes more than max_removal_share (20%%) of the "
        "stored queries or enterprise catalogs, or an empty listing",
    ),
    Override(
        "--confirm-mass-tombstone",
        "content_metadata",
        "confirm_mass_tombstone",
        "tombstone the records the source no longer has even when they are more than "
        "max_tombstone_share (20%%) of the live content",
    ),
    Override(
        "--confirm-held",
        "catalog_content_associations",
        "confirm_held_queries",
        "apply the held association change of this catalog query (repeatable)",
        metavar="QUERY_UUID",
    ),
    Override(
        "--confirm-all-held",
        "catalog_content_associations",
        "confirm_all_held",
        "apply every held association change",
    ),
)


def refresh_run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run config of a refresh: quiet console logs and the overrides given."""
    ops: dict[str, Any] = {}
    given = vars(args)
    for override in OVERRIDES:
        value = given.get(override.field)
        if value:
            ops.setdefault(override.op, {"config": {}})["config"][override.field] = value
    return {**QUIET_LOGS, "ops": ops} if ops else dict(QUIET_LOGS)


def refresh(args: argparse.Namespace) -> int:
    import warnings

    import dagster as dg

    from catalog_assets.definitions import defs

    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # Dagster's own, not actionable
    job = defs().resolve_job_def("full_refresh")
    with local_instance() as instance:
        result = job.execute_in_process(
            instance=instance, run_config=refresh_run_config(args), raise_on_error=False
        )
        for line in refresh_summary(result):
            print(line)
    failed_errors = [
        e.check_name
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    if failed_errors:  # the run wrote what it could; an operator must look at these
        print(f"error checks did not pass: {', '.join(failed_errors)}")
    return 0 if result.success and not failed_errors else 1


def refresh_summary(result: Any) -> list[str]:
    """How a run went (its ``ExecuteInProcessResult``): every numeric metadata entry of each
    asset, each check's outcome and why a failed one failed, and each failed step's cause."""
    lines = [f"full_refresh run {result.run_id}: {'succeeded' if result.success else 'FAILED'}"]
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        numbers = {k: v.value for k, v in metadata.items() if is_number(v.value)}
        lines += wrapped(f"  {event.asset_key.to_user_string()}: ", inline(numbers), " " * 4)
    for evaluation in result.get_asset_check_evaluations():
        severity = evaluation.severity.value
        status = "passed" if evaluation.passed else f"did not pass ({severity})"
        lines.append(f"  check {evaluation.check_name}: {status}")
        if not evaluation.passed:
            lines += explain_check(evaluation.metadata, evaluation.description)
    for event in result.all_events:
        if event.is_step_failure:
            cause = failure_cause(event.step_failure_data)
            lines.append(f"  step {event.step_key} failed: {one_line(cause, first=True)}")
            lines += _hint(cause)
    return lines


def explain_check(metadata: Mapping[str, Any], description: str | None = None) -> list[str]:
    """Why a check did not pass, from its result's metadata, in a few indented lines: its
    counts, its examples, its markdown preview as an aligned table, and the flag that
    overrides it."""
    import dagster as dg

    lines = [f"    {one_line(description)}"] if description else []
    values = {name: entry.value for name, entry in metadata.items()}
    counts = {name: value for name, value in values.items() if is_number(value)}
    if counts:
        lines += wrapped("    ", inline(counts), " " * 4)
    markdown = []
    for name, value in values.items():
        if isinstance(metadata[name], dg.MarkdownMetadataValue):
            markdown.append(value)
            lines += [f"    {line}" for line in _markdown_lines(value)]
        elif isinstance(value, list) and value:
            shown = [one_line(json.dumps(v) if isinstance(v, list | dict) else v) for v in value]
            more = f" (and {len(shown) - PREVIEW_ROWS} more)" if len(shown) > PREVIEW_ROWS else ""
            lines += wrapped(f"    {name}: ", ", ".join(shown[:PREVIEW_ROWS]) + more, " " * 6)
    return lines + _hint("\n".join(markdown))


_TABLE_RULE = re.compile(r"\|(\s*:?-+:?\s*\|)+")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


def _markdown_lines(text: str) -> list[str]:
    """A markdown preview as plain text: its table aligned (the first ``PREVIEW_ROWS`` rows),
    its other lines without markup. Lines naming run config that a refresh flag sets are left
    out: ``_hint`` names the flag instead."""
    table: list[list[str]] = []
    prose = []
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("|") and line.endswith("|") and len(line) > 1:
            if not _TABLE_RULE.fullmatch(line):
                cells = _CELL_SEPARATOR.split(line)[1:-1]  # outside the outer pipes: empty
                table.append([cell.strip().replace("\\|", "|") for cell in cells])
        elif line and line != "None." and not any(o.field in line for o in OVERRIDES):
            prose.append(one_line(line.replace("`", "")))
    lines = []
    if table:
        header, body = table[0], table[1:]
        lines += aligned([header, *body[:PREVIEW_ROWS]])
        if len(body) > PREVIEW_ROWS:
            lines.append(f"... {len(body) - PREVIEW_ROWS} more rows in the run's check result")
    return lines + prose


def _hint(text: str) -> list[str]:
    """The refresh flags for the run config that ``text`` names (a guardrail's message)."""
    flags = [override.usage for override in OVERRIDES if override.field in text]
    if not flags:
        return []
    return [f"    to apply it anyway: {PROG} refresh {' or '.join(flags)}"]


def failure_cause(failure: Any) -> str:
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
