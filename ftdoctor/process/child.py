"""The child process of `ftdoctor check`: run one script as `python SCRIPT ARGS` would, walk its pipeline inside
the call that starts training, send the report to the parent and end the process with `os._exit`.

Nothing of the script runs after training starts: no `finally:` block, no `except BaseException:`, no atexit
handler, no thread keeps the process alive. The parent (runner.py) owns the timeout, Ctrl-C and rendering.

Started as `python BOOT SPEC.json` (runner._BOOT, which calls `main`; `python -m ftdoctor.process.child SPEC.json` works
too); the spec names the script, its arguments, the walk's options, the file the result goes to and the
descriptor of the event pipe (progress, prompts).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ftdoctor.process.result import ScriptResult

_events = None  # the pipe to the parent: one JSON object per line


def send(event: str, **fields: Any) -> None:
    if _events is None or os.environ.get("RANK", "0") != "0":
        return
    try:
        _events.write(json.dumps({"event": event, **fields}) + "\n")
        _events.flush()
    except (OSError, ValueError):
        pass  # the parent went away; the result file still holds the report


def _announce_prompts() -> None:
    """The script's stdout goes to the parent through a pipe, behind a spinner: say when it asks for input, so the
    parent can show the prompt, and read the answer from the terminal this process inherited."""
    import builtins

    def prompting_input(prompt: object = "") -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        send("input", prompt=str(prompt))
        line = sys.stdin.readline()
        if not line:
            raise EOFError("EOF when reading a line")
        return line.rstrip("\n")

    builtins.input = prompting_input


def finish(spec: dict[str, Any], envelope: dict[str, Any]) -> None:
    """Write the result where the parent reads it and end the process at once."""
    path = spec["result_path"]
    rank = os.environ.get("RANK", "0")
    if rank != "0":
        path = f"{path}.rank{rank}"
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(envelope, fh, default=_jsonable)
        os.replace(path + ".tmp", path)
    except BaseException:
        traceback.print_exc()
    send("done")
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def envelope_of(result: Any) -> dict[str, Any]:
    return {
        "report": result.report.to_dict() if result.report is not None else None,
        "message": result.message,
        "outcome": result.outcome,
        "traceback": result.traceback,
        "artifacts": result.artifacts,
    }


def run(spec: dict[str, Any]) -> None:
    from ftdoctor.capture import capture_script
    from ftdoctor.core.source import set_origin
    from ftdoctor.process.child import walk_capture

    set_origin(spec["cwd"])

    def progress(stage: str) -> None:
        send("stage", stage=stage)

    from ftdoctor.core import progress as progress_mod

    progress_mod.set_sink(lambda stage, text: send("step", stage=stage, text=text))

    from ftdoctor.runtime.ranks import rank_and_world

    rank, world = rank_and_world()
    if world > 1 and spec.get("collective_timeout"):
        _shorten_collective_timeouts(float(spec["collective_timeout"]))

    standin = _cuda_standin(spec)

    def walk_and_finish(cap: Any) -> None:
        if not spec.get("cuda_standin") and world == 1 and _stopped_for_want_of_cuda(cap):
            # A script written for a GPU: the parent runs it again with the CUDA stand-in.
            finish(spec, {"report": None, "outcome": "needs-cuda", "message": str(cap.exception)})
        send("captured", outcome=cap.outcome)
        if standin is not None:
            cap.cuda_standin = standin.facts()
        options = dict(spec.get("options") or {})
        options["disposable"] = True  # this process ends after the walk: the model may be worked on in place
        if world > 1:
            # Every rank records what it holds; rank 0 compares them and walks, the others are done.
            options["rank_facts"] = _exchange_facts(spec, cap, rank, world)
            if rank != 0:
                finish(spec, {"report": None, "outcome": "rank", "message": None})
        try:
            result = walk_capture(
                cap,
                stages=spec.get("stages"),
                options=options,
                check_dirs=spec.get("check_dirs") or (),
                progress=progress,
                stage_done=_saving_partial(spec.get("partial_path")),
            )
            if spec.get("artifacts_dir") and result.report is not None:
                result.artifacts = save_artifacts(result.report.context, spec["artifacts_dir"])
            envelope = envelope_of(result)
        except BaseException:
            envelope = {
                "report": None,
                "outcome": "internal-error",
                "message": "ftdoctor internal error (a bug in ftdoctor, not in your pipeline):\n"
                + traceback.format_exc(),
            }
        finish(spec, envelope)

    cap = capture_script(spec["script"], spec.get("argv") or [], on_capture=walk_and_finish, quiet=False)
    walk_and_finish(cap)  # the script ended, exited or raised before training: say what happened


def _saving_partial(path: str | None) -> Callable[[Any], None] | None:
    """After each stage, the report so far, written where the parent reads it if the walk runs out of time."""
    if not path:
        return None

    def save(report: Any) -> None:
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as fh:
                json.dump(report.to_dict(), fh, default=_jsonable)
            os.replace(path + ".tmp", path)
        except Exception:
            pass

    return save


def _stopped_for_want_of_cuda(cap: Any) -> bool:
    from ftdoctor.runtime.cuda_standin import asked_for_missing_cuda

    try:
        import torch

        if torch.cuda.is_available():
            return False
    except Exception:
        return False
    return cap.exception is not None and asked_for_missing_cuda(cap.exception)


def _cuda_standin(spec: dict[str, Any]) -> Any:
    """What a script written for a GPU needs where there is none (see ftdoctor.runtime.cuda_standin): in its
    second run, its CUDA moves land on the CPU and GPU-only loading is left out; in every run, a bitsandbytes
    optimizer that cannot be built here is replaced."""
    from ftdoctor.capture.imports import PostImportHooks
    from ftdoctor.runtime.cuda_standin import install_when_imported

    user_dir = os.path.dirname(os.path.abspath(spec["script"]))
    return install_when_imported(PostImportHooks(), user_dir, gpu_only_calls=bool(spec.get("cuda_standin")))


def _shorten_collective_timeouts(seconds: float) -> None:
    """Once the script imports torch, its process groups give up on a collective after ``seconds``."""
    from ftdoctor.capture.imports import PostImportHooks

    def patch(_module) -> None:
        from ftdoctor.runtime.ranks import shorten_collective_timeouts

        shorten_collective_timeouts(seconds)

    PostImportHooks().when_imported("torch", patch)


def _exchange_facts(spec: dict[str, Any], cap: Any, rank: int, world: int) -> list[dict]:
    """Write this rank's facts to the run's folder; on rank 0, read every rank's."""
    from ftdoctor.runtime.ranks import collect, failure_facts, read_facts, write_facts

    try:
        if cap.outcome in ("training", "loop"):
            from ftdoctor.engine.pipeline import Pipeline
            from ftdoctor.targets import target_for

            pipeline = Pipeline.from_trainer(cap.trainer, cap) if cap.outcome == "training" else Pipeline.from_loop(cap)
            facts = collect(target_for(pipeline), pipeline)
        else:
            facts = failure_facts(cap)
    except BaseException:
        facts = {"rank": rank, "world_size": world, "outcome": "internal-error", "error": traceback.format_exc()}
    write_facts(spec["ranks_dir"], facts)
    if rank != 0:
        return []
    return read_facts(spec["ranks_dir"], world, timeout=float(spec.get("collective_timeout") or 60) + 30)


def save_artifacts(context: dict[str, Any], folder: str) -> dict[str, str]:
    """What pytest fixtures may read in the parent: the first batch, the training rows, a picture of the
    pipeline. Each is written only if it can be (a live trainer cannot cross processes)."""
    import pickle

    out: dict[str, str] = {}
    os.makedirs(folder, exist_ok=True)
    batch = context.get("batch")
    if isinstance(batch, dict):
        try:
            import torch

            path = os.path.join(folder, "batch.pt")
            torch.save(batch, path)
            out["batch"] = path
        except Exception:
            pass
    ds = context.get("effective_train_dataset")
    if ds is not None:
        try:
            path = os.path.join(folder, "train_dataset.pkl")
            with open(path, "wb") as fh:
                pickle.dump(ds, fh)
            out["train_dataset"] = path
        except Exception:
            pass
    pipeline = context.get("pipeline")
    if pipeline is not None:
        from types import SimpleNamespace

        snap = SimpleNamespace(task=getattr(pipeline, "task", None), script=getattr(pipeline, "script", None))
        for name in ("tokenizer", "args", "data_collator", "model"):
            value = getattr(pipeline, name, None)
            try:
                pickle.dumps(value)
            except Exception:
                value = None
            setattr(snap, name, value)
        try:
            path = os.path.join(folder, "pipeline.pkl")
            with open(path, "wb") as fh:
                pickle.dump(snap, fh)
            out["pipeline"] = path
        except Exception:
            pass
    return out


def _end_with_parent() -> None:
    """If the parent dies (killed, or its terminal closed), nobody waits for this report: end too."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="ftdoctor-parent-watch", daemon=True).start()


def main() -> None:
    global _events
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    # `python -m` put the working directory first on sys.path; `python SCRIPT` puts the script's folder there
    # instead (capture_script adds it), and nothing else.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)
    if spec.get("events_path"):
        _events = open(spec["events_path"], "a", buffering=1, encoding="utf-8")
    _announce_prompts()
    _end_with_parent()
    try:
        run(spec)
    except BaseException:
        finish(
            spec,
            {
                "report": None,
                "outcome": "internal-error",
                "message": "ftdoctor internal error (a bug in ftdoctor, not in your pipeline):\n"
                + traceback.format_exc(),
            },
        )


if __name__ == "__main__":
    main()


def walk_capture(
    cap: Any,
    *,
    stages: Iterable[str] | None = None,
    options: dict[str, Any] | None = None,
    check_dirs: Iterable[str] = (),
    progress: Callable[..., Any] | None = None,
    timeout: float | None = None,
    stage_done: Callable[..., Any] | None = None,
) -> ScriptResult:
    """Walk what running the script captured, or say why there is nothing to walk."""
    from ftdoctor.capture import format_exception
    from ftdoctor.core.source import display_path
    from ftdoctor.engine.pipeline import Pipeline, context_values
    from ftdoctor.engine.walk import walk

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
    report = walk(values, script=rel, stages=stages, progress=progress, check_dirs=check_dirs, stage_done=stage_done)
    report.internal_errors[:0] = cap.internal_errors
    return ScriptResult(report, None, cap.outcome, cap.output, trace)


def _no_walk_message(cap: Any, rel: str, timeout: float | None) -> str:
    if cap.outcome == "finished":
        return (
            f"{rel} ran to the end without starting training: nothing to walk. ftdoctor captures the pipeline "
            "when trainer.train() is called, or at the first optimizer step of a hand-written loop."
        )
    if cap.outcome == "exited":
        return f"{rel} exited (sys.exit({cap.exit_code!r})) before trainer.train() was called."
    if cap.outcome == "interrupted":
        from ftdoctor.capture import user_site_in_traceback

        site = user_site_in_traceback(cap.exc_tb, cap.user_dir)
        return (
            f"{rel} raised KeyboardInterrupt{' at ' + str(site) if site else ''} before training started: "
            "nothing to walk."
        )
    return (
        f"{rel} did not reach trainer.train() within {timeout or 0:g} s (--timeout); it may be waiting on the "
        "network (try --offline) or preprocessing a large dataset."
    )
