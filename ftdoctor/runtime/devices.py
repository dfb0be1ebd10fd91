"""Devices and their memory: what is installed, where a model and a batch live, how much memory a stage may
take, and what a CUDA error or an out-of-memory error looks like."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# The CUDA context and cuBLAS workspaces live outside the caching allocator: reserve them before planning.
CONTEXT_RESERVE = 512 * 2**20


# Errors whose text tells nothing about the cause: the same batch is replayed on the CPU to get the real one.
CUDA_ERRORS = (
    r"device-side assert",
    r"CUBLAS_STATUS_\w+",
    r"CUDA error",
    r"illegal memory access",
    r"CUDNN_STATUS_\w+",
    r"cudaErrorLaunchFailure",
    r"unspecified launch failure",
)


OOM = (r"CUDA out of memory", r"OutOfMemoryError", r"CUBLAS_STATUS_ALLOC_FAILED")


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


def plan_device(
    gpu_memory: int | None = None, devices: list[Device] | None = None, name: str | None = None
) -> Device | None:
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
            return orig_sdpa(
                query,
                key,
                value,
                attn_mask=attn_mask,
                dropout_p=dropout_p,
                is_causal=is_causal,
                scale=scale,
                enable_gqa=enable_gqa,
            )
        return _EfficientAttention.apply(
            query, key, value, attn_mask, {"is_causal": is_causal, "scale": scale, "enable_gqa": enable_gqa}
        )

    F.dropout, F.scaled_dot_product_attention = dropout, sdpa
    try:
        yield
    finally:
        F.dropout, F.scaled_dot_product_attention = orig_dropout, orig_sdpa


MEMORY_MARGIN = 0.9  # of the memory free at the moment: what a stage may plan to take


def free_memory(device: Any = None) -> int | None:
    """Bytes of memory this machine can still give (MemAvailable), or, for an accelerator ``device``, what that
    device can still give; None where that cannot be read."""
    from ftdoctor.runtime.devices import device_free_bytes, is_accelerator

    if device is not None and is_accelerator(device):
        return device_free_bytes(device)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return None


def trainable_bytes(model: Any) -> int:
    """Bytes of the parameters that train: what a working copy, its gradients and each optimizer moment cost
    (frozen parameters are shared with the user's model, never copied)."""
    try:
        return sum(
            p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad
        )
    except Exception:
        return 0


def short_of_memory(need: int, what: str, device: Any = None) -> str | None:
    """Why ``what`` cannot run here (it needs ``need`` bytes more than this machine, or the accelerator
    ``device``, can give), or None."""
    free = free_memory(device)
    if free is None or need <= MEMORY_MARGIN * free:
        return None
    where = f"{device} has" if device is not None and str(device) != "cpu" else "this machine has"
    return (
        f"{what} needs about {need / 2**30:.1f} GiB more and {where} {free / 2**30:.1f} GiB free: "
        "it was not run, so the walk ends with a report instead of being killed"
    )
