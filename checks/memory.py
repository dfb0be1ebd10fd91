"""memory: a memory model of one training and one evaluation step, for the longest rows the data can produce."""

from __future__ import annotations

from ftdoctor import data
from ftdoctor.findings import finding, rule
from ftdoctor.registry import check
from ftdoctor.walk import UserCodeError, run_user

MARGIN = 0.9  # plan to use at most 90% of the device

rule("FTD801", "memory-estimate", "memory", "info", "Predicted memory for training and evaluation",
     """
     Parameters, gradients and optimizer state are counted exactly; activations are measured on the CPU by
     counting the bytes saved for backward on the longest rows of the dataset and scaled to the batch size.
     """)
rule("FTD802", "does-not-fit", "memory", "error", "The configured batch does not fit on the device",
     """
     The predicted peak of a training or evaluation step at the configured batch sizes, for the longest rows of
     the data, exceeds the device's memory: the run would fail with out-of-memory when such a batch arrives.
     """,
     broken='TrainingArguments("out", per_device_train_batch_size=64)',
     fixed='TrainingArguments("out", per_device_train_batch_size=16, gradient_accumulation_steps=4)')


def _bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def saved_activation_bytes(model, batch, trainer=None) -> int:
    """Bytes autograd saves for backward during one forward: the activation memory of a training step."""
    import torch

    from .forward import compute_loss

    param_ptrs = {p.data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_ptrs and ptr not in seen:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = compute_loss(trainer, model, batch)
    del loss
    return sum(seen.values())


def worst_case_rows(ds, features, key="input_ids"):
    """The longest row of the dataset (its index and length): the batch that runs out of memory first."""
    if data.is_hf_dataset(ds) and key in ds.column_names:
        lengths = data.sequence_lengths(ds, key)
        i = max(range(len(lengths)), key=lengths.__getitem__)
        return ds[i], lengths[i]
    row = max(features, key=lambda r: len(r.get(key, [])))
    return row, len(row.get(key, []))


def device_memory(gpu_memory=None):
    """Total memory of GPU 0 through NVML, else the --gpu-memory the user gave, else None."""
    if gpu_memory:
        return int(gpu_memory), "--gpu-memory"
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
            return int(pynvml.nvmlDeviceGetMemoryInfo(h).total), pynvml.nvmlDeviceGetName(h)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None, None


@check("memory", codes=("FTD801", "FTD802"))
def memory_model(model, effective_train_dataset, train_features, initial_loss, pipeline, trainer=None, args=None,
                 step_evidence=None, effective_eval_dataset=None, gpu_memory=None):
    from .forward import copy_model

    params = list({id(p): p for p in model.parameters()}.values())
    params_bytes = sum(p.numel() * p.element_size() for p in params)
    grads_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    if step_evidence and step_evidence.get("optimizer_state_bytes"):
        optimizer_bytes, optimizer_how = step_evidence["optimizer_state_bytes"], "measured after one step"
    else:
        optimizer_bytes = 2 * sum(p.numel() * 4 for p in params if p.requires_grad)
        optimizer_how = "AdamW estimate (2 float32 moments)"
    train_bs = getattr(args, "per_device_train_batch_size", 8) or 8
    eval_bs = getattr(args, "per_device_eval_batch_size", 8) or 8
    row, seq_len = worst_case_rows(effective_train_dataset, train_features)
    collator = trainer.data_collator if trainer is not None else pipeline.data_collator
    work = copy_model(model)
    try:
        keep = trainer._remove_unused_columns if trainer is not None and data.is_hf_dataset(effective_train_dataset) else None
        if keep is not None:
            row = {k: v for k, v in row.items() if k in set(train_features[0])}
        per = []
        for k in (1, 2):
            batch = run_user("the data collator", collator, [row] * k)
            per.append(run_user("the model's forward", saved_activation_bytes, work, dict(batch), trainer))
    except UserCodeError as err:
        return finding("FTD801", f"Activations could not be measured: {err}", "", severity="info")
    finally:
        del work
    per_row = max(per[1] - per[0], 1)
    fixed_act = max(per[0] - per_row, 0)
    activations_bytes = fixed_act + per_row * train_bs
    peak_train = params_bytes + grads_bytes + optimizer_bytes + activations_bytes
    logits_row = _logits_bytes_per_row(model, seq_len)
    eval_rows = len(effective_eval_dataset) if effective_eval_dataset is not None and hasattr(effective_eval_dataset, "__len__") else 0
    accumulated = 0 if getattr(args, "eval_accumulation_steps", None) else logits_row * eval_rows
    peak_eval = params_bytes + logits_row * eval_bs + accumulated + per_row * eval_bs // 4
    device_bytes, device_name = device_memory(gpu_memory)
    fixed = params_bytes + grads_bytes + optimizer_bytes + fixed_act
    max_bs = int((device_bytes * MARGIN - fixed) // per_row) if device_bytes else None
    evidence = {"params_bytes": params_bytes, "grads_bytes": grads_bytes, "optimizer_bytes": optimizer_bytes,
                "activations_bytes": activations_bytes, "peak_train_bytes": peak_train, "peak_eval_bytes": peak_eval,
                "device_memory_bytes": device_bytes, "max_batch_size": max_bs if max_bs is None else max(max_bs, 0),
                "worst_case_seq_len": seq_len, "activation_bytes_per_row": per_row, "optimizer_how": optimizer_how,
                "train_batch_size": train_bs, "eval_batch_size": eval_bs, "device": device_name,
                "probed": False}
    gib = 1024 ** 3
    text = (f"Training step at batch {train_bs}, longest rows ({seq_len} tokens): {peak_train / gib:.2f} GiB "
            f"(parameters {params_bytes / gib:.2f}, gradients {grads_bytes / gib:.2f}, optimizer "
            f"{optimizer_bytes / gib:.2f}, activations {activations_bytes / gib:.2f}); evaluation {peak_eval / gib:.2f} GiB.")
    if device_bytes is None:
        return finding("FTD801", text + " No GPU was found and none was named, so nothing was probed.",
                       "Pass `--gpu-memory 24GiB` (the target GPU's memory) to get the largest batch that fits.",
                       evidence=evidence)
    if peak_train > device_bytes * MARGIN or peak_eval > device_bytes * MARGIN:
        ga = max(1, -(-train_bs // max(max_bs or 1, 1)))
        fix = (f"`per_device_train_batch_size={max(max_bs or 1, 1)}, gradient_accumulation_steps={ga}` keeps the "
               f"effective batch of {train_bs}" if (max_bs or 0) >= 1 else "`gradient_checkpointing=True, bf16=True` "
               "(the parameters and optimizer state alone do not fit)")
        if peak_eval > device_bytes * MARGIN and accumulated:
            fix += "; for evaluation set `eval_accumulation_steps=8` so logits leave the GPU"
        return finding("FTD802", text + f" The device has {device_bytes / gib:.1f} GiB.", fix + ".", evidence=evidence)
    return finding("FTD801", text + f" Fits in {device_bytes / gib:.1f} GiB; the largest batch is about {max_bs}.",
                   "", evidence=evidence)


def _logits_bytes_per_row(model, seq_len) -> int:
    cfg = getattr(model, "config", None)
    n = data.num_labels(model) or 2
    name = data.model_name(model)
    if name.endswith("ForSequenceClassification"):
        return n * 4
    if name.endswith("ForTokenClassification"):
        return seq_len * n * 4
    vocab = getattr(cfg, "vocab_size", 0) or 0
    return seq_len * vocab * 4
