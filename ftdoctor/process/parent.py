"""The parent side of `ftdoctor check`: start one child process per script, watch it, and turn every way it can
end into a result: a report, or a clear message (exit code 2) with the last lines the script printed.

The child runs in a session of its own, so that Ctrl-C reaches only this process, which then kills the child's
whole process group (DataLoader workers included). Timeouts are counted in two phases: until the script reaches
training (`timeout`), and the walk after that (`walk_timeout`).
"""

from __future__ import annotations

import collections
import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ftdoctor.core.env import free_port
from ftdoctor.core.registry import default_check_dirs
from ftdoctor.process.result import HarnessError, ScriptResult

TAIL_LINES = 200
DEFAULT_TIMEOUT = 600.0
DEFAULT_WALK_TIMEOUT = 1800.0
DEFAULT_COLLECTIVE_TIMEOUT = 30.0  # a collective only some ranks enter fails after this, instead of hanging


LINE_BYTES = 4096  # of one line the script printed, what is kept (a 50 MB line is not held, nor reprinted)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP) while a script was being checked: the child is already gone, and so is the run's
    temporary folder by the time this reaches the caller."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP


class stop_signals:
    """Within this block SIGTERM and SIGHUP (what `timeout`, a CI cancel, `docker stop` and a closed terminal send)
    raise `Interrupted` like Ctrl-C does, so every `finally:` runs: the child is killed and the temporary folder
    removed. Only in the main thread, and only where the signal has its default action (an ignored SIGHUP, as
    under nohup, stays ignored; a handler of the host's stays)."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)

    def __enter__(self):
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.SIGNALS:
            if signal.getsignal(sig) is signal.SIG_DFL:
                self.saved[sig] = signal.signal(sig, self._raise)
        return self

    def _raise(self, signum, frame):
        for sig in self.saved:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False


def run_child(
    script: str,
    argv: list[str],
    *,
    stages: list[str] | None,
    options: dict[str, Any],
    check_dirs: list[str],
    timeout: float | None = None,
    walk_timeout: float | None = None,
    progress: Callable[..., Any] | None = None,
    show_output: bool = False,
    artifacts_dir: str | None = None,
    env: dict[str, str] | None = None,
    nproc: int = 1,
    collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT,
) -> ScriptResult:
    """Run the script in a child process (or, with ``nproc`` > 1, in that many ranks under torchrun)."""
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    walk_timeout = DEFAULT_WALK_TIMEOUT if walk_timeout is None else walk_timeout
    limits = (("timeout", timeout), ("walk_timeout", walk_timeout), ("collective_timeout", collective_timeout))
    for name, value in limits:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise HarnessError(f"{name} must be a positive number of seconds, not {value!r}")
    with stop_signals():
        for standin in (False, True):
            work = tempfile.mkdtemp(prefix="ftdoctor-")
            try:
                result = _run(
                    script,
                    argv,
                    stages,
                    options,
                    check_dirs,
                    timeout,
                    walk_timeout,
                    progress,
                    show_output,
                    artifacts_dir,
                    env,
                    work,
                    nproc,
                    collective_timeout,
                    cuda_standin=standin,
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            # A script written for a GPU stopped at its first CUDA move: run it again with the CUDA stand-in.
            if result.outcome != "needs-cuda":
                return result
        return result


# The child starts from this file, written beside the spec, rather than with `python -m ftdoctor.process.child`: `-m` puts
# the working directory first on sys.path, so a folder named ftdoctor there (a clone of ftdoctor's repository, a
# project's own module) would be imported instead of the installed package.
_BOOT = """\
import sys

sys.path.pop(0)  # this file's folder
try:
    import ftdoctor.process.child
except ImportError:  # a source tree that was never installed: found from the working directory, as -m finds it
    sys.path.insert(0, "")
    import ftdoctor.process.child
ftdoctor.process.child.main()
"""


def _command(spec_path: str, nproc: int) -> list[str]:
    """`python BOOT SPEC` (the child, see _BOOT), or the same under torchrun's launcher with ``nproc`` local ranks
    on the CPU (gloo), all on 127.0.0.1."""
    boot = os.path.join(os.path.dirname(os.path.abspath(spec_path)), "ftdoctor_child.py")
    with open(boot, "w", encoding="utf-8") as fh:
        fh.write(_BOOT)
    if nproc <= 1:
        return [sys.executable, boot, spec_path]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--nnodes",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        boot,
        spec_path,
    ]


def _run(
    script,
    argv,
    stages,
    options,
    check_dirs,
    timeout,
    walk_timeout,
    progress,
    show_output,
    artifacts_dir,
    env,
    work,
    nproc=1,
    collective_timeout=DEFAULT_COLLECTIVE_TIMEOUT,
    cuda_standin=False,
) -> ScriptResult:
    events_path = os.path.join(work, "events.jsonl")
    open(events_path, "w").close()
    spec = {
        "script": os.path.abspath(script),
        "argv": argv,
        "cwd": os.getcwd(),
        "stages": stages,
        "options": options,
        "check_dirs": check_dirs,
        "result_path": os.path.join(work, "result.json"),
        "events_path": events_path,
        "artifacts_dir": artifacts_dir,
        "ranks_dir": work,
        "partial_path": os.path.join(work, "partial.json"),
        "collective_timeout": collective_timeout if nproc > 1 else None,
        "cuda_standin": cuda_standin,
    }
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    child_env = dict(env if env is not None else os.environ)
    if nproc > 1:
        child_env.setdefault("OMP_NUM_THREADS", "1")
        child_env.pop("RANK", None)
        child_env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(
        _command(spec_path, nproc),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=child_env,
    )
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    events: queue.Queue = queue.Queue()
    done = threading.Event()
    readers = [
        threading.Thread(target=_pump_output, args=(proc.stdout, tail, show_output), daemon=True),
        threading.Thread(target=_pump_events, args=(events_path, events, done), daemon=True),
    ]
    for t in readers:
        t.start()
    phase, phase_start, limit = "script", time.monotonic(), timeout
    timed_out, ended_at, running = None, None, None
    try:
        while True:
            try:
                ev = events.get(timeout=0.1)
            except queue.Empty:
                ev = None
            if ev is not None:
                kind = ev.get("event")
                if kind == "captured":
                    phase, phase_start, limit = "walk", time.monotonic(), walk_timeout
                elif kind == "stage":
                    running = ev.get("stage")
                if progress is not None and kind in ("captured", "stage", "input"):
                    progress(kind, ev.get("stage") or ev.get("prompt") or ev.get("outcome"))
                elif progress is not None and kind == "step":
                    progress(kind, f"{ev.get('stage')}: {ev.get('text')}")
                continue
            if proc.poll() is not None:
                # Ended: give the event reader a moment to see the last lines.
                ended_at = ended_at or time.monotonic()
                if time.monotonic() - ended_at > 0.3:
                    break
                continue
            if time.monotonic() - phase_start > limit:
                timed_out = phase
                break
    except KeyboardInterrupt as exc:
        _kill_group(proc)
        raise (exc if isinstance(exc, Interrupted) else Interrupted()) from None
    finally:
        if timed_out is not None or proc.poll() is None:
            # The child reports and ends itself; anything still running (a timeout, a grandchild) is killed.
            _wait_or_kill(proc, grace=0 if timed_out else 5.0)
        _kill_group(proc)
        done.set()
        for t in readers:
            t.join(timeout=2.0)
    output = "".join(tail)
    result_path = spec["result_path"]
    if timed_out is None and os.path.isfile(result_path):
        with open(result_path, encoding="utf-8") as fh:
            env_ = json.load(fh)
        return _result(env_, output, proc.returncode)
    rel = _rel(script)
    if timed_out == "script":
        msg = (
            f"{rel} did not reach trainer.train() within {timeout:g} s (--timeout); it may be waiting on the "
            "network (try --offline), for input, or preprocessing a large dataset."
        )
        return ScriptResult(None, msg, "timeout", output, returncode=proc.returncode)
    if timed_out == "walk":
        where = f" in the {running} stage" if running else ""
        msg = (
            f"the walk of {rel} did not finish within {walk_timeout:g} s (--walk-timeout){where}; the process was "
            "stopped. Run fewer stages (--stages) or allow more time."
        )
        return ScriptResult(
            _finished_stages(spec["partial_path"], running, walk_timeout, msg),
            msg,
            "timeout",
            output,
            returncode=proc.returncode,
            stopped_at=running,
        )
    return ScriptResult(None, _abnormal_end(rel, proc.returncode), "crashed", output, returncode=proc.returncode)


def _finished_stages(path: str, running: str | None, walk_timeout: float, message: str):
    """The report of the stages that finished before the walk was stopped (the child writes it after each stage),
    with the stage that was running marked as stopped; None when no stage finished."""
    from ftdoctor.core.report import Report, StageResult

    try:
        with open(path, encoding="utf-8") as fh:
            report = Report.from_dict(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if running and report.stage(running) is None:
        report.stages.append(
            StageResult(
                running, "skip", reason=f"stopped: the walk did not finish within {walk_timeout:g} s (--walk-timeout)"
            )
        )
    report.stopped = message
    report.duration_s = walk_timeout
    return report


def _result(envelope: dict[str, Any], output: str, returncode: int | None) -> ScriptResult:
    from ftdoctor.core.report import Report

    report = Report.from_dict(envelope["report"]) if envelope.get("report") else None
    return ScriptResult(
        report,
        envelope.get("message"),
        envelope.get("outcome") or "training",
        output,
        envelope.get("traceback"),
        returncode,
        envelope.get("artifacts") or {},
    )


def _abnormal_end(rel: str, code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {
            "SIGKILL": " (killed: often the system running out of memory)",
            "SIGSEGV": " (a crash inside a native library)",
            "SIGABRT": " (aborted by a native library)",
            "SIGBUS": " (a crash inside a native library)",
        }.get(name, "")
        return f"{rel} was ended by {name}{why} before ftdoctor could report."
    return (
        f"{rel} ended the process with exit code {code} before ftdoctor could report (os._exit() or a crash "
        "in a native library); nothing was walked."
    )


def _rel(path: str) -> str:
    from ftdoctor.core.source import display_path

    return display_path(path)


def _pump_output(stream, tail, show: bool) -> None:
    """Keep the last lines the script prints, each cut to LINE_BYTES with a note of what was left out; pass them on
    to stderr with --show-script-output."""
    line = _Line()
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        if show:
            try:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
        *ended, rest = chunk.split(b"\n")
        for piece in ended:
            line.add(piece)
            tail.append(line.take() + "\n")
        line.add(rest)
    if line.size:
        tail.append(line.take())
    stream.close()


class _Line:
    """One line of output as it arrives: its first LINE_BYTES bytes and how many more came."""

    def __init__(self):
        self.head, self.size = b"", 0

    def add(self, piece: bytes) -> None:
        if len(self.head) < LINE_BYTES:
            self.head += piece[: LINE_BYTES - len(self.head)]
        self.size += len(piece)

    def take(self) -> str:
        text = self.head.decode("utf-8", "replace")
        if self.size > len(self.head):
            text += f" … [{self.size - len(self.head)} more bytes]"
        self.head, self.size = b"", 0
        return text


def _pump_events(path: str, events: queue.Queue, done: threading.Event) -> None:
    """Follow the child's events file (a file, not a pipe: torchrun's ranks do not inherit descriptors)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        pending = ""
        while True:
            chunk = fh.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    try:
                        events.put(json.loads(line))
                    except ValueError:
                        pass
            elif done.is_set():
                return
            else:
                time.sleep(0.05)


def _wait_or_kill(proc: subprocess.Popen, grace: float) -> None:
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()


def _kill_group(proc: subprocess.Popen) -> None:
    """The child leads its own session: killing its group ends it and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def check_script(
    script: str,
    argv: list[str] | None = None,
    *,
    timeout: float | None = None,
    walk_timeout: float | None = None,
    stages: Iterable[str] | None = None,
    progress: Callable[..., Any] | None = None,
    show_output: bool = False,
    options: dict[str, Any] | None = None,
    check_dirs: Iterable[str] | None = None,
    artifacts_dir: str | None = None,
    in_process: bool = False,
    nproc: int = 1,
    collective_timeout: float | None = None,
) -> ScriptResult:
    """Run ``script`` like ``python SCRIPT ARGS`` in a child process, walk its pipeline at the moment training
    starts, and return the report (or why there is none). Nothing of the script runs after that moment.

    ``in_process=True`` runs the script in this process instead (the old way: the script is unwound by an
    exception, so its ``finally:`` blocks run); only for tests that need the live objects.
    """
    problem = script_problem(script)
    if problem:
        raise HarnessError(problem)
    dirs = list(check_dirs) if check_dirs is not None else default_check_dirs(os.path.dirname(os.path.abspath(script)))
    if in_process:
        from ftdoctor.capture import capture_script
        from ftdoctor.core.source import set_origin

        set_origin(os.getcwd())
        from ftdoctor.capture.script import release_single_rank

        cap = capture_script(script, argv, timeout=timeout, show_output=show_output)
        try:
            from ftdoctor.process.child import walk_capture

            result = walk_capture(
                cap, stages=stages, options=options, check_dirs=dirs, progress=progress, timeout=timeout
            )
        finally:
            release_single_rank(cap)
        result.capture = cap
        return result
    from ftdoctor.process.parent import run_child

    stages = list(stages) if stages else None
    if nproc > 1 and stages is None:
        from ftdoctor.core.stages import default_stages

        stages = default_stages(nproc)
    return run_child(
        script,
        list(argv or []),
        stages=stages,
        options=options or {},
        check_dirs=dirs,
        timeout=timeout,
        walk_timeout=walk_timeout,
        progress=progress,
        show_output=show_output,
        artifacts_dir=artifacts_dir,
        nproc=nproc,
        **({"collective_timeout": collective_timeout} if collective_timeout else {}),
    )


def script_problem(path: str) -> str | None:
    """Why ``path`` cannot be checked as a script (missing, a folder, not Python), or None."""
    from ftdoctor.core.source import display_path
    from ftdoctor.core.untrusted import NAME, inline

    shown = inline(display_path(path), NAME)
    if os.path.isdir(path):
        return (
            f"{shown} is a directory, not a script: name the training script in it "
            f"(ftdoctor check {os.path.join(shown, 'train.py')})"
        )
    if not os.path.isfile(path):
        return f"no such script: {shown}"
    return not_a_script(path)


def not_a_script(path: str) -> str | None:
    """Why ``path`` is not something Python can run (a binary, another encoding, a broken notebook), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if b"\0" in head:
        return f"{path} is a binary file, not a Python script or notebook"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the 64 KiB read
            return f"{path} is not UTF-8 text (byte {exc.start}): not a Python script or notebook"
    if path.endswith(".ipynb"):
        import json

        try:
            with open(path, encoding="utf-8") as fh:
                json.load(fh)
        except ValueError as exc:
            return f"{path} is not a valid notebook (its JSON does not parse: {exc})"
    return None
