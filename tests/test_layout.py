"""The layering the code must keep: checks judge through the targets layer and the SDK; the engine has no cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = sorted(p for p in (ROOT / "checks").glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            out.add(base)
            out.update(f"{base}.{a.name}" if base.endswith(".") is False else f"{base}{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_checks_never_touch_trainer_internals_or_copy_models():
    for path in CHECKS:
        text = path.read_text()
        assert not re.search(r"\btrainer\._\w+", text, re.I), f"{path.name} reaches into the Trainer's internals"
        assert "deepcopy" not in text, f"{path.name} copies a model itself (ask the target for a work model)"
        for name in ("_remove_unused_columns", "_signature_columns", "create_optimizer", "_prepare_inputs",
                     "prediction_step", "compute_loss(", "Trainer.compute_loss"):
            assert name not in text, f"{path.name} uses {name}: the target provides it"


def test_checks_import_the_sdk_not_the_engine():
    engine = ("ftdoctor.walk", "ftdoctor.registry", "ftdoctor.findings", "ftdoctor.pipeline", "ftdoctor.api")
    for path in CHECKS:
        imported = _imports(path)
        bad = [m for m in imported if m.startswith(engine)]
        assert not bad, f"{path.name} imports {bad}; checks import ftdoctor.sdk"
        # checks do not use another stage's module as a library (shared judging lives in _failures)
        siblings = [m for m in imported if m.startswith(".") and not m.startswith("._failures")]
        assert not siblings, f"{path.name} imports {siblings}"


def test_engine_has_no_import_cycle():
    """pipeline -> walk -> report -> render -> pipeline was a cycle; data flows one way now."""
    pkg = ROOT / "ftdoctor"

    def deps(name):
        return {m.lstrip(".").split(".")[0] for m in _imports(pkg / f"{name}.py") if m.startswith(".")}

    assert "render" not in deps("report")
    assert "pipeline" not in deps("walk") and "pipeline" not in deps("render")
    assert "walk" not in deps("pipeline")


def test_targets_layer_has_one_module_per_kind_of_pipeline():
    targets = {p.stem for p in (ROOT / "ftdoctor" / "targets").glob("*.py")}
    assert {"base", "trainer", "loop"} <= targets
