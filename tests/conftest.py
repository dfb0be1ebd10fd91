"""Shared test setup: offline Hugging Face, a temporary HF_HOME, fixtures built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "fixtures" / "pipelines"

# Set before anything imports transformers, datasets or evaluate: a hub miss must fail at once, never retry.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A check that reports a code it did not declare fails ftdoctor's own tests (in a user's run it is only noted).
os.environ["FTDOCTOR_STRICT_CONTRACTS"] = "1"


@pytest.fixture(scope="session", autouse=True)
def hf_home(tmp_path_factory):
    """A temporary HF_HOME and fixture cache for the whole session (fixtures are built once and reused)."""
    home = tmp_path_factory.mktemp("hf_home")
    old = {k: os.environ.get(k) for k in ("HF_HOME", "FTDOCTOR_FIXTURES_DIR")}
    os.environ["HF_HOME"] = str(home)
    os.environ.setdefault("FTDOCTOR_FIXTURES_DIR", str(tmp_path_factory.mktemp("ftdoctor_fixtures")))
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pipeline_path(name: str) -> str:
    path = PIPELINES / name
    assert path.is_file(), f"no fixture pipeline {name}"
    return str(path)


@pytest.fixture
def check_pipeline(tmp_path, monkeypatch):
    """Walk a fixture pipeline from a scratch working directory, in this process (the same capture and walk as
    the child process of `ftdoctor check`, without paying its imports again; test_isolation runs the child)."""
    from ftdoctor.process.parent import check_script

    monkeypatch.chdir(tmp_path)

    def run(name: str, *args: str, stages=None, options=None):
        # No time limit on the overfit stage unless a test sets one: its verdicts must not depend on how busy the
        # machine running the tests is (a budget that runs out gives no verdict, FTD705).
        options = {"overfit_seconds": None} if options is None else options
        result = check_script(pipeline_path(name), list(args), timeout=300, stages=stages, in_process=True,
                              options=options)
        assert result.report is not None, result.message
        assert not result.report.internal_errors, result.report.internal_errors
        return result.report

    return run


def run_cli(*args: str, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """The ftdoctor command as a user runs it, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "ftdoctor", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=os.environ.copy())


def findings_at(report, stage: str, code: str | None = None):
    st = report.stage(stage)
    assert st is not None, f"stage {stage} did not run"
    return [f for f in st.findings if code is None or f.code == code]
