"""A memory model of one training and one evaluation step, for the longest rows the data can produce: what the
memory stage judges.

Training step, per device, batch b, worst-case padded length S (grads set to None after each step, as the
Trainer does):

    A(b)  = W + b * (k0 + a*S + c*S^2)          activations: bytes saved for backward, fitted on the CPU
    T(b)  = b * 2 * logits_fp32(S) + G_head     start of backward: d(loss)/d(logits) twice, the head's gradient
    R(b)  = b * A_layer(S)                      with gradient checkpointing: one layer recomputed
    peak  = P + O + max(A(b) + T(b) + R(b), G)  gradient_accumulation_steps == 1
    peak  = P + O + G + A(b) + T(b) + R(b)      gradient_accumulation_steps > 1 (gradients stay between steps)

P parameters, G gradients, O optimizer state (measured after one step, else by optimizer type). W is the
batch-independent part (half-precision weight copies under autocast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftdoctor.core.registry import UserCodeError, run_user
from ftdoctor.facts import datasets

FIT_LENGTH = 48  # the longest sequence measured on the CPU; longer ones are extrapolated from the fit


# -- what the pipeline holds ---------------------------------------------------------------------------------------


def unique_params(model):
    return list({id(p): p for p in model.parameters()}.values())


def optimizer_state_estimate(optimizer_name: str, params) -> tuple[int, str]:
    """Optimizer state bytes by optimizer type, for when no step could be measured."""
    name = (optimizer_name or "adamw").lower()
    trainable = [p for p in params if p.requires_grad]
    numel = sum(p.numel() for p in trainable)
    same_dtype = sum(p.numel() * p.element_size() for p in trainable)  # torch keeps moments in the param dtype
    if "8bit" in name or "bnb" in name:
        return 2 * numel + 2 * 4 * math.ceil(numel / 2048), "8-bit Adam estimate (2 one-byte moments, block scales)"
    if "adafactor" in name:
        total = 0
        for p in trainable:
            total += (p.shape[0] + p.shape[-1]) * 4 if p.dim() >= 2 else p.numel() * 4
        return total, "Adafactor estimate (factored second moment)"
    if "sgd" in name:
        return (same_dtype, "SGD with momentum (one buffer)") if "momentum" in name else (0, "SGD without momentum")
    return 2 * same_dtype + 4 * len(trainable), "AdamW estimate (2 moments in the parameter dtype)"


def optimizer_state(step_evidence, work_optimizer, args, params):
    if step_evidence and step_evidence.get("optimizer_state_bytes"):
        return int(step_evidence["optimizer_state_bytes"]), f"measured after one {step_evidence.get('optimizer')} step"
    name = ""
    if work_optimizer is not None:
        name = type(work_optimizer).__name__
        if name == "SGD" and work_optimizer.defaults.get("momentum"):
            name = "sgd-momentum"
    elif args is not None:
        name = str(getattr(args, "optim", "adamw"))
    return optimizer_state_estimate(name, params)


def head_grad_bytes(model) -> int:
    """Gradient of the output layer: allocated first in backward, while almost every activation is alive."""
    try:
        head = model.get_output_embeddings()
    except Exception:
        head = None
    if head is None:
        return 0
    return sum(p.numel() * p.element_size() for p in head.parameters() if p.requires_grad)


def mixed_precision(args) -> str | None:
    if getattr(args, "bf16", False):
        return "bf16"
    if getattr(args, "fp16", False):
        return "fp16"
    return None


def model_state_sharding(args) -> dict:
    """By how much each rank's share of parameters, gradients and optimizer state is smaller than the whole: ZeRO
    stage 1 shards the optimizer state, 2 also the gradients, 3 also the parameters; FSDP's full_shard is like
    ZeRO-3 and shard_grad_op like ZeRO-2. Plain DDP shards nothing."""
    import json
    import os

    ranks = int(getattr(args, "world_size", 1) or 1)
    stage = 0
    fsdp = str(getattr(args, "fsdp", "") or "")
    if "full_shard" in fsdp or "hybrid_shard" in fsdp:
        stage = 3
    elif "shard_grad_op" in fsdp:
        stage = 2
    ds = getattr(args, "deepspeed", None)
    if ds:
        config = ds
        if isinstance(ds, (str, os.PathLike)) and os.path.isfile(ds):
            try:
                with open(ds, encoding="utf-8") as fh:
                    config = json.load(fh)
            except (OSError, ValueError):
                config = {}
        if isinstance(config, dict):
            stage = int((config.get("zero_optimization") or {}).get("stage", 0) or 0)
    n = max(ranks, 1)
    return {
        "ranks": ranks,
        "stage": stage,
        "optimizer": n if stage >= 1 else 1,
        "grads": n if stage >= 2 else 1,
        "params": n if stage >= 3 else 1,
    }


def frozen_bytes(model) -> int:
    if model is None:
        return 0
    return sum(p.numel() * p.element_size() for p in unique_params(model) if not p.requires_grad)


def bytes_per_weight(model) -> int:
    """Bytes per frozen weight as loaded (2 for bf16/fp16, 4 for fp32)."""
    frozen = [p for p in unique_params(model) if not p.requires_grad] if model is not None else []
    return frozen[0].element_size() if frozen else 2


# -- the worst case the data can produce -----------------------------------------------------------------------------


def _length(v) -> int | None:
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
        return None
    if hasattr(v, "dim") and v.dim() == 0:
        return None
    return len(v)


def _row_length(row, key: str) -> int | None:
    """The length of a row's token sequence: its ``key`` column, or for a row without names (the tuple of a
    TensorDataset, a list) the longest sequence it holds."""
    if hasattr(row, "keys"):
        return _length(row.get(key, []))
    if isinstance(row, (tuple, list)):
        return max((_length(v) or 0 for v in row), default=None)
    return _length(row)


def worst_case_indices(ds, features, n: int, key: str = "input_ids") -> list[int] | None:
    """Indices of the ``n`` longest rows (the batch that runs out of memory first), longest first; rows are
    repeated when the dataset has fewer than ``n``. None when the dataset has no length column to scan."""
    if datasets.is_hf_dataset(ds) and key in ds.column_names:
        lengths = datasets.sequence_lengths(ds, key)
        extra = [c for c in ("labels", "decoder_input_ids") if c in ds.column_names and c != key]
        for col in extra:  # seq2seq: the decoder side counts as much as the encoder side
            try:
                lengths = [a + b for a, b in zip(lengths, datasets.sequence_lengths(ds, col))]
            except Exception:
                pass
        if not lengths:
            return None
        import numpy as np

        # Longest first, ties in dataset order; in numpy, so that 200k rows cost milliseconds.
        order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")[:n].tolist()
        return [order[i % len(order)] for i in range(n)]
    return None


def worst_case_rows(ds, features, n: int = 1, key: str = "input_ids") -> list[dict]:
    """The ``n`` longest rows, with only the columns the collator receives (those of ``features``)."""
    keep = set(features[0]) if features and isinstance(features[0], dict) else None
    idx = worst_case_indices(ds, features, n, key)
    if idx is None:
        ranked = sorted(features, key=lambda r: -(_row_length(r, key) or 0))
        rows = [ranked[i % len(ranked)] for i in range(n)]
    else:
        unique = {i: ds[i] for i in dict.fromkeys(idx)}
        rows = [unique[i] for i in idx]
    if keep is not None:
        rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
    return rows


def truncated(row: dict, fraction: float) -> dict:
    """The row with its token-aligned columns (as long as input_ids) cut to ``fraction`` of their length; other
    columns (a multi-label target vector, a class id) stay as they are. A row of several sequences (multiple
    choice) has each of them cut."""
    ids = row.get("input_ids")
    nested = isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple))
    tokens = datasets.token_length(ids) if ids is not None else None
    out = {}
    for k, v in row.items():
        if nested and isinstance(v, (list, tuple)) and len(v) == len(ids) and v and isinstance(v[0], (list, tuple)):
            out[k] = [_cut(x, fraction, tokens) for x in v]
        elif k == "seq_lengths" and isinstance(v, (list, tuple)):
            out[k] = _cut_documents(list(v), _length(out.get("input_ids")) or max(1, round((tokens or 1) * fraction)))
        else:
            out[k] = _cut(v, fraction, tokens)
    return out


def _cut_documents(lengths: list[int], total: int) -> list[int]:
    """The document lengths of a packed row cut to ``total`` tokens: whole documents, then part of the next."""
    out, used = [], 0
    for n in lengths:
        if used >= total:
            break
        out.append(min(n, total - used))
        used += out[-1]
    return out or [total]


def _cut(v, fraction: float, tokens: int | None):
    n = _length(v)
    aligned = n and n > 1 and (tokens is None or n == tokens)
    return v[: max(1, round(n * fraction))] if aligned else v


def batch_seq_len(batch) -> int:
    for key in ("input_ids", "pixel_values"):
        v = batch.get(key)
        if v is not None and getattr(v, "dim", lambda: 0)() >= 2:
            return int(v.shape[-1])  # (batch, [choices,] tokens)
    v = batch.get("inputs_embeds")
    if v is not None and getattr(v, "dim", lambda: 0)() >= 3:
        return int(v.shape[-2])
    return 1


# -- activations, measured ---------------------------------------------------------------------------------------


def saved_activation_bytes(model, batch, loss_fn, dtype=None) -> tuple[int, int]:
    """Bytes autograd saves for backward during one forward (as CUDA kernels save them), and the number of
    logits elements; ``loss_fn(model, batch)`` is the pipeline's loss, returning (loss, outputs), and ``dtype`` runs
    the forward under autocast."""
    import contextlib

    import torch

    from ftdoctor.runtime.devices import cuda_like_kernels

    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_ptrs and ptr not in seen:
            seen[ptr] = storage.nbytes()
        return t

    model.train()
    amp = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with (
        torch.random.fork_rng(devices=[]),
        cuda_like_kernels(),
        amp,
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        loss, outputs = loss_fn(model, batch)
    logits = outputs.get("logits") if hasattr(outputs, "get") else None
    numel = int(logits.numel()) if torch.is_tensor(logits) else 0
    del loss, outputs, logits
    return sum(seen.values()), numel


@dataclass
class ActivationFit:
    """A(b, S) = fixed + b * (k0 + a*S + c*S^2); logits elements per row = lu + lv*S."""

    fixed: float
    k0: float
    a: float
    c: float
    lu: float
    lv: float
    shapes: list

    def per_row(self, s: int) -> float:
        return max(self.k0 + self.a * s + self.c * s * s, 1.0)

    def total(self, b: int, s: int) -> int:
        return int(max(self.fixed, 0) + b * self.per_row(s))

    def logits_per_row(self, s: int) -> float:
        return max(self.lu + self.lv * s, 0.0)


def _solve_quadratic(points):
    """Exact fit through three (x, y) points; a straight line through two."""
    if len(points) == 1:
        return points[0][1], 0.0, 0.0
    if len(points) == 2:
        (x1, y1), (x2, y2) = points
        a = (y2 - y1) / (x2 - x1)
        return y1 - a * x1, a, 0.0
    (x1, y1), (x2, y2), (x3, y3) = points[:3]
    d = (x1 - x2) * (x1 - x3) * (x2 - x3)
    c = (x3 * (y2 - y1) + x2 * (y1 - y3) + x1 * (y3 - y2)) / d
    a = (x3 * x3 * (y1 - y2) + x2 * x2 * (y3 - y1) + x1 * x1 * (y2 - y3)) / d
    k0 = (x2 * x3 * (x2 - x3) * y1 + x3 * x1 * (x3 - x1) * y2 + x1 * x2 * (x1 - x2) * y3) / d
    if c < 0:  # measurement noise around a line: keep the line through the ends
        return _solve_quadratic([points[0], points[-1]])
    return k0, a, c


def fit_activations(
    work, row, collator, loss_fn, dtype=None, checkpointing=False, ckpt_kwargs=None, fit_length=FIT_LENGTH
) -> ActivationFit:
    """Measure saved bytes at (1, S/4), (1, S/2), (1, S), (2, S) with S = min(longest row, fit_length) and fit
    them: linear in batch, quadratic in length."""
    from ftdoctor.runtime.trials import enable_checkpointing

    if checkpointing:
        # The reentrant form saves each layer's input through autograd, where it can be counted; the default
        # (non-reentrant) one keeps the same tensors out of sight of saved_tensors_hooks.
        enable_checkpointing(work, {**(ckpt_kwargs or {}), "use_reentrant": True})
    full = _length(row.get("input_ids", [])) or 1
    top = min(full, fit_length)
    fractions = sorted({max(1, top // 4) / full, max(1, top // 2) / full, top / full})
    measured = {}
    for frac in fractions:
        r = truncated(row, frac)
        batch = dict(run_user("the data collator", collator, [r]))
        s = batch_seq_len(batch)
        if s in measured:
            continue
        measured[s] = run_user("the model's forward", saved_activation_bytes, work, batch, loss_fn, dtype)
    s_top = max(measured)
    r = truncated(row, fractions[-1])
    two, _ = run_user(
        "the model's forward",
        saved_activation_bytes,
        work,
        dict(run_user("the data collator", collator, [r, r])),
        loss_fn,
        dtype,
    )
    per_row_top = two - measured[s_top][0]
    fixed = measured[s_top][0] - per_row_top
    points = sorted((s, m[0] - fixed) for s, m in measured.items())
    k0, a, c = _solve_quadratic(points)
    lpoints = sorted((s, m[1]) for s, m in measured.items())
    lu, lv, _ = _solve_quadratic(lpoints[:1] + lpoints[-1:]) if len(lpoints) > 1 else (lpoints[0][1], 0.0, 0.0)
    if checkpointing:
        import contextlib

        with contextlib.suppress(Exception):
            work.gradient_checkpointing_disable()
    return ActivationFit(
        fixed, k0, a, c, lu, lv, [[s, 1, m[0]] for s, m in sorted(measured.items())] + [[s_top, 2, two]]
    )


def _num_layers(model) -> int:
    cfg = getattr(model, "config", None)
    for attr in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return 1


def measure_activations(work, row, collator, loss_fn, args, precision, checkpointing):
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision or "")
    try:
        return fit_activations(
            work, row, collator, loss_fn, dtype, checkpointing, getattr(args, "gradient_checkpointing_kwargs", None)
        )
    except UserCodeError:
        if dtype is torch.float16:  # CPU autocast without float16 kernels: bfloat16 has the same sizes
            return fit_activations(work, row, collator, loss_fn, torch.bfloat16, checkpointing)
        raise


def recompute_bytes_per_row(work, row, collator, loss_fn, args, precision, fit_ckpt, seq_len) -> float:
    full = measure_activations(work, row, collator, loss_fn, args, precision, False)
    return full.per_row(seq_len) / _num_layers(work)


def run_longest(work, batch, loss_fn, model) -> None:
    """The longest row through the model. Where the overfit stage found the model too large to train here and
    trained a twin of it (same class, config, embeddings and head, fewer layers), the twin runs the row: what a
    longer row breaks (positions, masks, lengths the config allows) is theirs. A row the twin fails on is run through
    the model itself before anything is reported."""
    from ftdoctor.runtime import twin

    made = twin.made_for(model)
    if made is not None:
        import torch

        try:
            with torch.no_grad():
                loss_fn(made.model, batch)
            return
        except UserCodeError:
            pass
    loss_fn(work, batch)


# -- the model of one step -----------------------------------------------------------------------------------------


@dataclass
class StepModel:
    params: int
    grads: int
    optimizer: int
    head_grads: int
    fit: ActivationFit
    seq_len: int
    accumulation: int
    recompute_per_row: float = 0.0

    def activations(self, b: int) -> int:
        return self.fit.total(b, self.seq_len)

    def transient(self, b: int) -> int:
        return int(b * (2 * 4 * self.fit.logits_per_row(self.seq_len) + self.recompute_per_row) + self.head_grads)

    def peak(self, b: int) -> int:
        live = self.activations(b) + self.transient(b)
        if self.accumulation > 1:
            return self.params + self.optimizer + self.grads + live - self.head_grads
        return self.params + self.optimizer + max(live, self.grads)

    def max_batch(self, budget: float) -> int:
        per_row = self.fit.per_row(self.seq_len) + 8 * self.fit.logits_per_row(self.seq_len) + self.recompute_per_row
        fixed = self.params + self.optimizer + max(self.fit.fixed, 0)
        if self.accumulation > 1:
            fixed += self.grads
        else:
            fixed += self.head_grads
            if self.params + self.optimizer + self.grads > budget:
                return 0
        return max(0, int((budget - fixed) // per_row))


def eval_peak(
    params, optimizer, fit, seq_len, eval_bs, n_eval, args, model, preprocess_logits, half
) -> tuple[int, int, int]:
    """(peak, on-device accumulated predictions, bytes per eval row): the Trainer keeps every eval batch's logits
    on the device (and concatenates them, briefly holding two copies) unless eval_accumulation_steps is set;
    ``preprocess_logits`` is the pipeline's preprocess_logits_for_metrics (None: the logits are kept whole)."""
    cfg = getattr(model, "config", None)
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or getattr(cfg, "d_model", 0) or 0
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    act_bytes = 2 if half else 4
    logits = fit.logits_per_row(seq_len)
    token_level = fit.lv > 0
    out_row = logits * act_bytes
    step_row = out_row + (2 * 4 * logits if token_level else 0) + 2 * seq_len * inter * act_bytes
    if preprocess_logits is not None:
        kept_row = (seq_len if token_level else 1) * 8
    else:
        kept_row = out_row
    kept_row += (seq_len if token_level else 1) * 8  # the labels travel with the predictions
    steps = getattr(args, "eval_accumulation_steps", None)
    rows_on_device = min(n_eval, steps * eval_bs) if steps else n_eval
    accumulated = int(kept_row * rows_on_device)
    peak = int(params + optimizer + eval_bs * step_row + 2 * accumulated)
    return peak, accumulated, int(step_row)
