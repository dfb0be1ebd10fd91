"""The ftdoctor command as a user runs it: demo, --json, explain, exit codes."""

from __future__ import annotations

import json

import pytest
from helpers import pipeline_path, run_cli

from ftdoctor.core.rules import SEVERITIES
from ftdoctor.core.stages import DEFAULT_STAGES as STAGES

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def test_demo_reports_the_course_bugs_and_exits_1(tmp_path):
    proc = run_cli("demo", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    for token in ("FTD201", "FTD101", "num_labels=3", "DataCollatorWithPadding", "argmax"):
        assert token in out, token
    assert "internal error" not in out + proc.stderr


def test_json_report_follows_the_schema(tmp_path):
    proc = run_cli("check", pipeline_path("course_mnli_broken.py"), "--json", "--offline", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["schema"] == "ftdoctor.report/1"
    assert rep["ok"] is False
    assert rep["task"] == "sequence-classification"
    assert set(rep["environment"]) >= {"python", "torch", "transformers", "device"}
    assert [s["stage"] for s in rep["stages"]] == list(STAGES)
    for s in rep["stages"]:
        assert s["status"] in ("pass", "warn", "fail", "skip")
        for f in s["findings"]:
            assert set(f) >= {"code", "severity", "title", "detail", "fix", "location", "evidence"}
            assert f["severity"] in SEVERITIES
    assert sum(rep["summary"].values()) == len(STAGES)
    memory = next(s for s in rep["stages"] if s["stage"] == "memory")
    if memory["status"] != "skip":
        ev = memory["findings"][0]["evidence"]
        assert set(ev) >= {
            "params_bytes",
            "grads_bytes",
            "optimizer_bytes",
            "activations_bytes",
            "peak_train_bytes",
            "peak_eval_bytes",
            "device_memory_bytes",
            "max_batch_size",
            "worst_case_seq_len",
        }


def test_explain_prints_a_rule_page_and_unknown_code_exits_2():
    proc = run_cli("explain", "FTD601")
    assert proc.returncode == 0
    assert "argmax" in proc.stdout and "Broken" in proc.stdout and "Fixed" in proc.stdout
    assert run_cli("explain", "num-labels-mismatch").stdout.startswith("# FTD101 num-labels-mismatch\n")
    bad = run_cli("explain", "FTD999")
    assert bad.returncode == 2 and "explain --all" in bad.stderr


def test_explain_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from ftdoctor.entry.cli import main; main(['explain', '--all']); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bad_arguments_exit_2(tmp_path):
    assert run_cli("check", str(tmp_path / "missing.py")).returncode == 2
    proc = run_cli("check", pipeline_path("course_mnli_fixed.py"), "--stages", "decode,nonsense")
    assert proc.returncode == 2 and "nonsense" in proc.stderr
