"""Run the development corpora of scripts written outside this project (../shared/corpus: the official
transformers examples, and TRL/PEFT scripts) under ftdoctor and print each runner's summary line.

Every script there is correct and trains, so every error finding, ok:false or exit 2 is a false alarm or a crash
of ftdoctor. Extra arguments go to both runners (e.g. --skip-plain, --keep DIR, --only ...).

    python benchmarks/corpus.py [hf-examples|trl-peft|all] [RUNNER ARGS...]
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "corpus")


def main(argv: list[str]) -> int:
    which = argv[0] if argv and not argv[0].startswith("-") else "all"
    extra = argv[1:] if argv and not argv[0].startswith("-") else argv
    names = ["hf-examples", "trl-peft"] if which == "all" else [which]
    summaries, worst = [], 0
    for name in names:
        runner = os.path.join(CORPUS, name, "run.py")
        if not os.path.isfile(runner):
            print(f"corpus {name}: {runner} not found", file=sys.stderr)
            worst = 2
            continue
        proc = subprocess.run([sys.executable, runner, *extra], text=True, capture_output=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr[-4000:])
        lines = [line for line in proc.stdout.splitlines() if line.startswith(f"{name}:")]
        summaries.append(lines[-1] if lines else f"{name}: no summary (exit {proc.returncode})")
        worst = max(worst, proc.returncode)
    print("\n" + "\n".join(summaries))
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
