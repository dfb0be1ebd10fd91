"""Helpers the unit and pipeline tests share: `from helpers import ...` works from every folder under tests/
(pyproject.toml puts tests/ on the import path); the fixtures live in tests/conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PIPELINES = ROOT / "fixtures" / "pipelines"


def pipeline_path(name: str) -> str:
    path = PIPELINES / name
    assert path.is_file(), f"no fixture pipeline {name}"
    return str(path)


def run_cli(*args: str, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """The ftdoctor command as a user runs it, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "ftdoctor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=os.environ.copy(),
    )


def findings_at(report, stage: str, code: str | None = None):
    st = report.stage(stage)
    assert st is not None, f"stage {stage} did not run"
    return [f for f in st.findings if code is None or f.code == code]


def source_copy(folder: Path) -> Path:
    """A copy of the repository's sources under ``folder``, for pip to build: pip builds in the source tree
    (build/, the egg-info), and two tests building the repository itself at once (xdist) would share those."""
    copy = Path(folder) / "source"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", "tests", "benchmarks", "build", "dist", "*.egg-info", "__pycache__", ".venv", "venv"
        ),
    )
    return copy
