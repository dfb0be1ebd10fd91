"""backward: backward and one optimizer step, on a copy of the model, with the user's optimizer settings."""

from __future__ import annotations

import contextlib
import time

from ftdoctor.checks._failures import short_of_memory
from ftdoctor.facts import models as data
from ftdoctor.sdk import (
    Provide,
    Site,
    UserCodeError,
    check,
    deepest_user_frame,
    diagnose,
    finding,
    parse_source,
    read_source,
    relay,
    rule,
    run_user,
)

rule(
    "FTD501",
    "params-without-grad",
    "backward",
    "error",
    "Trainable parameters receive no gradient",
    """
     Parameters with `requires_grad=True` that get no gradient never change: the graph is cut (`.detach()`,
     `torch.no_grad()`, `.item()`, a numpy round trip) or those modules are not used by the loss. When the task
     head gets none, the model cannot learn the task at all.
     """,
    broken="""
     with torch.no_grad():
         features = self.encoder(**inputs).last_hidden_state
     logits = self.head(features)
     """,
    fixed="""
     features = self.encoder(**inputs).last_hidden_state
     logits = self.head(features)
     """,
)
rule(
    "FTD506",
    "some-params-without-grad",
    "backward",
    "warning",
    "Some trainable parameters receive no gradient",
    """
     A minority of the parameters with `requires_grad=True` got no gradient on a real batch, none of them in the
     task head: modules the loss does not use (a pooler, an unused embedding type), or a partial cut in the graph.
     They never change; freeze them on purpose if that is meant.
     """,
    broken="model.bert.pooler  # unused by a token classification loss, still requires_grad",
    fixed="for p in model.bert.pooler.parameters(): p.requires_grad = False",
)
rule(
    "FTD509",
    "params-the-loss-does-not-read",
    "backward",
    "info",
    "Some trainable parameters are not read by the loss",
    """
     Modules that ran in the forward but whose output the loss never reads get no gradient, with no cut in the
     pipeline's code: a pooler computed by the encoder while the loss reads the token states, a head the task
     does not use. They never change; that is by construction, not a bug. Freeze them to save their optimizer
     state.
     """,
    broken="hidden = self.encoder(**inputs).last_hidden_state  # the encoder's pooler still requires grad",
    fixed="self.encoder.pooler.requires_grad_(False)  # or BertModel(config, add_pooling_layer=False)",
)
rule(
    "FTD507",
    "no-trainable-parameters",
    "backward",
    "error",
    "The model has no trainable parameters",
    """
     Every parameter has `requires_grad=False`, usually from a loop that freezes the encoder and catches the
     head too. Nothing can learn: a hand-written loop fails at `loss.backward()`, the Trainer builds an empty
     optimizer.
     """,
    broken="""
     for p in model.parameters():
         p.requires_grad = False
     """,
    fixed="""
     for p in model.base_model.parameters():  # the encoder only; the classification head still learns
         p.requires_grad = False
     """,
)
rule(
    "FTD508",
    "checkpointing-without-input-grads",
    "backward",
    "error",
    "Checkpointed blocks get no gradient: their input does not require grad",
    """
     Reentrant gradient checkpointing (`torch.utils.checkpoint(..., use_reentrant=True)`) back-propagates into a
     recomputed block only when one of the block's inputs requires grad. With a frozen base (LoRA and other
     adapters) the embeddings' output does not, so the adapters inside every checkpointed block get no gradient and
     never train; torch only warns "None of the inputs have requires_grad=True", and when all trainable parameters
     are inside, `loss.backward()` raises "element 0 of tensors does not require grad".
     `gradient_checkpointing_enable()` and TRL make the embeddings' output require grad themselves; checkpointing
     applied by the script's own code must.
     """,
    broken="""
     model = get_peft_model(base, lora_config)
     for layer in model.get_base_model().model.layers:  # the script's own reentrant checkpointing
         layer.forward = functools.partial(checkpoint, layer.forward, use_reentrant=True)
     """,
    fixed="""
     model = get_peft_model(base, lora_config)
     for layer in model.get_base_model().model.layers:
         layer.forward = functools.partial(checkpoint, layer.forward, use_reentrant=True)
     model.enable_input_require_grads()  # the embeddings' output requires grad: gradients enter every block
     """,
)
rule(
    "FTD502",
    "non-finite-gradients",
    "backward",
    "error",
    "Gradients are NaN or infinite",
    """
     Non-finite gradients destroy the weights at the first step. Causes: a non-finite loss, log of zero in a
     custom loss, float16 overflow.
     """,
)
rule(
    "FTD503",
    "params-not-updated",
    "backward",
    "error",
    "The optimizer step changes no parameter",
    """
     After one optimizer step with non-zero gradients, the weights must move. A learning rate of 0, an optimizer
     holding another model's parameters, or frozen parameters leave the model exactly as it was.
     """,
    broken='TrainingArguments("out", learning_rate=0)',
    fixed='TrainingArguments("out", learning_rate=2e-5)',
)
rule(
    "FTD504",
    "optimizer-missing-params",
    "backward",
    "error",
    "The optimizer does not hold the trainable parameters",
    """
     An optimizer updates only the parameters it was given. Built before the model was replaced or its head
     swapped, or from an empty list, it holds none (or only some) of the parameters that train.
     """,
    broken="""
     optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
     model = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=3)  # a new model
     trainer = Trainer(model, args, optimizers=(optimizer, None))
     """,
    fixed="""
     model = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=3)
     optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
     trainer = Trainer(model, args, optimizers=(optimizer, None))
     """,
)
rule(
    "FTD505",
    "backward-error",
    "backward",
    "error",
    "The backward pass or the optimizer step raised",
    """
     Computing gradients or applying them failed on a real batch; training would fail the same way.
     """,
)


rule(
    "FTD512",
    "task-head-frozen",
    "backward",
    "warning",
    "The classification head is frozen",
    """
     A classification head loaded for new labels starts random and must train with the rest. `get_peft_model`
     freezes every parameter of the base model, the head included, unless the LoRA config names the task
     (`task_type="SEQ_CLS"`) or the head (`modules_to_save`); freezing the base by hand can catch it too. Training
     then fits the adapters to a random projection: the loss falls a little and the predictions stay poor.
     """,
    broken='model = get_peft_model(model, LoraConfig(r=8, target_modules=["query", "value"]))',
    fixed='model = get_peft_model(model, LoraConfig(r=8, target_modules=["query", "value"], task_type="SEQ_CLS"))',
)


def _head_layers(model, n: int) -> list[tuple[str, object]]:
    """The linear layers that score the ``n`` classes (out_features == n), by name; an adapter's own low-rank layers
    (LoRA's `lora_A`, of rank ``n`` by chance) are not the head."""
    import torch

    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and m.out_features == n
        and not any(part.startswith("lora_") for part in name.split("."))
    ]


@check("backward", codes=("FTD512",))
def task_head_trains(model, pipeline, task=None):
    """Contract before training: with some parameters training, a classifier's head must be one of them."""
    inner = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    # The class of the model inside an adapter wrapper tells the task where the wrapper's (a bare PeftModel) does not.
    if task is None and type(inner).__name__.endswith("ForSequenceClassification"):
        task = "sequence-classification"
    elif task is None and type(inner).__name__.endswith("ForTokenClassification"):
        task = "token-classification"
    if task not in ("sequence-classification", "token-classification"):
        return None
    n = data.num_labels(model) or 0
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    heads = _head_layers(model, n) if n and n != hidden else []
    trains = [p.requires_grad for p in model.parameters()]
    if not heads or not any(trains) or any(p.requires_grad for _, m in heads for p in m.parameters()):
        return None
    name = heads[-1][0].removeprefix("base_model.model.").split(".")[0]
    if data.peft_adapters(model) is not None:
        kind = "SEQ_CLS" if task == "sequence-classification" else "TOKEN_CLS"
        fix = (
            f'Name the task in the LoRA config: `LoraConfig(..., task_type="{kind}")` (PEFT then trains and saves '
            f'the head), or `modules_to_save=["{name}"]`.'
        )
    else:
        fix = f"Leave the head trainable: `for p in model.{name}.parameters(): p.requires_grad = True`."
    return finding(
        "FTD512",
        f"`{name}`, the layer that scores the {n} classes, does not train while {sum(trains)} other parameter "
        "tensors do: a head loaded for new labels stays at its random initialisation.",
        fix,
        location=pipeline.location(model),
        evidence={"head": [h for h, _ in heads], "trainable_tensors": sum(trains)},
    )


@check("backward", codes=("FTD507",))
def some_parameters_train(model, pipeline):
    """Something must be trainable; this needs no forward pass, so it holds when the loss cannot be computed."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if trainable:
        return None
    name = pipeline.name_of(model) or "model"
    evidence = {"parameters": sum(1 for _ in model.parameters())}
    adapters = data.peft_adapters(model)
    if adapters is not None:
        # An adapter model: the base stays frozen; what must train is the adapter.
        loaded = [a for a, config in adapters.items() if getattr(config, "inference_mode", False) is True]
        load_site, call = _adapter_load_site(pipeline)
        if loaded:
            detail = (
                f"No parameter of `{data.model_name(model)}` has requires_grad=True: the adapter "
                f"{', '.join(f'`{a}`' for a in loaded)} was loaded for inference (PEFT loads adapters frozen "
                "unless told otherwise), and the base model is frozen under it. Nothing can train."
            )
            fix = (
                "Load the adapter for training: "
                + (f"`{call}`" if call else "`PeftModel.from_pretrained(base, adapter_path, is_trainable=True)`")
                + " (PEFT loads adapters for inference by default; `model.load_adapter(path, adapter_name, "
                "is_trainable=True)` likewise). Leave the base frozen."
            )
            return finding(
                "FTD507",
                detail,
                fix,
                location=load_site or pipeline.location(model),
                evidence={**evidence, "adapters_in_inference_mode": loaded},
            )
        fix = (
            f"Make the adapter trainable, not the base: `get_peft_model(base, config)` leaves exactly the adapter "
            f"trainable, so freeze nothing after it, or turn it back on with "
            f'`{name}.set_requires_grad("{next(iter(adapters), "default")}")`.'
        )
        return finding(
            "FTD507",
            f"No parameter of `{data.model_name(model)}` has requires_grad=True: the adapter "
            "was frozen along with the base model, so nothing can train.",
            fix,
            location=_freeze_site(pipeline) or pipeline.location(model),
            evidence=evidence,
        )
    heads = [h.rstrip(".") for h in _head_names(model)]
    fix = (
        f"Leave the task head trainable: freeze only the encoder, or unfreeze the head after freezing "
        f"(`for p in {name}.{heads[-1]}.parameters(): p.requires_grad = True`)."
        if heads
        else "Leave at least the parameters that should learn with `requires_grad=True`."
    )
    return finding(
        "FTD507",
        f"No parameter of `{data.model_name(model)}` has requires_grad=True: nothing can train "
        "(a loop's `loss.backward()` raises \"element 0 of tensors does not require grad\"; the Trainer's "
        "optimizer gets an empty parameter list).",
        fix,
        location=_freeze_site(pipeline) or pipeline.location(model),
        evidence=evidence,
    )


def _adapter_load_site(pipeline) -> tuple[str | None, str | None]:
    """The script's line that loads an adapter without `is_trainable=True` (`PeftModel.from_pretrained`, an
    `AutoPeftModel...` class, `load_adapter`), and that call written with it."""
    import ast
    import inspect

    cap = pipeline.capture
    if cap is None:
        return None, None
    try:
        source = read_source(cap.script)
        tree = ast.parse(source)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None, None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if any(kw.arg == "is_trainable" for kw in node.keywords):
            continue
        owner = node.func.value
        if node.func.attr == "from_pretrained" and isinstance(owner, ast.Name):
            # A PEFT class whose loader takes `is_trainable` (PeftModel, AutoPeftModel...; not a config class).
            cls = cap.namespace.get(owner.id)
            if not (isinstance(cls, type) and str(getattr(cls, "__module__", "")).partition(".")[0] == "peft"):
                continue
            try:
                if "is_trainable" not in inspect.signature(cls.from_pretrained).parameters:
                    continue
            except (TypeError, ValueError, AttributeError):
                continue
        elif node.func.attr != "load_adapter":
            continue
        call = ast.get_source_segment(source, node) or ""
        if "\n" in call or not call.endswith(")"):
            call = ""
        else:
            call = call[:-1].rstrip().rstrip(",") + ", is_trainable=True)"
        return str(Site(cap.script, node.lineno)), call or None
    return None, None


@check(
    "backward",
    provides=("step_evidence", "work_optimizer"),
    codes=("FTD501", "FTD502", "FTD503", "FTD504", "FTD505", "FTD506", "FTD508", "FTD509", "FTD806"),
)
def one_optimizer_step(
    work_model, batch, model, pipeline, findings_so_far, target, trainer=None, optimizer=None, args=None
):
    import torch

    out = []
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        return Provide({}, skip_reason="the model has no trainable parameters (FTD507)")
    copies = target.copies()
    short = short_of_memory(
        model, 1 + copies, "One optimizer step (the gradients" + (", on a copy)" if copies else ")"), target.work_device
    )
    if short is not None:
        return Provide({}, [short], skip_reason="not enough memory for one optimizer step (FTD806)")
    opt, held = target.build_optimizer(work_model)
    opt_loc = pipeline.location(optimizer, trainer) if optimizer is not None else pipeline.location(trainer)
    missing = sorted(trainable - held)
    if opt is None or not held:
        out.append(
            finding(
                "FTD504",
                f"The optimizer holds none of the {len(trainable)} trainable parameters of "
                f"`{data.model_name(model)}`: it was built from another model or an empty list.",
                "Build the optimizer from the model you train, after creating it: "
                "`torch.optim.AdamW(model.parameters(), lr=...)`.",
                location=opt_loc,
                evidence={"trainable": len(trainable), "held": 0},
            )
        )
        return Provide({}, out)
    if missing:
        out.append(
            finding(
                "FTD504",
                f"The optimizer holds {len(held & trainable)} of {len(trainable)} trainable "
                f"parameters; missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.",
                "Build the optimizer after the last change to the model (head replaced, layers unfrozen): "
                "`torch.optim.AdamW(model.parameters(), lr=...)`.",
                location=opt_loc,
                evidence={"missing": missing[:50], "trainable": len(trainable)},
            )
        )
    work_model.train()
    work_model.zero_grad(set_to_none=True)
    params = dict(work_model.named_parameters())
    started = time.perf_counter()
    ran: set[str] = set()
    ran_modules: set[str] = set()  # every module holding parameters of its own that ran
    hooks = _watch_children(work_model, ran) + _watch_modules(work_model, ran_modules)
    cut_blocks: list = []  # reentrant checkpoints whose inputs did not require grad
    loss = None
    try:
        try:
            with _watch_reentrant_checkpoints(cut_blocks, pipeline):
                loss, _ = target.loss(work_model, batch)
                if loss is None:
                    return Provide({}, out, skip_reason="the model returns no loss (forward)")
                run_user("loss.backward()", loss.backward)
            step_seconds = time.perf_counter() - started
        finally:
            for h in hooks:
                h.remove()
    except UserCodeError as err:
        if cut_blocks and loss is not None and not loss.requires_grad:
            cut = _checkpoint_cut(cut_blocks, work_model, trainable, pipeline, model, whole_loss=True)
            return Provide({}, out + [cut], skip_reason="the loss does not require grad (FTD508)")
        cap = getattr(pipeline, "capture", None)
        ev, cause = diagnose(
            err.exc,
            "backward",
            {"pipeline": pipeline, "model": model, "batch": batch, "args": args},
            findings_so_far,
            user_dir=getattr(cap, "user_dir", None) or None,
        )
        if cause is not None and cause.finding is None:
            return Provide({}, out, skip_reason=cause.reason)
        if cause is not None:
            return Provide({}, out + [cause.finding], skip_reason=cause.reason or ev.first_line)
        f = relay(
            "FTD505",
            ev,
            inputs=dict(batch) if hasattr(batch, "items") else None,
            location=pipeline.location(model),
        )
        return Provide({}, out + [f], skip_reason=ev.first_line)
    no_grad = [n for n in trainable if n in params and params[n].grad is None]
    # A gradient that exists but is exactly zero means the parameter is in the graph and the loss is flat along it
    # for this batch (a bias that the softmax over a multiple-choice head cancels, a dead unit, a zero-initialised
    # partner such as LoRA's B): nothing is cut. Only when every gradient is zero does the loss not depend on them.
    zero = [n for n in trainable if n in params and params[n].grad is not None and not params[n].grad.any()]
    if zero and len(zero) == sum(1 for n in trainable if n in params and params[n].grad is not None):
        no_grad += zero
    head = [h for h in _head_names(work_model) if h.rstrip(".") in ran or h.rstrip(".").split(".")[-1] in ran]
    non_finite = [
        n
        for n in trainable
        if n in params and params[n].grad is not None and not torch.isfinite(params[n].grad.sum(dtype=torch.float32))
    ]  # a NaN or inf makes the sum one
    if non_finite:
        out.append(
            finding(
                "FTD502",
                f"{len(non_finite)} parameters have NaN/inf gradients (e.g. {non_finite[0]}); "
                f"the loss was {float(loss.detach()):.4g}.",
                "Find the source: a non-finite loss, log(0) in a "
                "custom loss, or float16 overflow (use bf16 or keep fp16 with float32 weights).",
                location=pipeline.location(model),
                evidence={"parameters": non_finite[:20]},
            )
        )
    lr = getattr(args, "learning_rate", None)
    # The step runs on a sample of each parameter group (the others' gradients are dropped, as for a parameter a
    # batch does not use): enough to see whether the optimizer moves what it holds, without allocating its state
    # for every weight. Every parameter steps when some got no gradient: the second look below needs their
    # zero-initialised partners moved.
    stepped = _step_sample(opt, params, set(zero))
    if no_grad:
        short = short_of_memory(
            model, 3 + copies, "A step of every weight (gradients and two optimizer moments)", target.work_device
        )
        if short is None:
            stepped = set(trainable & held)
        else:  # without it, a parameter whose zero-initialised partner blocks its gradient would look cut off
            out.append(short)
            no_grad = []
    aside = {n: p.grad for n, p in params.items() if n not in stepped and p.grad is not None}
    for n in aside:
        params[n].grad = None
    try:
        with_grad, moved = _step(opt, params, stepped - set(no_grad))
        if aside and with_grad and not moved and short_of_memory(model, 3 + copies, "", target.work_device) is None:
            # Nothing of the sample moved (a rate of 0, or steps below the weights' rounding): every weight steps
            # before that is said, as the run would step them.
            for n, g in aside.items():
                params[n].grad = g
            stepped |= set(aside)
            with_grad, moved = _step(opt, params, stepped - set(no_grad))
    except UserCodeError as err:
        out.append(
            finding(
                "FTD505",
                f"optimizer.step() raised {type(err.exc).__name__}: {err.exc}",
                "Fix the optimizer configuration.",
                location=opt_loc,
            )
        )
        return Provide({}, out)
    del aside
    if no_grad:
        # A zero-initialised partner (LoRA's B, a zero-init gate) blocks the gradient of its partner at the first
        # step only: what gets a gradient once the first update has moved the weights was never cut off.
        no_grad = _still_without_gradient(target, work_model, batch, no_grad, params)
    if no_grad and cut_blocks:
        inside = _params_of_blocks(cut_blocks, work_model)
        lost = [n for n in no_grad if n in inside] if inside else list(no_grad)
        if lost:
            out.append(_checkpoint_cut(cut_blocks, work_model, trainable, pipeline, model, lost=lost))
            no_grad = [n for n in no_grad if n not in lost]
    cuts = graph_cuts(pipeline, target, model) if no_grad else []
    if no_grad and not cuts and len(no_grad) / len(trainable) <= 0.5:
        # Modules that ran, with nothing in the pipeline's code cutting the graph: the loss does not read their
        # output (a pooler beside the token states). Only a head that gets no gradient at all stays an error.
        lost = set(no_grad)
        whole = [h for h in head if all(n in lost for n in trainable if n.startswith(h))]
        unread = [n for n in no_grad if n.rpartition(".")[0] in ran_modules and not any(n.startswith(h) for h in whole)]
        if unread:
            out.append(
                finding(
                    "FTD509",
                    f"{len(unread)} of {len(trainable)} trainable parameters ran in the forward but the loss does "
                    f"not read them (e.g. {', '.join(sorted(unread)[:4])}): they get no gradient and never change.",
                    "Nothing to fix if that is meant; freeze them (`p.requires_grad = False`) to save their "
                    "optimizer state.",
                    location=pipeline.location(model),
                    evidence={"parameters": sorted(unread)[:50]},
                )
            )
            no_grad = [n for n in no_grad if n not in set(unread)]
    if no_grad:
        head_cut = [n for n in no_grad if any(n.startswith(h) for h in head)]
        share = len(no_grad) / len(trainable)
        rule_code = "FTD501" if head_cut or share > 0.5 else "FTD506"
        fix = (
            "Make sure the loss depends on them: no `.detach()`, `torch.no_grad()` or `.item()` between them and "
            "the loss; freeze on purpose with `p.requires_grad = False` what should not train."
        )
        if cuts:
            site, code = cuts[0]
            fix = (
                f"The graph is cut at {site}: `{code}`. Remove the `{_cut_token(code)}` so the loss reaches them; "
                "freeze on purpose with `p.requires_grad = False` what should not train."
            )
        out.append(
            finding(
                rule_code,
                f"{len(no_grad)} of {len(trainable)} trainable parameters got no gradient "
                f"(e.g. {', '.join(sorted(no_grad)[:4])}).",
                fix,
                location=str(cuts[0][0]) if cuts else pipeline.location(model),
                evidence={"parameters": sorted(no_grad)[:50], "graph_cuts": [f"{s}: {c}" for s, c in cuts]},
            )
        )

    if with_grad and not moved:
        group_lrs = sorted({g.get("lr") for g in opt.param_groups})
        out.append(
            finding(
                "FTD503",
                f"No parameter changed after one optimizer step (learning rates {group_lrs}).",
                "Use a non-zero learning rate: `TrainingArguments(..., learning_rate=2e-5)`."
                if all(not x for x in group_lrs)
                else "Check the optimizer's parameters and settings.",
                location=(pipeline.location(args) if lr == 0 else None) or opt_loc,
                evidence={"lrs": group_lrs},
            )
        )
    work_model.zero_grad(set_to_none=True)
    counted = {id(p): p for p in model.parameters()}.values()
    state_bytes = _state_bytes(opt, params, stepped, trainable & held)
    # Measured: the state itself (twice the trainable weights for AdamW) is not needed by any later stage.
    opt.state.clear()
    evidence = {
        "loss": float(loss.detach()),
        "optimizer": type(opt).__name__,
        "trainable_params": len(trainable),
        "moved": len(moved),
        "optimizer_state_bytes": state_bytes,
        "step_seconds": step_seconds,
        "trainable_numel": sum(p.numel() for p in counted if p.requires_grad),
        "total_numel": sum(p.numel() for p in counted),
    }
    return Provide({"step_evidence": evidence, "work_optimizer": opt}, out, evidence=evidence)


@contextlib.contextmanager
def _watch_reentrant_checkpoints(cut: list, pipeline):
    """Note every reentrant checkpoint whose inputs do not require grad: torch will not back-propagate into that
    block. ``cut`` receives (the checkpointed callable, the script's line that checkpoints, if it is the script's)."""
    import sys

    import torch
    import torch.utils.checkpoint as checkpointing

    # torch calls it on the inputs of every reentrant checkpoint (and warns when none requires grad).
    original = getattr(checkpointing, "check_backward_validity", None)
    if original is None:
        yield
        return
    cap = pipeline.capture

    def watched(inputs, *args, **kwargs):
        inputs = tuple(inputs)
        if not any(t.requires_grad for t in inputs if torch.is_tensor(t)):
            caller = sys._getframe(1)
            fn = caller.f_locals.get("run_function") if caller.f_code.co_name == "forward" else None
            user = deepest_user_frame(caller, cap.user_dir) if cap is not None else None
            cut.append((fn, Site(user.f_code.co_filename, user.f_lineno) if user is not None else None))
        return original(inputs, *args, **kwargs)

    checkpointing.check_backward_validity = watched
    try:
        yield
    finally:
        checkpointing.check_backward_validity = original


def _block_of(fn):
    """The module a checkpointed callable runs (through partials and bound methods), or None."""
    import functools

    import torch

    for _ in range(6):
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, torch.nn.Module):
            return owner
        if isinstance(fn, torch.nn.Module):
            return fn
        inner = getattr(fn, "__wrapped__", None)
        if inner is None:
            return None
        fn = inner
    return None


def _params_of_blocks(cut: list, work_model) -> set[str]:
    """Names (in ``work_model``) of the parameters of the blocks that were checkpointed without input grads."""
    names = {id(p): n for n, p in work_model.named_parameters()}
    inside: set[str] = set()
    for fn, _ in cut:
        block = _block_of(fn)
        if block is not None:
            inside.update(names[id(p)] for p in block.parameters() if id(p) in names)
    return inside


def _checkpoint_cut(cut: list, work_model, trainable: set, pipeline, model, *, lost=None, whole_loss=False):
    # A loss without grad_fn: no trainable parameter is outside the cut blocks, so all of them are lost.
    lost = sorted(trainable if whole_loss or lost is None else lost)
    name = pipeline.name_of(model) or "model"
    site = next((s for _, s in cut if s is not None), None)
    where = f" (at {site})" if site is not None else ""
    blocks = len({id(_block_of(fn)) for fn, _ in cut}) if all(_block_of(fn) is not None for fn, _ in cut) else None
    what = f"{blocks} checkpointed block{'s' if blocks != 1 else ''}" if blocks else "the checkpointed blocks"
    why = " (the embeddings are frozen)" if _embeddings_frozen(work_model) else ""
    detail = (
        f"Reentrant gradient checkpointing is on{where} and the input of {what} does not require grad{why}, "
        f"so torch does not back-propagate into them: {len(lost)} of {len(trainable)} trainable parameters get "
        f"no gradient (e.g. {', '.join(lost[:3])})."
    )
    if whole_loss:
        detail += (
            " None is outside those blocks, so the loss itself has no grad_fn and `loss.backward()` raises "
            '"element 0 of tensors does not require grad".'
        )
    fix = (
        f"Make the embeddings' output require grad before training: `{name}.enable_input_require_grads()`; or "
        'checkpoint without reentrancy (`gradient_checkpointing_kwargs={"use_reentrant": False}`, or '
        "`checkpoint(..., use_reentrant=False)` in your own code); for a quantized base, "
        "`prepare_model_for_kbit_training(model)` does it too."
    )
    return finding(
        "FTD508",
        detail,
        fix,
        location=str(site) if site is not None else pipeline.location(model),
        evidence={"parameters": lost[:50], "checkpoints_without_input_grad": len(cut)},
    )


def _embeddings_frozen(model) -> bool:
    try:
        emb = model.get_input_embeddings() if callable(getattr(model, "get_input_embeddings", None)) else None
    except Exception:  # a model that does not implement it
        return False
    return emb is not None and not any(p.requires_grad for p in emb.parameters())


def _freeze_site(pipeline) -> str | None:
    """The script's line that sets requires_grad to False (an assignment or requires_grad_(False))."""
    import ast

    from ftdoctor.sdk import Site

    cap = pipeline.capture
    if cap is None:
        return None
    tree = parse_source(cap.script)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and node.value.value is False
        ):
            return str(Site(cap.script, node.lineno))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "requires_grad_"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value is False
        ):
            return str(Site(cap.script, node.lineno))
    return None


def _fingerprint(p) -> tuple:
    """What tells whether a parameter changed, without a copy of it: its sum in float64 and a strided sample
    of its elements (a copy of every trainable weight would double the memory of a large model)."""
    import torch

    with torch.no_grad():
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 1024)
        total = sum(float(chunk.double().sum()) for chunk in flat.split(1 << 20))  # 8 MiB of float64 at a time
        return total, tuple(flat[::step][:1024].double().tolist())


def _step(opt, params: dict, watched: set[str]) -> tuple[list[str], list[str]]:
    """One optimizer step: the ``watched`` parameters, and those of them it changed."""
    before = {n: _fingerprint(params[n]) for n in watched if n in params}
    run_user("optimizer.step()", opt.step)
    return list(before), [n for n in before if _fingerprint(params[n]) != before[n]]


def _step_sample(opt, params: dict, zero: set[str]) -> set[str]:
    """Per parameter group, the smallest parameter of each rank (vectors, matrices) whose gradient is not zero
    (an optimizer moves a weight with a zero gradient by weight decay at most)."""
    names = {id(p): n for n, p in params.items()}
    sample: set[str] = set()
    for group in opt.param_groups:
        smallest: dict = {}
        for p in group.get("params", ()):
            n = names.get(id(p))
            if n is None or p.grad is None or n in zero:
                continue
            rank = min(p.dim(), 2)
            if rank not in smallest or p.numel() < smallest[rank].numel():
                smallest[rank] = p
        sample |= {names[id(p)] for p in smallest.values()}
    return sample


def _state_bytes(opt, params: dict, stepped: set[str], held: set[str]) -> int:
    """The optimizer's state for every parameter it holds, measured on the stepped ones and scaled to all: state
    shaped like its parameter (moments) per element, the rest (step counters, factored statistics) per tensor."""
    import torch

    by_id = {id(p): p for p in params.values()}
    per_element = per_tensor = 0
    for key, state in opt.state.items():
        p = by_id.get(id(key))
        for v in state.values():
            if not torch.is_tensor(v):
                continue
            if p is not None and v.shape == p.shape:
                per_element += v.numel() * v.element_size()
            else:
                per_tensor += v.numel() * v.element_size()
    ran = [n for n in stepped if n in params]
    numel = sum(params[n].numel() for n in ran)
    if not ran or not numel:
        return per_element + per_tensor
    everything = [n for n in held if n in params]
    return int(
        per_element * sum(params[n].numel() for n in everything) / numel + per_tensor * len(everything) / len(ran)
    )


def _watch_children(model, ran: set[str]) -> list:
    """Hooks that note which modules of the model (and of the model it wraps) run in a forward: a module that
    never runs is not the head the loss reads, whatever its place."""
    names = {id(m): n for n, m in model.named_modules()}
    inner = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    handles = []
    for _, m in list(inner.named_children()) + list(model.named_children()):
        full = names.get(id(m))
        if full is None:
            continue

        def hook(module, args, name=full):
            ran.add(name)

        handles.append(m.register_forward_pre_hook(hook))
    out_emb = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if out_emb is not None and id(out_emb) in names:
        name = names[id(out_emb)]
        handles.append(out_emb.register_forward_pre_hook(lambda module, args: ran.add(name)))
    return handles


def _watch_modules(model, ran: set[str]) -> list:
    """Hooks that note every module holding parameters of its own that runs in a forward."""
    handles = []
    for name, m in model.named_modules():
        if next(m.parameters(recurse=False), None) is None:
            continue

        def hook(module, args, name=name):
            ran.add(name)

        handles.append(m.register_forward_pre_hook(hook))
    return handles


def _still_without_gradient(target, work, batch, names, params) -> list[str]:
    work.zero_grad(set_to_none=True)
    try:
        loss, _ = target.loss(work, batch)
        if loss is None or not getattr(loss, "requires_grad", False):
            return names
        loss.backward()
    except UserCodeError:
        return names
    still = [n for n in names if params[n].grad is None or not params[n].grad.any()]
    work.zero_grad(set_to_none=True)
    return still


def _head_names(model) -> list[str]:
    """Parameter-name prefixes of the task head: the modules the loss reads last (output embeddings, classifier).
    Through an adapter wrapper (PEFT), the head of the model it wraps."""
    names = {id(m): n for n, m in model.named_modules()}
    inner = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    prefix = (names.get(id(inner), "") + ".") if inner is not model and names.get(id(inner)) else ""
    heads = []
    out_emb = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if out_emb is not None and id(out_emb) in names:
        heads.append(names[id(out_emb)] + ".")
    for n, m in inner.named_children():
        # A pretrained transformers model inside a module of the user's own is its body (an encoder), not its head.
        body = n == getattr(inner, "base_model_prefix", None) or hasattr(m, "base_model_prefix")
        if not body and any(True for _ in m.parameters()):
            heads.append(prefix + n + ".")
    return heads


_CUTS = (
    (r"\.detach\(\)", ".detach()"),
    (r"no_grad\(\)", "torch.no_grad()"),
    (r"inference_mode\(", "torch.inference_mode()"),
    (r"\.item\(\)", ".item()"),
    (r"\.numpy\(\)", ".numpy()"),
    (r"\.data\b", ".data"),
)


def _cut_token(code: str) -> str:
    import re

    return next((tok for pat, tok in _CUTS if re.search(pat, code)), ".detach()")


def graph_cuts(pipeline, target, model) -> list:
    """Lines of the user's own loss code (a Trainer subclass's compute_loss, a custom model's or module's forward)
    that cut the autograd graph: where parameters lose their gradient."""
    import inspect
    import re

    from ftdoctor.sdk import Site

    cap = pipeline.capture
    funcs = list(target.loss_code())
    funcs += [type(m).forward for m in model.modules()]
    hits, seen = [], set()
    for func in funcs:
        code = getattr(func, "__code__", None)
        if code is None or code in seen or cap is None or not cap.is_user_file(code.co_filename):
            continue
        seen.add(code)
        try:
            lines, start = inspect.getsourcelines(func)
        except (OSError, TypeError):
            continue
        for i, line in enumerate(lines):
            text = line.split("#", 1)[0]
            if any(re.search(pat, text) for pat, _ in _CUTS):
                hits.append((Site(code.co_filename, start + i), line.strip()))
    return hits
