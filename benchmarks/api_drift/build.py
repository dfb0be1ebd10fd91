"""Builds checks/api_drift_table.json: the arguments, imports, methods and enum members that transformers,
datasets, evaluate, TRL, PEFT and accelerate removed or renamed across their releases, read from the libraries'
own records (see README.md beside this file).

    python benchmarks/api_drift/build.py [--mirror /work/.mirror] [--out checks/api_drift_table.json]

Each library's source is read at a series of releases (git tags, or the commits that bumped the version where a
mirror has no tags) and in the installed package. A name present in some release and absent from the installed
package is an entry; the release after the last one that had it is its version. Its replacement is read from the
deprecation code of the releases that still had it (``warnings.warn("`x` is deprecated, use `y` instead")``,
``deprecate_kwarg("x", new_name="y")``), from a constructor argument that moved to the trainer's config class,
or from a migration guide's bullet list. supplement.toml holds the few records that exist only in prose.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import inspect
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# What to read for each library: its mirror, the package folder inside it, how to pick releases, the classes whose
# arguments / methods / members are tracked, the functions whose arguments are tracked, and the modules whose
# exported names are tracked. Classes are found by their `class Name` line wherever they live in a release.
LIBRARIES = {
    "transformers": {
        "mirror": "quic-meetkuma+transformers",
        "root": "src/transformers",
        "releases": "version-bumps",  # the fork has no tags
        "arguments": ["TrainingArguments", "Seq2SeqTrainingArguments", "Trainer", "Seq2SeqTrainer"],
        "methods": ["Trainer", "PreTrainedTokenizerBase", "BatchEncoding"],
        "signatures": ["Trainer", "Seq2SeqTrainer"],  # methods users override and the library calls with keywords
        "enums": ["IntervalStrategy", "SchedulerType"],
        "functions": [],
        "exports": ["transformers"],
        "guide": "MIGRATION_GUIDE_V5.md",
    },
    "trl": {
        "mirror": "huggingface+trl",
        "root": "trl",
        "releases": "tags",
        "arguments": "*Config|*Trainer",
        "methods": [],
        "signatures": [],
        "enums": [],
        "functions": [],
        "exports": ["trl"],
    },
    "peft": {
        "mirror": "huggingface+peft",
        "root": "src/peft",
        "releases": "tags",
        "arguments": ["LoraConfig", "PeftConfig", "PromptTuningConfig", "PrefixTuningConfig", "IA3Config"],
        "methods": ["PeftModel"],
        "signatures": [],
        "enums": ["TaskType", "PeftType"],
        "functions": ["get_peft_model", "prepare_model_for_kbit_training"],
        "exports": ["peft"],
    },
    "accelerate": {
        "mirror": "huggingface+accelerate",
        "root": "src/accelerate",
        "releases": "tags",
        "arguments": ["Accelerator"],
        "methods": ["Accelerator"],
        "signatures": [],
        "enums": ["DistributedType", "PrecisionType"],
        "functions": [],
        "exports": ["accelerate", "accelerate.utils"],
    },
    "datasets": {
        "mirror": "huggingface+datasets",
        "root": "src/datasets",
        "releases": "tags",
        "arguments": [],
        "methods": ["Dataset", "DatasetDict"],
        "signatures": [],
        "enums": [],
        "functions": ["load_dataset"],
        "exports": ["datasets"],
    },
    "evaluate": {
        "mirror": "huggingface+evaluate",
        "root": "src/evaluate",
        "releases": "tags",
        "arguments": [],
        "methods": [],
        "signatures": [],
        "enums": [],
        "functions": ["load"],
        "exports": ["evaluate"],
    },
}
# Releases before these are not read: older code is rarely met, and reading every release costs minutes.
OLDEST = {"transformers": (4, 0), "trl": (0, 7), "peft": (0, 2), "accelerate": (0, 10), "datasets": (1, 18),
          "evaluate": (0, 1)}  # fmt: skip

# Words that make a string a deprecation message, and the phrases that introduce the replacement in one.
_DEPRECATION = re.compile(
    r"deprecat|renamed|(?:will be|has been|have been|was|were) removed|no longer (?:supported|accepted|used|needed)|"
    r"in favou?r of",
    re.I,
)
_REPLACEMENT = re.compile(
    r"(?:\buse|\bUse|\busing|in favou?r of|renamed (?:to|as)|replaced (?:by|with)|instead,? (?:use|pass)|"
    r"moved to|switch to|please pass|pass)\s+(?:the\s+)?(?:new\s+)?(?:argument\s+|parameter\s+)?"
    r"(?:[`'\"]([A-Za-z_][\w.]*)(?:\(\))?[`'\"]|([A-Za-z_]\w*(?:[._]\w+)+|[a-z]+[A-Z]\w*|[A-Z]\w*[a-z][A-Z]\w*)(?:\(\))?\b)"
)


# ---- reading a release ------------------------------------------------------------------------------------------


class GitRelease:
    """The library's source at one commit of its mirror."""

    def __init__(self, gitdir: Path, commit: str, root: str, label: str, repo: str):
        self.gitdir, self.commit, self.root, self.label, self.repo = gitdir, commit, root, label, repo

    def _git(self, *args: str) -> str:
        out = subprocess.run(["git", f"--git-dir={self.gitdir}", *args], capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else ""

    def read(self, path: str) -> str | None:
        cache = self.__dict__.setdefault("_read", {})
        if path not in cache:
            cache[path] = self._git("show", f"{self.commit}:{path}") or None
        return cache[path]

    def definitions(self, classes: list[str], functions: list[str]) -> dict[str, list[str]]:
        """Name -> the files with its ``class Name`` / ``def name(`` line, found with one ``git grep``."""
        alternatives = [rf"class {c}\b" for c in classes] + [rf"def {f}\(" for f in functions]
        if not alternatives:
            return {}
        out = self._git("grep", "-E", f"^({'|'.join(alternatives)})", self.commit, "--", f"{self.root}/*.py")
        return _definitions(
            (line.split(":", 2)[1], line.split(":", 2)[2]) for line in out.splitlines() if line.count(":") >= 2
        )

    def grep(self, word: str) -> list[str]:
        cache = self.__dict__.setdefault("_grep", {})
        if word not in cache:
            self.prefetch([word])
        return cache[word]

    def prefetch(self, words: list[str]) -> None:
        """Which files name each word, for many words with one ``git grep``."""
        cache = self.__dict__.setdefault("_grep", {})
        words = sorted({w for w in words if w not in cache})
        for start in range(0, len(words), 200):
            chunk = words[start : start + 200]
            patterns = [x for w in chunk for x in ("-e", w)]
            out = self._git("grep", "-n", "-w", "-F", *patterns, self.commit, "--", f"{self.root}/*.py")
            found: dict[str, set[str]] = {w: set() for w in chunk}
            for line in out.splitlines():
                parts = line.split(":", 3)
                if len(parts) < 4:
                    continue
                for w in re.findall(r"\w+", parts[3]):
                    if w in found:
                        found[w].add(parts[1])
            cache.update({w: sorted(paths) for w, paths in found.items()})

    def where(self, path: str, line: int) -> str:
        return f"github.com/{self.repo}/blob/{self.commit[:12]}/{path}#L{line}"


class InstalledRelease:
    """The installed package's source."""

    def __init__(self, package_dir: Path, label: str):
        self.dir, self.label, self.root = package_dir, label, package_dir.name
        self._texts = {
            str(p.relative_to(package_dir.parent)): p.read_text(encoding="utf-8", errors="replace")
            for p in sorted(package_dir.rglob("*.py"))
        }

    def read(self, path: str) -> str | None:
        return self._texts.get(path)

    def definitions(self, classes: list[str], functions: list[str]) -> dict[str, list[str]]:
        rx = re.compile(r"^(?:class \w+\b|def \w+\().*$", re.M)
        return _definitions((path, m.group(0)) for path, text in self._texts.items() for m in rx.finditer(text))

    def grep(self, word: str) -> list[str]:
        rx = re.compile(rf"\b{re.escape(word)}\b")
        return [path for path, text in self._texts.items() if rx.search(text)]

    def prefetch(self, words: list[str]) -> None:
        pass

    def where(self, path: str, line: int) -> str:
        return f"{path}#L{line} (installed {self.label})"


def _definitions(lines) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path, text in lines:
        m = re.match(r"(?:class|def) (\w+)", text)
        if m and path not in found.setdefault(m.group(1), []):
            found[m.group(1)].append(path)
    return found


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def git_releases(library: str, spec: dict, mirror: Path) -> list[GitRelease]:
    gitdir = mirror / spec["mirror"] / "repo"
    repo = spec["mirror"].replace("+", "/")
    run = lambda *a: subprocess.run(["git", f"--git-dir={gitdir}", *a], capture_output=True, text=True).stdout  # noqa: E731
    oldest = OLDEST[library]
    if spec["releases"] == "tags":
        tags = [t for t in run("tag").split() if re.fullmatch(r"v?\d+\.\d+(\.\d+)?", t)]
        by_minor: dict[tuple[int, int], str] = {}
        for tag in sorted(tags, key=_version_key):
            key = _version_key(tag)[:2]
            if key >= oldest:
                by_minor[key] = tag  # the last patch release of each minor
        out = []
        for key, tag in sorted(by_minor.items()):
            commit = run("rev-list", "-n1", tag).strip()
            out.append(GitRelease(gitdir, commit, spec["root"], f"{key[0]}.{key[1]}", repo))
        return out
    # Commits that set the version to X.Y.0.dev0 hold the code of release X.(Y-1) (the major's first dev commit
    # holds the previous major's last release); the newest commit is read as the release before its dev version.
    bumps = []
    for line in run("log", "--format=%H", "-G", r'version="[0-9]+\.[0-9]+\.0\.dev0', "--", "setup.py").split():
        text = run("show", f"{line}:setup.py")
        m = re.search(r'version="(\d+)\.(\d+)\.\d+\.dev0', text)
        if m:
            bumps.append(((int(m[1]), int(m[2])), line))
    seen, ordered = set(), []
    for (major, minor), commit in sorted(bumps):
        if (major, minor) in seen:
            continue
        seen.add((major, minor))
        ordered.append(((major, minor), commit))
    head = run("rev-parse", "HEAD").strip()
    out = []
    for i, (_version, commit) in enumerate(ordered):
        previous = ordered[i - 1][0] if i else None
        label = f"{previous[0]}.{previous[1]}" if previous else None
        if label and _version_key(label)[:2] >= oldest:
            out.append(GitRelease(gitdir, commit, spec["root"], label, repo))
    if ordered and head != ordered[-1][1]:
        major, minor = ordered[-1][0]
        out.append(GitRelease(gitdir, head, spec["root"], f"{major}.{minor}", repo))
    return out


# ---- facts of one release -------------------------------------------------------------------------------------


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    return [n for n in names if n not in ("self", "cls")]


def _has_var_keyword(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return fn.args.kwarg is not None


def class_facts(text: str, name: str) -> dict | None:
    """The arguments (dataclass fields and ``__init__`` parameters), methods with their parameters, and plain
    class-level constants (enum members) of class ``name`` in one module's source; None where it is not there."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            fields, init, methods, members = [], None, {}, []
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if not item.target.id.startswith("_"):
                        fields.append(item.target.id)
                elif isinstance(item, ast.Assign):
                    members += [t.id for t in item.targets if isinstance(t, ast.Name) and t.id.isupper()]
                elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    if item.name == "__init__":
                        init = _params(item)
                    elif not item.name.startswith("_"):
                        methods[item.name] = _params(item)
            return {
                "arguments": fields + (init or []),
                "methods": methods,
                "members": members,
                "bases": [ast.unparse(b) for b in node.bases],
            }
    return None


def function_params(text: str, name: str) -> list[str] | None:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return _params(node)
    return None


def exported_names(text: str) -> set[str]:
    """Names a package's ``__init__`` exports: its imports, the strings of a lazy ``_import_structure`` and
    ``__all__``."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            names.update(a.asname or a.name for a in node.names if a.name != "*")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.Call | ast.Dict):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.isidentifier():
                    names.add(sub.value)
    return {n for n in names if not n.startswith("_")}


def deprecation_notes(text: str, name: str) -> list[tuple[int, str, str | None]]:
    """(line, message, replacement) for each deprecation record in a module's source about ``name``: a message
    (the string arguments of ``warnings.warn``, ``logger.warning``, an exception...) that names it or is raised in
    its own body, joined as written with ``{...}`` for formatted parts; and a deprecation helper called with its
    name and the new one (``deprecate_kwarg("old", new_name="new")``, ``DeprecatedFieldDescriptor("OLD", "NEW")``)."""
    out = []
    word = re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)")
    calls, defs = _records(text)
    own = [(a, b) for n, a, b in defs if n == name]
    for line, helper, values, kw, message in calls:
        if helper:
            if values and values[0] == name:
                later = [v for v in values[1:] if v.isidentifier()]
                new = kw.get("new_name") or (later[0] if later else None)
                version = kw.get("version") or next((v for v in values[1:] if re.fullmatch(r"v?[\d.]+", v)), None)
                msg = f"`{name}` is deprecated" + (f" (removal planned for {version})" if version else "")
                msg += f"; use `{new}` instead." if new else "."
                out.append((line, msg, new))
                continue
        inside = any(a <= line <= b for a, b in own)
        if not message or not (inside or word.search(message)):
            continue
        out.append((line, message[:400], _replacement_in(message, name)))
    return sorted(out)


@functools.lru_cache(maxsize=4096)
def _records(text: str) -> tuple[list, list]:
    """A module's calls that may record a deprecation, read once per distinct source: (line, is a deprecation
    helper, its string arguments, its constant keywords, the message its strings make when that message reads as
    a deprecation), and its class and function definitions with their line spans."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return [], []
    calls, defs = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            defs.append((node.name, start, node.end_lineno or node.lineno))
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func).split(".")[-1]
        helper = "deprecat" in func.lower()
        values = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
        message = " ".join(_string_of(a) for a in [*node.args, *(k.value for k in node.keywords)])
        message = re.sub(r"\s+", " ", message).strip()
        if not helper and not _DEPRECATION.search(message):
            message = ""  # a deprecation helper's message needs no deprecation word: the helper is one
        if helper or message:
            calls.append((node.lineno, helper, values, kw, message))
    return calls, defs


def _string_of(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}" for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _string_of(node.left) + (_string_of(node.right) if isinstance(node.op, ast.Add) else "")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.endswith(("Warning", "Error")):
        return " ".join(_string_of(a) for a in node.args)
    return ""


def _replacement_in(message: str, old: str) -> str | None:
    for m in _REPLACEMENT.finditer(message):
        candidate = m.group(1) or m.group(2)
        if candidate != old and candidate.split(".")[-1] != old and not candidate.startswith("{"):
            return candidate
    return None


# ---- entries ----------------------------------------------------------------------------------------------------


def removals(history: list[tuple[str, set[str]]]) -> dict[str, tuple[int, str]]:
    """For names seen in some release and absent from the last one: (index of the last release that had it, the
    label of the release after it)."""
    *older, (_, current) = history
    out = {}
    for i, (_label, names) in enumerate(older):
        for n in names - current:
            out[n] = (i, history[i + 1][0])
    return out


def additions(history: list[tuple[str, dict[str, list[str]]]]) -> dict[tuple[str, str], str]:
    """(method, parameter) -> the release where a method that exists in every later release gained a parameter."""
    out = {}
    for (_a, before), (label, after) in itertools.pairwise(history):
        for method, params in after.items():
            if method in before:
                for p in params:
                    if p not in before[method] and (method, p) not in out:
                        out[(method, p)] = label
    last = history[-1][1] if history else {}
    return {k: v for k, v in out.items() if k[0] in last and k[1] in last[k[0]]}


def build_library(library: str, spec: dict, mirror: Path) -> list[dict]:
    releases: list = git_releases(library, spec, mirror)
    module = importlib.import_module(library)
    installed = InstalledRelease(Path(module.__file__).parent, module.__version__)
    releases.append(installed)
    entries: list[dict] = []
    pending: list[tuple] = []  # entries to complete with the deprecation code of the releases that had the name
    tracked = spec["arguments"]
    if isinstance(tracked, str):
        # Every Config and Trainer class of the installed package, and those of older releases under the same names.
        suffixes = tuple(s.lstrip("*") for s in tracked.split("|"))
        tracked = sorted({n for n in dir(module) if n.endswith(suffixes) and inspect.isclass(getattr(module, n, None))})
    classes = sorted(set(tracked) | set(spec["methods"]) | set(spec["enums"]) | set(spec["signatures"]))
    facts: dict[str, list[tuple[GitRelease | InstalledRelease, dict | None]]] = {c: [] for c in classes}
    funcs: dict[str, list[tuple[object, list[str] | None]]] = {f: [] for f in spec["functions"]}
    exports: dict[str, list[tuple[object, set[str]]]] = {m: [] for m in spec["exports"]}
    for release in releases:
        print(f"  {library} {release.label}", file=sys.stderr)
        defined = release.definitions(classes, list(funcs))
        for cls in classes:
            found = None
            for path in defined.get(cls, []):
                found = class_facts(release.read(path) or "", cls)
                if found:
                    found["path"] = path
                    break
            facts[cls].append((release, found))
        for fn in funcs:
            found = None
            for path in defined.get(fn, []):
                params = function_params(release.read(path) or "", fn)
                if params is not None:
                    found = (params, path)
                    break
            funcs[fn].append((release, found))
        for mod in exports:
            path = f"{release.root}/{'/'.join(mod.split('.')[1:])}/__init__.py".replace("//", "/")
            exports[mod].append((release, exported_names(release.read(path) or "")))

    def present(rows, key):
        return [(r.label, set(f[key]) if f else set()) for r, f in rows]

    for cls in tracked:
        rows = [(r, f) for r, f in facts[cls] if f is not None]
        if len(rows) < 2 or facts[cls][-1][1] is None:
            continue
        live = _live_arguments(module, cls)
        for name, (i, version) in sorted(removals(present(rows, "arguments")).items()):
            if live is not None and name not in live:
                pending.append((library, "argument", cls, name, version, rows, i, module))
    for cls in spec["methods"]:
        rows = [(r, f) for r, f in facts[cls] if f is not None]
        if len(rows) < 2 or facts[cls][-1][1] is None:
            continue
        live_cls = _resolve(module, cls)
        for name, (i, version) in sorted(removals(present(rows, "methods")).items()):
            if live_cls is not None and not hasattr(live_cls, name):
                pending.append((library, "method", cls, name, version, rows, i, None))
    for cls in spec["enums"]:
        rows = [(r, f) for r, f in facts[cls] if f is not None]
        live_cls = _resolve(module, cls)
        if len(rows) < 2 or live_cls is None:
            continue
        for name, (i, version) in sorted(removals(present(rows, "members")).items()):
            if not hasattr(live_cls, name):
                pending.append((library, "attribute", cls, name, version, rows, i, None))
    for cls in spec["signatures"]:
        rows = [(r, f) for r, f in facts[cls] if f is not None]
        live_cls = _resolve(module, cls)
        for (method, param), version in sorted(additions([(r.label, f["methods"]) for r, f in rows]).items()):
            fn = getattr(live_cls, method, None)
            if fn is None or not passes(installed, rows[-1][1]["path"], method, param, _params_of(fn)):
                continue  # a parameter callers may pass is no drift for an override the library calls without it
            release, found = rows[-1]
            signature = f"def {method}{inspect.signature(fn)}"
            entries.append(
                {
                    "library": library,
                    "kind": "signature",
                    "owner": cls,
                    "name": method,
                    "argument": param,
                    "replacement": signature,
                    "note": f"{library} {version} passes `{param}=` to `{method}`: an override must accept it.",
                    "version": version,
                    "source": f"{release.where(found['path'], 1)} (def {method})",
                }
            )
    for fn in spec["functions"]:
        rows = [(r, {"arguments": p[0], "path": p[1]}) for r, p in funcs[fn] if p is not None]
        live_fn = _resolve(module, fn)
        if len(rows) < 2 or live_fn is None:
            continue
        live = _signature_names(live_fn)
        for name, (i, version) in sorted(removals(present(rows, "arguments")).items()):
            if live is not None and name not in live:
                pending.append((library, "argument", fn, name, version, rows, i, None))
    for mod, rows in exports.items():
        live_mod = importlib.import_module(mod)
        history = [(r.label, names) for r, names in rows]
        for name, (i, version) in sorted(removals(history).items()):
            if hasattr(live_mod, name) or _is_model_family(library, name):
                continue
            pending.append((library, "import", mod, name, version, [(r, None) for r, _ in rows], i, None))
    words: dict[int, tuple[object, set[str]]] = {}
    for _lib, _kind, _owner, name, _version, rows, last, _module in pending:
        for back in [*range(last, max(-1, last - 4), -1), *range(last + 1, min(len(rows) - 1, last + 3))]:
            words.setdefault(id(rows[back][0]), (rows[back][0], set()))[1].add(name)
    for release, names in words.values():
        release.prefetch(sorted(names))
    entries += [_entry(*p[:7], module=p[7]) for p in pending]
    return _follow_moves(entries)


def _follow_moves(entries: list[dict]) -> list[dict]:
    """A trainer's argument that moved to its config class and was renamed there since (SFTTrainer(max_seq_length)
    -> SFTConfig(max_seq_length) -> SFTConfig(max_length)) takes the config's replacement."""
    renamed = {
        (e["owner"], e["name"]): e
        for e in entries
        if e["kind"] == "argument" and e["replacement"] and "." not in e["replacement"]
    }
    out = []
    for e in entries:
        if e["kind"] == "argument" and e["replacement"] is None and e["owner"].endswith("Trainer"):
            config = e["owner"][: -len("Trainer")] + "Config"
            later = renamed.get((config, e["name"]))
            if later is not None:
                e = {
                    **e,
                    "replacement": f"{config}.{later['replacement']}",
                    "note": f"`{e['owner']}` no longer takes `{e['name']}`; `{config}` took it, and then renamed it "
                    f"`{later['replacement']}` ({later['note']})",
                    "source": later["source"],
                }
        out.append(e)
    return out


def passes(release: InstalledRelease, path: str, method: str, param: str, params: list[str]) -> bool:
    """Whether the class's own module calls ``self.method(...)`` with ``param``, by keyword or by position."""
    position = params.index(param) if param in params else None
    for call in _self_calls(release, path, method):
        if any(k.arg == param for k in call.keywords):
            return True
        if position is not None and len(call.args) > position:
            return True
    return False


_CALLS: dict[tuple[int, str, str], list[ast.Call]] = {}


def _self_calls(release: InstalledRelease, path: str, method: str) -> list[ast.Call]:
    key = (id(release), path, method)
    if key not in _CALLS:
        calls = []
        needle = f"self.{method}("
        for text in [release.read(path) or ""]:
            if needle not in text:
                continue
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            calls += [
                node
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == method
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "self"
            ]
        _CALLS[key] = calls
    return _CALLS[key]


def _params_of(fn) -> list[str]:
    try:
        return [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        return []


def _is_model_family(library: str, name: str) -> bool:
    # transformers 5 dropped its TensorFlow and Flax classes (thousands of names): one entry of supplement.toml says
    # so, instead of one per class.
    return library == "transformers" and name.startswith(("TF", "Flax"))


def _checked(module, kind: str, owner: str, replacement: str) -> str | None:
    """The replacement a message names, where the installed library has it (for a trainer's argument, its config
    class may be where it went); None where the message's word is prose, not a name the library has."""
    if kind == "argument":
        live = _live_arguments(module, owner.split(".")[0]) if "." not in owner else None
        if "." in owner:
            cls = _resolve(module, owner.split(".")[0])
            live = _signature_names(getattr(cls, owner.split(".")[1], None)) if cls is not None else None
        if live is not None and replacement in live:
            return replacement
        if owner.endswith("Trainer"):
            config = owner[: -len("Trainer")] + "Config"
            if replacement in (_live_arguments(module, config) or set()):
                return f"{config}.{replacement}"
        return None
    if kind == "attribute":
        cls = _resolve(module, owner)
        return replacement if cls is not None and hasattr(cls, replacement) else None
    if kind == "import":
        root, _, rest = replacement.partition(".")
        try:
            target = importlib.import_module(root)
        except ImportError:
            target = None
        if target is None and not rest:
            target, rest = module, replacement
        return replacement if target is not None and (not rest or _resolve(target, rest) is not None) else None
    return replacement


def _resolve(module, dotted: str):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _signature_names(fn) -> set[str] | None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None  # a name it does not list is still accepted: passing it raises nothing to diagnose
    return {p.name for p in params}


def _live_arguments(module, cls: str) -> set[str] | None:
    obj = _resolve(module, cls)
    if obj is None:
        return None
    if not isinstance(obj, type):
        return _signature_names(obj)  # a method (`Trainer.train`) or a function
    if dataclasses.is_dataclass(obj):
        return {f.name for f in dataclasses.fields(obj) if f.init} | (_signature_names(obj.__init__) or set())
    return _signature_names(obj.__init__)


def _entry(library, kind, owner, name, version, rows, last, module=None) -> dict:
    """One removed name, with its replacement read from the deprecation code of the releases that had it."""
    release = rows[last][0]
    note = replacement = source = None
    # The releases that still had it, newest first, then the two after: a helper such as
    # `deprecate_kwarg("tokenizer", new_name="processing_class")` keeps the old name working there.
    for back in [*range(last, max(-1, last - 4), -1), *range(last + 1, min(len(rows) - 1, last + 3))]:
        rel = rows[back][0]
        # A name met in very many files (a common word) is looked for where it is defined or exported only.
        paths = rel.grep(name)
        own_file = (rows[back][1] or {}).get("path")
        if kind == "argument" and own_file:
            paths = [p for p in paths if p == own_file]  # another class's message about a same-named argument
        if len(paths) > 40:
            paths = [p for p in paths if p.endswith("__init__.py") or owner.split(".")[0].lower() in p.lower()][:40]
        for path in paths:
            for line, message, new in deprecation_notes(rel.read(path) or "", name):
                if new or note is None:
                    note, replacement, source = message, new, rel.where(path, line)
                if new:
                    break
            if replacement:
                break
        if replacement:
            break
    if replacement is not None and module is not None:
        replacement = _checked(module, kind, owner, replacement)
    if replacement is None and kind == "argument" and owner.endswith("Trainer") and module is not None:
        # A trainer argument that moved to the trainer's own config class (SFTTrainer(max_seq_length) -> SFTConfig).
        config = owner[: -len("Trainer")] + "Config"
        cfg = _live_arguments(module, config)
        if cfg and name in cfg:
            replacement = f"{config}.{name}"
            note = f"`{owner}` no longer takes `{name}`; `{config}` does."
            source = source or f"{rows[-1][0].where(rows[-1][1]['path'], 1)} (class {config})"
    if source is None:
        found = rows[last][1]
        path = found.get("path") if found else None
        source = release.where(path, 1) if path else release.where(f"{release.root}/__init__.py", 1)
        source += f" (last release with `{name}`)"
    return {
        "library": library,
        "kind": kind,
        "owner": owner,
        "name": name,
        "replacement": replacement,
        "note": note or f"removed in {library} {version} with no replacement named in its code",
        "version": version,
        "source": source,
    }


# ---- documents ------------------------------------------------------------------------------------------------

_BULLET = re.compile(
    r"^\s*[-*]\s+(?P<names>(?:`[^`]+`(?:\s*(?:,|and|or)\s*)?)+)"
    r"(?:\s+in\s+(?:`?(?P<method>\w+)\(\)`?|initialization))?\s*(?:->|- >|→|:)\s*(?P<rest>.+)$"
)


def guide_entries(text: str, library: str, version: str, source: str) -> list[dict]:
    """Entries from a migration guide's bullet lists: ``- `old` -> `new` `` and ``- `old()`: Removed. Use `new`
    instead.``, the owner taken from the nearest heading that names a class in backticks (or a tokenizer section)."""
    out, owner = [], None
    for lineno, line in enumerate(text.splitlines(), 1):
        heading = re.match(r"^#+\s+(.*)", line)
        if heading:
            named = re.findall(r"`(\w+)`", heading.group(1))
            title = heading.group(1).lower()
            owner = named[0] if named else ("PreTrainedTokenizerBase" if "tokeniz" in title else None)
            continue
        bold = re.match(r"^\*\*(.+?)\*\*", line)
        if bold and owner is None and "method" in bold.group(1).lower():
            owner = "PreTrainedTokenizerBase"
        m = _BULLET.match(line)
        if not m or owner is None:
            continue
        rest = m.group("rest").strip()
        new = re.match(r"`([\w.]+)(?:\(\))?`", rest)
        use = re.search(r"(?:^|[.;]\s*)[Uu]se `([\w.]+)(?:\(\))?`(?: with `(\w+)` parameter)?", rest)
        replacement = new.group(1) if new else (use.group(2) or use.group(1) if use else None)
        for raw in re.findall(r"`([^`]+)`", m.group("names")):
            name = raw.strip().rstrip("()")
            if not name.isidentifier():
                continue
            kind = "method" if raw.endswith("()") else "argument"
            out.append(
                {
                    "library": library,
                    "kind": kind,
                    "owner": f"{owner}.{m.group('method')}" if m.group("method") else owner,
                    "name": name,
                    "replacement": replacement,
                    "note": re.sub(r"\s+", " ", rest)[:300],
                    "version": version,
                    "source": f"{source}#L{lineno}",
                }
            )
    return out


def supplement(path: Path) -> list[dict]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [{"replacement": None, **e} for e in data.get("entry", [])]


def validate(entries: list[dict]) -> list[dict]:
    """Each replacement read from a message kept only where the installed library has it (a message's word may be
    prose: "use PyTorch's AdamW"); the note still says what to do."""
    out = []
    for e in entries:
        new = e["replacement"]
        if new and e["kind"] in ("argument", "import", "attribute"):
            module = importlib.import_module(e["library"])
            if e["kind"] == "argument" and "." in new and new.split(".")[0][:1].isupper():
                config, field = new.rsplit(".", 1)
                new = new if field in (_live_arguments(module, config) or set()) else None
            else:
                # The first name the message gives that the library has ("Use the PyTorch implementation
                # torch.optim.AdamW instead": PyTorch is prose, torch.optim.AdamW a name).
                named = [new, *re.findall(r"`([A-Za-z_][\w.]*)`|([A-Za-z_]\w*(?:\.\w+)+)", e["note"])]
                named = [n if isinstance(n, str) else (n[0] or n[1]) for n in named]
                named = [n.rstrip(".") for n in named if n and n.rstrip(".") != e["name"]]
                new = next((n for n in named if _checked(module, e["kind"], e["owner"], n)), None)
            e = {**e, "replacement": new}
        out.append(e)
    return out


def merge(entries: list[dict]) -> list[dict]:
    """One entry per (library, kind, owner, name[, argument]); a record with a replacement, or a longer note, wins
    over one without, and code wins over documents at equal footing (it is read first)."""
    best: dict[tuple, dict] = {}
    for e in entries:
        key = (e["library"], e["kind"], e["owner"], e["name"], e.get("argument"))
        old = best.get(key)
        if old is None or (old["replacement"] is None and e["replacement"] is not None):
            if old is not None and e["replacement"] is not None and "no replacement named" not in old["note"]:
                e = {**e, "note": e["note"]}
            best[key] = e
        elif old["replacement"] is None and e["replacement"] is None and "no replacement named" in old["note"]:
            best[key] = {**e, "version": old["version"]}
    return sorted(
        best.values(), key=lambda e: (e["library"], e["kind"], e["owner"], e["name"], e.get("argument") or "")
    )


def build(mirror: Path, libraries: list[str]) -> list[dict]:
    entries: list[dict] = []
    for library in libraries:
        spec = LIBRARIES[library]
        print(f"{library}: reading releases", file=sys.stderr)
        entries += build_library(library, spec, mirror)
        guide = spec.get("guide")
        if guide:
            gitdir = mirror / spec["mirror"] / "repo"
            head = subprocess.run(["git", f"--git-dir={gitdir}", "rev-parse", "HEAD"], capture_output=True, text=True)
            text = subprocess.run(
                ["git", f"--git-dir={gitdir}", "show", f"HEAD:{guide}"], capture_output=True, text=True
            )
            repo = spec["mirror"].replace("+", "/")
            source = f"github.com/{repo}/blob/{head.stdout.strip()[:12]}/{guide}"
            found = guide_entries(text.stdout, library, "5.0", source)
            entries += [e for e in found if _missing_now(library, e)]
    entries += [e for e in supplement(HERE / "supplement.toml") if e["library"] in libraries]
    return merge(validate(entries))


def _missing_now(library: str, entry: dict) -> bool:
    """Whether the installed library really lacks what a document says was removed."""
    module = importlib.import_module(library)
    if entry["kind"] == "method":
        cls = _resolve(module, entry["owner"])
        return cls is not None and not hasattr(cls, entry["name"])
    live = _live_arguments(module, entry["owner"])
    return live is not None and entry["name"] not in live


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=REPO / "checks" / "api_drift_table.json")
    parser.add_argument("--only", default=",".join(LIBRARIES), help="comma-separated libraries")
    parser.add_argument(
        "--combine", nargs="+", type=Path, help="merge tables built separately (--only) into --out instead of reading"
    )
    args = parser.parse_args(argv)
    if args.combine:
        tables = [json.loads(p.read_text(encoding="utf-8")) for p in args.combine]
        entries = merge(validate([{"replacement": None, **e} for t in tables for e in t["entries"]]))
        versions = {lib: v for t in tables for lib, v in t["installed"].items()}
        versions = {lib: versions[lib] for lib in LIBRARIES if lib in versions}
    else:
        entries = build(args.mirror, args.only.split(","))
        versions = {lib: importlib.import_module(lib).__version__ for lib in args.only.split(",")}
    table = {"generated_by": "benchmarks/api_drift/build.py", "installed": versions, "entries": entries}
    args.out.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(entries)} entries -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
