"""Entry points shared by the CLI, the pytest plugin and in-process use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .report import Report

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")


class HarnessError(Exception):
    """ftdoctor could not walk the pipeline (bad arguments, no training reached): exit code 2."""


@dataclass
class ScriptResult:
    report: Report | None
    capture: Any
    message: str | None = None  # why no walk happened (exit code 2)


def set_offline() -> None:
    for var in OFFLINE_VARS:
        os.environ[var] = "1"


def check_script(script: str, argv: list[str] | None = None, *, timeout: float | None = None,
                 stages: Iterable[str] | None = None, progress: Callable[[str], Any] | None = None,
                 show_output: bool = False, options: dict[str, Any] | None = None,
                 check_dirs: Iterable[str] | None = None) -> ScriptResult:
    """Run ``script`` up to training, walk what it built, and return the report (or why there is none)."""
    if not os.path.isfile(script):
        raise HarnessError(f"no such script: {script}")
    from .capture import capture_script
    from .pipeline import Pipeline, context_values
    from .walk import walk

    cap = capture_script(script, argv, timeout=timeout, show_output=show_output)
    rel = os.path.relpath(cap.script) if not os.path.relpath(cap.script).startswith("..") else cap.script
    if cap.outcome == "training":
        values = context_values(Pipeline.from_trainer(cap.trainer, cap))
    elif cap.loop is not None:  # a loop, also one that raised after its first forward: walk what it built
        values = context_values(Pipeline.from_loop(cap), cap)
    elif cap.outcome in ("error", "tensorflow"):
        values = context_values(None, cap)
    else:
        if cap.outcome == "finished":
            message = (f"{rel} ran to the end without starting training: nothing to walk. ftdoctor captures the "
                       "pipeline when trainer.train() is called, or at the first optimizer step of a hand-written loop.")
        elif cap.outcome == "exited":
            message = f"{rel} exited (sys.exit({cap.exit_code!r})) before trainer.train() was called."
        else:
            message = (f"{rel} did not reach trainer.train() within {timeout or 0:g} s (--timeout); it may be "
                       "waiting on the network (try --offline) or preprocessing a large dataset.")
        return ScriptResult(None, cap, message)
    values.update(options or {})
    dirs = list(check_dirs) if check_dirs is not None else default_check_dirs(cap.user_dir)
    report = walk(values, script=rel, stages=stages, progress=progress, check_dirs=dirs)
    return ScriptResult(report, cap)


def default_check_dirs(*roots: str) -> list[str]:
    """A project's own checks live in ``ftdoctor_checks/`` beside the script or in the working directory."""
    from .registry import LOCAL_DIR

    out: list[str] = []
    for root in (*roots, os.getcwd()):
        path = os.path.join(os.path.abspath(root), LOCAL_DIR)
        if path not in out:
            out.append(path)
    return out


def check(trainer: Any, stages: Iterable[str] | None = None, **options: Any) -> Report:
    """Walk a live ``Trainer`` in-process and return the report (``report.ok``, ``report.findings``)."""
    from .pipeline import Pipeline, context_values
    from .walk import walk

    pipeline = Pipeline.from_trainer(trainer)
    values = context_values(pipeline)
    values.update(options)
    return walk(values, script=None, stages=stages, check_dirs=default_check_dirs())
