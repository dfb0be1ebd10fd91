"""The style matrix through the `ftdoctor check` command: every pipeline (correct, or with one bug) in every coding
style, each in its own child process as a user runs it. Prints the detection table and the summary line.

    python benchmarks/style_matrix.py [--only-styles a,b] [--only-pipelines x,y]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import style_matrix as sm  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only-styles", default="")
    p.add_argument("--only-pipelines", default="")
    opts = p.parse_args()
    styles = [s for s in sm.STYLES if not opts.only_styles or s in opts.only_styles.split(",")]
    pipelines = [x for x in sm.PIPELINES if not opts.only_pipelines or x in opts.only_pipelines.split(",")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    work = tempfile.mkdtemp(prefix="ftdoctor-styles-")
    table: dict[tuple[str, str], str] = {}
    pairs = found = clean = missed = false = harness = 0
    for style in styles:
        for name in pipelines:
            if not sm.applies(name, style):
                continue
            path = os.path.join(work, sm.filename(name, style))
            with open(path, "w") as fh:
                fh.write(sm.render(name, style))
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "ftdoctor", "check", path, "--json"],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
            )
            try:
                report = json.loads(proc.stdout)
            except ValueError:
                report = {}
            pairs += 1
            expected = sm.PIPELINES[name][1]
            errors = [
                (s["stage"], f["code"])
                for s in report.get("stages", [])
                for f in s["findings"]
                if f["severity"] == "error"
            ]
            if proc.returncode not in (0, 1) or "stages" not in report:
                harness += 1
                cell = "HARNESS"
            elif expected is None:
                ok = report["ok"] and not errors
                clean += ok
                false += not ok
                cell = "clean" if ok else "FALSE " + ",".join(c for _, c in errors)
            else:
                hit = expected in errors
                found += hit
                missed += not hit
                cell = expected[1] if hit else "MISSED"
            table[(name, style)] = f"{cell} ({time.perf_counter() - t0:.0f}s)"
            print(f"{style:<14} {name:<20} {table[(name, style)]}", flush=True)
    print()
    print("| pipeline | " + " | ".join(styles) + " |")
    print("|---|" + "---|" * len(styles))
    for name in pipelines:
        print(f"| {name} | " + " | ".join(table.get((name, s), "n/a") for s in styles) + " |")
    bugs = found + missed
    print(
        f"\nstyle-matrix: pairs {pairs} bugs found {found}/{bugs} correct clean {clean}/{clean + false} "
        f"harness {harness}"
    )
    return 0 if not (missed or false or harness) else 1


if __name__ == "__main__":
    sys.exit(main())
