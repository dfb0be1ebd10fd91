"""Run a user's training script until training starts and hand back the live objects.

The script runs as ``python SCRIPT ARGS`` would: its own ``sys.argv``, its directory first on ``sys.path``,
``__name__ == "__main__"`` and the caller's working directory. ``Trainer.train`` is patched at class level (so
every subclass, ``Seq2SeqTrainer`` included, is caught) to raise a ``BaseException`` that unwinds the script:
a user's ``except Exception`` cannot swallow it and no line after ``train()`` runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Callable

from .source import Site, display_path


class _TrainingStarted(BaseException):
    def __init__(self, trainer: Any, frame: FrameType | None):
        super().__init__("training started")
        self.trainer = trainer
        self.frame = frame


class _ScriptTimeout(BaseException):
    pass


@dataclass
class Capture:
    """What running the script up to training produced."""

    script: str
    outcome: str  # "training" | "error" | "finished" | "exited" | "timeout"
    trainer: Any = None
    exception: BaseException | None = None
    exc_tb: TracebackType | None = None
    exit_code: Any = None
    script_seconds: float = 0.0
    namespace: dict[str, Any] = field(default_factory=dict)
    train_site: Site | None = None
    sites: dict[int, Site] = field(default_factory=dict)
    call_kwargs: dict[int, dict[str, Any]] = field(default_factory=dict)
    output: str = ""
    user_dir: str = ""
    loop: "LoopRecord | None" = None  # what the hooks saw of a hand-written (or Accelerate) training loop
    internal_errors: list[str] = field(default_factory=list)  # ftdoctor's own failures while the script ran
    # Objects whose id() keys `sites`: held so an id cannot be reused by a new object.
    _keep: list[Any] = field(default_factory=list, repr=False)

    def site_of(self, obj: Any) -> Site | None:
        return self.sites.get(id(obj))

    def name_of(self, obj: Any) -> str | None:
        """The script's variable name for ``obj``, if it has one at the moment training started."""
        for name, value in self.namespace.items():
            if value is obj and not name.startswith("_"):
                return name
        return None

    def is_user_file(self, filename: str) -> bool:
        return _is_user_file(filename, self.user_dir)


def _is_user_file(filename: str, user_dir: str) -> bool:
    if not filename or filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    if not path.startswith(user_dir + os.sep):
        return False
    # A virtual environment inside the project holds libraries, not the user's code.
    rel = path[len(user_dir) + 1:]
    return "site-packages" not in rel and "dist-packages" not in rel


def deepest_user_frame(frame: FrameType | None, user_dir: str) -> FrameType | None:
    """Walk outwards from ``frame`` to the first frame that runs the user's code."""
    while frame is not None:
        if _is_user_file(frame.f_code.co_filename, user_dir):
            return frame
        frame = frame.f_back
    return None


def user_site_in_traceback(tb: TracebackType | None, user_dir: str) -> Site | None:
    """The innermost traceback entry in the user's code: the line to fix."""
    site = None
    while tb is not None:
        if _is_user_file(tb.tb_frame.f_code.co_filename, user_dir):
            site = Site(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return site


class _LoaderWithHooks:
    """Wraps a module's loader: runs the module, then the hooks waiting for it."""

    def __init__(self, loader: Any, after: Callable[[Any], None]):
        self._loader = loader
        self._after = after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class PostImportHooks:
    """Run a function right after a module is imported (or now, if it already is).

    The script keeps its own import order: a script that sets `HF_HUB_OFFLINE` or `HF_HOME` before importing
    transformers must find them honoured, so ftdoctor patches torch and transformers only once the script imports
    them, not before it runs.
    """

    def __init__(self) -> None:
        self.pending: dict[str, list[Callable[[Any], None]]] = {}
        self.installed = False
        self.errors: list[str] = []

    def when_imported(self, name: str, fn: Callable[[Any], None]) -> None:
        module = sys.modules.get(name)
        if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False) is False:
            fn(module)
            return
        self.pending.setdefault(name, []).append(fn)
        if not self.installed:
            sys.meta_path.insert(0, self)
            self.installed = True

    def find_spec(self, name: str, path: Any = None, target: Any = None):
        if name not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _LoaderWithHooks(spec.loader, lambda module: self._fire(name, module))
        return spec

    def _fire(self, name: str, module: Any) -> None:
        for fn in self.pending.pop(name, []):
            try:
                fn(module)
            except Exception:  # ftdoctor's own failure must not break the script's import
                self.errors.append(f"patching {name} failed:\n{traceback.format_exc()}")

    def remove(self) -> None:
        if self.installed:
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            self.installed = False
        self.pending.clear()


class _Recorder:
    """Class-level patches that note where the script built its trainer, arguments, model and tokenizer."""

    def __init__(self, cap: Capture):
        self.cap = cap
        self._undo: list[tuple[Any, str, Any]] = []

    def record(self, obj: Any, kwargs: dict[str, Any] | None = None) -> None:
        if id(obj) in self.cap.sites:
            return  # keep the outermost (first recorded) site: from_pretrained, not the __init__ inside it
        frame = deepest_user_frame(sys._getframe(2), self.cap.user_dir)
        if frame is None:
            return
        self.cap.sites[id(obj)] = Site(frame.f_code.co_filename, frame.f_lineno)
        if kwargs is not None:
            self.cap.call_kwargs[id(obj)] = dict(kwargs)
        self.cap._keep.append(obj)

    def patch_init(self, cls: type, method: str = "__init__") -> None:
        orig = cls.__dict__[method]
        recorder = self

        def init(self, *args, **kwargs):
            recorder.record(self, kwargs)
            return orig(self, *args, **kwargs)

        init.__wrapped__ = orig  # type: ignore[attr-defined]
        self._set(cls, method, init)

    def patch_from_pretrained(self, cls: type) -> None:
        orig = cls.__dict__["from_pretrained"]
        func = orig.__func__
        recorder = self

        def from_pretrained(klass, *args, **kwargs):
            obj = func(klass, *args, **kwargs)
            recorder.cap.sites.pop(id(obj), None)
            recorder.record(obj, kwargs)
            return obj

        self._set(cls, "from_pretrained", classmethod(from_pretrained))

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self._undo.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    def undo(self) -> None:
        for owner, name, value in reversed(self._undo):
            setattr(owner, name, value)
        self._undo.clear()


@contextlib.contextmanager
def _script_environment(script: str, argv: list[str]):
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [script, *argv]
    sys.path.insert(0, os.path.dirname(script))
    try:
        yield
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path


@contextlib.contextmanager
def _timeout(seconds: float | None):
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _ScriptTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _log_streams_to(stream):
    """Logging handlers hold the stderr they were created with; point them at ``stream`` for the script's run."""
    import logging

    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                        if isinstance(lg, logging.Logger)]
    swapped = []
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
                    and not isinstance(getattr(type(h), "stream", None), property) \
                    and getattr(h, "stream", None) in (sys.__stderr__, sys.__stdout__, sys.stderr, sys.stdout):
                swapped.append((h, h.setStream(stream)))
    try:
        yield
    finally:
        for h, old in swapped:
            h.setStream(old)


class _Tee(io.TextIOBase):
    """Keeps what the script prints (shown when setup fails) and passes it on when asked to."""

    def __init__(self, passthrough: Any | None):
        self.buffer_ = io.StringIO()
        self.passthrough = passthrough

    def write(self, s: str) -> int:
        self.buffer_.write(s)
        if self.passthrough is not None:
            self.passthrough.write(s)
        return len(s)

    def flush(self) -> None:
        if self.passthrough is not None:
            self.passthrough.flush()


@dataclass
class LoopRecord:
    """What a hand-written loop did up to its second optimizer step (the model is restored to its state at the
    first step, before any update)."""

    dataloader: Any = None
    first_batch: Any = None
    model: Any = None
    model_training: bool | None = None
    input_devices: list[str] = field(default_factory=list)
    param_device: str | None = None
    optimizer: Any = None
    steps: int = 0
    scheduler_before_optimizer: Site | None = None
    grads_accumulated: bool | None = None  # True: the second backward found the first step's gradients still there
    dataloaders: list[Any] = field(default_factory=list)


class _StopLoop(BaseException):
    pass


class _LoopHooks:
    """Hooks on the first batch drawn, the first top-level forward, zero_grad and the optimizer steps."""

    def __init__(self, cap: Capture, recorder: _Recorder):
        self.cap = cap
        self.rec = LoopRecord()
        self.recorder = recorder
        self.handles: list[Any] = []
        self.snapshot: dict[str, Any] | None = None
        self.on_stop: Callable[[], Any] | None = None

    def install(self, hooks_on_import: PostImportHooks) -> None:
        hooks_on_import.when_imported("torch", lambda _: self._install_torch())
        hooks_on_import.when_imported("transformers.modeling_utils",
                                      lambda m: self._guard_saves([(m.PreTrainedModel, "save_pretrained")]))
        hooks_on_import.when_imported("accelerate.accelerator", lambda m: self._guard_saves(
            [(m.Accelerator, name) for name in ("save", "save_state", "save_model")]))

    def _install_torch(self) -> None:
        import torch
        from torch.optim.lr_scheduler import LRScheduler

        hooks = self
        orig_iter = torch.utils.data.DataLoader.__dict__["__iter__"]

        def __iter__(dl):
            it = orig_iter(dl)
            if dl not in hooks.rec.dataloaders:
                hooks.rec.dataloaders.append(dl)
            return it

        self.recorder._set(torch.utils.data.DataLoader, "__iter__", __iter__)
        orig_call = torch.nn.Module.__dict__["__call__"]

        def __call__(module, *args, **kwargs):
            # Until the first optimizer step, note each forward the user's code makes on a batch from a loader:
            # the last one before the step is the training forward (an evaluation may come first).
            if hooks.rec.steps == 0 and hooks.rec.dataloaders and (hooks.rec.model is None or module is hooks.rec.model) \
                    and _is_user_file(sys._getframe(1).f_code.co_filename, hooks.cap.user_dir):
                hooks._forward(module, args, kwargs)
            return orig_call(module, *args, **kwargs)

        self.recorder._set(torch.nn.Module, "__call__", __call__)
        orig_sched_step = LRScheduler.__dict__["step"]

        def step(sched, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if hooks.rec.steps == 0 and hooks.rec.model is not None and hooks.rec.scheduler_before_optimizer is None \
                    and _is_user_file(caller, hooks.cap.user_dir):
                f = sys._getframe(1)
                hooks.rec.scheduler_before_optimizer = Site(f.f_code.co_filename, f.f_lineno)
            return orig_sched_step(sched, *args, **kwargs)

        self.recorder._set(LRScheduler, "step", step)
        self._guard_saves([(torch, "save")])
        from torch.optim.optimizer import register_optimizer_step_pre_hook

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

    def _forward(self, module, args, kwargs) -> None:
        import torch

        self.rec.model = module
        self.rec.model_training = module.training
        self.rec.dataloader = self.rec.dataloaders[-1]  # the loader the loop is drawing from
        tensors = [v for v in (*args, *kwargs.values()) if torch.is_tensor(v)]
        self.rec.input_devices = sorted({str(t.device) for t in tensors})
        p = next(module.parameters(), None)
        self.rec.param_device = str(p.device) if p is not None else None
        self.rec.first_batch = dict(kwargs) if kwargs else (args[0] if len(args) == 1 else None)
        self.cap._keep.append(module)
        frame = sys._getframe(2)  # the user's line that called the model
        self.cap.namespace = {**frame.f_globals, **frame.f_locals}
        self.cap.train_site = Site(frame.f_code.co_filename, frame.f_lineno)

    def _pre_step(self, optimizer, args, kwargs):
        if self.rec.model is None:
            return
        self.rec.steps += 1
        if self.rec.steps == 1:
            self.rec.optimizer = optimizer
            self._snapshot(optimizer)
            self._watch_accumulation()
        else:
            self.stop()

    def stop(self) -> None:
        """The loop has shown its first step: walk it now (child) or unwind the script (in-process)."""
        if self.on_stop is None:
            raise _StopLoop()
        self.on_stop()

    def _snapshot(self, optimizer) -> None:
        import copy

        self.snapshot = {"model": copy.deepcopy(self.rec.model.state_dict()),
                         "optimizer": copy.deepcopy(optimizer.state_dict())}

    def _watch_accumulation(self) -> None:
        """After the first step, the next backward must find the gradients zeroed (or None)."""
        param = next((p for p in self.rec.model.parameters() if p.requires_grad and p.grad is not None), None)
        if param is None:
            return
        hooks = self

        def on_grad(grad):
            if hooks.rec.grads_accumulated is None and hooks.rec.steps >= 1:
                old = param.grad
                hooks.rec.grads_accumulated = bool(old is not None and old.abs().sum() > 0)
            return grad

        self.handles.append(param.register_hook(on_grad))

    def adopt_from_traceback(self) -> None:
        """Take the model and loader from the frame that raised, when no forward happened yet."""
        PreTrainedModel = getattr(sys.modules.get("transformers.modeling_utils"), "PreTrainedModel", None)
        if PreTrainedModel is None:
            return

        tb, frame = self.cap.exc_tb, None
        while tb is not None:
            if _is_user_file(tb.tb_frame.f_code.co_filename, self.cap.user_dir):
                frame = tb.tb_frame
            tb = tb.tb_next
        if frame is None:
            return
        self.cap.namespace = {**frame.f_globals, **frame.f_locals}
        models = [o for o in self.cap._keep if isinstance(o, PreTrainedModel)]
        if models:
            self.rec.model = models[-1]
            self.rec.model_training = None
            self.rec.dataloader = self.rec.dataloaders[-1]

    def finish(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        if self.snapshot is not None and self.rec.model is not None:
            # The walk sees the loop's pipeline as it was before its first update.
            self.rec.model.load_state_dict(self.snapshot["model"])
            self.rec.optimizer.load_state_dict(self.snapshot["optimizer"])
            self.rec.model.zero_grad(set_to_none=True)
            self.snapshot = None


def capture_script(script: str, argv: list[str] | None = None, *, timeout: float | None = None,
                   show_output: bool = False, on_capture: Callable[[Capture], Any] | None = None,
                   quiet: bool = True) -> Capture:
    """Run ``script`` until training starts and return what it built.

    With ``on_capture`` (the child process of ``ftdoctor check``), that function is called at the moment training
    starts, inside ``Trainer.train`` or the loop's optimizer step, with the user's stack intact; it is expected
    not to return (the child reports and ends the process). Without it (in-process use), the script is unwound
    by a ``BaseException`` and the capture returned. ``quiet`` keeps what the script prints in ``cap.output``
    instead of the terminal (``show_output`` passes it on as well).
    """
    import runpy

    script = os.path.abspath(script)
    cap = Capture(script=script, outcome="finished", user_dir=os.path.dirname(script))
    tf_site = tensorflow_import(script)
    if tf_site is not None:
        # ftdoctor walks PyTorch pipelines; running a Keras script would train it for real.
        cap.outcome = "tensorflow"
        cap.train_site = tf_site
        return cap

    recorder = _Recorder(cap)
    loop = _LoopHooks(cap, recorder)
    on_import = PostImportHooks()

    def reached(kind: str, trainer: Any = None, frame: FrameType | None = None) -> None:
        """Training starts here: hand the capture over (child) or unwind the script (in-process)."""
        cap.outcome = kind
        if trainer is not None:
            cap.trainer = trainer
        if frame is not None:
            cap.train_site = Site(frame.f_code.co_filename, frame.f_lineno)
            cap.namespace = {**frame.f_globals, **frame.f_locals}
        if on_capture is None:
            raise _TrainingStarted(trainer, frame)
        finish_capture()
        on_capture(cap)

    def train(self, *args, **kwargs):
        reached("training", self, deepest_user_frame(sys._getframe(1), cap.user_dir))

    if on_capture is not None:
        loop.on_stop = lambda: reached("loop")

    def patch_trainer(module) -> None:
        recorder._set(module.Trainer, "train", train)
        recorder.patch_init(module.Trainer)

    def patch_model(module) -> None:
        recorder.patch_init(module.PreTrainedModel)
        recorder.patch_from_pretrained(module.PreTrainedModel)

    def patch_tokenizer(module) -> None:
        recorder.patch_init(module.PreTrainedTokenizerBase)
        recorder.patch_from_pretrained(module.PreTrainedTokenizerBase)

    on_import.when_imported("transformers.trainer", patch_trainer)
    on_import.when_imported("transformers.modeling_utils", patch_model)
    on_import.when_imported("transformers.tokenization_utils_base", patch_tokenizer)
    # Dataclass subclasses (Seq2SeqTrainingArguments) get their own __init__ but share __post_init__.
    on_import.when_imported("transformers.training_args",
                            lambda m: recorder.patch_init(m.TrainingArguments, "__post_init__"))

    tee = _Tee(sys.stderr if show_output else None)
    start = time.perf_counter()
    stack = contextlib.ExitStack()

    def finish_capture() -> None:
        """Take every patch and hook away and put back the script's view of the interpreter (once)."""
        cap.script_seconds = time.perf_counter() - start
        cap.output = tee.buffer_.getvalue()
        cap.internal_errors.extend(e for e in on_import.errors if e not in cap.internal_errors)
        if loop.rec.model is not None and cap.trainer is None:
            cap.loop = loop.rec
        stack.close()

    with stack:
        # Entered outside the try below: a failure here is ftdoctor's, never the script's.
        stack.callback(recorder.undo)
        stack.callback(loop.finish)
        stack.callback(on_import.remove)
        loop.install(on_import)
        stack.enter_context(_script_environment(script, list(argv or [])))
        if quiet:
            stack.enter_context(contextlib.redirect_stdout(tee))
            stack.enter_context(contextlib.redirect_stderr(tee))
            stack.enter_context(_log_streams_to(tee))
        stack.enter_context(_timeout(timeout))
        try:
            runpy.run_path(script, run_name="__main__")
        except _TrainingStarted as started:
            cap.outcome = "training"
            cap.trainer = started.trainer
        except _StopLoop:
            cap.outcome = "loop"
        except _ScriptTimeout:
            cap.outcome = "timeout"
        except SystemExit as exc:
            cap.outcome = "exited"
            cap.exit_code = exc.code
        except KeyboardInterrupt as exc:
            if on_capture is None:
                raise
            cap.outcome = "interrupted"
            cap.exception = exc
            cap.exc_tb = exc.__traceback__
        except BaseException as exc:  # the script's own failure is the setup stage's finding
            cap.outcome = "error"
            cap.exception = exc
            cap.exc_tb = exc.__traceback__
        if cap.outcome == "error" and loop.rec.model is None and loop.rec.dataloaders:
            loop.adopt_from_traceback()  # the loop failed drawing its first batch: walk what it had built
        if loop.rec.model is not None and cap.trainer is None and cap.outcome in ("finished", "exited"):
            cap.outcome = "loop"  # a loop that ended (or exited) after its first step is walked too
        finish_capture()
    return cap


def tensorflow_import(script: str) -> Site | None:
    """The first line importing TensorFlow/Keras or a TF* class from transformers, if the script has one."""
    import ast

    try:
        tree = ast.parse(open(script, encoding="utf-8").read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    tf_modules = ("tensorflow", "keras", "tf_keras")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            hit = any(a.name.split(".")[0] in tf_modules for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            hit = root in tf_modules or (root == "transformers" and any(a.name.startswith("TF") for a in node.names))
        else:
            continue
        if hit:
            return Site(script, node.lineno)
    return None


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
