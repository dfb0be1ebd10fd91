"""The layering the code must keep: one folder per layer with imports running one way (.importlinter, checked
by `lint-imports` in CI), no import cycle counting every import, and checks that judge through the targets."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import source_copy

ROOT = Path(__file__).resolve().parents[2]
CHECKS = sorted(p for p in (ROOT / "checks").rglob("*.py") if p.name != "__init__.py")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "checks":
        parts = ["ftdoctor", "checks", *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(s) for s in ast.walk(sub))
    return skip


def import_graph() -> dict[str, set[str]]:
    """Every import between modules of ftdoctor/ and checks/: module level and inside functions, relative or
    absolute, ``TYPE_CHECKING`` blocks aside."""
    files = {_module(p): p for d in ("ftdoctor", "checks") for p in (ROOT / d).rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        out: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                out.update(filter(None, (resolve(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    target = full if full in files else resolve(base)
                    if target:
                        out.add(target)
        out.discard(mod)
        graph[mod] = out
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_is_in_an_import_cycle():
    graph = import_graph()
    assert len(graph) > 50  # the whole package and the checks were read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_ftdoctor_has_one_folder_per_layer_named_in_the_contract():
    contract = (ROOT / ".importlinter").read_text()
    layers = re.search(r"layers =\n((?:    .+\n)+)", contract).group(1)
    named = {name.strip() for line in layers.splitlines() for name in line.split("|")}
    folders = {p.name for p in (ROOT / "ftdoctor").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - {"fixtures"} <= named, "a folder of ftdoctor/ that no layer of the contract names"
    modules = {p.stem for p in (ROOT / "ftdoctor").glob("*.py")} - {"__init__", "__main__"}
    assert modules <= named, "a loose module at the top of ftdoctor/ (every module belongs to a layer)"


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_import_contract_holds(tmp_path):
    """`lint-imports` on an installed copy (checks/ becomes ftdoctor.checks only once installed)."""
    if shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source_copy(tmp_path)),
        ],
        check=True,
        capture_output=True,
    )
    proc = subprocess.run(
        ["lint-imports", "--no-cache", "--no-logo", str(ROOT / ".importlinter")],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_checks_never_touch_trainer_internals_or_copy_models():
    for path in CHECKS:
        text = path.read_text()
        assert not re.search(r"\btrainer\._\w+", text, re.I), f"{path.name} reaches into the Trainer's internals"
        assert "deepcopy" not in text, f"{path.name} copies a model itself (ask the target for a work model)"
        for name in (
            "_remove_unused_columns",
            "_signature_columns",
            "create_optimizer",
            "_prepare_inputs",
            "prediction_step",
            "compute_loss(",
            "Trainer.compute_loss",
        ):
            assert name not in text, f"{path.name} uses {name}: the target provides it"


def test_targets_layer_has_one_module_per_kind_of_pipeline():
    targets = {p.stem for p in (ROOT / "ftdoctor" / "targets").glob("*.py")}
    assert {"base", "trainer", "loop"} <= targets
