"""Live progress of a long stage: what it is doing and about how long it has left.

A check calls `step(done, total, what)` as it goes (the overfit stage once per training step); the walk names the
stage with `begin(stage)`. Whoever shows progress (the CLI's status line, through the child process's events)
installs a sink with `set_sink`; without one, nothing happens and a step costs a function call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_INTERVAL = 0.5  # seconds between two updates sent to the sink
SHOW_AFTER = 2.0  # a stage shorter than this shows no estimate

_sink: Callable[[str, str], None] | None = None
_stage = ""
_started = 0.0
_last = 0.0


def set_sink(sink: Callable[[str, str], None] | None) -> None:
    """``sink(stage, text)`` receives the updates (None: stop sending)."""
    global _sink
    _sink = sink


def begin(stage: str) -> None:
    global _stage, _started, _last
    _stage, _started, _last = stage, time.perf_counter(), 0.0


def step(done: int, total: int, what: str = "", seconds_left: float | None = None) -> None:
    """``done`` of ``total`` units of the current stage's work are finished (they make the estimate; ``what`` is
    the text shown, by default "done/total"); ``seconds_left`` caps the estimate (a stage with a time limit)."""
    global _last
    if _sink is None:
        return
    now = time.perf_counter()
    if now - _last < MIN_INTERVAL:
        return
    _last = now
    elapsed = now - _started
    text = what or f"{done}/{total}"
    if done and total > done and elapsed >= SHOW_AFTER:
        left = elapsed / done * (total - done)
        if seconds_left is not None:
            left = min(left, max(0.0, seconds_left))
        text += f" · about {eta(left)} left"
    try:
        _sink(_stage, text)
    except Exception:  # showing progress must never break the walk
        pass


def eta(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min"
