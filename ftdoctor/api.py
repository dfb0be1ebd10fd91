"""Entry points shared by the CLI, the pytest plugin and in-process use.

`check_script` runs a script in its own child process (see runner.py and child.py) and returns the report the
child sent. `walk_capture` is what the child does once the script reached training (or failed before it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .report import Report

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")


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


FORCED_OFFLINE = "FTDOCTOR_FORCED_OFFLINE"  # the offline variables ftdoctor set, that the user's run does not have


def set_offline(env: dict[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    forced = [var for var in OFFLINE_VARS if env.get(var) != "1"]
    for var in OFFLINE_VARS:
        env[var] = "1"
    if forced:
        env[FORCED_OFFLINE] = ",".join(forced)


def check_script(script: str, argv: list[str] | None = None, *, timeout: float | None = None,
                 walk_timeout: float | None = None, stages: Iterable[str] | None = None,
                 progress: Callable[..., Any] | None = None, show_output: bool = False,
                 options: dict[str, Any] | None = None, check_dirs: Iterable[str] | None = None,
                 artifacts_dir: str | None = None, in_process: bool = False, nproc: int = 1,
                 collective_timeout: float | None = None) -> ScriptResult:
    """Run ``script`` like ``python SCRIPT ARGS`` in a child process, walk its pipeline at the moment training
    starts, and return the report (or why there is none). Nothing of the script runs after that moment.

    ``in_process=True`` runs the script in this process instead (the old way: the script is unwound by an
    exception, so its ``finally:`` blocks run); only for tests that need the live objects.
    """
    if not os.path.isfile(script):
        raise HarnessError(f"no such script: {script}")
    problem = not_a_script(script)
    if problem:
        raise HarnessError(problem)
    dirs = list(check_dirs) if check_dirs is not None else default_check_dirs(os.path.dirname(os.path.abspath(script)))
    if in_process:
        from .capture import capture_script
        from .source import set_origin

        set_origin(os.getcwd())
        from .capture.script import release_single_rank

        cap = capture_script(script, argv, timeout=timeout, show_output=show_output)
        try:
            result = walk_capture(cap, stages=stages, options=options, check_dirs=dirs, progress=progress,
                                  timeout=timeout)
        finally:
            release_single_rank(cap)
        result.capture = cap
        return result
    from .runner import run_child

    stages = list(stages) if stages else None
    if nproc > 1 and stages is None:
        from .findings import default_stages

        stages = default_stages(nproc)
    return run_child(script, list(argv or []), stages=stages, options=options or {},
                     check_dirs=dirs, timeout=timeout, walk_timeout=walk_timeout, progress=progress,
                     show_output=show_output, artifacts_dir=artifacts_dir, nproc=nproc,
                     **({"collective_timeout": collective_timeout} if collective_timeout else {}))


def not_a_script(path: str) -> str | None:
    """Why ``path`` is not something Python can run (a binary, another encoding, a broken notebook), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if b"\0" in head:
        return f"{path} is a binary file, not a Python script or notebook"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the 64 KiB read
            return f"{path} is not UTF-8 text (byte {exc.start}): not a Python script or notebook"
    if path.endswith(".ipynb"):
        import json

        try:
            with open(path, encoding="utf-8") as fh:
                json.load(fh)
        except ValueError as exc:
            return f"{path} is not a valid notebook (its JSON does not parse: {exc})"
    return None


def walk_capture(cap: Any, *, stages: Iterable[str] | None = None, options: dict[str, Any] | None = None,
                 check_dirs: Iterable[str] = (), progress: Callable[..., Any] | None = None,
                 timeout: float | None = None) -> ScriptResult:
    """Walk what running the script captured, or say why there is nothing to walk."""
    from .capture import format_exception
    from .pipeline import Pipeline, context_values
    from .source import display_path
    from .walk import walk

    rel = display_path(cap.script)
    trace = format_exception(cap.exception) if cap.exception is not None else None
    if cap.outcome == "training":
        values = context_values(Pipeline.from_trainer(cap.trainer, cap))
    elif cap.loop is not None and cap.outcome != "interrupted":  # a loop, also one that raised after its forward
        values = context_values(Pipeline.from_loop(cap), cap)
    elif cap.outcome in ("error", "tensorflow"):
        values = context_values(None, cap)
    else:
        return ScriptResult(None, _no_walk_message(cap, rel, timeout), cap.outcome, cap.output, trace)
    values.update(options or {})
    report = walk(values, script=rel, stages=stages, progress=progress, check_dirs=check_dirs)
    report.internal_errors[:0] = cap.internal_errors
    return ScriptResult(report, None, cap.outcome, cap.output, trace)


def _no_walk_message(cap: Any, rel: str, timeout: float | None) -> str:
    if cap.outcome == "finished":
        return (f"{rel} ran to the end without starting training: nothing to walk. ftdoctor captures the pipeline "
                "when trainer.train() is called, or at the first optimizer step of a hand-written loop.")
    if cap.outcome == "exited":
        return f"{rel} exited (sys.exit({cap.exit_code!r})) before trainer.train() was called."
    if cap.outcome == "interrupted":
        from .capture import user_site_in_traceback

        site = user_site_in_traceback(cap.exc_tb, cap.user_dir)
        return (f"{rel} raised KeyboardInterrupt{' at ' + str(site) if site else ''} before training started: "
                "nothing to walk.")
    return (f"{rel} did not reach trainer.train() within {timeout or 0:g} s (--timeout); it may be waiting on the "
            "network (try --offline) or preprocessing a large dataset.")


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
