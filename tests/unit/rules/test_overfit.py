"""The overfit stage's rules: the check trains copies of a tiny classifier on one hand-built batch at the configured
learning rate and, when that fails, a few others."""

from __future__ import annotations

import pytest
import torch

from ftdoctor.core.findings import finding
from ftdoctor.engine.budget import Budget

from ._build_b import (
    call,
    classifier,
    no_free_memory,
    one_thread,  # noqa: F401  (the fixture below)
    random_batch,
    values_for,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _overfit(model, lr, batch=None, *, budget=None, findings_so_far=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    values = values_for(
        model,
        batch if batch is not None else random_batch(),
        optimizer=optimizer,
        task="sequence-classification",
        findings_so_far=findings_so_far,
    )
    return call("FTD701", step_evidence={}, budget=budget, **values)


def _outcomes(got):
    return [(r["lr"], r["outcome"]) for r in got.evidence["runs"]]


def test_a_rate_that_learns_the_batch():
    got = _overfit(classifier(), 1.0)
    assert got.findings == [] and _outcomes(got) == [(1.0, "learned")]
    assert got.evidence["never_trained"] is False


def test_learning_rate_too_high():
    got = _overfit(classifier(), 100.0)
    f = got.one("FTD702")
    assert _outcomes(got) == [(100.0, "diverged"), (10.0, "diverged"), (1.0, "learned")]
    assert f.detail.startswith("At lr=100 the loss on one batch diverges (loss ")
    assert "; at 1 it falls to " in f.detail and f.fix == "Lower it: `lr=1` learned one batch here."


def test_learning_rate_too_low():
    got = _overfit(classifier(), 1e-6)
    f = got.one("FTD703")
    assert _outcomes(got)[0] == (1e-6, "stalled") and _outcomes(got)[-1] == (0.01, "learned")
    assert "At lr=1e-06 the loss on one batch barely moves" in f.detail and "One step moves the weights by" in f.detail
    assert f.fix == "Raise it: `lr=0.01` learned one batch here."


def test_learning_rate_that_learns_slowly():
    got = _overfit(classifier(), 1e-3)
    f = got.one("FTD704")
    assert _outcomes(got) == [(1e-3, "slow"), (0.01, "learned")]
    assert "At lr=0.001 the loss on one batch falls slowly" in f.detail and "Not a bug" in f.fix


def test_a_never_trained_model_is_slow_at_fine_tuning_rates_not_broken():
    got = _overfit(classifier(norm=True), 1e-4)
    f = got.one("FTD704")
    assert got.evidence["never_trained"] is True and _outcomes(got)[0] == (1e-4, "stalled")
    assert "The model has never been trained (its normalisation layers are at their initial weights)" in f.detail


def test_inputs_all_alike_cannot_be_learned():
    got = _overfit(classifier(), 1.0, random_batch(same_inputs=True))
    f = got.one("FTD701")
    prior = got.evidence["prior_loss"]
    assert (
        f"{prior:.3f} is what predicting the batch's label frequencies scores without looking at the inputs" in f.detail
    )
    assert all(outcome != "learned" for _, outcome in _outcomes(got)) and len(got.evidence["runs"]) > 1
    assert "Check that the inputs differ between examples" in f.fix


class LeafUpdatedInPlace(torch.nn.Module):
    """Runs without gradients (the forward stage's no_grad pass) and fails once they are on."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x, labels):
        self.scale.add_(0)  # in place on a leaf that requires grad
        logits = self.head(x) * self.scale
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def test_training_that_raises():
    torch.manual_seed(0)
    got = _overfit(LeafUpdatedInPlace(), 1.0)
    f = got.one("FTD701")
    assert f.detail.startswith(
        "Training on one batch raised RuntimeError: a leaf Variable that requires grad is "
        "being used in an in-place operation"
    )


def test_a_step_that_already_failed_is_not_trained_again():
    earlier = [finding("FTD502", "NaN gradients")]
    got = _overfit(classifier(), 1.0, findings_so_far=earlier)
    assert got.findings == [] and got.skip_reason == "training cannot work as forward/backward showed (FTD502)"


def test_no_verdict_when_the_stage_time_is_up():
    got = _overfit(classifier(), 1e-6, budget=Budget(overfit_seconds=1e-9))
    f = got.one("FTD705")
    assert f.detail.startswith("The overfit stage's 0 s ran out: the trial at the configured rate was cut short after")
    assert "4 other rates went untried" in f.detail and "--budget full" in f.fix and f.severity == "info"
    assert f.evidence["untried_rates"] == 4 and f.evidence["cut"] and _outcomes(got) == [(1e-6, "stalled")]


def test_short_of_memory_for_a_trial(monkeypatch):
    no_free_memory(monkeypatch)
    got = _overfit(classifier(), 1.0)
    f = got.one("FTD806")
    assert f.detail.startswith("A training trial (its gradients and two optimizer moments, on a copy) needs about")
    assert "FTD806" in got.skip_reason
