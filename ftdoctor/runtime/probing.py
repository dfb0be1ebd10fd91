"""GPU probing for the memory stage: trial steps of the longest rows at the batch sizes the memory model names, in a
child process, or here when this process already holds the model on the GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftdoctor.core.registry import run_user
from ftdoctor.runtime.memory_model import worst_case_rows

PROBE_CAP = 65536  # never send a trial batch larger than this to the device


def should_probe(gpu_probe, device) -> bool:
    if gpu_probe is not None:
        return bool(gpu_probe)
    if device.source != "nvml":
        return False
    import torch

    return torch.cuda.is_available()


def trial_sizes(max_batch: int | None, capacity: int) -> list[int]:
    """The batch sizes to try: the predicted maximum (it must fit) and one row more than the device's capacity (it
    must not)."""
    return sorted({min(s, PROBE_CAP) for s in (max_batch, capacity + 1) if s and s >= 1})


@dataclass
class Probe:
    """What the trial steps ran: the rows of each batch size (to replay one that failed), the trials' result
    (``trials.ChildResult``), and whether they ran in this process, on the model itself."""

    rows_of: dict[int, list]
    result: Any
    here: bool


def probe(
    work, sizes, ds, features, collator, args, precision, checkpointing, optimizer, optimizer_kwargs, worked_in_place
) -> Probe:
    """Two trial steps at each batch size of ``sizes``, on batches of the longest rows, with the run's optimizer class
    and settings (``optimizer_kwargs``)."""
    from ftdoctor.runtime import devices, trials

    batches, rows_of = [], {}
    for s in sizes:
        rows = worst_case_rows(ds, features, s)
        rows_of[s] = rows
        batches.append((s, dict(run_user("the data collator", collator, rows))))
    opt = optimizer
    payload = {
        "model": work,
        "batches": batches,
        "mixed_precision": precision,
        "gradient_checkpointing": checkpointing,
        "gradient_checkpointing_kwargs": getattr(args, "gradient_checkpointing_kwargs", None),
        "optimizer_class": f"{type(opt).__module__}.{type(opt).__name__}" if opt is not None else "torch.optim.AdamW",
        "optimizer_kwargs": optimizer_kwargs,
        "steps": 2,
    }
    # Where ftdoctor's own process already runs the model itself on the GPU, the trials run on it there (a child
    # would need a second copy of the model on the device); else in a child process that loads the working copy,
    # so that nothing the trials do reaches the process the user's run goes on in.
    here = worked_in_place and devices.is_accelerator(devices.model_device(work))
    result = trials.run_trials_here(payload) if here else trials.run_trials(payload)
    return Probe(rows_of, result, here)
