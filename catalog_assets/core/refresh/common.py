"""What the bulk lane's steps share: phase timings, the guardrail error, pair columns."""

from __future__ import annotations

import time
from collections.abc import Callable

PAIR_COLUMNS = ("catalog_query_uuid", "content_key")
RECORD_KEY = "__content_key"
"""Where records carry their key for ``match_table``: no valid filter key can name a field
with ``__`` in it, so this cannot collide with anything a filter compares."""


class Timer:
    """Wall time per named phase, for materialization metadata.

    ``on_phase(name, seconds)`` is called as each phase ends (also when it raises), so that a
    caller can log progress while a long refresh is still running.
    """

    def __init__(self, on_phase: Callable[[str, float], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_phase = on_phase

    def phase(self, name: str) -> _Phase:
        return _Phase(self, name)


class _Phase:
    def __init__(self, timer: Timer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        elapsed = round(time.perf_counter() - self.started, 3)
        self.timer.seconds[self.name] = elapsed
        if self.timer.on_phase is not None:
            self.timer.on_phase(self.name, elapsed)


class GuardrailTripped(RuntimeError):
    """A refresh that would change too much at once was refused; nothing was written."""
