"""GPU pre-flight helpers: device inventory (NVML), GPU-like memory accounting on the CPU, trial steps in a child
process, and recognising the CUDA errors that hide a real cause.

The parent never touches CUDA: every step that runs on a GPU runs in a child process (``python -m ftdoctor.gpu``),
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
from dataclasses import asdict, dataclass, field
from typing import Any

# The CUDA context and cuBLAS workspaces live outside the caching allocator: reserve them before planning.
CONTEXT_RESERVE = 512 * 2**20

# Errors whose text tells nothing about the cause: the same batch is replayed on the CPU to get the real one.
CUDA_ERRORS = (r"device-side assert", r"CUBLAS_STATUS_\w+", r"CUDA error", r"illegal memory access",
               r"CUDNN_STATUS_\w+", r"cudaErrorLaunchFailure", r"unspecified launch failure")
OOM = (r"CUDA out of memory", r"OutOfMemoryError", r"CUBLAS_STATUS_ALLOC_FAILED")

# The child's entry point ("module:function"); tests replace it with a fake device at the process boundary.
TRIAL_TARGET = "ftdoctor.gpu:trial_steps"


@dataclass
class Device:
    """A GPU to plan for: what NVML reports, or what the user named with --gpu-memory."""

    index: int | None
    name: str
    total_bytes: int
    free_bytes: int | None = None
    other_processes: list[dict[str, Any]] = field(default_factory=list)  # {"pid", "used_bytes"}
    source: str = "nvml"

    @property
    def plannable_bytes(self) -> int:
        """Memory this run can have: total, less other processes, less the CUDA context."""
        others = sum(p.get("used_bytes") or 0 for p in self.other_processes)
        return max(0, self.total_bytes - others - min(CONTEXT_RESERVE, int(0.02 * self.total_bytes)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "plannable_bytes": self.plannable_bytes}


def inventory() -> list[Device]:
    """Every GPU NVML can see, with its total and free memory and the other processes holding memory on it."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no GPU here
        return []
    devices = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            procs = []
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    for p in getattr(pynvml, getter)(h):
                        if p.pid != os.getpid():
                            procs.append({"pid": p.pid, "used_bytes": p.usedGpuMemory})
                except Exception:
                    pass
            devices.append(Device(i, name, int(mem.total), int(mem.free), procs))
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return devices


def plan_device(gpu_memory: int | None = None, devices: list[Device] | None = None,
                name: str | None = None) -> Device | None:
    """The device to plan for: the one given with --gpu-memory (a size, or a GPU by ``name``), else the first
    visible GPU, else None."""
    if gpu_memory:
        return Device(None, name or "--gpu-memory", int(gpu_memory), None, [], source="--gpu-memory")
    devices = inventory() if devices is None else devices
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible and devices:
        first = visible.split(",")[0].strip()
        for d in devices:
            if first.isdigit() and d.index == int(first):
                return d
    return devices[0] if devices else None


def supports_bf16(device: Device | None) -> bool:
    """Ampere and later run bf16; T4 and V100 do not (unknown devices are assumed recent)."""
    name = (device.name if device else "").lower()
    return not any(old in name for old in ("t4", "v100", "p100", "k80", "p40", "rtx 20", "titan v"))


def is_cuda_error(text: str) -> bool:
    return any(re.search(p, text) for p in CUDA_ERRORS) and not is_oom(text)


def is_oom(text: str) -> bool:
    return any(re.search(p, text) for p in OOM)


# -- where the walk runs the model ----------------------------------------------------------------------------------

def model_device(model: Any) -> Any:
    """The device of the model's trainable weights (of any weight when none trains); the CPU for a model without
    any."""
    import torch

    first = None
    for p in model.parameters() if hasattr(model, "parameters") else ():
        if p.requires_grad:
            return p.device
        if first is None:
            first = p.device
    return first if first is not None else torch.device("cpu")


def is_accelerator(device: Any) -> bool:
    return getattr(device, "type", str(device).split(":")[0]) not in ("cpu", "meta")


def on_device(batch: Any, device: Any) -> Any:
    """``batch`` with its tensors on ``device``, nested ones too (the same object when they are there already; a
    mapping such as a collator's BatchEncoding becomes a plain dict when something moves)."""
    from collections.abc import Mapping

    import torch

    if torch.is_tensor(batch):
        return batch if batch.device == device else batch.to(device)
    if isinstance(batch, Mapping):
        moved = {k: on_device(v, device) for k, v in batch.items()}
        return batch if all(moved[k] is v for k, v in batch.items()) else moved
    if isinstance(batch, (list, tuple)):
        moved = [on_device(v, device) for v in batch]
        if all(m is v for m, v in zip(moved, batch)):
            return batch
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def device_free_bytes(device: Any) -> int | None:
    """Bytes a tensor can still get on an accelerator: what the driver has free plus what this process's caching
    allocator holds unused. None for the CPU (see budget.free_memory) or when it cannot be read."""
    if not is_accelerator(device):
        return None
    try:
        import torch

        index = device.index if getattr(device, "index", None) is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(cached, 0))
    except Exception:
        return None


def release(device: Any) -> None:
    """Give the accelerator memory the walk freed back to the driver, for the user's run that follows."""
    if not is_accelerator(device):
        return
    with contextlib.suppress(Exception):
        import torch

        torch.cuda.empty_cache()


# -- GPU-like accounting on the CPU --------------------------------------------------------------------------------

@contextlib.contextmanager
def cuda_like_kernels():
    """Make CPU autograd save what CUDA kernels save: dropout keeps a 1-byte mask (not a float one), and
    scaled_dot_product_attention keeps q, k, v, the output and a log-sum-exp (flash / memory-efficient kernels),
    never the S x S probabilities the CPU math path keeps in train mode."""
    import torch
    import torch.nn.functional as F

    orig_dropout, orig_sdpa = F.dropout, F.scaled_dot_product_attention

    def dropout(input, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1 and input.numel():
            return torch.native_dropout(input, p, True)[0]
        return orig_dropout(input, p, training, inplace)

    class _EfficientAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, mask, kwargs):
            with torch.no_grad():
                out = orig_sdpa(q, k, v, attn_mask=mask, **{**kwargs, "dropout_p": 0.0})
            lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
            saved = [q, k, v, out, lse]
            if mask is not None and mask.dtype == torch.bool:  # CUDA turns a boolean mask into an additive one
                saved.append(torch.zeros(mask.shape, dtype=q.dtype, device=q.device))
            elif mask is not None:
                saved.append(mask)
            ctx.save_for_backward(*saved)
            return out

        @staticmethod
        def backward(ctx, grad):  # only the saved set matters here; no measurement runs backward
            raise RuntimeError("ftdoctor's memory accounting attention has no backward")

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if not torch.is_grad_enabled():
            return orig_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                             scale=scale, enable_gqa=enable_gqa)
        return _EfficientAttention.apply(query, key, value, attn_mask,
                                         {"is_causal": is_causal, "scale": scale, "enable_gqa": enable_gqa})

    F.dropout, F.scaled_dot_product_attention = dropout, sdpa
    try:
        yield
    finally:
        F.dropout, F.scaled_dot_product_attention = orig_dropout, orig_sdpa


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
        from .runner import fresh_python

        code = f"import {module} as m; m.{func}(sys.argv[1], sys.argv[2])"
        try:
            proc = subprocess.run(fresh_python(code, task, result), capture_output=True, text=True,
                                  timeout=timeout, env=os.environ.copy())
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
        result = Trial(size, False, None, time.perf_counter() - t0, text.splitlines()[0][:500], oom,
                       not oom and is_cuda_error(text))
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
