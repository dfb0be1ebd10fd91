"""Hand-written PyTorch and Accelerate loops: captured at their first optimizer step and walked like a Trainer."""

from __future__ import annotations

import pytest
from helpers import findings_at, pipeline_path

pytestmark = pytest.mark.slow

CORRECT_LOOPS = ["torch_loop_fixed.py", "accelerate_loop_fixed.py"]

# (script, stage, code, severity, the essential text of the fix)
LOOP_BUGS = [
    ("loop_no_train_mode.py", "forward", "FTD410", "warning", "model.train()"),
    ("loop_no_zero_grad.py", "backward", "FTD510", "error", "optimizer.zero_grad()"),
    ("loop_label_column.py", "collate", "FTD305", "error", 'rename_column("label", "labels")'),
    ("loop_text_columns.py", "decode", "FTD210", "error", "remove_columns="),
    ("loop_scheduler_before_optimizer.py", "backward", "FTD511", "warning", "after `optimizer.step()`"),
    ("loop_eval_in_train_mode.py", "metrics", "FTD610", "warning", "model.eval()"),
    ("loop_optimizer_before_new_head.py", "backward", "FTD504", "error", "model.parameters()"),
]


@pytest.mark.parametrize("script", CORRECT_LOOPS)
def test_correct_loop_is_clean(check_pipeline, script):
    report = check_pipeline(script)
    loud = [(s.stage, f.code, f.detail) for s in report.stages for f in s.findings if f.severity != "info"]
    assert report.ok and not loud, loud
    assert report.task == "sequence-classification"
    for stage in ("decode", "collate", "forward", "backward", "overfit"):
        assert report.stage(stage).status == "pass", (stage, report.stage(stage).reason)


@pytest.mark.parametrize("script,stage,code,severity,token", LOOP_BUGS, ids=[b[0] for b in LOOP_BUGS])
def test_loop_bug_is_reported_at_its_stage(check_pipeline, script, stage, code, severity, token):
    report = check_pipeline(script, stages=["setup", "config", "decode", "collate", "forward", "backward", "metrics"])
    found = findings_at(report, stage, code)
    assert found, {s.stage: [(f.code, f.detail) for f in s.findings] for s in report.stages}
    assert found[0].severity == severity
    assert token in found[0].fix, found[0].fix
    # one bug, one error: no other stage reports an error for it
    others = [
        (s.stage, f.code)
        for s in report.stages
        for f in s.findings
        if f.severity == "error" and (s.stage, f.code) != (stage, code)
    ]
    assert not others, others


def test_loop_stops_at_the_second_step_and_restores_the_first_state(tmp_path, monkeypatch):
    import torch

    from ftdoctor.capture import capture_script

    monkeypatch.chdir(tmp_path)
    cap = capture_script(pipeline_path("torch_loop_fixed.py"))
    assert cap.outcome == "loop" and cap.loop.steps == 2
    # The model is handed over as it was before its first update: its weights equal a fresh load.
    from transformers import AutoModelForSequenceClassification

    from ftdoctor.fixtures import fixture_path

    torch.manual_seed(0)
    fresh = AutoModelForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=2)
    model = cap.loop.model
    # the weights loaded from the checkpoint (the pooler and the head are initialised at random)
    shared = [n for n, _ in fresh.named_parameters() if n.startswith(("bert.embeddings", "bert.encoder"))]
    params = dict(model.named_parameters())
    assert shared and all(torch.equal(params[n], p) for n, p in fresh.named_parameters() if n in shared)
    assert all(p.grad is None for p in model.parameters())
    assert cap.loop.optimizer is not None and not cap.loop.optimizer.state  # no step was kept


def test_keras_script_gets_one_finding_and_is_not_run(check_pipeline):
    report = check_pipeline("keras_sequence_classification.py")
    (f,) = report.findings
    assert f.code == "FTD006" and report.stage("setup").status == "fail"
    assert "PyTorch" in f.detail and f.location.endswith("keras_sequence_classification.py:3")
    assert all(s.status == "skip" for s in report.stages if s.stage != "setup")
