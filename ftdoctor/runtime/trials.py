"""GPU pre-flight helpers: device inventory (NVML), GPU-like memory accounting on the CPU, trial steps in a child
process, and recognising the CUDA errors that hide a real cause.

The parent never touches CUDA: every step that runs on a GPU runs in a child process (``python -m ftdoctor.runtime.trials``),
so an out-of-memory or a device-side assert cannot poison the process that walks the pipeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from ftdoctor.runtime.devices import is_cuda_error, is_oom, model_device, release

# The child's entry point ("module:function"); tests replace it with a fake device at the process boundary.
TRIAL_TARGET = "ftdoctor.runtime.trials:trial_steps"


# -- where the walk runs the model ----------------------------------------------------------------------------------


# -- GPU-like accounting on the CPU --------------------------------------------------------------------------------


# -- trial steps in a child process --------------------------------------------------------------------------------


@dataclass
class Trial:
    batch_size: int
    ok: bool
    peak_bytes: int | None = None
    seconds: float = 0.0
    error: str | None = None
    oom: bool = False
    cuda_error: bool = False


@dataclass
class ChildResult:
    trials: list[Trial]
    returncode: int
    stderr: str = ""
    device_error: str | None = None  # the CUDA error that ended the child, if any


def run_trials(payload: dict[str, Any], timeout: float = 600.0, target: str | None = None) -> ChildResult:
    """Run trial steps in a fresh Python process; whatever happens there (OOM, device assert, a crash), the
    parent only reads a result file and the child's stderr."""
    import torch

    target = target or TRIAL_TARGET
    with tempfile.TemporaryDirectory(prefix="ftdoctor-probe-") as tmp:
        task, result = os.path.join(tmp, "task.pt"), os.path.join(tmp, "result.jsonl")
        torch.save(payload, task)
        module, func = target.split(":")
        from ftdoctor.core.env import fresh_python

        code = f"import {module} as m; m.{func}(sys.argv[1], sys.argv[2])"
        try:
            proc = subprocess.run(
                fresh_python(code, task, result), capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
            )
            rc, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc, stderr = 124, f"the trial steps took longer than {timeout:g} s\n{exc.stderr or ''}"
        trials = []
        if os.path.exists(result):
            with open(result, encoding="utf-8") as fh:
                trials = [Trial(**json.loads(line)) for line in fh if line.strip()]
    device_error = next((t.error for t in trials if t.cuda_error), None)
    if device_error is None and rc != 0:
        lines = stderr.strip().splitlines() or [f"exit status {rc}"]
        raised = [ln.strip() for ln in lines if re.match(r"^[\w.]*(Error|Exception|Assert\w*)\b.*:", ln.strip())]
        device_error = next((ln for ln in raised + [ln.strip() for ln in lines] if is_cuda_error(ln)), None)
        if device_error is None:
            trials.append(Trial(-1, False, error=f"the trial process died: {lines[-1]}"))
    return ChildResult(trials, rc, stderr[-4000:], device_error)


def trial_steps(task_path: str, result_path: str) -> None:
    """The child: for each batch size, two training steps on the GPU as the Trainer takes them; one line of JSON
    per trial (peak bytes, or the error). A CUDA error ends the process: its context is unusable afterwards."""
    import torch

    task = torch.load(task_path, weights_only=False)
    device = task.get("device", "cuda")
    model = task["model"].to(device)

    def write(trial: Trial) -> None:
        with open(result_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(trial)) + "\n")
        if trial.cuda_error:
            sys.exit(3)

    _trials(model, task, device, write)


def run_trials_here(payload: dict[str, Any]) -> ChildResult:
    """The trial steps in this process, on the model where it is: the walk already runs it on its GPU, and a child
    would need a second copy of it there. An out-of-memory is recovered from (the cache is emptied); a CUDA error
    ends the trials, as the context cannot be used after it."""
    model = payload["model"]
    trials: list[Trial] = []
    checkpointing = getattr(model, "is_gradient_checkpointing", False)
    try:
        _trials(model, payload, model_device(model), trials.append)
    finally:
        if payload.get("gradient_checkpointing") and not checkpointing:
            with contextlib.suppress(Exception):
                model.gradient_checkpointing_disable()
        with contextlib.suppress(Exception):
            model.zero_grad(set_to_none=True)
        if not any(t.cuda_error for t in trials):
            release(model_device(model))
    device_error = next((t.error for t in trials if t.cuda_error), None)
    return ChildResult(trials, 0 if device_error is None else 3, "", device_error)


def _trials(model, task: dict[str, Any], device, write) -> None:
    """For each batch size, ``steps`` training steps as the Trainer takes them; each trial handed to ``write``.
    Stops at a failed size (every larger one fails too) and at a CUDA error."""
    import torch

    model.train()
    if task.get("gradient_checkpointing"):
        enable_checkpointing(model, task.get("gradient_checkpointing_kwargs"))
    opt_cls = _import(task["optimizer_class"])
    optimizer = opt_cls([p for p in model.parameters() if p.requires_grad], **task.get("optimizer_kwargs", {}))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(task.get("mixed_precision") or "")
    for size, batch in task["batches"]:
        trial = _one_trial(model, optimizer, size, batch, device, dtype, task.get("steps", 2))
        write(trial)
        if not trial.ok:
            break  # above a failed size every larger one fails too; after a CUDA error nothing runs


def _one_trial(model, optimizer, size, batch, device, dtype, steps) -> Trial:
    import torch

    cuda = str(device).startswith("cuda")
    t0 = time.perf_counter()
    try:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                loss = model(**batch)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del loss
        if cuda:
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() if cuda else None
        return Trial(size, True, peak, time.perf_counter() - t0)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".strip()
        oom = isinstance(exc, torch.OutOfMemoryError) or is_oom(text)
        result = Trial(
            size,
            False,
            None,
            time.perf_counter() - t0,
            text.splitlines()[0][:500],
            oom,
            not oom and is_cuda_error(text),
        )
        optimizer.zero_grad(set_to_none=True)
        if cuda and oom:
            torch.cuda.empty_cache()
        return result


def enable_checkpointing(model, kwargs=None) -> None:
    """Gradient checkpointing as the Trainer turns it on (the method was renamed in transformers 5.2x)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _import(path: str):
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


if __name__ == "__main__":
    trial_steps(sys.argv[1], sys.argv[2])
