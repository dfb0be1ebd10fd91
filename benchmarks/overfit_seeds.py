"""Seeded runs of the overfit stage on every correct pipeline: the verdict must never be an error.

Each run seeds the script (torch.manual_seed, and every set_seed the script or the Trainer calls is shifted by the
run's seed, so model heads and data order differ) and the overfit stage itself (its trials' seed). A correct
pipeline that gets FTD701/FTD702 in any run is a false error; FTD703 (too low) is counted too.

    python benchmarks/overfit_seeds.py [--seeds 50] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def correct_pipelines(only=None) -> list[str]:
    from ftdoctor import references

    paths = sorted(glob.glob(os.path.join(ROOT, "fixtures", "pipelines", "*_fixed.py")))
    paths += [references.get(t).path for t in references.TASKS]
    if only:
        paths = [p for p in paths if any(o in os.path.basename(p) for o in only)]
    return paths


def run(path: str, seed: int):
    import torch
    import transformers
    import transformers.trainer_utils as tu

    from ftdoctor.process.parent import check_script

    real = tu.set_seed

    def shifted(value, *args, **kwargs):
        return real(value + seed, *args, **kwargs)

    torch.manual_seed(seed)
    saved = (transformers.set_seed, tu.set_seed)
    transformers.set_seed = tu.set_seed = shifted
    try:
        return check_script(path, [], stages=["overfit"], in_process=True, timeout=600, options={"overfit_seed": seed})
    finally:
        transformers.set_seed, tu.set_seed = saved


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--only", default="")
    opts = p.parse_args()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp())
    os.chdir(tempfile.mkdtemp())
    print(f"{'pipeline':<40} {'runs':>4} {'false errors':>12} {'FTD703':>6} {'FTD704':>6} {'s/run':>6}  outcomes")
    total_runs = total_false = 0
    for path in correct_pipelines([o for o in opts.only.split(",") if o]):
        counts: collections.Counter = collections.Counter()
        false, t0 = 0, time.perf_counter()
        for seed in range(opts.seeds):
            result = run(path, seed)
            st = result.report.stage("overfit") if result.report else None
            codes = [f.code for f in st.findings] if st else []
            # A correct pipeline must come out clean at every stage the overfit stage needs, not only there.
            errors = [
                f"{s.stage}:{f.code}"
                for s in (result.report.stages if result.report else [])
                for f in s.findings
                if f.severity == "error"
            ]
            false += bool(errors)
            counts.update(codes or [st.status if st else "no-report"])
            if errors or (st is not None and st.status == "skip"):
                print(
                    f"  seed {seed}: {', '.join(errors) or 'no error'}; overfit {st.status if st else '-'}"
                    f"{': ' + st.reason if st is not None and st.reason else ''}",
                    flush=True,
                )
        per = (time.perf_counter() - t0) / opts.seeds
        total_runs += opts.seeds
        total_false += false
        print(
            f"{os.path.basename(path):<40} {opts.seeds:4d} {false:12d} {counts['FTD703']:6d} {counts['FTD704']:6d} "
            f"{per:6.2f}  {dict(counts)}",
            flush=True,
        )
    print(f"overfit-seeds: runs {total_runs} false-errors {total_false}")


if __name__ == "__main__":
    sys.exit(main())
