"""Checks of hand-written PyTorch and Accelerate loops, registered at the stage where each problem shows.

They read what the capture hooks saw (``loop``: the forward before the first optimizer step, the second
backward, scheduler calls) and the script's source for the evaluation loop.
"""

from __future__ import annotations

import ast

from ftdoctor.sdk import Site, check, finding, read_source, rule

rule(
    "FTD410",
    "model-not-in-train-mode",
    "forward",
    "warning",
    "The loop trains a model that is in eval mode",
    """
     `from_pretrained` returns the model in eval mode. A loop that never calls `model.train()` trains with dropout
     off (and batch-norm statistics frozen): it fits differently from what the checkpoint's recipe expects, and
     after an evaluation the model stays in eval mode for the rest of training.
     """,
    broken="""
     for batch in train_dataloader:
         loss = model(**batch).loss
     """,
    fixed="""
     model.train()
     for batch in train_dataloader:
         loss = model(**batch).loss
     """,
)
rule(
    "FTD411",
    "batch-on-another-device",
    "forward",
    "error",
    "The batch is on another device than the model",
    """
     The model's parameters and the tensors it receives must be on the same device: "Expected all tensors to be
     on the same device". A loop must move each batch (`.to(device)`), or let Accelerate's prepared dataloader do it.
     """,
    broken="model.to(device)\nfor batch in train_dataloader:\n    outputs = model(**batch)",
    fixed="model.to(device)\nfor batch in train_dataloader:\n    batch = {k: v.to(device) for k, v in batch.items()}\n"
    "    outputs = model(**batch)",
)
rule(
    "FTD510",
    "gradients-not-zeroed",
    "backward",
    "error",
    "Gradients are never zeroed between steps",
    """
     `backward()` adds to `.grad`. Without `optimizer.zero_grad()` after each step, every step applies the sum of
     all gradients so far: the effective learning rate grows with each step and training diverges or stalls.
     """,
    broken="loss.backward()\noptimizer.step()\nlr_scheduler.step()",
    fixed="loss.backward()\noptimizer.step()\nlr_scheduler.step()\noptimizer.zero_grad()",
)
rule(
    "FTD511",
    "scheduler-before-optimizer",
    "backward",
    "warning",
    "The scheduler steps before the optimizer",
    """
     `lr_scheduler.step()` before `optimizer.step()` skips the first value of the schedule (PyTorch warns about
     it); with warmup the first update then uses the second step's rate.
     """,
    broken="lr_scheduler.step()\noptimizer.step()",
    fixed="optimizer.step()\nlr_scheduler.step()",
)
rule(
    "FTD610",
    "eval-without-eval-mode",
    "metrics",
    "warning",
    "Evaluation runs without model.eval() or torch.no_grad()",
    """
     Evaluated in train mode, dropout randomises the predictions, so the metric is noisy and too low; without
     `torch.no_grad()` every evaluation batch keeps its activation graph alive, which costs memory (and time).
     """,
    broken="""
     for batch in eval_dataloader:
         outputs = model(**batch)
     """,
    fixed="""
     model.eval()
     for batch in eval_dataloader:
         with torch.no_grad():
             outputs = model(**batch)
     """,
)


@check("forward", codes=("FTD410", "FTD411"))
def loop_forward_conditions(loop, pipeline):
    out = []
    site = str(pipeline.capture.train_site) if pipeline.capture and pipeline.capture.train_site else None
    if loop.model_training is False:
        out.append(
            finding(
                "FTD410",
                "The forward before the first optimizer step ran with `model.training == False`: "
                "the loop never called `model.train()` (from_pretrained returns eval mode).",
                "Call `model.train()` before the training loop (and again after each evaluation).",
                location=site,
            )
        )
    other = [d for d in loop.input_devices if d != loop.param_device]
    if loop.param_device and other:
        out.append(
            finding(
                "FTD411",
                f"The model's parameters are on `{loop.param_device}` but the batch is on "
                f"{', '.join(f'`{d}`' for d in other)}.",
                "Move each batch to the model's device: "
                "`batch = {k: v.to(device) for k, v in batch.items()}`, or prepare the dataloader with "
                "`accelerator.prepare(...)`.",
                location=site,
                evidence={"param_device": loop.param_device, "input_devices": loop.input_devices},
            )
        )
    return out


@check("backward", codes=("FTD510", "FTD511"))
def loop_step_order(loop, pipeline):
    out = []
    opt_name = pipeline.name_of(pipeline.optimizer) or "optimizer"
    if loop.grads_accumulated:
        out.append(
            finding(
                "FTD510",
                "The second backward found the first step's gradients still in `.grad`: the "
                "loop never zeroes them, so each step applies the sum of all gradients so far.",
                f"Call `{opt_name}.zero_grad()` after `{opt_name}.step()` in every iteration.",
                location=pipeline.location(pipeline.optimizer),
            )
        )
    if loop.scheduler_before_optimizer is not None:
        sched = pipeline.name_of(pipeline.lr_scheduler) or "lr_scheduler"
        out.append(
            finding(
                "FTD511",
                f"`{sched}.step()` ran before the first `{opt_name}.step()`.",
                f"Call `{sched}.step()` after `{opt_name}.step()`.",
                location=str(loop.scheduler_before_optimizer),
            )
        )
    return out


@check("metrics", codes=("FTD610",))
def loop_evaluation_mode(loop, pipeline):
    """Read the script's evaluation loop: the loop over the other dataloader must run in eval mode, without grad."""
    eval_dl = pipeline.extra.get("eval_dataloader")
    if eval_dl is not None and eval_dl is pipeline.extra.get("train_dataloader"):
        return None  # no loader of its own: the training loader is not an evaluation loop
    name = pipeline.name_of(eval_dl) if eval_dl is not None else None
    cap = pipeline.capture
    if not name or cap is None:
        return None
    try:
        tree = ast.parse(read_source(cap.script))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    out = []
    for scope in [tree, *[n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]]:
        for node in _own_nodes(scope):
            if isinstance(node, ast.For) and isinstance(node.iter, ast.Name) and node.iter.id == name:
                if _steps_backward(node):
                    continue  # a loop that calls backward trains: it is not the evaluation loop
                missing = []
                if not _calls_eval_before(scope, node):
                    missing.append("`model.eval()`")
                if not _without_grad(scope, node):
                    missing.append("`torch.no_grad()`")
                if missing:
                    out.append(
                        finding(
                            "FTD610",
                            f"The evaluation loop over `{name}` runs without {' and '.join(missing)}.",
                            "Call `model.eval()` before it and wrap the "
                            "forward in `with torch.no_grad():` (then `model.train()` to resume training).",
                            location=str(Site(cap.script, node.lineno)),
                            evidence={"missing": missing},
                        )
                    )
    return out[:1]


def _steps_backward(loop) -> bool:
    """Does the body of ``loop`` call ``.backward()`` (or Accelerate's ``accelerator.backward(loss)``)?"""
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "backward"
        for n in ast.walk(loop)
    )


def _own_nodes(scope):
    """Nodes of ``scope`` not inside a nested function (those are scopes of their own)."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _calls_eval_before(scope, loop) -> bool:
    for node in _own_nodes(scope):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "eval"
            and not node.args
            and node.lineno <= (loop.end_lineno or loop.lineno)
        ):
            return True
    return False


_NO_GRAD = ("no_grad", "inference_mode")


def _is_no_grad(expr) -> bool:
    call = expr.func if isinstance(expr, ast.Call) else expr
    return (isinstance(call, ast.Attribute) and call.attr in _NO_GRAD) or (
        isinstance(call, ast.Name) and call.id in _NO_GRAD
    )


def _without_grad(scope, loop) -> bool:
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(_is_no_grad(d) for d in scope.decorator_list):
        return True
    for node in _own_nodes(scope):
        if isinstance(node, ast.With) and any(_is_no_grad(item.context_expr) for item in node.items):
            start, end = node.lineno, node.end_lineno or node.lineno
            encloses = start <= loop.lineno <= end
            inside = loop.lineno < start <= (loop.end_lineno or loop.lineno)
            if encloses or inside:
                return True
    return False
