"""Run a user's training script until training starts and hand over the live objects it built.

The script runs as ``python SCRIPT ARGS`` would: its own ``sys.argv``, its directory first on ``sys.path``,
``__name__ == "__main__"`` and the caller's working directory. torch and transformers are patched when the script
imports them: ``Trainer.train`` at class level (every subclass, ``Seq2SeqTrainer`` and TRL's trainers included),
and for hand-written loops the hooks of loop.py. At the moment training starts, ``on_capture`` is called inside
that call (the child process walks there and ends); without it the script is unwound by a ``BaseException``.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

from ftdoctor.capture.imports import PostImportHooks
from ftdoctor.capture.loop import LoopHooks, LoopRecord, _StopLoop
from ftdoctor.capture.recorder import Recorder
from ftdoctor.core.frames import deepest_user_frame, is_user_file
from ftdoctor.core.source import Site


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
    loop: LoopRecord | None = None  # what the hooks saw of a hand-written (or Accelerate) training loop
    internal_errors: list[str] = field(default_factory=list)  # ftdoctor's own failures while the script ran
    train_kwargs: dict[str, Any] = field(default_factory=dict)  # what trainer.train() was called with
    # The torchrun variables ftdoctor supplied when the script set up a process group outside torchrun.
    single_rank: dict[str, str] | None = None
    cuda_standin: dict[str, Any] | None = None  # the script asked for CUDA where there is none (FTD017)
    # Objects whose id() keys `sites`: held so an id cannot be reused by a new object.
    _keep: list[Any] = field(default_factory=list, repr=False)

    def site_of(self, obj: Any) -> Site | None:
        return self.sites.get(id(obj))

    def name_of(self, obj: Any) -> str | None:
        """The script's variable name for ``obj``, if it has one at the moment training started."""
        for name, value in list(self.namespace.items()):
            if value is obj and not name.startswith("_"):
                return name
        return None

    def is_user_file(self, filename: str) -> bool:
        return is_user_file(filename, self.user_dir)


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

    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    swapped = []
    for lg in loggers:
        for h in lg.handlers:
            if (
                isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler)
                and not isinstance(getattr(type(h), "stream", None), property)
                and getattr(h, "stream", None) in (sys.__stderr__, sys.__stdout__, sys.stderr, sys.stdout)
            ):
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


def capture_script(
    script: str,
    argv: list[str] | None = None,
    *,
    timeout: float | None = None,
    show_output: bool = False,
    on_capture: Callable[[Capture], Any] | None = None,
    quiet: bool = True,
) -> Capture:
    """Run ``script`` until training starts and return what it built.

    With ``on_capture`` (the child process of ``ftdoctor check``), that function is called at the moment training
    starts, inside ``Trainer.train`` or the loop's optimizer step, with the user's stack intact; it is expected
    not to return (the child reports and ends the process). Without it (in-process use), the script is unwound
    by a ``BaseException`` and the capture returned. ``quiet`` keeps what the script prints in ``cap.output``
    instead of the terminal (``show_output`` passes it on as well).
    """
    script = os.path.abspath(script)
    cap = Capture(script=script, outcome="finished", user_dir=os.path.dirname(script))
    tf_site = tensorflow_import(script)
    if tf_site is not None:
        # ftdoctor walks PyTorch pipelines; running a Keras script would train it for real.
        cap.outcome = "tensorflow"
        cap.train_site = tf_site
        return cap

    recorder = Recorder(cap)
    loop = LoopHooks(cap, recorder)
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
        cap.train_kwargs = {"resume_from_checkpoint": args[0] if args else None, **kwargs}
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

    def patch_distributed(module) -> None:
        if hasattr(module, "init_process_group"):
            recorder._set(module, "init_process_group", _one_rank_if_alone(module.init_process_group, cap))

    on_import.when_imported("torch.distributed", patch_distributed)
    on_import.when_imported("transformers.trainer", patch_trainer)
    on_import.when_imported("transformers.modeling_utils", patch_model)
    on_import.when_imported("transformers.tokenization_utils_base", patch_tokenizer)
    # Dataclass subclasses (Seq2SeqTrainingArguments) get their own __init__ but share __post_init__.
    on_import.when_imported(
        "transformers.training_args", lambda m: recorder.patch_init(m.TrainingArguments, "__post_init__")
    )

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
            _run(script)
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
        if cap.outcome == "error" and loop.rec.steps == 0:
            loop.adopt_failure(cap.exc_tb)  # the loop failed before its first step: walk what it had built
        if loop.rec.steps >= 1 and cap.trainer is None and cap.outcome in ("finished", "exited"):
            cap.outcome = "loop"  # a loop that ended (or exited) after its first step is walked too
        finish_capture()
    return cap


TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _one_rank_if_alone(init_process_group: Callable, cap: Capture) -> Callable:
    """`init_process_group` that, outside torchrun (no RANK or WORLD_SIZE, the env:// default), first sets the
    variables `torchrun --nproc_per_node 1` would: a script written for torchrun is walked as one rank instead of
    failing with "environment variable RANK expected, but not set"."""
    import functools

    @functools.wraps(init_process_group)
    def wrapper(*args, **kwargs):
        method = kwargs.get("init_method", args[1] if len(args) > 1 else None)
        if (
            kwargs.get("store") is None
            and method in (None, "env://")
            and not any(v in os.environ for v in ("RANK", "WORLD_SIZE"))
        ):
            from ftdoctor.core.env import free_port

            env = {
                "RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(free_port()),
            }
            env = {k: v for k, v in env.items() if k not in os.environ}
            os.environ.update(env)
            cap.single_rank = env
        return init_process_group(*args, **kwargs)

    return wrapper


def release_single_rank(cap: Capture) -> None:
    """Undo what `_one_rank_if_alone` set up in this process (the in-process walk; a child process just ends)."""
    if not cap.single_rank:
        return
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # a group the script already destroyed, or one that will not go: nothing more to undo
        pass
    for var in cap.single_rank:
        os.environ.pop(var, None)


def _run(script: str) -> None:
    """Run the script as `python SCRIPT` does; a notebook's code cells run as one script (shell and magic lines
    left out), with IPython's `display` and `get_ipython` standing in for the notebook's own."""
    import builtins
    import linecache
    import runpy
    import types

    from ftdoctor.core.source import is_notebook, notebook_source

    if not is_notebook(script):
        runpy.run_path(script, run_name="__main__")
        return
    source = notebook_source(script)[0]
    code = compile(source, script, "exec")
    linecache.cache[script] = (len(source), None, source.splitlines(True), script)
    module = types.ModuleType("__main__")
    module.__dict__.update(
        {"__file__": script, "__builtins__": builtins, "display": print, "get_ipython": lambda: _NoIPython()}
    )
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


class _NoIPython:
    """What `get_ipython()` returns in a notebook run as a script: every magic is a no-op."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def tensorflow_import(script: str) -> Site | None:
    """The first line importing TensorFlow/Keras or a TF* class from transformers, if the script has one."""
    import ast

    from ftdoctor.core.source import read_source

    try:
        tree = ast.parse(read_source(script))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
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
