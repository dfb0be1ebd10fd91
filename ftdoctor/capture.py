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
from typing import Any


class _TrainingStarted(BaseException):
    def __init__(self, trainer: Any, frame: FrameType | None):
        super().__init__("training started")
        self.trainer = trainer
        self.frame = frame


class _ScriptTimeout(BaseException):
    pass


@dataclass
class Site:
    """Where something happened in the user's code."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{_display_path(self.file)}:{self.line}"


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


def _display_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


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


def capture_script(script: str, argv: list[str] | None = None, *, timeout: float | None = None,
                   show_output: bool = False) -> Capture:
    """Run ``script`` until ``Trainer.train`` is called and return what it built."""
    import runpy

    script = os.path.abspath(script)
    cap = Capture(script=script, outcome="finished", user_dir=os.path.dirname(script))

    from transformers import PreTrainedModel, Trainer, TrainingArguments
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    recorder = _Recorder(cap)

    def train(self, *args, **kwargs):
        frame = deepest_user_frame(sys._getframe(1), cap.user_dir)
        raise _TrainingStarted(self, frame)

    recorder._set(Trainer, "train", train)
    for cls in (Trainer, PreTrainedModel, PreTrainedTokenizerBase):
        recorder.patch_init(cls)
    # Dataclass subclasses (Seq2SeqTrainingArguments) get their own __init__ but share __post_init__.
    recorder.patch_init(TrainingArguments, "__post_init__")
    recorder.patch_from_pretrained(PreTrainedModel)
    recorder.patch_from_pretrained(PreTrainedTokenizerBase)

    tee = _Tee(sys.stderr if show_output else None)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # Entered outside the try below: a failure here is ftdoctor's, never the script's.
        stack.callback(recorder.undo)
        stack.enter_context(_script_environment(script, list(argv or [])))
        stack.enter_context(contextlib.redirect_stdout(tee))
        stack.enter_context(contextlib.redirect_stderr(tee))
        stack.enter_context(_log_streams_to(tee))
        stack.enter_context(_timeout(timeout))
        try:
            runpy.run_path(script, run_name="__main__")
        except _TrainingStarted as started:
            cap.outcome = "training"
            cap.trainer = started.trainer
            if started.frame is not None:
                cap.train_site = Site(started.frame.f_code.co_filename, started.frame.f_lineno)
                cap.namespace = {**started.frame.f_globals, **started.frame.f_locals}
        except _ScriptTimeout:
            cap.outcome = "timeout"
        except SystemExit as exc:
            cap.outcome = "exited"
            cap.exit_code = exc.code
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the script's own failure is the setup stage's finding
            cap.outcome = "error"
            cap.exception = exc
            cap.exc_tb = exc.__traceback__
        finally:
            cap.script_seconds = time.perf_counter() - start
            cap.output = tee.buffer_.getvalue()
    return cap


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
