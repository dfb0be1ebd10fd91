"""How much of the user's work the walk does: decided once, from the model's size and this machine's speed, and
shown in the report.

A pre-flight that costs more than the one-step trial it replaces will not be run. So in the default "fast" budget
the model stages run the real model on a batch small enough that one forward and backward take about half a
second here: all of the user's rows (up to 8) for a small model, fewer rows, and rows cut to their last tokens, for a
large one. The overfit stage has a time limit. "full" runs the user's batch as configured.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("fast", "full")
STEP_SECONDS = 0.5  # one forward + backward of the model stages, in the fast budget
OVERFIT_SECONDS = 30.0  # every overfit trial together, in the fast budget
MAX_ROWS = 8  # rows of a checked batch: enough to see padding, label mixes and shapes
MIN_TOKENS = 32  # a row is never cut shorter than this
# A training step costs about 6 floating-point operations per parameter and token; training reaches about a third
# of the peak a large matrix product shows on the same device.
FLOPS_PER_PARAM_TOKEN = 6
EFFICIENCY = 0.3

_FLOPS: dict[str, float] = {}


@dataclass
class Budget:
    mode: str = "fast"
    rows: int = MAX_ROWS  # rows of the batch the model stages run
    max_tokens: int | None = None  # rows longer than this are cut to their last tokens (None: as they are)
    overfit_seconds: float | None = OVERFIT_SECONDS
    params: int = 0
    flops: float = 0.0  # this device's measured matrix-product speed
    notes: list[str] = field(default_factory=list)  # what runs at reduced size, for the report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reduced(self) -> bool:
        return bool(self.notes)


def machine_flops(device: str = "cpu") -> float:
    """Floating-point operations per second of a float32 matrix product on ``device`` (measured once, ~0.1 s)."""
    if device in _FLOPS:
        return _FLOPS[device]
    import torch

    # A generator of its own: measuring must not move the run's random number stream.
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(512, 512, device=device, generator=gen)
    b = torch.randn(512, 512, device=device, generator=gen)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.1:
        a @ b
        count += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    _FLOPS[device] = 2 * 512 ** 3 * count / (time.perf_counter() - start)
    return _FLOPS[device]


def decide(model: Any, args: Any, mode: str = "fast", device: str = "cpu") -> Budget:
    """The budget for this pipeline on this machine."""
    user_rows = int(getattr(args, "per_device_train_batch_size", MAX_ROWS) or MAX_ROWS)
    params = _count(model)
    if mode == "full":
        return Budget("full", rows=user_rows, max_tokens=None, overfit_seconds=None, params=params)
    rows = max(1, min(user_rows, MAX_ROWS))
    why = ""
    max_tokens, flops = None, 0.0
    if params:
        flops = machine_flops(device)
        tokens = STEP_SECONDS * flops * EFFICIENCY / (FLOPS_PER_PARAM_TOKEN * params)
        if tokens < rows * 512:
            # A large model for this machine: fewer rows, each cut to what one step can afford.
            fit_rows = max(1, min(rows, int(tokens // 256)))
            max_tokens = max(MIN_TOKENS, int(tokens // fit_rows))
            if fit_rows < rows:
                why = f" (a {params / 1e6:.0f}M-parameter model on this machine)"
            rows = fit_rows
    notes = []
    if rows < user_rows:
        notes.append(f"{rows} of the configured {user_rows} rows per batch{why}")
    if max_tokens is not None:
        notes.append(f"rows longer than {max_tokens} tokens cut to their last {max_tokens}")
    return Budget(mode, rows, max_tokens, OVERFIT_SECONDS, params, flops, notes)


def _count(model: Any) -> int:
    try:
        return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    except Exception:
        return 0


def cut_row(row: dict, max_tokens: int | None) -> dict:
    """A row cut to its last ``max_tokens`` tokens (where the answer and the end-of-sequence token are), its
    token-aligned columns together; other columns stay. Packed rows keep the lengths of the documents left."""
    ids = row.get("input_ids") if isinstance(row, dict) else None
    if max_tokens is None or ids is None or not hasattr(ids, "__len__") or len(ids) <= max_tokens:
        return row
    n = len(ids)
    out = {}
    for k, v in row.items():
        if k == "seq_lengths" and isinstance(v, (list, tuple)):
            out[k] = _tail_documents(list(v), max_tokens)
        elif hasattr(v, "__len__") and not isinstance(v, (str, bytes, dict)) and len(v) == n:
            out[k] = v[n - max_tokens:]
        else:
            out[k] = v
    return out


def _tail_documents(lengths: list[int], total: int) -> list[int]:
    out, used = [], 0
    for length in reversed(lengths):
        if used >= total:
            break
        out.append(min(length, total - used))
        used += out[-1]
    return list(reversed(out)) or [total]


MEMORY_MARGIN = 0.9  # of the memory free at the moment: what a stage may plan to take


def free_memory(device: Any = None) -> int | None:
    """Bytes of memory this machine can still give (MemAvailable), or, for an accelerator ``device``, what that
    device can still give; None where that cannot be read."""
    from .gpu import device_free_bytes, is_accelerator

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
        return sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values()
                   if p.requires_grad)
    except Exception:
        return 0


def short_of_memory(need: int, what: str, device: Any = None) -> str | None:
    """Why ``what`` cannot run here (it needs ``need`` bytes more than this machine, or the accelerator
    ``device``, can give), or None."""
    free = free_memory(device)
    if free is None or need <= MEMORY_MARGIN * free:
        return None
    where = f"{device} has" if device is not None and str(device) != "cpu" else "this machine has"
    return (f"{what} needs about {need / 2**30:.1f} GiB more and {where} {free / 2**30:.1f} GiB free: "
            "it was not run, so the walk ends with a report instead of being killed")
