"""The overfit stage on the shrunk twin, in whole walks: the learning bugs are found on it and correct pipelines
learn on it (the twin itself is tested in tests/unit/test_twin.py)."""

from __future__ import annotations

import pytest
from helpers import findings_at

pytestmark = pytest.mark.slow


STEP = ["setup", "config", "decode", "collate", "forward", "backward"]
# The twin stands in only where the overfit stage has a time limit (the default fast budget; check_pipeline lifts
# the limit unless a test sets one).
TIMED = {"overfit_seconds": 30.0}


@pytest.fixture
def twin_forced(monkeypatch):
    """The overfit stage as on a machine too small for a trial of the model itself: the twin then stands in (one
    layer of the fixtures' two)."""
    import ftdoctor.checks.overfit as overfit
    from ftdoctor.runtime import twin

    real = overfit.short_of_memory
    monkeypatch.setattr(twin, "LAYERS", 1)

    def short(model, times, what, device=None):
        if "twin" in what:
            return real(model, times, what)
        from ftdoctor.sdk import finding

        return finding("FTD806", f"{what} does not fit (forced by the test).", "-")

    monkeypatch.setattr(overfit, "short_of_memory", short)


@pytest.mark.parametrize(
    "script,code",
    [
        ("bert_mrpc_learning_rate_too_high.py", "FTD702"),
        ("distilbert_reviews_learning_rate_too_low.py", "FTD703"),
        ("bert_reviews_max_length_2.py", "FTD701"),
    ],
)
def test_learning_bugs_found_on_the_twin(check_pipeline, twin_forced, script, code):
    report = check_pipeline(script, stages=STEP + ["overfit"], options=TIMED)
    found = findings_at(report, "overfit", code)
    assert found, [(f.code, f.detail[:200]) for f in report.stage("overfit").findings] or report.stage("overfit")
    assert "1-layer twin" in found[0].detail
    assert found[0].evidence["twin"]["of_layers"] == 2


@pytest.mark.parametrize(
    "script", ["mrpc_bert_fixed.py", "gpt2_causal_lm_fixed.py", "peft_trainer_clm_fixed.py", "trl_sft_lora_fixed.py"]
)
def test_correct_pipeline_learns_on_the_twin(check_pipeline, twin_forced, script):
    report = check_pipeline(script, stages=STEP + ["overfit"], options=TIMED)
    stage = report.stage("overfit")
    assert stage.status == "pass" and not [f for f in stage.findings if f.severity != "info"], stage.findings
    assert stage.evidence["twin"]["layers"] == 1


def test_without_a_twin_a_model_too_large_is_skipped_with_ftd806(check_pipeline, monkeypatch):
    import ftdoctor.checks.overfit as overfit
    from ftdoctor.runtime import twin

    monkeypatch.setattr(twin, "build", lambda model, layers=None: None)
    monkeypatch.setattr(
        overfit,
        "short_of_memory",
        lambda model, times, what, device=None: __import__("ftdoctor.sdk", fromlist=["finding"]).finding(
            "FTD806", f"{what} does not fit.", "-"
        ),
    )
    report = check_pipeline("mrpc_bert_fixed.py", stages=STEP + ["overfit"], options=TIMED)
    assert findings_at(report, "overfit", "FTD806")
