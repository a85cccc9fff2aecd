"""What the bulk lane's steps share: phase timings, the guardrail error, pair columns."""

from __future__ import annotations

import time

PAIR_COLUMNS = ("catalog_query_uuid", "content_key")
RECORD_KEY = "__content_key"
"""Where records carry their key for ``match_table``: no valid filter key can name a field
with ``__`` in it, so this cannot collide with anything a filter compares."""


class Timer:
    """Wall time per named phase, for materialization metadata."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def phase(self, name: str) -> _Phase:
        return _Phase(self, name)


class _Phase:
    def __init__(self, timer: Timer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        elapsed = time.perf_counter() - self.started
        self.timer.seconds[self.name] = round(elapsed, 3)


class GuardrailTripped(RuntimeError):
    """A refresh that would change too much at once was refused; nothing was written."""
