"""Time `ftdoctor check` on the bundled MNLI pipelines, and the CLI's light commands.

For each pipeline, in the same run:
  script s   `python SCRIPT` up to trainer.train() (a child process that stops there: interpreter, imports, setup)
  walk s     the walk's own time, as the child process reports it (inside trainer.train())
  check s    the whole `ftdoctor check SCRIPT` command
  extra s    check - script - walk: what running the script in ftdoctor's child process adds
and, with --in-process, the walk's time when the script runs in this process (the pre-child way) for comparison.
--help / explain are shown against a bare `python -c pass`.

With --llm, the pipelines are the TRL SFT + LoRA fixture and the same script fine-tuning the whole model (its
`peft_config` dropped, a full fine-tune's rate): the walk of an adapter run, overfit sweep included, against the
walk of a full fine-tune of the same model and data, in the same run.

    python benchmarks/walk_time.py [--repeat 3] [--in-process] [--llm]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINES = os.path.join(os.path.dirname(HERE), "fixtures", "pipelines")

# Runs a script as `python SCRIPT` would and ends the process the moment trainer.train() is called.
UP_TO_TRAIN = """
import os, runpy, sys
from transformers import Trainer
Trainer.train = lambda self, *a, **k: os._exit(0)
sys.argv = [sys.argv[1]]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _seconds(cmd, repeat):
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), proc


def _full_fine_tune(work: str) -> str:
    """The SFT + LoRA fixture as a full fine-tune: no `peft_config`, and a full fine-tune's learning rate."""
    source = open(os.path.join(PIPELINES, "trl_sft_lora_fixed.py"), encoding="utf-8").read()
    for old, new in (("    peft_config=peft_config,\n", ""), ("learning_rate=1e-2,", "learning_rate=1e-3,")):
        assert old in source, old
        source = source.replace(old, new)
    path = os.path.join(work, "trl_sft_full_fine_tune.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--in-process", action="store_true", help="also time the walk with the script in this process")
    p.add_argument("--llm", action="store_true", help="SFT + LoRA against the same SFT as a full fine-tune")
    opts = p.parse_args()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp())
    from ftdoctor.fixtures import build_all

    build_all()
    work = tempfile.mkdtemp()
    os.chdir(work)
    names = ("course_mnli_fixed.py", "course_mnli_broken.py")
    if opts.llm:
        names = ("trl_sft_lora_fixed.py", _full_fine_tune(work))
    print(f"{'pipeline':<24} {'script s':>8} {'walk s':>7} {'check s':>8} {'extra s':>8} {'in-process walk s':>18}")
    walked = {}
    for name in names:
        path = os.path.join(PIPELINES, name)
        name = os.path.basename(name)
        script_s, _ = _seconds([sys.executable, "-c", UP_TO_TRAIN, path], opts.repeat)
        walks, checks = [], []
        for _ in range(opts.repeat):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "ftdoctor", "check", path, "--json"], capture_output=True, text=True, check=False
            )
            checks.append(time.perf_counter() - t0)
            walks.append(json.loads(proc.stdout)["duration_s"])
        walk_s, check_s = statistics.median(walks), statistics.median(checks)
        inproc = ""
        if opts.in_process:
            from ftdoctor.process.parent import check_script

            inproc = f"{statistics.median(check_script(path, in_process=True).report.duration_s for _ in range(opts.repeat)):18.2f}"
        walked[name] = walk_s
        print(f"{name:<24} {script_s:8.2f} {walk_s:7.2f} {check_s:8.2f} {check_s - script_s - walk_s:8.2f} {inproc}")
    if opts.llm:
        lora, full = walked.values()
        print(f"walk of the LoRA run / walk of the full fine-tune: {lora / full:.2f}")
    base, _ = _seconds([sys.executable, "-c", "pass"], opts.repeat)
    for label, args in (
        ("ftdoctor --help", ["-m", "ftdoctor", "--help"]),
        ("ftdoctor explain FTD601", ["-m", "ftdoctor", "explain", "FTD601"]),
    ):
        t, _ = _seconds([sys.executable, *args], opts.repeat)
        print(f"{label:<24} {t:6.3f} s   ({t / base:.1f}x a bare `python -c pass` at {base:.3f} s)")


if __name__ == "__main__":
    main()
