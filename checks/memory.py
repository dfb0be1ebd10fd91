"""memory: judges what the memory model (``ftdoctor.runtime.memory_model``) and the trial steps on a GPU
(``ftdoctor.runtime.probing``) measured: whether the configured batches fit, what to change so they do, and the
cause of a CUDA error."""

from __future__ import annotations

from ftdoctor.checks._failures import explain, root_codes, short_of_memory
from ftdoctor.facts import datasets, models
from ftdoctor.runtime import probing
from ftdoctor.runtime.memory_model import (
    StepModel,
    batch_seq_len,
    bytes_per_weight,
    eval_peak,
    frozen_bytes,
    head_grad_bytes,
    measure_activations,
    mixed_precision,
    model_state_sharding,
    optimizer_state,
    recompute_bytes_per_row,
    run_longest,
    unique_params,
    worst_case_rows,
)
from ftdoctor.sdk import Provide, UserCodeError, check, finding, rule, run_user

MARGIN = 0.10  # plan to use at most 90% of what the device offers (allocator fragmentation, kernels' workspaces)
GIB = 1024**3

rule(
    "FTD801",
    "memory-estimate",
    "memory",
    "info",
    "Predicted memory for training and evaluation",
    """
     Parameters, gradients and optimizer state are counted exactly; activations are measured on the CPU by
     counting the bytes saved for backward at a few small shapes of the longest rows of the dataset, as CUDA
     kernels save them, and fitted in batch size and sequence length. With a GPU present the prediction is
     confirmed by two trial steps in a child process.
     """,
)
rule(
    "FTD802",
    "does-not-fit",
    "memory",
    "error",
    "The configured batch does not fit on the device",
    """
     The predicted peak of a training or evaluation step at the configured batch sizes, for the longest rows of
     the data, exceeds the device's memory: the run would fail with out-of-memory when such a batch arrives.
     """,
    broken='TrainingArguments("out", per_device_train_batch_size=64)',
    fixed='TrainingArguments("out", per_device_train_batch_size=16, gradient_accumulation_steps=4)',
)
rule(
    "FTD804",
    "longest-rows-fail",
    "memory",
    "error",
    "A batch of the longest training rows fails",
    """
     The memory stage runs the longest rows of the training set, which the first batches may not contain. When
     they fail (too long for the position embeddings, a collator that cannot handle them), the run fails the
     same way when such a batch comes up, possibly hours in.
     """,
)
rule(
    "FTD805",
    "eval-logits-pile-up",
    "memory",
    "warning",
    "Evaluation piles up full-vocabulary logits",
    """
     The Trainer gathers every evaluation batch's predictions before calling compute_metrics. For a language model
     those are `eval rows x tokens x vocabulary` floats: gigabytes for a modest eval set. Without
     `preprocess_logits_for_metrics` reducing them to token ids, the first evaluation runs out of memory.
     """,
    broken="Trainer(model, args, eval_dataset=lm_eval, compute_metrics=compute_metrics)",
    fixed="""
     Trainer(model, args, eval_dataset=lm_eval, compute_metrics=compute_metrics,
             preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1))
     """,
)
rule(
    "FTD803",
    "cuda-error",
    "memory",
    "error",
    "A GPU step failed with a CUDA error; the CPU shows the cause",
    """
     CUDA reports a bad index or label as "device-side assert triggered", "CUBLAS_STATUS_..." or "an illegal
     memory access", far from the cause. The batch that failed on the GPU is replayed on the CPU, where the same
     mistake raises a readable error (a label outside the classes, a token id beyond the embeddings).
     """,
    broken="RuntimeError: CUDA error: device-side assert triggered",
    fixed="IndexError: Target 5 is out of bounds.  ->  pass num_labels=6 (or fix the labels)",
)


def _keeping_effective_batch(effective: int, limit: int) -> tuple[int, int]:
    """The largest per-device batch <= limit that divides the effective batch, and the accumulation it needs."""
    for b in range(min(limit, effective), 0, -1):
        if effective % b == 0:
            return b, effective // b
    return 1, effective


@check("memory", codes=("FTD801", "FTD802", "FTD803", "FTD804", "FTD805", "FTD806"))
def memory_model(
    model,
    effective_train_dataset,
    train_features,
    initial_loss,
    pipeline,
    findings_so_far,
    target,
    args=None,
    step_evidence=None,
    work_optimizer=None,
    effective_eval_dataset=None,
    eval_features=None,
    gpu_memory=None,
    gpu_name=None,
    gpu_probe=None,
):
    short = short_of_memory(model, target.copies(), "The memory stage's working copy", target.work_device)
    if short is not None:
        return Provide(findings=[short], skip_reason="not enough memory for a working copy (FTD806)")
    from ftdoctor.runtime import devices

    params = unique_params(model)
    params_bytes = sum(p.numel() * p.element_size() for p in params)
    grads_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    optimizer_bytes, optimizer_how = optimizer_state(step_evidence, work_optimizer, args, params)
    sharding = model_state_sharding(args)
    if sharding["ranks"] > 1:
        # Each rank holds its share of what the run shards (ZeRO stages, FSDP): the peaks below are per rank.
        params_bytes //= sharding["params"]
        grads_bytes //= sharding["grads"]
        optimizer_bytes //= sharding["optimizer"]
    train_bs = int(getattr(args, "per_device_train_batch_size", 8) or 8)
    eval_bs = int(getattr(args, "per_device_eval_batch_size", 8) or 8)
    accumulation = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
    precision = mixed_precision(args)
    checkpointing = bool(getattr(args, "gradient_checkpointing", False))
    collator = target.row_collator()
    loss_fn = target.loss
    (row,) = worst_case_rows(effective_train_dataset, train_features, 1)
    if not hasattr(row, "keys"):
        # A row without names (a TensorDataset's tuple) reaches the model only through the loop's own code, which
        # maps its positions to the model's arguments: ftdoctor cannot build a longer batch of it by itself.
        reason = f"the training rows are {type(row).__name__}s without column names, which only the loop's code maps"
        return finding(
            "FTD801",
            f"Activations could not be measured on the longest rows: {reason}.",
            "",
            evidence={"worst_case_error": reason},
        )
    work = target.work_model()
    worst = {}
    try:
        # The longest row as it is: a failure here is the pipeline's, on data no earlier stage ran.
        worst = dict(run_user("the data collator", collator, [row]))
        seq_len = batch_seq_len(worst)
        run_longest(work, worst, loss_fn, model)
    except UserCodeError as err:
        failure = explain(err.exc, "the forward pass on the longest rows", findings_so_far)
        info = finding(
            "FTD801",
            f"Activations could not be measured on the longest rows: {failure.reason}",
            "",
            evidence={"worst_case_error": failure.reason},
        )
        if failure.kind == "predicted":
            return [info]
        return [
            info,
            finding(
                "FTD804",
                f"A batch of the longest training rows ({batch_seq_len(worst) if worst else '?'} "
                f"tokens) fails: {failure.first_line}",
                "Fix the cause shown; the run fails the same way when that batch comes up.",
                location=pipeline.location(model),
                evidence={"exception": failure.text},
            ),
        ]
    try:
        fit = measure_activations(work, row, collator, loss_fn, args, precision, checkpointing)
        recompute = (
            recompute_bytes_per_row(work, row, collator, loss_fn, args, precision, fit, seq_len)
            if checkpointing
            else 0.0
        )
    except UserCodeError as err:
        # The shorter copies of that row are ftdoctor's own construction: a limitation of the estimate, not a bug.
        return [
            finding(
                "FTD801",
                "The memory estimate could not be made: the shortened copies of the longest row "
                f"that ftdoctor measures do not run ({str(err)[:200]}). The row itself runs.",
                "",
                evidence={"estimate_error": str(err)[:400]},
            )
        ]
    step = StepModel(
        params_bytes, grads_bytes, optimizer_bytes, head_grad_bytes(model), fit, seq_len, accumulation, recompute
    )

    eval_seq = seq_len
    if effective_eval_dataset is not None and eval_features:
        eval_row = worst_case_rows(effective_eval_dataset, eval_features, 1)[0]
        if hasattr(eval_row, "keys"):  # rows without names (tuples): the training rows' length stands for them
            try:
                eval_seq = batch_seq_len(dict(run_user("the data collator", collator, [eval_row])))
            except UserCodeError:
                pass
    n_eval = (
        len(effective_eval_dataset)
        if effective_eval_dataset is not None and hasattr(effective_eval_dataset, "__len__")
        else 0
    )
    reduce_logits = getattr(pipeline, "preprocess_logits_for_metrics", None)
    peak_eval, accumulated, eval_row_bytes = eval_peak(
        params_bytes, optimizer_bytes, fit, eval_seq, eval_bs, n_eval, args, model, reduce_logits, precision is not None
    )
    device = devices.plan_device(gpu_memory, name=gpu_name)
    device_bytes = device.total_bytes if device else None
    budget = device.plannable_bytes * (1 - MARGIN) if device else None
    peak_train = step.peak(train_bs)
    max_bs = step.max_batch(budget) if device else None
    evidence = {
        "params_bytes": params_bytes,
        "grads_bytes": grads_bytes,
        "optimizer_bytes": optimizer_bytes,
        "activations_bytes": step.activations(train_bs),
        "peak_train_bytes": peak_train,
        "peak_eval_bytes": peak_eval,
        "device_memory_bytes": device_bytes,
        "max_batch_size": max_bs,
        "worst_case_seq_len": seq_len,
        "eval_worst_case_seq_len": eval_seq,
        "activation_bytes_per_row": int(fit.per_row(seq_len)),
        "activation_fixed_bytes": int(fit.fixed),
        "activation_fit": {
            "k0": fit.k0,
            "a": fit.a,
            "c": fit.c,
            "quadratic_in_length": fit.c > 0,
            "measured": fit.shapes,
        },
        "transient_bytes": step.transient(train_bs),
        "head_grad_bytes": step.head_grads,
        "recompute_bytes_per_row": int(recompute),
        "eval_accumulated_bytes": accumulated,
        "eval_bytes_per_row": eval_row_bytes,
        "optimizer_how": optimizer_how,
        "train_batch_size": train_bs,
        "eval_batch_size": eval_bs,
        "gradient_accumulation_steps": accumulation,
        "mixed_precision": precision,
        "gradient_checkpointing": checkpointing,
        "device": device.to_dict() if device else None,
        "margin": MARGIN,
        "max_batch_size_at_capacity": step.max_batch(device.plannable_bytes) if device else None,
        "probed": False,
        "probe": [],
        "sharding": sharding,
    }

    probe_note = ""
    if device is not None and probing.should_probe(gpu_probe, device):
        probe_note, extra = _probe(
            model,
            work,
            step,
            max_bs,
            evidence,
            effective_train_dataset,
            train_features,
            collator,
            loss_fn,
            args,
            precision,
            checkpointing,
            work_optimizer,
            pipeline,
            findings_so_far,
            target,
        )
    else:
        extra = []
    del work
    pile_up = _eval_pile_up(accumulated, n_eval, fit, pipeline, args, device)
    if pile_up is not None:
        extra.append(pile_up)

    text = (
        f"Training step at batch {train_bs}, longest rows ({seq_len} tokens): {peak_train / GIB:.2f} GiB "
        f"(parameters {params_bytes / GIB:.2f}, gradients {grads_bytes / GIB:.2f}, optimizer "
        f"{optimizer_bytes / GIB:.2f}, activations {evidence['activations_bytes'] / GIB:.2f}); evaluation at "
        f"batch {eval_bs}: {peak_eval / GIB:.2f} GiB."
    )
    if device is None:
        return [
            finding(
                "FTD801",
                text + " No GPU was found and none was named, so nothing was probed.",
                "Pass `--gpu-memory 24GiB` (or a GPU name such as A100-80GB) to get the largest batch that fits.",
                evidence=evidence,
            )
        ] + extra
    where = (
        f"{device.name} ({device.total_bytes / GIB:.1f} GiB"
        + (
            f", {len(device.other_processes)} other processes holding "
            f"{sum(p['used_bytes'] or 0 for p in device.other_processes) / GIB:.1f} GiB"
            if device.other_processes
            else ""
        )
        + ")"
    )
    train_fits, eval_fits = peak_train <= budget, peak_eval <= budget
    if train_fits and eval_fits:
        return [
            finding(
                "FTD801",
                text + f" Fits on {where} with a {MARGIN:.0%} margin; the largest training batch "
                f"is {max_bs}.{probe_note}",
                "",
                evidence=evidence,
            )
        ] + extra
    fixes = []
    if not train_fits:
        fixes.append(
            _train_fix(
                step,
                train_bs,
                accumulation,
                budget,
                work_factory=target.work_model,
                row=row,
                collator=collator,
                loss_fn=loss_fn,
                args=args,
                precision=precision,
                checkpointing=checkpointing,
                device=device,
                evidence=evidence,
                model=model,
            )
        )
    if not eval_fits:
        fixes.append(
            _eval_fix(
                budget,
                params_bytes,
                optimizer_bytes,
                eval_row_bytes,
                accumulated,
                eval_bs,
                args,
                pipeline,
                fit,
                eval_seq,
                evidence,
            )
        )
    evidence["suggested"] = {k: v for f in fixes for k, v in f[1].items()}
    what = " and ".join(w for w, ok in (("training", train_fits), ("evaluation", eval_fits)) if not ok)
    return [
        finding(
            "FTD802",
            text + f" The {what} step does not fit on {where} with a {MARGIN:.0%} margin." + probe_note,
            " ".join(f[0] for f in fixes),
            location=pipeline.location(args),
            evidence=evidence,
        )
    ] + extra


def size(n: float) -> str:
    """Bytes as a person reads them."""
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _eval_pile_up(accumulated, n_eval, fit, pipeline, args, device):
    """The Trainer keeps every eval batch's predictions until the evaluation ends: for a language model without
    preprocess_logits_for_metrics that is a vocabulary-sized row per token, for the whole eval set."""
    import os

    if (
        accumulated <= 0
        or fit.lv <= 0
        or getattr(pipeline, "compute_metrics", None) is None
        or getattr(pipeline, "preprocess_logits_for_metrics", None) is not None
        or getattr(args, "eval_accumulation_steps", None)
    ):
        return None
    if device is not None:
        capacity, where = device.plannable_bytes, device.name
    else:
        try:
            capacity, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"
        except (ValueError, OSError, AttributeError):
            return None
    if accumulated < 0.25 * capacity:
        return None
    return finding(
        "FTD805",
        f"Evaluation keeps the logits of all {n_eval} eval rows ({size(accumulated)}, a "
        "vocabulary-sized row per token) before compute_metrics sees them: more than a quarter of "
        f"{where} ({size(capacity)}). The first evaluation runs out of memory, possibly hours in.",
        "Reduce the logits per batch: `preprocess_logits_for_metrics=lambda logits, labels: "
        "logits.argmax(-1)` in `Trainer(...)` (and `eval_accumulation_steps=1` to move them off the GPU).",
        location=pipeline.location(pipeline.trainer),
        evidence={"accumulated_bytes": accumulated, "capacity_bytes": capacity, "eval_rows": n_eval},
    )


def _train_fix(
    step,
    train_bs,
    accumulation,
    budget,
    work_factory,
    row,
    collator,
    loss_fn,
    args,
    precision,
    checkpointing,
    device,
    evidence,
    model=None,
):
    effective = train_bs * accumulation
    ga_step = StepModel(**{**step.__dict__, "accumulation": 2})  # with accumulation, gradients stay resident
    limit = ga_step.max_batch(budget)
    if limit >= 1:
        b, ga = _keeping_effective_batch(effective, limit)
        cfg = {"per_device_train_batch_size": b, "gradient_accumulation_steps": ga}
        return (
            f"Set `per_device_train_batch_size={b}, gradient_accumulation_steps={ga}`: it keeps the effective "
            f"batch of {effective} and peaks at {ga_step.peak(b) / GIB:.2f} GiB.",
            cfg,
        )
    # Not even one row fits as configured: try what trades compute for memory, as the user would configure it.
    from ftdoctor.runtime import devices

    half = precision or ("bf16" if devices.supports_bf16(device) else "fp16")
    work = work_factory()
    try:
        fit = measure_activations(work, row, collator, loss_fn, args, half, True)
        recompute = recompute_bytes_per_row(work, row, collator, loss_fn, args, half, fit, step.seq_len)
    except UserCodeError:
        fit = None
    finally:
        del work
    if fit is not None:
        alt = StepModel(**{**step.__dict__, "fit": fit, "recompute_per_row": recompute, "accumulation": 2})
        limit = alt.max_batch(budget)
        if limit >= 1:
            b, ga = _keeping_effective_batch(effective, limit)
            cfg = {
                "per_device_train_batch_size": b,
                "gradient_accumulation_steps": ga,
                "gradient_checkpointing": True,
                half: True,
            }
            return (
                f"Set `per_device_train_batch_size={b}, gradient_accumulation_steps={ga}, "
                f"gradient_checkpointing=True, {half}=True`: it keeps the effective batch of {effective} and "
                f"peaks at {alt.peak(b) / GIB:.2f} GiB.",
                cfg,
            )
    alone = step.params + step.grads + step.optimizer
    frozen = frozen_bytes(model)
    if models.peft_adapters(model) is not None:  # the base is frozen, only adapters train
        # Adapters already: what is left is the frozen base. Quantized to 4 bits it takes a quarter of 16-bit.
        if not models.is_quantized(model) and frozen:
            in_4bit = step.params - frozen + frozen * 4 // (8 * max(1, bytes_per_weight(model)))
            qlora = StepModel(**{**step.__dict__, "params": in_4bit, "accumulation": 2})
            fits = qlora.max_batch(budget) >= 1
            return (
                f"The frozen base alone takes {frozen / GIB:.2f} GiB. Load it in 4 bits (QLoRA): "
                "`AutoModelForCausalLM.from_pretrained(..., quantization_config=BitsAndBytesConfig("
                'load_in_4bit=True, bnb_4bit_quant_type="nf4"))`, then `prepare_model_for_kbit_training(model)` '
                f"before `get_peft_model`: the base drops to about {(frozen // (2 * max(1, bytes_per_weight(model)))) / GIB:.2f} GiB"
                + (
                    " and a batch of 1 fits."
                    if fits
                    else "; that alone is not enough: use a larger GPU or shard the base across GPUs (FSDP)."
                ),
                {"quantization": "4bit"},
            )
        return (
            f"The quantized base, adapters and optimizer state take {alone / GIB:.2f} GiB: use fewer or smaller "
            "adapters (`r`, `target_modules`), `gradient_checkpointing=True`, or a larger GPU.",
            {"gradient_checkpointing": True},
        )
    return (
        f"The parameters, gradients and optimizer state alone take "
        f'{alone / GIB:.2f} GiB: use `optim="adamw_bnb_8bit"` or '
        '`optim="adafactor"`, train adapters (LoRA with peft) instead of every weight, or a larger GPU.',
        {"optim": "adamw_bnb_8bit"},
    )


def _eval_fix(budget, params, optimizer, row_bytes, accumulated, eval_bs, args, pipeline, fit, seq_len, evidence):
    """Predictions off the device (and reduced to ids for language models), then a smaller eval batch."""
    cfg, parts = {}, []
    room = budget - params - optimizer
    per_batch = max(row_bytes, 1)
    if accumulated and not getattr(args, "eval_accumulation_steps", None):
        cfg["eval_accumulation_steps"] = 1
        parts.append("`eval_accumulation_steps=1` (predictions leave the GPU after each batch instead of piling up)")
        if fit.lv > 0 and getattr(pipeline, "preprocess_logits_for_metrics", None) is None:
            cfg["preprocess_logits_for_metrics"] = "lambda logits, labels: logits.argmax(-1)"
            parts.append(
                "`preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1)` (keeps one id per "
                "token, not a vocabulary-sized row)"
            )
    fit_bs = int(room // per_batch) if room > 0 else 0
    if fit_bs < eval_bs:
        cfg["per_device_eval_batch_size"] = max(fit_bs, 1)
        parts.append(f"`per_device_eval_batch_size={max(fit_bs, 1)}`")
    return "For evaluation set " + ", ".join(parts) + ".", cfg


def _probe(
    model,
    work,
    step,
    max_bs,
    evidence,
    ds,
    features,
    collator,
    loss_fn,
    args,
    precision,
    checkpointing,
    work_optimizer,
    pipeline,
    findings_so_far,
    target,
):
    """At most two trial steps on the GPU (in a child process, or here when this process already holds the model
    there): at the predicted maximum (must fit) and just above the device's capacity (must not); a CUDA error
    there is replayed on the CPU to find its cause."""
    sizes = probing.trial_sizes(max_bs, evidence["max_batch_size_at_capacity"] or 0)
    if not sizes:
        return " Nothing was probed: not one row fits.", []
    ran = probing.probe(
        work,
        sizes,
        ds,
        features,
        collator,
        args,
        precision,
        checkpointing,
        work_optimizer,
        _optimizer_kwargs(work_optimizer),
        target.worked_in_place,
    )
    result, here, rows_of = ran.result, ran.here, ran.rows_of
    evidence["probed"] = True
    evidence["probe"] = [t.__dict__ for t in result.trials]
    extra, notes = [], []
    for t in result.trials:
        predicted = step.peak(t.batch_size) if t.batch_size > 0 else None
        if t.ok and predicted:
            notes.append(
                f"batch {t.batch_size}: measured {t.peak_bytes / GIB:.2f} GiB, predicted {predicted / GIB:.2f} GiB"
            )
            t_dict = next(d for d in evidence["probe"] if d["batch_size"] == t.batch_size)
            t_dict["predicted_peak_bytes"] = predicted
        elif t.oom:
            notes.append(f"batch {t.batch_size}: out of memory")
    if result.device_error:
        failed = next((t.batch_size for t in result.trials if t.cuda_error), sizes[0])
        stand_in = None
        if here:  # the weights on the GPU cannot be read any more: the CPU runs a stand-in of the model
            from ftdoctor.runtime import twin

            target.device_error = result.device_error
            stand_in = twin.stand_in(model)
        if not here or stand_in is not None:
            extra.append(
                replay_on_cpu(
                    result.device_error,
                    rows_of.get(failed) or rows_of[sizes[0]],
                    model,
                    collator,
                    target.run_loss if here else loss_fn,
                    pipeline,
                    findings_so_far,
                    evidence,
                    work=stand_in,
                )
            )
        else:
            extra.append(
                finding(
                    "FTD803",
                    f"The trial step on the GPU failed with `{result.device_error}`; it could "
                    "not be replayed on the CPU (the model is not built from a transformers config).",
                    "Run the check with `CUDA_VISIBLE_DEVICES=` to see the error on the CPU, or with "
                    "`CUDA_LAUNCH_BLOCKING=1` to see the failing kernel.",
                    location=pipeline.location(model),
                    evidence={"device_error": result.device_error},
                )
            )
    note = (" Trial steps on the GPU (worst-case rows): " + "; ".join(notes) + ".") if notes else ""
    return note, [f for f in extra if f is not None]


def _optimizer_kwargs(opt) -> dict:
    if opt is None:
        return {}
    from ftdoctor.targets.base import optimizer_init_kwargs

    kwargs = optimizer_init_kwargs(opt)
    return {k: v for k, v in kwargs.items() if k not in ("foreach",)}


def replay_on_cpu(
    device_error, rows, model, collator, loss_fn, pipeline, findings_so_far, evidence, chunk=16, work=None
):
    """Replay the rows of a batch that failed on the GPU on the CPU, a few at a time, until the real error shows;
    diagnose it like any other failure of the forward or backward pass."""
    from ftdoctor.targets import work_copy

    work = work if work is not None else work_copy(model)
    work.train()
    distinct = list({id(r): r for r in rows}.values())
    cpu_error = None
    for i in range(0, len(distinct), chunk):
        part = distinct[i : i + chunk]
        try:
            batch = dict(collator(part))
            loss, _ = loss_fn(work, batch)
            if loss is not None:
                loss.backward()
            work.zero_grad(set_to_none=True)
        except UserCodeError as err:
            cpu_error = err.exc
            break
        except Exception as exc:
            cpu_error = exc
            break
    replay = {"device_error": device_error, "rows_replayed": len(distinct)}
    evidence["replay"] = replay
    if cpu_error is None:
        replay["cpu_error"] = None
        return finding(
            "FTD803",
            f"The trial step on the GPU failed with `{device_error}`, but the same rows run "
            "cleanly on the CPU: the fault is in a GPU kernel or the driver, not in the data.",
            "Run with `CUDA_LAUNCH_BLOCKING=1` to see the failing kernel; check the CUDA, driver and torch "
            "versions match.",
            evidence={"device_error": device_error},
        )
    text = f"{type(cpu_error).__name__}: {cpu_error}"
    replay["cpu_error"] = text.splitlines()[0][:400]
    failure = explain(cpu_error, "the GPU trial step", findings_so_far)
    reported = failure.predicted_by
    known = root_codes(text)
    replay["root_cause"] = reported or known
    culprits = _culprits(distinct, model)
    replay["culprits"] = culprits
    if reported:
        cause = f"already reported as {', '.join(reported)}"
    elif known:
        from ftdoctor.sdk import RULES

        cause = "; ".join(f"{c}: {RULES[c].title}" for c in known if c in RULES)
    else:
        cause = "see the error"
    if culprits:
        cause += "; " + "; ".join(culprits[:3])
    fix = (
        f"Fix the cause ({cause}) in the data or the model configuration; `ftdoctor explain "
        f"{replay['root_cause'][0]}` shows how."
        if replay["root_cause"]
        else "Fix the error the CPU shows; CUDA only reports that a kernel failed."
    )
    return finding(
        "FTD803",
        f"The trial step on the GPU failed with `{device_error}`. Replayed on the CPU, the same "
        f"rows raise `{replay['cpu_error']}` ({cause}).",
        fix,
        location=pipeline.location(model),
        evidence={
            "device_error": device_error,
            "cpu_error": replay["cpu_error"],
            "root_cause": replay["root_cause"],
            "culprits": culprits,
        },
    )


def _culprits(rows, model) -> list[str]:
    """The values in the replayed rows that a GPU kernel asserts on: labels outside the classes, token ids beyond
    the embedding matrix."""
    n_labels = models.num_labels(model) if models.model_name(model).endswith("ForSequenceClassification") else None
    n_rows = models.embedding_rows(model)
    out = []
    for r in rows:
        label = next((r[k] for k in datasets.LABEL_KEYS if k in r), None)
        if n_labels and isinstance(label, int) and not 0 <= label < n_labels:
            out.append(f"a row has label {label}, outside 0..{n_labels - 1}")
        ids = r.get("input_ids")
        if n_rows and ids is not None:
            big = [int(i) for i in ids if int(i) >= n_rows]
            if big:
                out.append(f"a row has token id {big[0]}, beyond the {n_rows} embedding rows")
    return list(dict.fromkeys(out))
