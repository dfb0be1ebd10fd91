"""Several ranks under torchrun: what each rank holds at the moment training starts, gathered for the
`distributed` stage to compare.

Every rank collects its own facts (the samples it draws, its weights, the gradients of one synchronised step,
what its DDP wrapper does), writes them to a file in the run's folder, and rank 0 reads them all. Files, not
collectives: the comparison must work when the ranks disagree about collectives, or never set one up.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from ftdoctor.core.registry import UserCodeError

FIRST_BATCHES = 2  # batches per rank compared


def rank_and_world() -> tuple[int, int]:
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        return 0, 1


def _row_key(row: dict) -> str:
    """A row's identity: its token ids without padding."""
    from ftdoctor.facts import datasets as data

    ids = row.get("input_ids")
    if ids is None:
        ids = next((v for k, v in row.items() if str(k).endswith("_ids")), None)
    mask = row.get("attention_mask")
    ids = data.flatten(ids)
    if mask is not None:
        m = data.flatten(mask)
        if len(m) == len(ids):
            ids = [t for t, keep in zip(ids, m) if keep]
    return hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:16]


def batch_keys(batch: Any) -> list[str]:
    """The identity of each row of a batch: a mapping of columns, or a list of tensors (a TensorDataset's
    loader yields ``[ids, labels]``), keyed by its first tensor."""
    from ftdoctor.facts import datasets as data

    if isinstance(batch, (list, tuple)) and batch and all(getattr(t, "ndim", 0) >= 1 for t in batch):
        n = len(batch[0])
        return [_row_key({"input_ids": batch[0][i]}) for i in range(n)] if all(len(t) == n for t in batch) else []
    if not hasattr(batch, "items"):
        return []
    rows = data.rows_from_batch(dict(batch)) or []
    return [_row_key(r) for r in rows]


def param_checksum(model: Any) -> str:
    import torch

    h = hashlib.sha1()
    with torch.no_grad():
        for name, p in model.named_parameters():
            h.update(name.encode())
            h.update(repr(round(float(p.detach().double().sum()), 6)).encode())
    return h.hexdigest()[:16]


def grad_checksum(model: Any) -> str | None:
    import torch

    h, any_grad = hashlib.sha1(), False
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.grad is not None:
                any_grad = True
                h.update(name.encode())
                h.update(repr(round(float(p.grad.double().sum()), 5)).encode())
    return h.hexdigest()[:16] if any_grad else None


def wrapper_of(model: Any) -> str:
    """How the model the run trains is wrapped for several ranks: ddp, fsdp, deepspeed or none."""
    name = type(model).__name__
    if name == "DistributedDataParallel":
        return "ddp"
    if "FullyShardedDataParallel" in name or name.startswith("FSDP"):
        return "fsdp"
    if "DeepSpeed" in name:
        return "deepspeed"
    return "none"


def ddp_trial(target: Any, batch: Any, ddp_kwargs: dict) -> dict:
    """Two synchronised steps of a DDP-wrapped copy of the model on this rank's batch, as the run would wrap it:
    the first step's gradients (identical on every rank when DDP averages them), and the error DDP raises on the
    second step when the first left parameters without gradients (or marked one twice)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    out: dict[str, Any] = {"kwargs": {k: v for k, v in ddp_kwargs.items() if isinstance(v, (bool, int, float))}}
    if not (dist.is_available() and dist.is_initialized()):
        out["error"] = None
        out["skipped"] = "no process group"
        return out
    work = target.work_model()
    if target.checkpointing_kwargs() is not None:
        try:
            work.gradient_checkpointing_enable(gradient_checkpointing_kwargs=target.checkpointing_kwargs())
        except Exception:
            pass
    work.train()
    try:
        ddp = DistributedDataParallel(work, **ddp_kwargs)
        for step in range(2):
            loss, _ = target.loss(ddp, batch)
            loss.backward()
            if step == 0:
                out["grad_checksum"] = grad_checksum(work)
                out["without_grad"] = [n for n, p in work.named_parameters() if p.requires_grad and p.grad is None]
            ddp.zero_grad(set_to_none=True)
        out["error"] = None
    except UserCodeError as err:
        out["error"] = f"{type(err.exc).__name__}: {err.exc}"
    except Exception as exc:  # DDP's own errors are what this trial is for
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def collect(target: Any, pipeline: Any) -> dict:
    """This rank's facts at the moment training starts (what crosses a JSON file)."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    facts: dict[str, Any] = {"rank": rank, "world_size": world, "pid": os.getpid(), "outcome": "training"}
    facts["process_group"] = bool(dist.is_available() and dist.is_initialized())
    facts["backend"] = dist.get_backend() if facts["process_group"] else None
    facts["wrapper"] = target.distributed_wrapper()
    facts["param_checksum"] = param_checksum(pipeline.model)
    batch = None
    try:
        samples = target.rank_samples(FIRST_BATCHES)
        batch = samples.pop("_first_batch", None)
        facts.update(samples)
    except UserCodeError as err:
        facts["samples_error"] = str(err)
    if batch is None:
        batch = pipeline.extra.get("batch")
    if batch is not None:
        facts["ddp"] = ddp_trial(target, batch, target.ddp_kwargs())
    return facts


def failure_facts(cap: Any) -> dict:
    """A rank whose script raised before training: where it stopped, and why."""
    from ftdoctor.capture import user_site_in_traceback

    rank, world = rank_and_world()
    site = user_site_in_traceback(cap.exc_tb, cap.user_dir) if cap.exc_tb is not None else None
    exc = cap.exception
    return {
        "rank": rank,
        "world_size": world,
        "pid": os.getpid(),
        "outcome": cap.outcome,
        "exception": f"{type(exc).__name__}: {exc}"[:1000] if exc is not None else None,
        "site": str(site) if site else None,
    }


def write_facts(folder: str, facts: dict) -> None:
    path = os.path.join(folder, f"rank{facts['rank']}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(facts, fh, default=str)
    os.replace(path + ".tmp", path)


def read_facts(folder: str, world: int, timeout: float = 60.0) -> list[dict]:
    """Every rank's facts, waiting up to ``timeout`` for the ranks that are still writing."""
    deadline = time.monotonic() + timeout
    found: dict[int, dict] = {}
    while time.monotonic() < deadline and len(found) < world:
        for rank in range(world):
            path = os.path.join(folder, f"rank{rank}.json")
            if rank not in found and os.path.isfile(path):
                try:
                    with open(path, encoding="utf-8") as fh:
                        found[rank] = json.load(fh)
                except ValueError:
                    pass
        if len(found) < world:
            time.sleep(0.2)
    return [found[r] for r in sorted(found)]


def shorten_collective_timeouts(seconds: float) -> None:
    """A collective that only some ranks enter waits forever (30 minutes by default): make the process groups of
    this run give up after ``seconds``, so the hang becomes an error at the line each rank is at."""
    import datetime

    import torch.distributed as dist

    orig = dist.init_process_group
    if getattr(orig, "_ftdoctor", False):
        return

    def init_process_group(*args, **kwargs):
        limit = datetime.timedelta(seconds=seconds)
        if kwargs.get("timeout") is None or kwargs["timeout"] > limit:
            kwargs["timeout"] = limit
        return orig(*args, **kwargs)

    init_process_group._ftdoctor = True  # type: ignore[attr-defined]
    dist.init_process_group = init_process_group
