"""Checks of hand-written PyTorch and Accelerate loops, registered at the stage where each problem shows.

They read what the capture hooks saw (``loop``: the forward before the first optimizer step, the second
backward, scheduler calls) and the script's source for the evaluation loop.
"""

from __future__ import annotations

import ast

from ftdoctor.sdk import Site, check, finding, parse_source, rule

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
    "FTD521",
    "accumulate-wraps-loop",
    "backward",
    "error",
    "accelerator.accumulate() wraps the whole loop instead of each step",
    """
     `accelerator.accumulate(model)` counts one step each time the block is entered and lets the optimizer step
     (and gradients synchronise) only every `gradient_accumulation_steps` entries. Entered once around the loop,
     it counts one step per epoch: the optimizer skips whole epochs and the model barely trains.
     """,
    broken="""
     with accelerator.accumulate(model):
         for batch in train_dataloader:
             ...
     """,
    fixed="""
     for batch in train_dataloader:
         with accelerator.accumulate(model):
             ...
     """,
)
rule(
    "FTD522",
    "scheduler-stepped-per-epoch",
    "backward",
    "warning",
    "A schedule sized in optimizer steps is stepped once per epoch",
    """
     Warmup and decay schedules built with `num_training_steps` (or `total_iters`, `T_max`, `total_steps`) count
     optimizer steps. Stepped once per epoch they barely move: a warmup starting at 0 keeps the learning rate at 0
     for the whole first epoch and near 0 after it, and the decay never happens.
     """,
    broken="""
     for epoch in range(num_epochs):
         for batch in loader:
             ...
             optimizer.step()
         scheduler.step()
     """,
    fixed="""
     for epoch in range(num_epochs):
         for batch in loader:
             ...
             optimizer.step()
             scheduler.step()
     """,
)
rule(
    "FTD631",
    "regression-argmax",
    "metrics",
    "error",
    "The evaluation takes argmax of a one-output regression head",
    """
     A regression head (`num_labels=1`) has one output column: its argmax over the last dimension is 0 for every
     row, so the metric (Pearson, Spearman, MSE) is computed on constant predictions. Use the squeezed logits as
     predictions for regression.
     """,
    broken="predictions = outputs.logits.argmax(dim=-1)",
    fixed="predictions = outputs.logits.squeeze(-1) if num_labels == 1 else outputs.logits.argmax(dim=-1)",
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
    left = _eval_left_on(loop, pipeline) if loop.model_training is not False else None
    if left is not None:
        out.append(left)
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
    tree = parse_source(cap.script)
    if tree is None:
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


# --- the loop's structure around its step: read from the script, judged with the objects it holds ------------------


def _script_tree(pipeline):
    cap = pipeline.capture
    if cap is None or not cap.script:
        return None
    return parse_source(cap.script)


def _train_line(loop, pipeline):
    """The line of the loop's training forward, when it is in the script itself."""
    site = loop.train_site or (pipeline.capture.train_site if pipeline.capture else None)
    cap = pipeline.capture
    if site is None or cap is None or site.file != cap.script:
        return None
    return site.line


def _enclosing(tree, line, kinds):
    """The nodes of ``kinds`` whose span holds ``line``, outermost first."""
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, kinds) and n.lineno <= line <= (n.end_lineno or n.lineno) and n.lineno != line
    ]


def _step_loops(tree, line):
    """(the innermost loop around the training forward, the loops around that one), or (None, [])."""
    loops = sorted(_enclosing(tree, line, (ast.For, ast.While)), key=lambda n: n.lineno)
    if not loops:
        return None, []
    return loops[-1], loops[:-1]


def _script_step_loops(loop, pipeline):
    """(the script's tree, the training forward's line, the innermost loop around it, the loops around that one);
    the loops are (None, []) when the script cannot be read or the forward is in no loop."""
    tree = _script_tree(pipeline)
    line = _train_line(loop, pipeline)
    if tree is None or line is None:
        return tree, line, None, []
    return (tree, line, *_step_loops(tree, line))


def _method_calls(node, name):
    """Calls ``X.name(...)`` in ``node``, not inside a nested function."""
    return [
        n
        for n in _own_nodes_incl(node)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == name
    ]


def _own_nodes_incl(node):
    yield node
    yield from _own_nodes(node)


def _functions(tree):
    return {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _is_other_module(receiver, bindings, namespace, model) -> bool:
    """Whether ``receiver`` (the X of `X.eval()`) names a module of the script other than the trained one (a
    teacher, a frozen encoder); a name that cannot be resolved counts as the trained model."""
    if not isinstance(receiver, ast.Name):
        return False
    name = bindings.get(receiver.id, receiver.id)
    value = namespace.get(name) if isinstance(name, str) else None
    if value is None or not callable(getattr(value, "parameters", None)):
        return False
    inner = value
    for _ in range(3):  # DDP/DataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers
        if inner is model:
            return False
        inner = getattr(inner, "module", None) or getattr(inner, "_orig_mod", None)
        if inner is None:
            break
    return True


def _mode_calls(node, functions, namespace, model, bindings=None, depth=2):
    """(line, mode) of each `.eval()` / `.train()` of the trained model that the code of ``node`` runs, following
    calls of the script's own functions (whose calls count at the line that calls them); mode is "eval" or
    "train"."""
    bindings = bindings or {}
    out = []
    for n in _own_nodes_incl(node):
        if not isinstance(n, ast.Call):
            continue
        if isinstance(n.func, ast.Attribute) and n.func.attr in ("eval", "train") and not n.keywords:
            if _is_other_module(n.func.value, bindings, namespace, model):
                continue
            if n.func.attr == "eval" and not n.args:
                out.append((n.lineno, "eval"))
            elif n.func.attr == "train" and (
                not n.args or (isinstance(n.args[0], ast.Constant) and n.args[0].value is True)
            ):
                out.append((n.lineno, "train"))
        elif isinstance(n.func, ast.Name) and n.func.id in functions and depth > 0:
            fn = functions[n.func.id]
            params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            passed = dict(zip(params, n.args))
            passed.update({k.arg: k.value for k in n.keywords if k.arg})
            inner_bindings = {p: bindings.get(v.id, v.id) for p, v in passed.items() if isinstance(v, ast.Name)}
            inner = _mode_calls(fn, functions, namespace, model, inner_bindings, depth - 1)
            if inner:
                # what the call leaves behind: the mode set last in the function
                last = max(inner)[1]
                out.append((n.lineno, last))
    return out


def _eval_left_on(loop, pipeline):
    """An evaluation inside the step loop (model.eval(), directly or in a function it calls) must be followed by
    model.train() in the same loop, or every later step trains in eval mode."""
    tree, _, inner, _ = _script_step_loops(loop, pipeline)
    if inner is None:
        return None
    namespace = pipeline.capture.namespace or {}
    calls = _mode_calls(inner, _functions(tree), namespace, pipeline.model)
    evals = [ln for ln, mode in calls if mode == "eval"]
    if not evals or any(mode == "train" for _, mode in calls):
        return None
    where = str(Site(pipeline.capture.script, min(evals)))
    return finding(
        "FTD410",
        f"The training loop switches the model to eval mode at {where} (an evaluation inside the loop) and never "
        "back: `model.train()` runs only before the loop, so every step after the first evaluation trains with "
        "dropout off.",
        "Call `model.train()` right after the evaluation (or at the start of each training step).",
        location=where,
        evidence={"eval_lines": evals},
    )


@check("backward", codes=("FTD521",))
def accumulate_per_step(loop, pipeline):
    """Accelerate's accumulate() context must be entered once per step: it counts the steps by its entries."""
    tree, line, inner, _ = _script_step_loops(loop, pipeline)
    if inner is None:
        return None
    namespace = pipeline.capture.namespace or {}
    for w in _enclosing(tree, line, (ast.With, ast.AsyncWith)):
        if not (w.lineno < inner.lineno <= (w.end_lineno or w.lineno)):
            continue  # the block is inside the step loop: entered once per step
        for item in w.items:
            call = item.context_expr
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            if call.func.attr != "accumulate" or not isinstance(call.func.value, ast.Name):
                continue
            accelerator = namespace.get(call.func.value.id)
            steps = getattr(accelerator, "gradient_accumulation_steps", None)
            if not isinstance(steps, int) or steps < 2:
                continue
            name = call.func.value.id
            return finding(
                "FTD521",
                f"`with {name}.accumulate(...)` (line {w.lineno}) is entered once around the whole loop over the "
                f"batches: Accelerate counts one step per entry, so with `gradient_accumulation_steps={steps}` "
                f"the optimizer steps only in every {steps}th epoch, and gradients pile up in between.",
                f"Move `with {name}.accumulate(model):` inside the loop, around each step's forward, backward and "
                "`optimizer.step()`.",
                location=str(Site(pipeline.capture.script, w.lineno)),
                evidence={"gradient_accumulation_steps": steps, "with_line": w.lineno, "loop_line": inner.lineno},
            )
    return None


def _schedule_horizon(sched):
    """(optimizer steps the schedule is sized for, its warmup steps) from the scheduler object, or (None, 0)."""
    import functools

    for fn in getattr(sched, "lr_lambdas", None) or []:
        if isinstance(fn, functools.partial):
            kw = fn.keywords or {}
            total = kw.get("num_training_steps")
            warm = kw.get("num_warmup_steps") or 0
            if isinstance(total, int) or (isinstance(warm, int) and warm > 0):
                return (total if isinstance(total, int) else warm), warm if isinstance(warm, int) else 0
    for attr in ("total_iters", "T_max", "total_steps"):
        value = getattr(sched, attr, None)
        if isinstance(value, int) and value > 0:
            return value, 0
    return None, 0


def _range_count(node, namespace):
    """How many times `for _ in range(N)` runs, when N is a literal or a name of the script."""
    it = node.iter if isinstance(node, ast.For) else None
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and it.args):
        return None
    args = []
    for a in it.args:
        if isinstance(a, ast.Constant) and isinstance(a.value, int):
            args.append(a.value)
        elif isinstance(a, ast.Name) and isinstance(namespace.get(a.id), int):
            args.append(namespace[a.id])
        else:
            return None
    return len(range(*args))


@check("backward", codes=("FTD522",))
def scheduler_stepped_per_step(loop, pipeline, lr_scheduler):
    """A schedule sized in optimizer steps must be stepped in the step loop, not once per epoch around it."""
    _, _, inner, outer = _script_step_loops(loop, pipeline)
    if inner is None or not outer:
        return None
    namespace = pipeline.capture.namespace or {}
    names = {k for k, v in namespace.items() if v is lr_scheduler}
    if not names:
        return None

    def sched_steps(node):
        return [
            c for c in _method_calls(node, "step") if isinstance(c.func.value, ast.Name) and c.func.value.id in names
        ]

    if sched_steps(inner):
        return None
    epoch_loop = outer[-1]
    calls = sched_steps(epoch_loop)
    if not calls:
        return None
    horizon, warmup = _schedule_horizon(lr_scheduler)
    per_epoch = len(loop.dataloader) if loop.dataloader is not None and hasattr(loop.dataloader, "__len__") else None
    epochs = _range_count(epoch_loop, namespace)
    if horizon is None or per_epoch is None or per_epoch < 2 or horizon < per_epoch:
        return None
    if epochs is not None and horizon <= epochs:
        return None
    name = calls[0].func.value.id
    warm = (
        f" Its warmup of {warmup} steps starts at a learning rate of 0, so the first epoch trains at 0 and "
        f"the warmup ends only after {warmup} epochs."
        if warmup
        else ""
    )
    return finding(
        "FTD522",
        f"`{name}` is sized for {horizon} optimizer steps ({per_epoch} batches per epoch) but `{name}.step()` runs "
        f"once per epoch (line {calls[0].lineno}), outside the loop over the batches: the schedule advances "
        f"{per_epoch} times too slowly.{warm}",
        f"Call `{name}.step()` right after `optimizer.step()`, inside the loop over the batches (or size the "
        "schedule in epochs).",
        location=str(Site(pipeline.capture.script, calls[0].lineno)),
        evidence={"horizon": horizon, "warmup": warmup, "batches_per_epoch": per_epoch, "epochs": epochs},
    )


def _known_truth(test, namespace):
    """The value of a condition made of script names and constants (`is_regression`, `not is_regression`,
    `num_labels == 1`), or None when it cannot be told without running code."""
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.Name):
        value = namespace.get(test.id, _MISSING)
        return None if value is _MISSING or not isinstance(value, (bool, int, float, str)) else bool(value)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _known_truth(test.operand, namespace)
        return None if inner is None else not inner
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        sides = []
        for side in (test.left, test.comparators[0]):
            if isinstance(side, ast.Constant):
                sides.append(side.value)
            elif isinstance(side, ast.Name) and isinstance(namespace.get(side.id), (bool, int, float, str)):
                sides.append(namespace[side.id])
            else:
                return None
        ops = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b}
        op = ops.get(type(test.ops[0]))
        return None if op is None else op(*sides)
    return None


_MISSING = object()


def _is_logits(expr) -> bool:
    return (isinstance(expr, ast.Attribute) and expr.attr == "logits") or (
        isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant) and expr.slice.value == "logits"
    )


def _argmax_of_logits(call) -> bool:
    """`X.logits.argmax(...)` or `torch.argmax(X.logits, ...)` / `np.argmax(X.logits, ...)`."""
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr == "argmax":
        return _is_logits(f.value) or (bool(call.args) and _is_logits(call.args[0]))
    return isinstance(f, ast.Name) and f.id == "argmax" and bool(call.args) and _is_logits(call.args[0])


@check("metrics", codes=("FTD631",))
def regression_not_argmaxed(loop, pipeline, model):
    """A one-output regression head: the script's evaluation must not take the argmax of its logits."""
    config = getattr(model, "config", None)
    if getattr(config, "num_labels", None) != 1:
        return None
    if getattr(config, "problem_type", None) not in (None, "regression"):
        return None
    tree = _script_tree(pipeline)
    if tree is None:
        return None
    namespace = pipeline.capture.namespace or {}
    skipped = set()
    for node in ast.walk(tree):
        # a branch the script's own flags rule out (`argmax(...) if not is_regression else squeeze()`)
        if isinstance(node, (ast.IfExp, ast.If)):
            truth = _known_truth(node.test, namespace)
            if truth is None:
                continue
            dead = node.orelse if truth else node.body
            for part in dead if isinstance(dead, list) else [dead]:
                skipped.update(id(n) for n in ast.walk(part))
    hits = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and id(n) not in skipped and _argmax_of_logits(n)]
    if not hits:
        return None
    where = str(Site(pipeline.capture.script, hits[0].lineno))
    return finding(
        "FTD631",
        f"The model has a regression head (`num_labels=1`: one output column), and the evaluation at {where} takes "
        "the argmax of its logits: that is 0 for every row, so the metric is computed on constant predictions.",
        "For regression use the logits themselves as predictions: `predictions = outputs.logits.squeeze(-1)` "
        "(argmax only for classification).",
        location=where,
        evidence={"num_labels": 1, "argmax_lines": [n.lineno for n in hits][:5]},
    )
