"""What every command shares: the Dagster instance, the environment's resources, and output
that stays on one line, redacted, and aligned."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from catalog_assets.settings import LOCAL_DAGSTER_HOME

PROG = "catalog-assets"
WIDTH = 100
"""Summary lines wrap here, between entries."""
CELL_WIDTH = 60
"""A table cell longer than this is cut, unless it ends its row."""


def dagster_home() -> Path:
    """DAGSTER_HOME, else ./.dagster_home (what `make run` and `make dev` use), made ready:
    the local home always holds the project's local instance config (SQLite, no telemetry), so
    an edit to `dagster.yaml` takes effect; another home gets it only when it has none."""
    from catalog_assets.settings import Settings

    home = Path(Settings.from_env().dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config, project_config = home / "dagster.yaml", Path(__file__).parents[2] / "dagster.yaml"
    local = home == Path(LOCAL_DAGSTER_HOME).resolve()
    if project_config.exists() and (local or not config.exists()):
        text = project_config.read_text()
        if not config.exists() or config.read_text() != text:
            config.write_text(text)
    return home


def local_instance():
    """The Dagster instance of ``dagster_home()``."""
    import dagster as dg

    return dg.DagsterInstance.from_config(str(dagster_home()))


def resolved(name: str):
    """One of the environment's resources, its EnvVar settings resolved."""
    from catalog_assets.defs.resources import build_resources
    from catalog_assets.settings import Settings

    return build_resources(Settings.from_env())[name].process_config_and_initialize()


def one_line(text: object, *, first: bool = False) -> str:
    """``text`` redacted, on one line: its lines joined, or with ``first`` its first line."""
    from catalog_assets.core.redaction import redact

    lines = [line.strip() for line in redact(text).splitlines() if line.strip()]
    return (lines[0] if first else " ".join(lines)) if lines else ""


def print_error(command: str, message: object) -> None:
    """Print one error line of ``command`` to stderr, redacted."""
    text = one_line(message) or type(message).__name__  # an exception without a message
    print(f"{PROG} {command}: {text}", file=sys.stderr)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def inline(values: Mapping[str, Any]) -> str:
    """``name=value, ...``; floats to three decimals."""
    return ", ".join(
        f"{name}={round(value, 3) if isinstance(value, float) else value}"
        for name, value in values.items()
    )


def wrapped(head: str, text: str, indent: str) -> list[str]:
    """``head`` + ``text`` on lines of at most ``WIDTH``, broken between entries only."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=head,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [head.rstrip()]


def _cell(value: object, last: bool) -> str:
    text = one_line(value)
    return text if last or len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 3] + "..."


def aligned(rows: Sequence[Sequence[object]]) -> list[str]:
    """Rows as lines of left-aligned columns (the first row is the header), each cell on one
    line and redacted."""
    cells = [[_cell(value, i == len(row) - 1) for i, value in enumerate(row)] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


def print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    for line in aligned([columns, *([row[c] for c in columns] for row in rows)]):
        print(line)
