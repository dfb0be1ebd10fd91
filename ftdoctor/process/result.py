"""What running a script under ftdoctor gives the caller: a report, or the reason there is none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftdoctor.core.report import Report


class HarnessError(Exception):
    """ftdoctor could not walk the pipeline (bad arguments, no training reached): exit code 2."""


@dataclass
class ScriptResult:
    """What running a script under ftdoctor gave: the report, or why there is none (exit code 2)."""

    report: Report | None
    message: str | None = None  # why no walk happened
    outcome: str = "training"  # training loop error finished exited timeout interrupted crashed tensorflow
    output: str = ""  # the last lines the script printed
    traceback: str | None = None  # the script's own exception, when it raised before training
    returncode: int | None = None  # the child's exit status
    artifacts: dict[str, str] = field(default_factory=dict)  # files the child left for pytest fixtures
    capture: Any = None  # the live capture (in-process runs only)
    stopped_at: str | None = None  # the stage that was running when the walk timed out (the report has those before)
