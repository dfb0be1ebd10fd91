"""Run ftdoctor on the corpus of real bug reports (manifest.toml): each bug script and its fixed twin.

usage: python benchmarks/bugs/run.py [--only NAME,...] [--jobs N] [--keep DIR] [--plain] [--timeout S] [--list]

Every case reproduces, offline on the project's tiny fixtures, a bug from a public thread (address in the manifest),
with a fixed twin that applies the thread's fix. Standard library only; run it with the Python of the environment
under test: each script is checked with `sys.executable -m ftdoctor check SCRIPT --offline --json`.

A bug is
  named        when an expected code of the manifest appears as an error or warning finding;
  wrong-cause  when not named and an error finding has a code that is neither expected nor a relay;
  relayed      when not named and its only error findings are relays (RELAYS below: the rules that restate an
               exception of the user's code without naming its cause);
  missed       otherwise (no error finding: a silent bug went unnoticed).
A fixed twin with an error finding counts in clean-false-errors; an exit code other than 0/1, or no JSON, of a bug
or a twin counts in harness.

--plain runs the scripts themselves instead (no ftdoctor): a crashing bug must exit non-zero with the exception the
thread reports (the manifest's `raises`), a silent bug and every twin must exit 0.

The last line printed is exactly:
  bugs: named N/M relayed R wrong-cause W clean-false-errors F harness H
(with --plain:  bugs-plain: as-reported N/M twins-run T/M)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import tomllib
except ImportError:  # Python 3.10: tomli, which the project installs there
    import tomli as tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "manifest.toml")

# Rules that relay an exception of the pipeline's own code without naming a cause: the harness's user-code-error
# (FTD900), the setup stage's generic "script raised" (FTD005), and each stage's "X raised" (collator FTD302,
# forward FTD405, backward/optimizer FTD505, compute_metrics FTD602), whose text is the exception's.
RELAYS = frozenset({"FTD900", "FTD005", "FTD302", "FTD405", "FTD505", "FTD602"})

KINDS = ("crashing", "silent")
TASKS = (
    "sequence-classification",
    "token-classification",
    "question-answering",
    "summarization",
    "translation",
    "causal-lm",
    "masked-lm",
    "multiple-choice",
)
STYLES = ("trainer", "seq2seq-trainer", "trl-sft", "trl-dpo", "peft", "loop", "accelerate", "notebook")


def load_manifest(path: str = MANIFEST) -> list[dict]:
    with open(path, "rb") as f:
        cases = tomllib.load(f)["case"]
    names = set()
    for case in cases:
        missing = [
            k
            for k in ("name", "thread", "library", "kind", "task", "style", "cause", "expected", "bug", "fixed")
            if k not in case
        ]
        if missing:
            raise SystemExit(f"manifest: case {case.get('name', '?')} lacks {', '.join(missing)}")
        if case["name"] in names:
            raise SystemExit(f"manifest: case {case['name']} appears twice")
        names.add(case["name"])
        for key, allowed in (("kind", KINDS), ("task", TASKS), ("style", STYLES)):
            if case[key] not in allowed:
                raise SystemExit(f"manifest: case {case['name']}: {key} {case[key]!r} is not one of {allowed}")
        for key in ("bug", "fixed"):
            if not os.path.isfile(os.path.join(HERE, case[key])):
                raise SystemExit(f"manifest: case {case['name']}: {case[key]} not found")
    return cases


def expected_codes(case: dict) -> list[str]:
    """The manifest's expected codes; "none yet" (no rule for the cause) is an empty list."""
    value = case["expected"]
    return [] if isinstance(value, str) else list(value)


def env_for(work: str) -> dict[str, str]:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=os.path.join(work, "hf_home"),
        TOKENIZERS_PARALLELISM="false",
        PYTHONDONTWRITEBYTECODE="1",
        WANDB_DISABLED="true",
    )
    env.pop("PYTHONPATH", None)
    return env


def run_cmd(cmd: list[str], cwd: str, env: dict, timeout: int, nice: int):
    """Run in its own process group (killed as a whole on timeout). Returns (rc or None, stdout, stderr, seconds)."""
    if nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(nice), *cmd]
    start = time.time()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc, err = None, (err or "") + f"\n[run.py] killed after {timeout}s"
    return rc, out or "", err or "", time.time() - start


def parse_report(stdout: str):
    text = stdout.strip()
    for candidate in (text, text[text.find("{") :] if "{" in text else ""):
        try:
            report = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(report, dict) and "stages" in report:
            return report
    return None


def findings(report: dict) -> list[tuple[str, str]]:
    """(code, severity) of every finding of the report."""
    return [
        (f.get("code"), f.get("severity")) for stage in report.get("stages") or [] for f in stage.get("findings") or []
    ]


def judge_bug(report, rc, expected: list[str]) -> str:
    if report is None or rc not in (0, 1):
        return "harness"
    found = findings(report)
    if any(code in expected and sev in ("error", "warning") for code, sev in found):
        return "named"
    errors = {code for code, sev in found if sev == "error"}
    if errors - RELAYS:
        return "wrong-cause"
    if errors:
        return "relayed"
    return "missed"


def judge_twin(report, rc) -> str:
    if report is None or rc not in (0, 1):
        return "harness"
    return "false-error" if any(sev == "error" for _, sev in findings(report)) else "clean"


def describe(report) -> str:
    """Codes of the error and warning findings, warnings marked with a trailing w."""
    if report is None:
        return "no report"
    found = [code + ("" if sev == "error" else "w") for code, sev in findings(report) if sev in ("error", "warning")]
    return ",".join(dict.fromkeys(found)) or "-"


def check_one(case: dict, which: str, work: str, env: dict, args) -> dict:
    script = os.path.join(HERE, case[which])
    run_dir = os.path.join(work, "runs", f"{case['name']}.{which}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    if args.plain:
        cmd = [sys.executable, script]
    else:
        cmd = [sys.executable, "-m", "ftdoctor", "check", script, "--offline", "--json"]
    rc, out, err, seconds = run_cmd(cmd, run_dir, env, args.timeout, args.nice)
    result = {"rc": rc, "seconds": seconds, "stdout": out, "stderr": err}
    if not args.plain:
        result["report"] = parse_report(out)
    if args.keep:
        stem = os.path.join(work, "results", f"{case['name']}.{which}")
        with open(stem + ".out", "w") as f:
            f.write(out)
        with open(stem + ".err", "w") as f:
            f.write(err)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def run_case(case: dict, work: str, env: dict, args) -> dict:
    bug = check_one(case, "bug", work, env, args)
    twin = check_one(case, "fixed", work, env, args)
    if args.plain:
        raises = case.get("raises")
        if case["kind"] == "crashing":
            as_reported = bug["rc"] not in (0, None) and (not raises or raises in bug["stderr"])
        else:
            as_reported = bug["rc"] == 0
        line = (
            f"{case['name']:44s} bug {'as reported' if as_reported else 'NOT as reported'} (exit {bug['rc']}, "
            f"{bug['seconds']:.0f}s)  twin {'runs' if twin['rc'] == 0 else 'FAILS'} (exit {twin['rc']}, "
            f"{twin['seconds']:.0f}s)"
        )
        if not as_reported or twin["rc"] != 0:
            tail = (bug["stderr"] if not as_reported else twin["stderr"]).strip().splitlines()[-3:]
            line += "\n    " + "\n    ".join(tail)
        return {"name": case["name"], "as_reported": as_reported, "twin_runs": twin["rc"] == 0, "line": line}
    expected = expected_codes(case)
    verdict = judge_bug(bug["report"], bug["rc"], expected)
    twin_verdict = judge_twin(twin["report"], twin["rc"])
    want = ",".join(expected) or "none yet"
    line = (
        f"{case['name']:44s} {case['kind']:8s} bug {verdict:11s} [{describe(bug['report'])}] want {want}  "
        f"twin {twin_verdict} [{describe(twin['report'])}]  ({bug['seconds']:.0f}s+{twin['seconds']:.0f}s)"
    )
    return {
        "name": case["name"],
        "verdict": verdict,
        "twin": twin_verdict,
        "harness": int(verdict == "harness") + int(twin_verdict == "harness"),
        "line": line,
    }


def build_fixtures(env: dict, work: str, nice: int) -> None:
    """Build the fixtures once up front, so no case pays for (or races over) the first build."""
    rc, out, err, seconds = run_cmd([sys.executable, "-m", "ftdoctor.fixtures"], work, env, 3600, nice)
    if rc != 0:
        sys.stderr.write(out[-2000:] + err[-4000:])
        raise SystemExit("bugs: building the fixtures failed")
    print(f"[bugs] fixtures ready ({seconds:.0f}s)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", metavar="NAME,...", help="run only these cases")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep each run's output in DIR/results")
    ap.add_argument("--plain", action="store_true", help="run the scripts themselves, not ftdoctor")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per run (default 900)")
    ap.add_argument("--nice", type=int, default=10, help="niceness of the runs (default 10; 0 = off)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    cases = load_manifest()
    if args.list:
        for case in cases:
            print(f"{case['name']:44s} {case['kind']:8s} {case['task']:24s} {case['style']:15s} {case['thread']}")
        return 0
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {c["name"] for c in cases})
        if unknown:
            print(f"bugs: unknown case(s) {', '.join(unknown)}; --list shows them", file=sys.stderr)
            return 2
        cases = [c for c in cases if c["name"] in names]
    work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="ftdoctor-bugs-")
    os.makedirs(os.path.join(work, "results"), exist_ok=True)
    env = env_for(work)
    try:
        build_fixtures(env, work, args.nice)
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(run_case, case, work, env, args) for case in cases]
            rows = []
            for future in futures:
                row = future.result()
                print(row["line"], flush=True)
                rows.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    if args.plain:
        print(
            f"bugs-plain: as-reported {sum(r['as_reported'] for r in rows)}/{len(rows)} "
            f"twins-run {sum(r['twin_runs'] for r in rows)}/{len(rows)}"
        )
        return 0

    def count(v):
        return sum(r["verdict"] == v for r in rows)

    print(
        f"bugs: named {count('named')}/{len(rows)} relayed {count('relayed')} wrong-cause {count('wrong-cause')} "
        f"clean-false-errors {sum(r['twin'] == 'false-error' for r in rows)} harness {sum(r['harness'] for r in rows)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
