"""Time the walk on the bundled MNLI pipelines and the CLI's light commands.

Prints the walk's own time (total minus the script's time up to trainer.train()) and, as ratios, the CLI's
--help / explain against a bare `python -c pass` run the same way. Targets (issue 2): walk <= 3 s with overfit
on 2 CPU cores; --help and explain < 0.5 s.

    python benchmarks/walk_time.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINES = os.path.join(os.path.dirname(HERE), "fixtures", "pipelines")


def _cli_seconds(args, repeat):
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=False)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    opts = p.parse_args()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp())
    from ftdoctor.api import check_script
    from ftdoctor.fixtures import build_all

    build_all()
    os.chdir(tempfile.mkdtemp())
    print(f"{'pipeline':<26} {'script s':>9} {'walk s':>7} {'walk/script':>12}  stages (s)")
    for name in ("course_mnli_fixed.py", "course_mnli_broken.py"):
        walks, scripts, stage_times = [], [], None
        for _ in range(opts.repeat):
            t0 = time.perf_counter()
            result = check_script(os.path.join(PIPELINES, name))
            total = time.perf_counter() - t0
            scripts.append(result.capture.script_seconds)
            walks.append(total - result.capture.script_seconds)
            stage_times = {s.stage: round(s.duration_s, 2) for s in result.report.stages}
        w, s = statistics.median(walks), statistics.median(scripts)
        print(f"{name:<26} {s:9.2f} {w:7.2f} {w / s:12.2f}  {stage_times}")
    base = _cli_seconds(["-c", "pass"], opts.repeat)
    for label, args in (("ftdoctor --help", ["-m", "ftdoctor", "--help"]),
                        ("ftdoctor explain FTD601", ["-m", "ftdoctor", "explain", "FTD601"])):
        t = _cli_seconds(args, opts.repeat)
        print(f"{label:<26} {t:6.3f} s   ({t / base:.1f}x a bare `python -c pass` at {base:.3f} s)")


if __name__ == "__main__":
    main()
