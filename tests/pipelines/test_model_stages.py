"""Broken pipelines whose bug shows in the model stages (forward, backward, metrics, overfit): each is reported at
the stage where it starts, with its code and the essential part of the fix."""

from __future__ import annotations

import re

import pytest
from helpers import findings_at

pytestmark = pytest.mark.slow

DATA = ["setup", "config", "decode", "collate"]
STEP = DATA + ["forward", "backward"]

# script, stages to run, stage and code expected, a token the fix (or the location) must carry
CASES = [
    ("bert_mrpc_detached_features.py", STEP, "backward", "FTD501", ".detach()"),
    ("distilbert_custom_model_no_grad_encoder.py", STEP, "backward", "FTD501", "torch.no_grad()"),
    ("bert_mrpc_optimizer_before_model_reload.py", STEP, "backward", "FTD504", "model.parameters()"),
    ("distilbert_mnli_macro_loss_nan.py", DATA + ["forward"], "forward", "FTD403", "clamp(min=1)"),
    ("reviews_learning_rate_zero.py", STEP, "backward", "FTD503", "learning_rate="),
    ("bert_mrpc_best_metric_not_returned.py", DATA + ["metrics"], "metrics", "FTD603", 'metric_for_best_model="f1"'),
    ("reviews_metrics_returns_float.py", DATA + ["metrics"], "metrics", "FTD606", "return {"),
    ("bert_mnli_hidden_states_tuple_predictions.py", DATA + ["metrics"], "metrics", "FTD604", "predictions[0]"),
    ("reviews_raw_text_metrics_no_argmax.py", None, "metrics", "FTD601", "np.argmax"),
    ("course_mnli_broken.py", None, "metrics", "FTD601", "np.argmax"),
    (
        "bert_word_labels_sequence_classifier.py",
        DATA + ["forward"],
        "forward",
        "FTD402",
        "AutoModelForTokenClassification",
    ),
    ("bert_mrpc_learning_rate_too_high.py", STEP + ["overfit"], "overfit", "FTD702", "learning_rate="),
    ("distilbert_reviews_learning_rate_too_low.py", STEP + ["overfit"], "overfit", "FTD703", "learning_rate="),
    ("bert_reviews_max_length_2.py", STEP + ["overfit"], "overfit", "FTD701", "inputs differ"),
]


@pytest.mark.parametrize("script,stages,stage,code,token", CASES, ids=[c[0].removesuffix(".py") for c in CASES])
def test_broken_pipeline_reported_at_its_stage(check_pipeline, script, stages, stage, code, token):
    report = check_pipeline(script, stages=stages)
    found = findings_at(report, stage, code)
    assert found, f"{stage} did not report {code}: {[(f.code, f.detail) for f in report.findings]}"
    f = found[0]
    assert token in f.fix, f.fix
    assert f.location, "the finding points at no line"
    if f.severity == "error":
        assert not report.ok


def test_graph_cut_points_at_the_line(check_pipeline):
    report = check_pipeline("bert_mrpc_detached_features.py", stages=STEP)
    f = findings_at(report, "backward", "FTD501")[0]
    assert f.severity == "error"
    assert f.location.endswith(":34") and "detached_features" in f.location
    assert report.stage("backward").findings == [f]


def test_nan_origin_is_the_user_line(check_pipeline):
    report = check_pipeline("distilbert_mnli_macro_loss_nan.py", stages=DATA + ["forward", "backward", "overfit"])
    f = findings_at(report, "forward", "FTD403")[0]
    assert "empty" in f.detail and ".mean()" in f.detail
    assert f.location.endswith(":28")
    # the root cause is reported once: overfit does not add a second error
    assert report.stage("overfit").status == "skip"


def test_learning_rate_zero_reported_once(check_pipeline):
    report = check_pipeline("reviews_learning_rate_zero.py", stages=STEP + ["overfit"])
    assert findings_at(report, "backward", "FTD503")
    assert not findings_at(report, "overfit")


def test_too_high_names_a_rate_that_learned(check_pipeline):
    report = check_pipeline("bert_mrpc_learning_rate_too_high.py", stages=STEP + ["overfit"])
    f = findings_at(report, "overfit", "FTD702")[0]
    rate = float(re.search(r"learning_rate=([0-9.e-]+)`", f.fix).group(1))
    runs = f.evidence["runs"]
    assert runs[0]["lr"] == 50 and runs[0]["outcome"] == "diverged"
    assert any(r["lr"] == rate and r["learned"] for r in runs)
    assert rate < 1


def test_too_low_names_a_higher_rate_that_learned(check_pipeline):
    report = check_pipeline("distilbert_reviews_learning_rate_too_low.py", stages=STEP + ["overfit"])
    f = findings_at(report, "overfit", "FTD703")[0]
    assert f.severity == "warning"
    rate = float(re.search(r"learning_rate=([0-9.e-]+)`", f.fix).group(1))
    assert rate >= 1e-4 and any(r["lr"] == rate and r["learned"] for r in f.evidence["runs"])


def test_identical_inputs_cannot_beat_the_label_prior(check_pipeline):
    report = check_pipeline("bert_reviews_max_length_2.py", stages=STEP + ["overfit"])
    f = findings_at(report, "overfit", "FTD701")[0]
    assert f.evidence["prior_loss"] is not None
    assert all(not r["learned"] for r in f.evidence["runs"])
    assert len(f.evidence["runs"]) >= 3  # the sweep tried other rates before blaming the pipeline


def test_metrics_checked_on_synthetic_logits_when_data_fails(check_pipeline):
    report = check_pipeline("reviews_raw_text_metrics_no_argmax.py")
    assert report.stage("decode").status == "fail"
    assert report.stage("forward").status == "skip"
    f = findings_at(report, "metrics", "FTD601")[0]
    assert report.stage("metrics").evidence["source"] == "synthetic batch"
    assert f.evidence["predictions_shape"] == [4, 5]


def test_tuple_predictions_blame_the_config(check_pipeline):
    report = check_pipeline("bert_mnli_hidden_states_tuple_predictions.py", stages=DATA + ["metrics"])
    f = findings_at(report, "metrics", "FTD604")[0]
    assert "output_hidden_states" in f.detail and "output_hidden_states" in f.fix
