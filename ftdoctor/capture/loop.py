"""Capture a hand-written training loop at its first optimizer step, whatever feeds it its batches.

The first `optimizer.step()` of any torch optimizer defines the loop: the model is the module whose top-level
forward holds the optimizer's parameters (a wrapper such as DDP, PEFT or `torch.compile` included); the batch is
what reached that forward last before the step, from a DataLoader, a list, a generator, slices of tensors or one
batch reused; the loss is what `backward()` was called on, the model's own `.loss` or the result of the loop's
own criterion. The loop runs on to its second step, to see whether it zeroes its gradients, and is stopped there
(or at the first save in between); the model and the optimizer are then put back as they were before the first
update. A loop that raises before its first step leaves its model and the inputs of the failing call.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftdoctor.core.frames import deepest_user_frame, is_user_file
from ftdoctor.core.source import Site

# Loss functions a loop may call itself; recorded at top level (inside a model's forward they are the model's).
FUNCTIONAL_LOSSES = (
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "kl_div",
)
MAX_CALLS = 8  # criterion calls kept before the first step


class _StopLoop(BaseException):
    pass


@dataclass
class ForwardCall:
    """One top-level call of a module by the script, before the first optimizer step."""

    module: Any
    args: tuple
    kwargs: dict
    output: Any = None
    training: bool | None = None
    site: Site | None = None
    namespace: dict = field(default_factory=dict, repr=False)
    error: BaseException | None = None
    order: int = 0


@dataclass
class LossCall:
    """A call of a loss function (a loss module or a functional loss) by the script itself."""

    fn: Any
    args: tuple
    kwargs: dict
    output: Any = None
    site: Site | None = None


@dataclass
class LoopRecord:
    """What a hand-written loop did up to its second optimizer step (the model is restored to its state at the
    first step, before any update)."""

    model: Any = None  # the module the loop trains, as it calls it
    batch: dict | None = None  # what the step ran on: the model's inputs by parameter name, and the loss's own
    model_keys: list = field(default_factory=list)  # which keys of ``batch`` the model itself receives
    extra: dict = field(default_factory=dict)  # tensors only the loss gets (a criterion's targets)
    model_training: bool | None = None
    input_devices: list[str] = field(default_factory=list)
    param_device: str | None = None
    optimizer: Any = None
    dataloader: Any = None  # the DataLoader the batch was drawn from, when it was
    dataloaders: list[Any] = field(default_factory=list)
    steps: int = 0
    backwards: int = 0  # backward() calls before the first step: more than one is gradient accumulation
    loss_source: str = "model"  # model | criterion | own-code | none
    loss_site: Site | None = None
    criterion: Any = None  # the loss function replayed on (outputs, batch) when loss_source == "criterion"
    criterion_args: list = field(default_factory=list)  # how each of its arguments is made
    criterion_kwargs: dict = field(default_factory=dict)
    observed: dict = field(default_factory=dict)  # the loop's own first step: loss, parameters without gradient
    scheduler_before_optimizer: Site | None = None
    grads_accumulated: bool | None = None  # True: the second backward found the first step's gradients still there
    failed: bool = False  # the loop raised before its first step; model and batch are those of the failing call
    train_site: Site | None = None
    namespace: dict = field(default_factory=dict, repr=False)


def unwrap(module: Any) -> Any:
    """The module under DDP/DataParallel and torch.compile wrappers (whose forward names no parameters)."""
    for _ in range(4):
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if inner is None or inner is module:
            break
        module = inner
    return module


def bind_inputs(module: Any, args: tuple, kwargs: dict) -> dict | None:
    """The call's inputs by parameter name, the way ``model(**batch)`` would take them."""
    import inspect

    if not args:
        return dict(kwargs)
    for candidate in (module, unwrap(module)):
        try:
            sig = inspect.signature(candidate.forward)
            bound = sig.bind_partial(*args, **kwargs)
        except (TypeError, ValueError):
            continue
        params = sig.parameters
        if any(params[name].kind is inspect.Parameter.VAR_POSITIONAL for name in bound.arguments):
            continue
        out = {}
        for name, value in bound.arguments.items():
            if params[name].kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            else:
                out[name] = value
        return out
    return None


def _tensors_of(output: Any) -> dict[str, Any]:
    """The tensors a model's output exposes, by how the loop would reach them."""
    import torch

    if torch.is_tensor(output):
        return {"": output}
    fields: dict[str, Any] = {}
    if hasattr(output, "items"):
        for k, v in output.items():
            if torch.is_tensor(v):
                fields[str(k)] = v
    if isinstance(output, (tuple, list)):
        for i, v in enumerate(output):
            if torch.is_tensor(v):
                fields[str(i)] = v
    elif hasattr(output, "to_tuple"):
        for i, v in enumerate(output.to_tuple()):
            if torch.is_tensor(v) and not any(v is w for w in fields.values()):
                fields[str(i)] = v
    return fields


def output_field(output: Any, key: str) -> Any:
    if key == "":
        return output
    if hasattr(output, "items") and key in output:
        return output[key]
    if key.isdigit():
        seq = output.to_tuple() if hasattr(output, "to_tuple") else output
        return seq[int(key)]
    return getattr(output, key)


def derived_from(tensor: Any, source: Any, depth: int = 5) -> bool:
    """``tensor`` is ``source`` or was computed from it by a few operations (a division for accumulation, a mean)."""
    if tensor is source:
        return True
    target = getattr(source, "grad_fn", None)
    if target is None:
        # No graph to follow (nothing requires grad): a loss with no graph can only come from this one.
        return getattr(tensor, "grad_fn", None) is None and getattr(source, "ndim", 1) == 0
    frontier, seen = [getattr(tensor, "grad_fn", None)], set()
    for _ in range(depth):
        nxt = []
        for fn in frontier:
            if fn is None or id(fn) in seen:
                continue
            if fn is target:
                return True
            seen.add(id(fn))
            nxt.extend(f for f, _ in getattr(fn, "next_functions", ()))
        frontier = nxt
    return False


def _arg_recipe(arg: Any, outputs: dict[str, Any], batch: dict, drawn: Any, extra: dict) -> tuple:
    """How to make a loss argument again from a new forward's outputs and a batch: a field of the outputs, a key
    of the batch (the loader's batch when the loop takes its targets from there), or the tensor itself."""
    import torch

    if not torch.is_tensor(arg):
        return ("const", arg)
    pools = [("output", outputs, False), ("batch", batch, False)]
    if hasattr(drawn, "items"):
        pools.append(("batch", drawn, True))
    for source, pool, from_loader in pools:
        for key, value in pool.items():
            if not torch.is_tensor(value):
                continue
            if arg is value or (
                value.dim() and arg.shape == value.shape and torch.equal(arg.cpu(), value.cpu()) and source == "batch"
            ):
                tail = None  # the tensor itself
            elif getattr(arg, "_base", None) is value and arg.numel() == value.numel():
                # a flattening view, as in criterion(logits.view(-1, n), labels.view(-1)): () flattens to 1-D
                tail = tuple(arg.shape[1:]) if arg.shape != value.shape else None
            else:
                continue
            if from_loader:
                extra[str(key)] = value.detach()
            return (source, str(key), tail)
    rows = next((v.shape[0] for v in batch.values() if torch.is_tensor(v) and v.dim()), None)
    if rows is not None and (arg.dim() == 0 or arg.shape[0] != rows):
        # Not one value per row of the batch (class weights, a margin): the same tensor for every batch.
        return ("const", arg.detach())
    name = f"__arg{len(extra)}"
    extra[name] = arg.detach()
    return ("batch", name, None)


def _takes_output(call: LossCall, outputs: dict[str, Any]) -> bool:
    values = [*call.args, *call.kwargs.values()]
    return any(a is o or getattr(a, "_base", None) is o for a in values for o in outputs.values())


def make_arg(recipe: tuple, output: Any, batch: dict) -> Any:
    kind = recipe[0]
    if kind == "const":
        return recipe[1]
    value = output_field(output, recipe[1]) if kind == "output" else batch[recipe[1]]
    tail = recipe[2]
    return value if tail is None else value.reshape(-1, *tail)


class LoopHooks:
    """Hooks on top-level module calls, loss calls, backward, the optimizer steps, the loaders and the savers."""

    def __init__(self, cap: Any, recorder: Any):
        self.cap = cap
        self.rec = LoopRecord()
        self.recorder = recorder
        self.handles: list[Any] = []
        self.snapshot: dict[str, Any] | None = None
        self.on_stop: Callable[[], Any] | None = None
        self.forwards: dict[int, ForwardCall] = {}
        self.failed_forward: ForwardCall | None = None
        self.loss_calls: list[LossCall] = []
        self.backward_tensors: list[Any] = []
        self.optimizers: list[Any] = []
        self.drawn: dict[int, list] = {}  # id(loader) -> the last batches drawn from it (loaders may prefetch one)
        self.source_batch: Any = None  # the loader's batch the model's inputs came from
        self.depth = 0
        self.order = 0
        self.thread = threading.get_ident()

    # -- installing --------------------------------------------------------------------------------------------
    def install(self, on_import: Any) -> None:
        on_import.when_imported("torch", lambda _: self._install_torch())
        on_import.when_imported(
            "transformers.modeling_utils", lambda m: self._guard_saves([(m.PreTrainedModel, "save_pretrained")])
        )
        on_import.when_imported(
            "accelerate.accelerator",
            lambda m: self._guard_saves([(m.Accelerator, name) for name in ("save", "save_state", "save_model")]),
        )

    def _watching(self) -> bool:
        return self.rec.steps == 0 and threading.get_ident() == self.thread

    def _install_torch(self) -> None:
        import torch
        import torch.nn.functional as F
        from torch.optim.lr_scheduler import LRScheduler
        from torch.optim.optimizer import register_optimizer_step_pre_hook
        from torch.utils.data import DataLoader
        from torch.utils.data.dataloader import _BaseDataLoaderIter

        hooks = self
        user_dir = self.cap.user_dir
        orig_call = torch.nn.Module.__dict__["__call__"]

        def __call__(module, *args, **kwargs):
            if hooks.depth or not hooks._watching():
                hooks.depth += 1
                try:
                    return orig_call(module, *args, **kwargs)
                finally:
                    hooks.depth -= 1
            frame = sys._getframe(1)
            hooks.depth += 1
            try:
                out = orig_call(module, *args, **kwargs)
            except BaseException as exc:
                hooks._called(module, args, kwargs, None, frame, exc)
                raise
            finally:
                hooks.depth -= 1
            hooks._called(module, args, kwargs, out, frame, None)
            return out

        self.recorder._set(torch.nn.Module, "__call__", __call__)

        for name in FUNCTIONAL_LOSSES:
            orig = F.__dict__.get(name)
            if orig is None:
                continue

            def loss_fn(*args, __orig=orig, **kwargs):
                record = not hooks.depth and hooks._watching()
                try:
                    out = __orig(*args, **kwargs)
                except BaseException:
                    if record:
                        hooks._loss_called(__orig, args, kwargs, None, sys._getframe(1))
                    raise
                if record:
                    hooks._loss_called(__orig, args, kwargs, out, sys._getframe(1))
                return out

            loss_fn.__wrapped__ = orig  # type: ignore[attr-defined]
            self.recorder._set(F, name, loss_fn)

        orig_backward = torch.Tensor.__dict__["backward"]

        def backward(tensor, *args, **kwargs):
            if threading.get_ident() == hooks.thread and hooks.rec.steps == 0:
                hooks.backward_tensors.append(tensor)
                del hooks.backward_tensors[:-MAX_CALLS]
                frame = deepest_user_frame(sys._getframe(1), user_dir)
                if frame is not None:
                    hooks.rec.loss_site = Site(frame.f_code.co_filename, frame.f_lineno)
                hooks.rec.backwards += 1
            return orig_backward(tensor, *args, **kwargs)

        self.recorder._set(torch.Tensor, "backward", backward)

        orig_iter = DataLoader.__dict__["__iter__"]

        def __iter__(dl):
            it = orig_iter(dl)
            if not any(d is dl for d in hooks.rec.dataloaders):
                hooks.rec.dataloaders.append(dl)
            it._ftdoctor_loader = dl
            return it

        self.recorder._set(DataLoader, "__iter__", __iter__)
        orig_next = _BaseDataLoaderIter.__dict__["__next__"]

        def __next__(it):
            batch = orig_next(it)
            dl = getattr(it, "_ftdoctor_loader", None)
            if dl is not None and hooks._watching():
                recent = hooks.drawn.setdefault(id(dl), [])
                # a copy of the mapping: the loop may pop its labels out of the batch it drew
                recent.append(dict(batch) if hasattr(batch, "items") else batch)
                del recent[:-3]
            return batch

        self.recorder._set(_BaseDataLoaderIter, "__next__", __next__)

        orig_opt_init = torch.optim.Optimizer.__dict__["__init__"]

        def opt_init(opt, *args, **kwargs):
            orig_opt_init(opt, *args, **kwargs)
            if not any(o is opt for o in hooks.optimizers):
                hooks.optimizers.append(opt)
                hooks.recorder.record(opt)  # the line that built it, for findings about its settings

        self.recorder._set(torch.optim.Optimizer, "__init__", opt_init)
        orig_sched_step = LRScheduler.__dict__["step"]

        def step(sched, *args, **kwargs):
            caller = sys._getframe(1)
            if (
                hooks.rec.steps == 0
                and hooks.forwards
                and hooks.rec.scheduler_before_optimizer is None
                and hooks.backward_tensors
                and is_user_file(caller.f_code.co_filename, user_dir)
            ):
                hooks.rec.scheduler_before_optimizer = Site(caller.f_code.co_filename, caller.f_lineno)
            return orig_sched_step(sched, *args, **kwargs)

        self.recorder._set(LRScheduler, "step", step)
        self._guard_saves([(torch, "save")])
        self.handles.append(register_optimizer_step_pre_hook(self._pre_step))

    def _guard_saves(self, owners: list[tuple[Any, str]]) -> None:
        """Between the first and the second optimizer step the loop runs on: if it saves anything there (a
        checkpoint every step), stop at that call, before a file is written."""
        hooks = self
        for owner, name in owners:
            orig = getattr(owner, name, None)
            if orig is None:
                continue

            def guarded(*args, __orig=orig, **kwargs):
                if hooks.rec.steps >= 1 and hooks.rec.model is not None:
                    hooks.stop()
                return __orig(*args, **kwargs)

            self.recorder._set(owner, name, guarded)

    # -- what the script does --------------------------------------------------------------------------------
    def _called(self, module, args, kwargs, out, frame, error) -> None:
        from torch.nn.modules.loss import _Loss

        has_params = next(iter(module.parameters()), None) is not None
        if isinstance(module, _Loss) or not has_params:
            if args or kwargs:
                self._loss_called(module, args, kwargs, out if error is None else None, frame)
            return
        self.order += 1
        user = deepest_user_frame(frame, self.cap.user_dir)
        call = ForwardCall(
            module,
            args,
            dict(kwargs),
            out,
            module.training,
            Site(user.f_code.co_filename, user.f_lineno) if user is not None else None,
            {**user.f_globals, **user.f_locals} if user is not None else {},
            error,
            self.order,
        )
        if error is not None:
            self.failed_forward = call
        else:
            self.forwards[id(module)] = call

    def _loss_called(self, fn, args, kwargs, out, frame) -> None:
        user = deepest_user_frame(frame, self.cap.user_dir)
        self.loss_calls.append(
            LossCall(
                fn, args, dict(kwargs), out, Site(user.f_code.co_filename, user.f_lineno) if user is not None else None
            )
        )
        del self.loss_calls[:-MAX_CALLS]

    def _pre_step(self, optimizer, args, kwargs):
        if self.rec.steps == 0:
            if not self._adopt_step(optimizer):
                return
            self.rec.steps = 1
        else:
            self.rec.steps += 1
            self.stop()

    def stop(self) -> None:
        """The loop has shown its first step: walk it now (child) or unwind the script (in-process)."""
        if self.on_stop is None:
            raise _StopLoop()
        self.on_stop()

    # -- the first step ---------------------------------------------------------------------------------------------
    def _adopt_step(self, optimizer) -> bool:
        """Take the loop's model, batch and loss at its first optimizer step; False if nothing ran a model."""
        call = self._model_call(optimizer)
        if call is None:
            return False
        self._adopt_call(call)
        self.rec.optimizer = optimizer
        self._adopt_loss(call)
        self._observe(call.module)
        self._snapshot(call.module, optimizer)
        self._watch_accumulation(call.module)
        return True

    def _model_call(self, optimizer) -> ForwardCall | None:
        """The last forward of the module that holds most of the optimizer's parameters."""
        held = {id(p) for g in optimizer.param_groups for p in g["params"]}
        best, best_overlap = None, 0
        for call in self.forwards.values():
            overlap = sum(1 for p in call.module.parameters() if id(p) in held)
            if overlap > best_overlap or (overlap == best_overlap and best is not None and call.order > best.order):
                best, best_overlap = call, overlap
        if best is None and self.forwards:
            # The optimizer holds none of the parameters that ran: the loop still trains its last model.
            best = max(self.forwards.values(), key=lambda c: c.order)
        return best

    def _adopt_call(self, call: ForwardCall) -> None:
        import torch

        rec = self.rec
        rec.model = call.module
        rec.model_training = call.training
        batch = bind_inputs(call.module, call.args, call.kwargs)
        rec.batch = batch
        rec.model_keys = list(batch or {})
        tensors = [v for v in (batch or {}).values() if torch.is_tensor(v)]
        rec.input_devices = sorted({str(t.device) for t in tensors})
        p = next(call.module.parameters(), None)
        rec.param_device = str(p.device) if p is not None else None
        rec.dataloader = self._source_loader(batch)
        rec.train_site = call.site
        rec.namespace = call.namespace
        self.cap._keep.append(call.module)
        self.cap.namespace = call.namespace
        self.cap.train_site = call.site

    def _source_loader(self, batch: dict | None) -> Any:
        """The loader whose last batch is the one the model received (the same tensors, or the same keys and
        shapes once moved to a device)."""
        import torch

        if not batch:
            return None
        wanted = max(1, len([v for v in batch.values() if torch.is_tensor(v)]) // 2)
        for dl in reversed(self.rec.dataloaders):
            for drawn in reversed(self.drawn.get(id(dl), [])):
                if not hasattr(drawn, "items"):
                    continue
                same = [
                    k
                    for k, v in batch.items()
                    if torch.is_tensor(v)
                    and k in drawn
                    and torch.is_tensor(drawn[k])
                    and (drawn[k] is v or drawn[k].shape == v.shape)
                ]
                if len(same) >= wanted:
                    self.source_batch = drawn
                    return dl
        return None

    def _adopt_loss(self, call: ForwardCall) -> None:
        """Is the loss the model's own (maybe scaled), a loss function's the loop called, or the loop's own code?"""
        rec = self.rec
        loss = self.backward_tensors[-1] if self.backward_tensors else None
        out = call.output
        own = out.get("loss") if hasattr(out, "get") else getattr(out, "loss", None)
        if own is None and isinstance(out, (tuple, list)) and out:
            # return_dict=False: the loss comes first (a 0-d tensor) when the model was given its labels.
            from ftdoctor.facts.models import loss_and_outputs

            own = loss_and_outputs(out, labelled=True)[0]
        if own is not None and (loss is None or derived_from(loss, own)):
            rec.loss_source = "model"
            return
        outputs = _tensors_of(out)
        drawn = self.source_batch if rec.dataloader is not None else None
        for lc in reversed(self.loss_calls):
            if loss is None:  # the loop failed before its backward: the last loss function it called on the outputs
                if not _takes_output(lc, outputs):
                    continue
            elif lc.output is None or not derived_from(loss, lc.output):
                continue
            extra: dict = {}
            recipes = [_arg_recipe(a, outputs, rec.batch or {}, drawn, extra) for a in lc.args]
            kwrecipes = {k: _arg_recipe(v, outputs, rec.batch or {}, drawn, extra) for k, v in lc.kwargs.items()}
            if any(r[0] == "output" for r in [*recipes, *kwrecipes.values()]):
                rec.loss_source, rec.criterion = "criterion", lc.fn
                rec.criterion_args, rec.criterion_kwargs, rec.extra = recipes, kwrecipes, extra
                rec.batch = {**(rec.batch or {}), **extra}
                rec.loss_site = lc.site or rec.loss_site
                return
        rec.loss_source = "own-code" if loss is not None else "none"

    def _observe(self, model) -> None:
        """The loop's own first backward: the loss and which trainable parameters got a gradient."""
        import torch

        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        loss = self.backward_tensors[-1] if self.backward_tensors else None
        self.rec.observed = {
            "loss": float(loss.detach().float().mean()) if torch.is_tensor(loss) else None,
            "trainable": len(trainable),
            "no_grad": [n for n, p in trainable if p.grad is None or not bool(p.grad.any())],
            "non_finite": [n for n, p in trainable if p.grad is not None and not bool(torch.isfinite(p.grad).all())],
        }

    def _snapshot(self, model, optimizer) -> None:
        import copy

        self.snapshot = {
            "model": copy.deepcopy(model.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "model_ref": model,
        }

    def _watch_accumulation(self, model) -> None:
        """After the first step, the next backward must find the gradients zeroed (or None)."""
        param = next((p for p in model.parameters() if p.requires_grad and p.grad is not None), None)
        if param is None:
            return
        hooks = self

        def on_grad(grad):
            if hooks.rec.grads_accumulated is None and hooks.rec.steps >= 1:
                old = param.grad
                hooks.rec.grads_accumulated = bool(old is not None and old.abs().sum() > 0)
            return grad

        self.handles.append(param.register_hook(on_grad))

    # -- when the loop fails before its first step --------------------------------------------------------------
    def adopt_failure(self, exc_tb) -> None:
        """The loop raised before its first step: take the model and the inputs of the call that failed (or of
        the last model call, when the failure came after it), and an optimizer that holds its parameters."""
        from ftdoctor.core.frames import user_frame_in_traceback

        frame = user_frame_in_traceback(exc_tb, self.cap.user_dir)
        call = self.failed_forward or (max(self.forwards.values(), key=lambda c: c.order) if self.forwards else None)
        if call is not None:
            self._adopt_call(call)
            self.rec.model_training = call.training
            if call.error is None:
                self._adopt_loss(call)
        else:
            # It failed before any model call (drawing its first batch): the model it built and the loader it
            # drew from are still there.
            model = self._built_model(frame)
            if model is None or not self.rec.dataloaders:
                return
            self.rec.model = model
            self.rec.dataloader = self.rec.dataloaders[-1]
            self.cap._keep.append(model)
        self.rec.failed = True
        params = {id(p) for p in self.rec.model.parameters()}
        self.rec.optimizer = next(
            (o for o in reversed(self.optimizers) if any(id(p) in params for g in o.param_groups for p in g["params"])),
            None,
        )
        if frame is not None:
            self.cap.namespace = {**frame.f_globals, **frame.f_locals}

    def _built_model(self, frame) -> Any:
        """The last model the script built (from_pretrained), else the largest module in the failing frame."""
        import torch

        built = [o for o in self.cap._keep if isinstance(o, torch.nn.Module)]
        if built:
            return built[-1]
        if frame is None:
            return None
        found = [v for v in {**frame.f_globals, **frame.f_locals}.values() if isinstance(v, torch.nn.Module)]
        found = [m for m in found if next(iter(m.parameters()), None) is not None]
        return max(found, key=lambda m: sum(p.numel() for p in m.parameters()), default=None)

    def finish(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        if self.snapshot is not None and self.rec.model is not None:
            # The walk sees the loop's pipeline as it was before its first update.
            model = self.snapshot["model_ref"]
            moved = _moved(model, self.snapshot["model"])
            self.rec.observed["moved"] = moved
            model.load_state_dict(self.snapshot["model"])
            self.rec.optimizer.load_state_dict(self.snapshot["optimizer"])
            model.zero_grad(set_to_none=True)
            self.snapshot = None
        self.forwards.clear()
        self.loss_calls.clear()
        self.backward_tensors.clear()
        self.drawn.clear()


def _moved(model, before: dict) -> int:
    """How many parameters the first update changed."""
    import torch

    now = model.state_dict()
    return sum(
        1
        for k, v in before.items()
        if k in now and torch.is_tensor(v) and v.is_floating_point() and not torch.equal(v, now[k])
    )
