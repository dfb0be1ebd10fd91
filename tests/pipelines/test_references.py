"""The reference pipelines: each passes `ftdoctor check` clean, detects its task, and learns on its fixture."""

from __future__ import annotations

import sys

import pytest
from helpers import run_cli

from ftdoctor import references

pytestmark = pytest.mark.slow

TASKS = list(references.TASKS)


@pytest.mark.subprocess
@pytest.mark.parametrize("task", TASKS)
def test_reference_is_clean(tmp_path, monkeypatch, task):
    """Every stage runs, overfit included: the references' learning rates suit the tiny fixture models."""
    from ftdoctor.process.parent import check_script

    monkeypatch.chdir(tmp_path)
    result = check_script(references.get(task).path, [], timeout=300)
    report = result.report
    assert report is not None, result.message
    assert not report.internal_errors, report.internal_errors
    loud = [(f.code, f.severity, f.detail) for f in report.findings if f.severity != "info"]
    assert report.ok and not loud, loud
    assert report.task == task


@pytest.mark.parametrize("task", TASKS)
def test_reference_learns(task):
    """Trained on its fixture (fixed seed), the metric ends clearly better than the same model untrained."""
    result = references.run(task)
    before, after = result.before, result.after
    if task in ("masked-lm", "causal-lm"):
        assert after < before / 5, (before, after)  # perplexity
    elif task == "sequence-classification":
        assert after >= 0.9 and after > before + 0.2, (before, after)  # F1 against predicting one class
    elif task in ("translation", "summarization"):
        assert after > before + 5, (before, after)  # BLEU / ROUGE-L, 0..100
    elif task == "question-answering":
        assert after > 80 and after > before + 50, (before, after)  # F1, 0..100
    else:
        assert after > 0.8 and after > before + 0.5, (before, after)  # entity F1


@pytest.mark.subprocess
def test_reference_cli_list_and_show_then_check(tmp_path):
    listed = run_cli("reference", "list")
    assert listed.returncode == 0, listed.stderr
    for task in TASKS:
        assert task in listed.stdout
    assert "DataCollatorForTokenClassification" in listed.stdout and "seqeval" in listed.stdout
    shown = run_cli("reference", "show", "token-classification")
    assert shown.returncode == 0 and "word_ids" in shown.stdout
    script = tmp_path / "ref.py"
    script.write_text(shown.stdout)
    checked = run_cli("check", str(script), "--stages", "config,decode,collate", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    bad = run_cli("reference", "show", "ner")
    assert bad.returncode == 2 and "token-classification" in bad.stderr


@pytest.mark.subprocess
def test_reference_cli_run(tmp_path):
    out = run_cli("reference", "run", "sequence-classification", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "before training" in out.stdout and "better" in out.stdout


@pytest.mark.subprocess
def test_help_does_not_import_torch():
    import subprocess

    code = (
        "import sys; from ftdoctor.entry.cli import main\ntry:\n    main(['reference', '--help'])\nexcept SystemExit:\n"
        "    pass\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("False"), out.stdout + out.stderr
