"""Run ftdoctor on real fine-tuning scripts and notebooks written outside this project, offline, on a stand-in hub.

usage: python run.py [--only NAME,...] [--keep DIR] [--skip-plain] [--timeout S] [--mirrors DIR] [--list]
                     [--ftdoctor CMD] [--steps N] [--nice N] [--pin]

MANIFEST.json names each entry: a public repository, a commit, a path, the sha256 of the file's original bytes,
the arguments to run it with, its task and style, and (rarely) a one-line patch where a removed library API stops
it at once. The scripts are not part of this repository: run.py reads each one from a fetched git snapshot
(`git --git-dir=MIRRORS/OWNER+NAME/repo show COMMIT:PATH`; MIRRORS is /work/.mirror unless --mirrors or
FTD_REALWORLD_MIRRORS says otherwise) into a scratch folder outside the repository, checks its checksum, and names
the repositories to fetch when some are missing.

build_hub.py (run with this Python) builds the stand-in hub once per work dir: tiny random-init models, tokenizers
of the real format, small datasets and local metric modules under the ids the scripts name. Each entry then runs
twice, each time from fresh files and a fresh copy of the hub: plainly, to its first optimizer steps (plain.py;
an entry counts only if that works), then as `python -m ftdoctor check SCRIPT --offline --json -- ARGS`.
Standard library only. The last line printed is:

    realworld: correct ok A/B false-errors C warnings W harness D

A: exit 0 and ok true with no error finding; B: entries whose plain run worked; C: an error finding or ok false;
W: a warning finding; D: ftdoctor exited with neither 0 nor 1, or printed no JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "MANIFEST.json")
NAME = "realworld"
NEEDED = (
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "accelerate",
    "evaluate",
    "sklearn",
    "seqeval",
    "sacrebleu",
    "rouge_score",
    "nltk",
    "trl",
    "peft",
)
SEV = {"info": 0, "warning": 1, "error": 2}


# ------------------------------------------------------------------------------------------------ manifest
def load_manifest(path=MANIFEST):
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    entries = data["entries"]
    names = [e["name"] for e in entries]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit(f"{NAME}: duplicate entry names in the manifest: {', '.join(sorted(dup))}")
    return data, entries


def mirror_dir(mirrors, entry):
    repo = entry.get("mirror") or entry["repo"]
    return os.path.join(mirrors, repo.replace("/", "+"), "repo"), repo


def git_show(git_dir, commit, path):
    p = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], capture_output=True)
    if p.returncode != 0:
        raise LookupError(p.stderr.decode(errors="replace").strip()[:300])
    return p.stdout


def has_commit(git_dir, commit):
    p = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    return p.returncode == 0


def files_of(entry):
    """(path in the repository, sha256 or None) of the script and of each support file it imports or reads."""
    out = [(entry["path"], entry.get("sha256"))]
    for s in entry.get("support", []):
        out.append((s["path"], s.get("sha256")))
    return out


def check_mirrors(entries, mirrors):
    """Repositories (as `fetch` takes them) missing or lacking an entry's commit."""
    missing = {}
    for e in entries:
        git_dir, repo = mirror_dir(mirrors, e)
        if not os.path.isdir(git_dir):
            missing.setdefault(repo, "not fetched")
        elif not has_commit(git_dir, e["commit"]):
            missing.setdefault(repo, f"has no commit {e['commit'][:12]} (fetch a newer snapshot)")
    return missing


def apply_patches(text, entry):
    lines = text.split("\n")
    for p in entry.get("patches", []):
        i = p["line"] - 1
        if not 0 <= i < len(lines) or lines[i] != p["old"]:
            raise ValueError(
                f"patch for line {p['line']} does not match the file ({lines[i][:80] if 0 <= i < len(lines) else 'no such line'!r})"
            )
        lines[i] = p["new"]
    return "\n".join(lines)


def patch_notebook(raw, entry):
    """Patch a notebook's code: a patch's line numbers count the lines of the code cells joined in order."""
    nb = json.loads(raw)
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    joined = []
    spans = []
    for c in cells:
        src = c.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        lines = text.split("\n")
        spans.append((len(joined), len(lines)))
        joined += lines
    patched = apply_patches("\n".join(joined), entry).split("\n")
    for c, (start, n) in zip(cells, spans):
        text = "\n".join(patched[start : start + n])
        c["source"] = text.splitlines(True)
    return json.dumps(nb, indent=1).encode()


def extract(entry, mirrors, dest):
    """Write the entry's files under DEST (their repository paths), checked and patched; return the script path."""
    git_dir, _ = mirror_dir(mirrors, entry)
    for path, digest in files_of(entry):
        raw = git_show(git_dir, entry["commit"], path)
        got = hashlib.sha256(raw).hexdigest()
        if digest and got != digest:
            raise ValueError(f"{path} at {entry['commit'][:12]} has sha256 {got}, the manifest says {digest}")
        if path == entry["path"] and entry.get("patches"):
            raw = patch_notebook(raw, entry) if path.endswith(".ipynb") else apply_patches(raw.decode(), entry).encode()
        target = os.path.join(dest, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(raw)
    return os.path.join(dest, entry["path"])


# ------------------------------------------------------------------------------------------------ running
def env_for(hf_home, entry, root):
    paths = [os.path.join(HERE, "standin")] + [os.path.join(root, p) for p in entry.get("pythonpath", [])]
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=hf_home,
        TOKENIZERS_PARALLELISM="false",
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
        FTD_REALWORLD_STANDIN="1",
        WANDB_MODE="disabled",
        HF_HUB_DISABLE_TELEMETRY="1",
        NLTK_DATA=os.path.join(hf_home, "nltk_data"),
        CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        PYTHONPATH=os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    )
    env.update(entry.get("env", {}))
    return env


def run_cmd(cmd, cwd, env, timeout, nice):
    """Run in its own process group (killed as a whole on timeout). Returns (rc or None, stdout, stderr, wall)."""
    if nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(nice)] + cmd
    t0 = time.time()
    p = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc, err = None, (err or "") + f"\n[run.py] killed after {timeout}s"
    return rc, out or "", err or "", time.time() - t0


def link_tree(src, dst):
    """A copy of the built hub whose files are hard links (cheap; runs only add files), or copies across devices."""

    def link(s, d):
        # nltk refuses to open a file with more than one link (CWE-59 check): its data is copied
        if os.sep + "nltk_data" + os.sep in s:
            shutil.copy2(s, d)
            return
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link)


def fresh(work, entry, mirrors, hub, tag):
    """A fresh folder for one run of ENTRY: its files, a copy of the hub; returns (root, script, cwd, hf_home)."""
    root = os.path.join(work, "runs", f"{entry['name']}.{tag}")
    shutil.rmtree(root, ignore_errors=True)
    src = os.path.join(root, "src")
    script = extract(entry, mirrors, src)
    hf_home = os.path.join(root, "hf_home")
    link_tree(hub, hf_home)
    cwd = os.path.join(src, entry["cwd"]) if "cwd" in entry else os.path.dirname(script)
    os.makedirs(cwd, exist_ok=True)
    return src, script, cwd, hf_home


def parse_report(stdout):
    text = stdout.strip()
    for candidate in (text, text[text.find("{") :] if "{" in text else ""):
        try:
            rep = json.loads(candidate)
            if isinstance(rep, dict) and "stages" in rep:
                return rep
        except ValueError:
            pass
    return None


def findings(rep):
    return [
        {"stage": s.get("stage"), "code": f.get("code"), "severity": f.get("severity"), "title": f.get("title")}
        for s in rep.get("stages", []) or []
        for f in s.get("findings", []) or []
    ]


def ftdoctor_command(spec, script, args):
    if spec is None:
        return [sys.executable, "-m", "ftdoctor", "check", script, "--offline", "--json", "--", *args]
    parts = shlex.split(spec)
    if any("{script}" in p for p in parts):
        cmd = []
        for p in parts:
            cmd += args if p == "{args}" else [p.replace("{script}", script)]
        return cmd
    return parts + ["check", script, "--offline", "--json", "--", *args]


def last_line(text, default="(no output)"):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:240] if lines else default


def plain_steps(stdout):
    for line in reversed(stdout.splitlines()):
        if line.startswith("[plain] optimizer steps"):
            return int(line.split()[3])
    return None


def run_entry(entry, work, mirrors, hub, a):
    name, res = entry["name"], os.path.join(work, "results")
    row = {"name": name, "plain": "skipped", "entry": entry}
    if not a.skip_plain:
        src, script, cwd, hf_home = fresh(work, entry, mirrors, hub, "plain")
        steps = entry.get("steps", a.steps)
        rc, out, err, wall = run_cmd(
            [sys.executable, os.path.join(HERE, "plain.py"), str(steps), script, *entry.get("args", [])],
            cwd,
            env_for(hf_home, entry, src),
            a.timeout,
            a.nice,
        )
        with open(os.path.join(res, f"{name}.plain.log"), "w") as fh:
            fh.write(out + "\n--- stderr ---\n" + err)
        done = plain_steps(out)
        row["plain_wall"] = wall
        if rc == 0 and done:
            row["plain"] = "ok"
        else:
            row["plain"] = "script broken"
            row["plain_error"] = "no optimizer step" if rc == 0 else last_line(err)
        if not a.keep_runs:
            shutil.rmtree(os.path.dirname(src), ignore_errors=True)
        if row["plain"] != "ok":
            print(f"[{NAME}] {name:44s} plain=BROKEN ({row['plain_error'][:150]})", flush=True)
            return row
        if a.plain_only:
            print(f"[{NAME}] {name:44s} plain=ok ({done} steps, {wall:.0f}s)", flush=True)
            return row
    src, script, cwd, hf_home = fresh(work, entry, mirrors, hub, "ftd")
    cmd = ftdoctor_command(a.ftdoctor, script, entry.get("args", []))
    rc, out, err, wall = run_cmd(cmd, cwd, env_for(hf_home, entry, src), a.timeout, a.nice)
    with open(os.path.join(res, f"{name}.ftd.json"), "w") as fh:
        fh.write(out)
    with open(os.path.join(res, f"{name}.ftd.err"), "w") as fh:
        fh.write(err)
    if not a.keep_runs:
        shutil.rmtree(os.path.dirname(src), ignore_errors=True)
    rep = parse_report(out)
    found = findings(rep) if rep else []
    row.update(
        rc=rc,
        report=rep is not None,
        ok=rep.get("ok") if rep else None,
        wall=wall,
        found=found,
        walk=rep.get("duration_s") if rep else None,
        harness=rep is None or rc not in (0, 1),
        errors=any(SEV.get(f["severity"], 2) >= 2 for f in found),
        warnings=any(f["severity"] == "warning" for f in found),
    )
    if row["harness"]:
        row["harness_note"] = last_line(err)
    shown = ", ".join(f"{f['code']}/{f['severity']}/{f['stage']}" for f in found if SEV.get(f["severity"], 2) >= 1)
    print(
        f"[{NAME}] {name:44s} plain={row['plain']:7s} ftdoctor exit={rc} ok={row['ok']} wall={wall:.0f}s {shown}",
        flush=True,
    )
    return row


def summary(rows):
    print()
    print("| entry | task | style | plain | ftdoctor exit | ok | findings (code/severity/stage) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        e = r["entry"]
        if r["plain"] == "script broken":
            print(f"| {r['name']} | {e['task']} | {e['style']} | broken: {r['plain_error'][:100]} | - | - | - |")
            continue
        fs = (
            "; ".join(
                f"{f['code']}/{f['severity']}/{f['stage']}: {f['title']}"
                for f in r["found"]
                if SEV.get(f["severity"], 2) >= 1
            )
            or "none"
        )
        if r["harness"]:
            fs += f"; HARNESS: {r['harness_note']}"
        print(f"| {r['name']} | {e['task']} | {e['style']} | {r['plain']} | {r['rc']} | {r['ok']} | {fs} |")
    print()
    for r in rows:
        if r["plain"] == "script broken":
            print(f"script broken: {r['name']} ({r.get('plain_error')}); left out of the counts")
    runs = [r for r in rows if r["plain"] != "script broken"]
    buggy = [r for r in runs if r["entry"].get("bug")]
    counted = [r for r in runs if not r["entry"].get("bug")]
    _counts(counted)
    good = sum(1 for r in counted if r["rc"] == 0 and r["ok"] is True and not r["errors"])
    false_errors = sum(1 for r in counted if r["report"] and (r["ok"] is False or r["errors"]))
    warnings = sum(1 for r in counted if r["warnings"])
    harness = sum(1 for r in counted if r["harness"])
    if buggy:
        # Scripts with a verified defect (the entry's `bug` says what and why): ftdoctor should name it.
        named = [r for r in buggy if any(f["code"] == r["entry"]["bug"]["code"] for f in r["found"])]
        for r in buggy:
            hit = "named" if r in named else "NOT named"
            print(f"verified bug: {r['name']}: {r['entry']['bug']['code']} {hit}; left out of the counts")
        print(f"{NAME}: verified bugs named {len(named)}/{len(buggy)}")
    print(f"{NAME}: correct ok {good}/{len(counted)} false-errors {false_errors} warnings {warnings} harness {harness}")


def _counts(rows):
    """The counted entries by source, task and style: how many, how many clean, how many with a warning."""
    for key in ("source", "task", "style"):
        groups = {}
        for r in rows:
            g = groups.setdefault(r["entry"].get(key, "?"), [0, 0, 0])
            g[0] += 1
            g[1] += r["rc"] == 0 and r["ok"] is True and not r["errors"]
            g[2] += bool(r["warnings"])
        print(f"\n| {key} | entries | ok | with a warning |\n|---|---|---|---|")
        for name, (n, ok, warned) in sorted(groups.items()):
            print(f"| {name} | {n} | {ok} | {warned} |")
    print()


# ------------------------------------------------------------------------------------------------ main
def check_environment():
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"{NAME}: this Python ({sys.executable}) lacks {', '.join(missing)}; run run.py with the Python of "
            "the environment under test (pip install -e '.[test,llm]').",
            file=sys.stderr,
        )
        sys.exit(2)
    code = (
        "import torch, transformers, datasets, trl, peft, accelerate; print(f'torch {torch.__version__}, "
        "transformers {transformers.__version__}, datasets {datasets.__version__}, trl {trl.__version__}, "
        "peft {peft.__version__}, accelerate {accelerate.__version__}')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"{NAME}: importing the libraries failed in {sys.executable}:\n{p.stderr[-2000:]}", file=sys.stderr)
        sys.exit(2)
    print(f"[{NAME}] python {sys.version.split()[0]}, {p.stdout.strip()}", flush=True)


def build_hub(work, nice):
    hub = os.path.join(work, "hub")
    rc, out, err, wall = run_cmd(
        [sys.executable, os.path.join(HERE, "build_hub.py"), hub],
        HERE,
        dict(os.environ, TOKENIZERS_PARALLELISM="false"),
        3600,
        nice,
    )
    print(f"[{NAME}] build_hub.py: exit {rc} ({wall:.0f}s) {last_line(out, '')}", flush=True)
    if rc != 0:
        print(out[-2000:] + err[-4000:], file=sys.stderr)
        print(f"{NAME}: building the stand-in hub failed", file=sys.stderr)
        sys.exit(2)
    return hub


def pin(entries, mirrors):
    """Fill in missing sha256 fields from the mirrors (a maintenance aid; existing checksums are never changed)."""
    data, _ = load_manifest()
    by_name = {e["name"]: e for e in data["entries"]}
    wanted = {e["name"] for e in entries}
    changed = 0
    for name in wanted:
        e = by_name[name]
        git_dir, _ = mirror_dir(mirrors, e)
        if not e.get("sha256"):
            e["sha256"] = hashlib.sha256(git_show(git_dir, e["commit"], e["path"])).hexdigest()
            changed += 1
        for s in e.get("support", []):
            if not s.get("sha256"):
                s["sha256"] = hashlib.sha256(git_show(git_dir, e["commit"], s["path"])).hexdigest()
                changed += 1
    write_manifest(data)
    print(f"{NAME}: {changed} checksums filled in")


def write_manifest(data):
    """One entry per line block, stable key order, so that diffs stay readable."""
    entries = data["entries"]
    head = {k: v for k, v in data.items() if k != "entries"}
    text = json.dumps(head, indent=1)[:-2] + ',\n "entries": [\n'
    text += ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in entries)
    text += "\n ]\n}\n"
    json.loads(text)
    with open(MANIFEST, "w", encoding="utf-8") as fh:
        fh.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only",
        metavar="NAME,...",
        help="run only these entries (names, or task:/style:/source: selectors, e.g. style:loop)",
    )
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (hub, raw reports in DIR/results)")
    ap.add_argument("--keep-runs", action="store_true", help="keep each run's folder under DIR/runs too")
    ap.add_argument("--skip-plain", action="store_true", help="do not run the scripts plainly first")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per run (default 900)")
    ap.add_argument("--plain-only", action="store_true", help="only the plain runs: check that the entries work")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps of the plain run (default 3)")
    ap.add_argument("--nice", type=int, default=10, help="niceness of the runs (default 10; 0 = off)")
    ap.add_argument(
        "--mirrors",
        default=os.environ.get("FTD_REALWORLD_MIRRORS", "/work/.mirror"),
        help="folder of fetched snapshots, OWNER+NAME/repo (default /work/.mirror or $FTD_REALWORLD_MIRRORS)",
    )
    ap.add_argument("--ftdoctor", metavar="CMD", help="ftdoctor command prefix or template with {script} {args}")
    ap.add_argument("--list", action="store_true", help="list the entries and exit")
    ap.add_argument("--pin", action="store_true", help="fill in missing checksums from the mirrors and exit")
    ap.add_argument("--extract", metavar="DIR", help="write the selected entries' files under DIR and exit")
    a = ap.parse_args()
    _, entries = load_manifest()
    if a.only:
        wanted = [w.strip() for w in a.only.split(",") if w.strip()]
        picked = []
        for e in entries:
            for w in wanted:
                key, _, value = w.partition(":")
                if (value and str(e.get(key)) == value) or w == e["name"]:
                    picked.append(e)
                    break
        unknown = [w for w in wanted if ":" not in w and w not in {e["name"] for e in entries}]
        if unknown:
            print(f"{NAME}: unknown entries {', '.join(unknown)}; --list shows them", file=sys.stderr)
            return 2
        entries = picked
    if a.list:
        for e in entries:
            print(
                f"{e['name']:44s} {e['task']:22s} {e['style']:16s} {e['repo']}@{e['commit'][:10]}:{e['path']} "
                f"{' '.join(shlex.quote(x) for x in e.get('args', []))}"
            )
        print(f"{len(entries)} entries")
        return 0
    missing = check_mirrors(entries, a.mirrors)
    if missing:
        print(
            f"{NAME}: fetch these repositories into {a.mirrors} first (snapshots as OWNER+NAME/repo):", file=sys.stderr
        )
        for repo, why in sorted(missing.items()):
            print(f"  github:{repo}    ({why})", file=sys.stderr)
        return 2
    if a.pin:
        pin(entries, a.mirrors)
        return 0
    if a.extract:
        for e in entries:
            print(extract(e, a.mirrors, os.path.join(a.extract, e["name"])))
        return 0
    check_environment()
    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="ftdoctor-realworld-")
    os.makedirs(os.path.join(work, "results"), exist_ok=True)
    print(f"[{NAME}] work dir {work}; {len(entries)} entries", flush=True)
    try:
        hub = build_hub(work, a.nice)
        rows = []
        for e in entries:
            try:
                rows.append(run_entry(e, work, a.mirrors, hub, a))
            except (LookupError, ValueError, OSError) as exc:
                print(f"[{NAME}] {e['name']}: cannot set up the entry: {exc}", flush=True)
                rows.append({"name": e["name"], "entry": e, "plain": "script broken", "plain_error": f"setup: {exc}"})
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if a.plain_only:
        broken = [r for r in rows if r["plain"] != "ok"]
        for r in broken:
            print(f"script broken: {r['name']} ({r.get('plain_error')})")
        print(f"{NAME}: plain runs ok {len(rows) - len(broken)}/{len(rows)}")
        return 0
    summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
