"""A wheel install (not editable) carries checks/ and fixtures/ and runs the demo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import source_copy

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def test_wheel_install_runs_demo(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    for rel in (
        "ftdoctor/entry/cli.py",
        "ftdoctor/checks/config.py",
        "ftdoctor/checks/memory.py",
        "ftdoctor/fixtures/pipelines/course_mnli_broken.py",
        "ftdoctor/fixtures/metrics/glue/glue.py",
        "ftdoctor/references/token_classification.py",
        "ftdoctor/targets/trainer.py",
        "ftdoctor/process/child.py",
    ):
        assert (target / rel).is_file(), rel
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ftdoctor.checks, ftdoctor.fixtures as f; print(ftdoctor.checks.__file__); print(f.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    assert where.stdout.count(str(target)) == 2, where.stdout + where.stderr
    demo = subprocess.run(
        [sys.executable, "-m", "ftdoctor", "demo"], capture_output=True, text=True, env=env, cwd=work, timeout=600
    )
    assert demo.returncode == 1, demo.stderr[-2000:]
    out = demo.stdout
    assert "num_labels=3" in out and "FTD601" in out and "argmax" in out
    # The script's own names and lines are found even though it lives in site-packages.
    assert 'tokenized_datasets["train"]' in out and "course_mnli_broken.py:" in out
    listing = subprocess.run(
        [sys.executable, "-m", "ftdoctor", "reference", "list"], capture_output=True, text=True, env=env, cwd=work
    )
    assert listing.returncode == 0 and "question-answering" in listing.stdout, listing.stderr
