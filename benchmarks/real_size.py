"""`ftdoctor check` on real-size pipelines: BERT-base, GPT-2 and a ~1B Llama (full and LoRA), on 1k and 400k rows.

Models are random-weight at real shapes and tokenizers have the real vocabulary sizes, all built offline and
deterministically (benchmarks/_real_size_assets.py) into a cache folder, lazily and only for the pipelines asked
for; the datasets are generated review texts saved with save_to_disk, and the scripts are the Trainer scripts a
user writes (load, tokenize with .map, TrainingArguments, Trainer, train). Per pipeline and row count, in the same
run:

  T0 s       the user's script up to trainer.train() (a wrapper replaces Trainer.train by os._exit(0))
  T2 s       the user's own trial: the same script with max_steps=1, then one eval batch (a wrapper sets
             max_steps=1, turns off evaluation and saving during train(), then evaluates one batch)
  T2 RSS     its peak resident memory
  check s    the whole `python -m ftdoctor check SCRIPT --json`
  walk s     the walk's own time (the report's duration_s), and per stage (stages[].duration_s)
  check RSS  ftdoctor's peak resident memory, the CLI and its child together
  walk/T0, walk/T2, and the findings (codes and severities)

Peak memory is the larger of the process tree's summed RSS, sampled every 0.2 s (psutil, else /proc), and the
kernel's ru_maxrss of the run (os.wait4). Every run has a timeout and is killed with its whole process tree when
it passes it, or when the machine has less than --min-free GiB available (so that an out-of-memory run ends as a
result here, not in the kernel's OOM killer taking some other process); both are printed as such. Further tables:
CPU seconds of each run and the cores other processes kept busy meanwhile (on a shared machine they change wall
times a lot), and the peak RSS per walk stage (stage start times from ftdoctor's stage announcements when they can
be followed, so a run killed midway still shows where it was; else from the report's durations).

Targets, printed next to the numbers and not asserted: walk/T0 <= 1 for BERT-base and GPT-2; for the 1B pipelines
a complete report within 24 GiB, faster than T2; ftdoctor's peak RSS at most T2's; walk time independent of the row
count (400k within 20% of 1k).

    python benchmarks/real_size.py --only bert,gpt2 --rows 1000,400000
    python benchmarks/real_size.py --only llama1b --rows 1000 --cache /data/ftdoctor-real-size
    python benchmarks/real_size.py --only llama1b-lora --rows 1000 --skip-t2 --budget full
    python benchmarks/real_size.py --only bert --rows 1000 --repeat 3 --threads 1   # medians, less noise
    python benchmarks/real_size.py --render CACHE/results/real-size-DATE.json          # the tables again

The first run builds the assets (the 1B model: about 4 GB on disk) and, for each pipeline and row count, runs the
script once untimed so that datasets' .map cache is on disk (for 400k rows this takes minutes); later runs with the
same --cache reuse both. Raw results are written as JSON to CACHE/results/, the runs' output to CACHE/runs/.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "_real_size_assets.py")
PIPELINES = ("bert", "gpt2", "llama1b", "llama1b-lora")
STAGES = ("setup", "config", "decode", "collate", "forward", "backward", "metrics", "overfit", "memory", "distributed")
GiB = 1024**3
POLL_S = 0.2

# Runs a script as `python SCRIPT` would and ends the process the moment trainer.train() is called.
UP_TO_TRAIN = """
import os, runpy, sys
from transformers import Trainer
Trainer.train = lambda self, *a, **k: os._exit(0)
sys.argv = [sys.argv[1]]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# The user's one-step trial: train() with max_steps=1 (no evaluation or checkpoint inside it), then one eval batch.
ONE_STEP = """
import os, runpy, sys, time
from transformers import Trainer
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
_train = Trainer.train
def one_step(self, *a, **k):
    args = self.args
    args.max_steps = 1
    args.eval_strategy = IntervalStrategy.NO
    args.save_strategy = SaveStrategy.NO
    args.load_best_model_at_end = False
    t0 = time.perf_counter()
    out = _train(self)
    t1 = time.perf_counter()
    ev = self.eval_dataset
    n = min(args.per_device_eval_batch_size, len(ev))
    metrics = self.evaluate(eval_dataset=ev.select(range(n)))
    t2 = time.perf_counter()
    print("FTD-BENCH one step:", {"train_s": round(t1 - t0, 2), "eval_s": round(t2 - t1, 2),
          "train_loss": out.training_loss, "eval_loss": metrics.get("eval_loss"), "eval_rows": n}, flush=True)
    os._exit(0)
Trainer.train = one_step
sys.argv = [sys.argv[1]]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


# ----------------------------------------------------------------------------------------- running and measuring

try:
    import psutil
except ImportError:  # the /proc fallback below
    psutil = None


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (ftdoctor's child runs in a session of its own, so process groups miss it)."""
    if psutil is not None:
        try:
            p = psutil.Process(pid)
            return [pid] + [c.pid for c in p.children(recursive=True)]
        except psutil.Error:
            return [pid]
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            if psutil is not None:
                total += psutil.Process(pid).memory_info().rss
            else:
                with open(f"/proc/{pid}/statm") as fh:
                    total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except Exception:  # the process ended between listing and reading
            pass
    return total


def _available() -> int:
    if psutil is not None:
        return psutil.virtual_memory().available
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def _busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _kill_tree(pid: int) -> None:
    own = os.getpgrp()
    for p in reversed(_tree(pid)):
        try:
            pgid = os.getpgid(p)
            if pgid != own:
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Run:
    status: str  # ok | timeout | memory | crash
    wall_s: float
    peak_rss: int  # bytes
    returncode: int | None
    detail: str = ""
    stdout: str = ""
    stderr_tail: str = ""
    load: tuple[float, float] = (0.0, 0.0)  # the 1-minute load average when it started and when it ended
    cpu_s: float = 0.0  # user + system seconds of the whole tree: less sensitive than wall time to other load
    others: float | None = None  # CPU cores that other processes kept busy meanwhile, on average
    timeline: list = field(default_factory=list)  # (seconds since start, tree RSS bytes, processes in the tree)
    stage_events: list = field(default_factory=list)  # (seconds since start, stage) as ftdoctor announced them

    def brief(self) -> str:
        if self.status == "ok":
            return "ok"
        return f"{self.status.upper()} ({self.detail})" if self.detail else self.status.upper()


def measure(
    cmd: list[str],
    *,
    cwd: str,
    env: dict,
    timeout: float,
    min_free: float,
    log_path: str,
    ok_codes=(0,),
    tmpdir: str | None = None,
) -> Run:
    """Run ``cmd`` in a session of its own; wall time, peak RSS of its whole tree, and how it ended. With
    ``tmpdir`` (the run's TMPDIR), also when ftdoctor announced each stage (see _StageWatch)."""
    out_path, err_path = log_path + ".out", log_path + ".err"
    watch = _StageWatch(tmpdir) if tmpdir else None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
    t0 = time.perf_counter()
    load0, busy0 = os.getloadavg()[0], _busy_seconds()
    peak, killed, detail, timeline = 0, None, "", []
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - t0
            pids = _tree(proc.pid)
            rss = _rss(pids)
            peak = max(peak, rss)
            timeline.append((round(elapsed, 2), rss, len(pids)))
            if watch is not None:
                watch.poll(elapsed)
            if killed is None:
                avail = _available()
                if elapsed > timeout:
                    killed, detail = "timeout", f"killed after {timeout:g} s"
                elif avail < min_free * GiB:
                    killed = "memory"
                    detail = f"killed at {rss / GiB:.1f} GiB RSS, {avail / GiB:.1f} GiB left on the machine"
                if killed:
                    _kill_tree(proc.pid)
            time.sleep(POLL_S)
    except BaseException:  # Ctrl-C reaches only this process (the run has a session of its own): end the run too
        _kill_tree(proc.pid)
        os.wait4(proc.pid, 0)
        proc.returncode = -signal.SIGKILL
        raise
    wall = time.perf_counter() - t0
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    peak = max(peak, usage.ru_maxrss * 1024)  # kilobytes on Linux: the largest single process of the tree
    with open(out_path, errors="replace") as fh:
        stdout = fh.read()
    with open(err_path, errors="replace") as fh:
        tail = "".join(fh.readlines()[-15:])
    load, cpu = (load0, os.getloadavg()[0]), usage.ru_utime + usage.ru_stime
    stage_events = []
    if watch is not None:
        watch.poll(wall)
        stage_events = watch.events
        watch.clean()
    busy = _busy_seconds()
    others = None if busy is None or busy0 is None else max(0.0, (busy - busy0 - cpu) / wall)
    if killed:
        return Run(killed, wall, peak, rc, detail, stdout, tail, load, cpu, others, timeline, stage_events)
    if rc not in ok_codes:
        why = (
            f"signal {-rc}" + (" (killed: out of memory?)" if rc == -signal.SIGKILL else "") if rc < 0 else f"exit {rc}"
        )
        return Run("crash", wall, peak, rc, why, stdout, tail, load, cpu, others, timeline, stage_events)
    return Run("ok", wall, peak, rc, "", stdout, tail, load, cpu, others, timeline, stage_events)


class _StageWatch:
    """Best effort: ftdoctor's runner keeps a work folder (ftdoctor-*) in TMPDIR whose events.jsonl gets a
    {"event": "stage", "stage": ...} line as each stage starts. Following it gives stage start times even for a run
    killed before it could report (then the folder is left behind, and removed here). If the engine stops writing
    it, nothing is reported and the per-stage figures fall back to the report's durations."""

    def __init__(self, tmpdir: str):
        self.tmpdir, self.events, self._read = tmpdir, [], {}

    def poll(self, elapsed: float) -> None:
        import glob

        for path in glob.glob(os.path.join(self.tmpdir, "ftdoctor-*", "events.jsonl")):
            try:
                with open(path) as fh:
                    fh.seek(self._read.get(path, 0))
                    chunk = fh.read()
            except OSError:
                continue
            complete = chunk[: chunk.rfind("\n") + 1]
            self._read[path] = self._read.get(path, 0) + len(complete.encode())
            for line in complete.splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") in ("captured", "stage"):
                    self.events.append((round(elapsed, 2), ev.get("stage") or ev["event"]))

    def clean(self) -> None:
        import glob
        import shutil

        for path in glob.glob(os.path.join(self.tmpdir, "ftdoctor-*")):
            shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------ one case


@dataclass
class Case:
    pipeline: str
    rows: int
    params: int | None = None
    prepare_s: float | None = None
    warmup_s: float | None = None
    error: str = ""
    t0: Run | None = None
    t2: Run | None = None
    check: Run | None = None
    one_step: dict | None = None
    report: dict | None = None
    engine: str | None = None  # checksum of ftdoctor's sources when its check ran (others edit them meanwhile)
    t0_runs: list = field(default_factory=list)  # with --repeat: every run; t0/check/report are the median ones
    check_runs: list = field(default_factory=list)
    walks: list = field(default_factory=list)

    @property
    def walk_s(self) -> float | None:
        return self.report.get("duration_s") if self.report else None

    def stage_s(self) -> dict[str, float]:
        return {s["stage"]: s.get("duration_s") for s in (self.report or {}).get("stages", [])}

    def stage_rss(self) -> dict[str, int]:
        """Peak tree RSS per stage: the sampled timeline of the check, with the walk placed so that it ends when
        ftdoctor's child process ends (it sends the report and exits at once) and its stages follow each other
        with the durations the report gives. Stages shorter than the 0.2 s sampling get the nearest sample."""
        run = self.check
        if run is None or not run.timeline:
            return {}
        marks = [(t, s) for t, s in run.stage_events if s != "captured"]
        if marks:  # the stage announcements: each stage lasts until the next one starts, the last until the end
            out = {}
            for i, (t, stage) in enumerate(marks):
                hi = marks[i + 1][0] if i + 1 < len(marks) else run.wall_s
                inside = [rss for ts, rss, _ in run.timeline if t <= ts <= hi]
                out[stage] = max(inside) if inside else min(run.timeline, key=lambda x: abs(x[0] - t))[1]
            before = [rss for ts, rss, _ in run.timeline if ts < marks[0][0]]
            out["(script)"] = max(before) if before else 0
            return out
        if not self.report:
            return {}
        with_child = [t for t, _, n in run.timeline if n >= 2]
        end = with_child[-1] if with_child else run.timeline[-1][0]
        start = end - sum(s.get("duration_s") or 0 for s in self.report.get("stages", []))
        out, at = {}, start
        for st in self.report.get("stages", []):
            lo, hi = at, at + (st.get("duration_s") or 0)
            inside = [rss for t, rss, _ in run.timeline if lo <= t <= hi]
            if not inside:
                inside = [min(run.timeline, key=lambda x: abs(x[0] - (lo + hi) / 2))[1]]
            out[st["stage"]] = max(inside)
            at = hi
        before = [rss for t, rss, _ in run.timeline if t < start]
        out["(script)"] = max(before) if before else 0
        return out

    def findings(self) -> list[tuple[str, str, str, str]]:
        return [
            (s["stage"], f.get("code", "?"), f.get("severity", "?"), f.get("title", ""))
            for s in (self.report or {}).get("stages", [])
            for f in s.get("findings", [])
        ]


def run_case(case: Case, opts, env: dict, say) -> None:
    root = opts.cache
    run_dir = os.path.join(root, "runs", f"{case.pipeline}-{case.rows}")
    os.makedirs(run_dir, exist_ok=True)
    log = os.path.join(run_dir, "log")

    t = time.perf_counter()
    say(f"[{case.pipeline} {case.rows}] assets")
    proc = subprocess.run(
        [sys.executable, ASSETS, root, case.pipeline, str(case.rows)],
        env=env,
        cwd=run_dir,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        case.error = f"building the assets failed (exit {proc.returncode}); see the lines above"
        return
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    case.params, case.prepare_s = info.get("parameters"), time.perf_counter() - t
    script = info["script"]

    def go(what, cmd, ok_codes=(0,), tmpdir=None):
        run_env = env
        if tmpdir:
            os.makedirs(tmpdir, exist_ok=True)
            run_env = {**env, "TMPDIR": tmpdir}
        r = measure(
            cmd,
            cwd=run_dir,
            env=run_env,
            timeout=opts.timeout,
            min_free=opts.min_free,
            log_path=f"{log}-{what.replace(' ', '-')}",
            ok_codes=ok_codes,
            tmpdir=tmpdir,
        )
        say(f"[{case.pipeline} {case.rows}] {what}: {r.wall_s:.1f} s, {r.peak_rss / GiB:.2f} GiB, {r.brief()}")
        if r.status != "ok" and r.stderr_tail:
            say("    " + r.stderr_tail.strip().replace("\n", "\n    "))
        return r

    # The first run of a script on a dataset tokenizes it (.map) and caches the result next to the data; the
    # numbers below are those of a second run, the one a user repeats.
    marker = os.path.join(run_dir, ".mapped")
    if not os.path.exists(marker) or os.path.getmtime(marker) < os.path.getmtime(script):
        say(f"[{case.pipeline} {case.rows}] first run of the script (tokenizes the dataset, cached on disk)")
        w = go("warmup", [sys.executable, "-c", UP_TO_TRAIN, script])
        case.warmup_s = w.wall_s
        if w.status != "ok":
            case.t0 = w
            case.error = "the script does not reach trainer.train()"
            return
        open(marker, "w").close()

    case.t0_runs = [go("T0", [sys.executable, "-c", UP_TO_TRAIN, script]) for _ in range(opts.repeat)]
    case.t0 = _median(case.t0_runs, lambda r: r.wall_s if r.status == "ok" else float("inf"))
    if not opts.skip_t2:
        case.t2 = go("T2", [sys.executable, "-c", ONE_STEP, script])
        for line in case.t2.stdout.splitlines():
            if line.startswith("FTD-BENCH one step:"):
                try:
                    case.one_step = ast.literal_eval(line.split(":", 1)[1].strip())
                except (ValueError, SyntaxError):
                    pass
        if case.t2.status == "ok" and case.one_step is None:
            case.t2.status, case.t2.detail = "crash", "ended without finishing the step"
    cmd = [
        sys.executable,
        "-m",
        "ftdoctor",
        "check",
        script,
        "--json",
        "--timeout",
        str(opts.timeout),
        "--walk-timeout",
        str(opts.timeout),
    ]
    if opts.budget:
        cmd += ["--budget", opts.budget]
    case.engine = engine_checksum(opts.ftdoctor)
    checks = []
    for _ in range(opts.repeat):
        run, rep = go("ftdoctor check", cmd, ok_codes=(0, 1), tmpdir=os.path.join(run_dir, "tmp")), None
        try:
            rep = json.loads(run.stdout)
        except ValueError:
            if run.status == "ok":
                run.status, run.detail = "crash", f"exit {run.returncode}, no JSON report"
        if rep is not None:
            say(
                f"    walk {rep.get('duration_s')} s: "
                + ", ".join(f"{s['stage']} {s.get('duration_s')}" for s in rep.get("stages", []))
            )
        checks.append((run, rep))
    case.check_runs = [r for r, _ in checks]
    case.walks = [rep.get("duration_s") if rep else None for _, rep in checks]
    case.check, case.report = _median(checks, lambda x: x[1]["duration_s"] if x[1] else float("inf"))


def engine_checksum(repo: str) -> str:
    """A short checksum of ftdoctor's Python sources (ftdoctor/ and checks/) as they are now."""
    import hashlib

    h = hashlib.sha256()
    for sub in ("ftdoctor", "checks"):
        for folder, dirs, files in sorted(os.walk(os.path.join(repo, sub))):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    h.update(os.path.relpath(path, repo).encode())
                    with open(path, "rb") as fh:
                        h.update(fh.read())
    return h.hexdigest()[:10]


def _median(items: list, key):
    """The item with the median key (the lower middle one of an even count)."""
    ranked = sorted(items, key=key)
    return ranked[(len(ranked) - 1) // 2]


# -------------------------------------------------------------------------------------------------- the tables


def _s(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)


def _gib(run):
    return "-" if run is None else f"{run.peak_rss / GiB:.2f}"


def _ratio(a, b):
    return None if a is None or not b else a / b


def _ok_time(run):
    return run.wall_s if run is not None and run.status == "ok" else None


def report(cases: list[Case], opts, started: str) -> str:
    lines = []
    p = lines.append
    p(
        f"real-size pipelines: ftdoctor ({opts.ftdoctor}, HEAD {opts.ftdoctor_commit}, plus any uncommitted changes) "
        f"check --budget {opts.budget or '(default)'}; {os.cpu_count()} CPUs, "
        f"{(getattr(opts, 'available', 0) or 0) / GiB:.1f} GiB available at the start; "
        f"python {platform.python_version()}; threads {getattr(opts, 'threads', None) or 'default'}; started {started}"
    )
    p(
        "T0 = script up to train(); T2 = max_steps=1 + one eval batch; check = `ftdoctor check --json`; walk = "
        "report duration_s; RSS = peak GiB of the process tree; engine = checksum of ftdoctor/ and checks/ "
        "sources when the check ran"
    )
    p("")
    head = (
        f"{'pipeline':<13}{'rows':>7}{'params':>7}{'T0 s':>8}{'T2 s':>8}{'T2 RSS':>8}{'check s':>9}{'walk s':>8}"
        f"{'walk/T0':>8}{'walk/T2':>8}{'chk RSS':>8}  status"
    )
    p(head)
    p("-" * len(head))
    for c in cases:
        if c.error and c.t0 is None:
            p(f"{c.pipeline:<13}{c.rows:>7}  {c.error}")
            continue
        walk = c.walk_s
        status = []
        for name, run in (("T0", c.t0), ("T2", c.t2), ("check", c.check)):
            if run is not None and run.status != "ok":
                status.append(f"{name} {run.brief()}")
        if c.check is not None and c.check.status == "ok" and c.report:
            status.append(f"check exit {c.check.returncode}, ok={c.report.get('ok')}")
        if c.check is not None:
            status.append(f"engine {c.engine}")
        if c.error:
            status.append(c.error)
        p(
            f"{c.pipeline:<13}{c.rows:>7}{_s(c.params and c.params / 1e6, '{:.0f}M'):>7}{_s(_ok_time(c.t0)):>8}"
            f"{_s(_ok_time(c.t2)) if not opts.skip_t2 else 'skip':>8}{_gib(c.t2):>8}{_s(c.check and c.check.wall_s):>9}"
            f"{_s(walk):>8}{_s(_ratio(walk, _ok_time(c.t0)), '{:.2f}'):>8}{_s(_ratio(walk, _ok_time(c.t2)), '{:.2f}'):>8}"
            f"{_gib(c.check):>8}  {'; '.join(status)}"
        )

    p("")
    p(
        "CPU seconds (user+system of the process tree; other processes on the machine change wall times more) and "
        "the CPU cores other processes kept busy during T0, T2 and the check"
    )
    head = (
        f"{'pipeline':<13}{'rows':>7}{'T0 cpu':>9}{'T2 cpu':>9}{'check cpu':>10}{'check-T0':>10}"
        f"{'(check-T0)/T0':>14}{'(check-T0)/T2':>14}{'others T0/T2/check':>20}  walk s of each repeat"
    )
    p(head)
    p("-" * len(head))
    for c in cases:
        if c.t0 is None:
            continue
        t0c = c.t0.cpu_s if c.t0.status == "ok" else None
        t2c = c.t2.cpu_s if c.t2 is not None and c.t2.status == "ok" else None
        chc = c.check.cpu_s if c.check is not None and c.check.status == "ok" else None
        extra = None if chc is None or t0c is None else chc - t0c
        p(
            f"{c.pipeline:<13}{c.rows:>7}{_s(t0c):>9}{_s(t2c):>9}{_s(chc):>10}{_s(extra):>10}"
            f"{_s(_ratio(extra, t0c), '{:.2f}'):>14}{_s(_ratio(extra, t2c), '{:.2f}'):>14}"
            f"{'/'.join(_s(r and r.others) for r in (c.t0, c.t2, c.check)):>20}  " + ", ".join(_s(w) for w in c.walks)
        )

    seen = {s for c in cases for s in c.stage_s()}
    seen |= {s for c in cases if c.check for _, s in c.check.stage_events if s != "captured"}
    stages = [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))
    if stages:
        p("")
        p("walk, seconds per stage")
        head = f"{'pipeline':<13}{'rows':>7}" + "".join(f"{s:>10}" for s in stages)
        p(head)
        p("-" * len(head))
        for c in cases:
            if c.report:
                st = c.stage_s()
                p(f"{c.pipeline:<13}{c.rows:>7}" + "".join(f"{_s(st.get(s), '{:.2f}'):>10}" for s in stages))
            elif c.check is not None and c.check.stage_events:
                # No report: the times between ftdoctor's stage announcements; "+" marks the stage it was in when
                # the run ended.
                marks = [(t, s) for t, s in c.check.stage_events if s != "captured"]
                st = {
                    s: f"{(marks[i + 1][0] if i + 1 < len(marks) else c.check.wall_s) - t:.2f}"
                    + ("" if i + 1 < len(marks) else "+")
                    for i, (t, s) in enumerate(marks)
                }
                p(
                    f"{c.pipeline:<13}{c.rows:>7}"
                    + "".join(f"{st.get(s, '-'):>10}" for s in stages)
                    + f"  (no report: from stage announcements, {c.check.brief()})"
                )
        p("")
        p("walk, peak GiB of the check's process tree per stage ((script): before the walk; from the 0.2 s samples)")
        head = f"{'pipeline':<13}{'rows':>7}{'(script)':>10}" + "".join(f"{s:>10}" for s in stages)
        p(head)
        p("-" * len(head))
        for c in cases:
            rss = c.stage_rss()
            if rss:
                p(
                    f"{c.pipeline:<13}{c.rows:>7}{rss['(script)'] / GiB:>10.2f}"
                    + "".join(f"{_s(rss.get(s) and rss[s] / GiB, '{:.2f}'):>10}" for s in stages)
                )
        statuses = {
            (c.pipeline, c.rows): {s["stage"]: s["status"] for s in c.report.get("stages", [])}
            for c in cases
            if c.report
        }
        not_pass = [
            f"{k[0]} {k[1]}: " + ", ".join(f"{s} {v}" for s, v in st.items() if v != "pass")
            for k, st in statuses.items()
            if any(v != "pass" for v in st.values())
        ]
        if not_pass:
            p("stages that did not pass: " + "; ".join(not_pass))

    p("")
    p("findings")
    for c in cases:
        if c.report:
            fs = c.findings()
            p(
                f"  {c.pipeline} {c.rows}: "
                + ("none" if not fs else "; ".join(f"{code} {sev} [{stage}] {title}" for stage, code, sev, title in fs))
            )
            budget = c.report.get("budget") or next(
                (
                    s["evidence"]["budget"]
                    for s in c.report.get("stages", [])
                    if isinstance(s.get("evidence"), dict) and s["evidence"].get("budget")
                ),
                None,
            )
            if budget:
                p(f"      budget: {json.dumps(budget)[:300]}")
            skipped = [
                f"{s['stage']} ({s.get('reason', '?')})"
                for s in c.report.get("stages", [])
                if s.get("status") == "skip"
            ]
            if skipped:
                p(f"      skipped: {'; '.join(skipped)}")
        elif c.check is not None:
            p(f"  {c.pipeline} {c.rows}: no report ({c.check.brief()})")
            if c.check.stage_events:
                p(
                    "      stages started at (s after the command started): "
                    + ", ".join(f"{s} {t:.1f}" for t, s in c.check.stage_events)
                    + f"; it ended at {c.check.wall_s:.1f}"
                )
            if c.check.stderr_tail:
                p("      " + c.check.stderr_tail.strip().replace("\n", "\n      "))
    one = [c for c in cases if c.one_step]
    if one:
        p("")
        p("T2 detail (inside the process: train() of one step, evaluate() of one batch)")
        for c in one:
            p(f"  {c.pipeline} {c.rows}: {c.one_step}")

    p("")
    p("targets (printed, not asserted)")
    for c in cases:
        walk, t0, t2 = c.walk_s, _ok_time(c.t0), _ok_time(c.t2)
        tag = f"  {c.pipeline} {c.rows}:"
        if c.pipeline in ("bert", "gpt2"):
            r = _ratio(walk, t0)
            p(f"{tag} walk/T0 <= 1: {_s(r, '{:.2f}')} {_verdict(r is not None and r <= 1, r)}")
        if c.pipeline.startswith("llama1b") and c.check is not None:
            # Complete: the walk reported; a stage may be skipped for a reason of the pipeline's (no
            # compute_metrics), which the report names.
            got = bool(c.report) and c.check.status == "ok"
            within = got and c.check.peak_rss <= 24 * GiB
            p(
                f"{tag} complete report within 24 GiB: "
                f"{'report' if got else 'no report: ' + c.check.brief()}, {_gib(c.check)} GiB {_verdict(within, True)}"
            )
            chk = _ok_time(c.check) if got else None
            p(
                f"{tag} faster than T2: check {f'{chk:.1f} s' if got else c.check.status.upper()} vs T2 {_s(t2)} s "
                f"(walk {_s(walk)} s) {_verdict(chk is not None and t2 is not None and chk < t2, t2)}"
            )
        if c.t2 is not None and c.check is not None:
            ok = c.t2.status == "ok" and c.check.peak_rss <= c.t2.peak_rss
            p(
                f"{tag} check RSS <= T2 RSS: {_gib(c.check)} vs {_gib(c.t2)} GiB "
                f"{_verdict(ok, c.t2.status == 'ok' or None)}"
            )
    by = {}
    for c in cases:
        by.setdefault(c.pipeline, {})[c.rows] = c.walk_s
    for pipe, walks in by.items():
        got = {r: w for r, w in walks.items() if w is not None}
        if len(walks) > 1:
            if len(got) < 2:
                p(f"  {pipe}: walk independent of rows: not measured (a run has no report)")
                continue
            lo, hi = min(got), max(got)
            change = got[hi] / got[lo] - 1
            p(
                f"  {pipe}: walk independent of rows: {hi} rows {got[hi]:.1f} s vs {lo} rows {got[lo]:.1f} s "
                f"({change:+.0%}) {_verdict(abs(change) <= 0.2, change)}"
            )
    return "\n".join(lines)


def _verdict(ok: bool, measured) -> str:
    if measured is None:
        return "(not measured)"
    return "ok" if ok else "MISS"


# ------------------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="bert,gpt2", help=f"comma-separated pipelines of {','.join(PIPELINES)}")
    ap.add_argument("--rows", default="1000,400000", help="comma-separated training-set sizes")
    ap.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "ftdoctor-real-size"),
        help="folder for models, tokenizers, datasets, scripts and runs; reuse it between runs",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds each run may take (default 1800)")
    ap.add_argument("--budget", choices=("fast", "full"), help="passed to ftdoctor check (default: its own)")
    ap.add_argument("--skip-t2", action="store_true", help="do not run the one-step trial")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run T0 and the check this many times and show the median (T2 runs once; default 1)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        help="set OMP_NUM_THREADS for every run (default: as the environment "
        "has it); 1 makes times less sensitive to other processes on a small machine",
    )
    ap.add_argument(
        "--min-free",
        type=float,
        default=1.0,
        help="GiB the machine must keep available; a run that leaves less is killed (default 1)",
    )
    ap.add_argument("--render", metavar="RESULTS_JSON", help="print the tables of a saved run again and exit")
    opts = ap.parse_args()
    if opts.render:
        print(render_saved(opts.render))
        return
    pipelines = [x.strip() for x in opts.only.split(",") if x.strip()]
    unknown = set(pipelines) - set(PIPELINES)
    if unknown:
        ap.error(f"unknown pipelines {sorted(unknown)}; choose from {','.join(PIPELINES)}")
    rows = [int(x) for x in opts.rows.split(",") if x.strip()]
    opts.cache = os.path.abspath(opts.cache)
    os.makedirs(opts.cache, exist_ok=True)

    env = os.environ.copy()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[var] = "1"
    env["HF_HOME"] = os.path.join(opts.cache, "hf-home")
    if opts.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(opts.threads)
    where = subprocess.run(
        [sys.executable, "-c", "import ftdoctor, ftdoctor.checks; print(ftdoctor.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if where.returncode != 0:
        sys.exit("install ftdoctor first: pip install -e .  (`python -m ftdoctor` must import ftdoctor.checks)")
    opts.ftdoctor = os.path.dirname(os.path.dirname(where.stdout.strip()))
    commit = subprocess.run(
        ["git", "-C", opts.ftdoctor, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    opts.ftdoctor_commit = commit or None

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    opts.available = _available()
    say(
        f"cache: {opts.cache}; load average {os.getloadavg()[0]:.1f}; memory sampler: {'psutil' if psutil else '/proc'}"
    )
    cases = []
    for pipeline in pipelines:
        for n in rows:
            case = Case(pipeline, n)
            cases.append(case)
            if (
                pipeline == "llama1b-lora"
                and subprocess.run([sys.executable, "-c", "import peft"], env=env, capture_output=True).returncode != 0
            ):
                case.error = "skipped: peft is not installed"
                continue
            try:
                run_case(case, opts, env, say)
            except KeyboardInterrupt:
                case.error = "interrupted"
                break
        else:
            continue
        break
    text = report(cases, opts, started)
    print(text)
    os.makedirs(os.path.join(opts.cache, "results"), exist_ok=True)
    path = os.path.join(opts.cache, "results", f"real-size-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(
            {"options": vars(opts), "started": started, "cases": [_raw(c) for c in cases], "table": text}, fh, indent=1
        )
    say(f"raw results: {path}")


def render_saved(path: str) -> str:
    with open(path) as fh:
        saved = json.load(fh)

    def run(d):
        return Run(**{**d, "stdout": ""}) if d else None

    cases = []
    for d in saved["cases"]:
        c = Case(**{k: v for k, v in d.items() if k not in ("t0", "t2", "check", "t0_runs", "check_runs")})
        c.t0, c.t2, c.check = run(d.get("t0")), run(d.get("t2")), run(d.get("check"))
        c.t0_runs, c.check_runs = [run(x) for x in d.get("t0_runs") or []], [run(x) for x in d.get("check_runs") or []]
        cases.append(c)
    return report(cases, argparse.Namespace(**saved["options"]), saved["started"])


def _raw(c: Case) -> dict:
    d = asdict(c)
    for k in ("t0", "t2", "check"):
        if d.get(k):
            d[k].pop("stdout", None)
    for k in ("t0_runs", "check_runs"):
        for run in d.get(k) or []:
            run.pop("stdout", None)
            run.pop("timeline", None)
    for k in ("t0", "t2"):
        if d.get(k):
            d[k].pop("timeline", None)
    return d


if __name__ == "__main__":
    main()
