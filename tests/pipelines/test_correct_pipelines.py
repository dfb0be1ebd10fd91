"""Correct pipelines in different tasks and coding styles come out clean: ok, and no finding above info.

A false alarm on a correct pipeline costs trust, so every stage runs, the overfit stage included (the scripts'
learning rates suit the tiny random-init fixture models, as their comments say)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

CORRECT = [
    "course_mnli_fixed.py",
    "mrpc_bert_fixed.py",
    "reviews_argparse_fixed.py",
    "gpt2_sequence_classification_fixed.py",
    "gpt2_causal_lm_fixed.py",
    "bert_masked_lm_fixed.py",
    "bart_summarization_fixed.py",
]

EXPECTED_TASK = {
    "gpt2_causal_lm_fixed.py": "causal-lm",
    "bert_masked_lm_fixed.py": "masked-lm",
    # Told apart by the raw columns ("document"/"summary") of the dataset the tokenized one was made from.
    "bart_summarization_fixed.py": "summarization",
}


@pytest.mark.parametrize("script", CORRECT, ids=[s.removesuffix(".py") for s in CORRECT])
def test_correct_pipeline_is_clean(check_pipeline, script):
    report = check_pipeline(script)
    loud = [(f.code, f.severity, f.detail) for f in report.findings if f.severity != "info"]
    assert report.ok and not loud, loud
    expected = EXPECTED_TASK.get(script, "sequence-classification")
    assert report.task == expected
    for stage in ("forward", "backward", "overfit"):
        assert report.stage(stage).status == "pass", (stage, report.stage(stage).reason)
    runs = report.stage("overfit").evidence["runs"]
    assert any(r["learned"] for r in runs)
