"""The overfit stage's rules: the check trains copies of a tiny classifier on one hand-built batch at the configured
learning rate and, when that fails, a few others."""

from __future__ import annotations

from types import SimpleNamespace

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


def test_the_batch_and_the_verdict_do_not_follow_the_measured_step_time():
    # The same pipeline as measured on an idle machine and on one so busy that a step seemed to take 100 s: the
    # trials run on the same rows and reach the same verdict (the cost of a step is the budget's nominal one).
    model_a, model_b = classifier(), classifier()
    budget = Budget(overfit_seconds=30.0, params=sum(p.numel() for p in model_a.parameters()), flops=2e11)
    got = []
    for model, measured in ((model_a, 0.001), (model_b, 100.0)):
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        values = values_for(model, random_batch(), optimizer=optimizer, task="sequence-classification")
        got.append(call("FTD701", step_evidence={"step_seconds": measured}, budget=budget, **values))
    assert [f.code for f in got[0].findings] == [f.code for f in got[1].findings]
    assert _outcomes(got[0]) == _outcomes(got[1]) == [(1.0, "learned")]
    assert got[0].evidence.get("batch_rows") == got[1].evidence.get("batch_rows")


def test_a_batch_too_costly_at_the_nominal_speed_is_cut():
    from ftdoctor.checks.overfit import _affordable_batch, _nominal_cost

    batch = {"input_ids": torch.ones(4, 64, dtype=torch.long), "labels": torch.zeros(4, dtype=torch.long)}
    big = Budget(overfit_seconds=30.0, params=10**9, flops=2e11)  # a billion parameters on a CPU
    cost = _nominal_cost(big, batch)
    assert cost["step_seconds"] == pytest.approx(6 * 10**9 * 256 / (2e11 * 0.3))
    cut, note = _affordable_batch(batch, None, _Padding(), cost, 30.0)
    assert note == "1 of 4 rows (time)" and cut["input_ids"].shape[0] == 1
    assert _nominal_cost(Budget(overfit_seconds=30.0), batch) == {}  # no model size known: no cost, no cut


def test_short_of_memory_for_a_trial(monkeypatch):
    no_free_memory(monkeypatch)
    got = _overfit(classifier(), 1.0)
    f = got.one("FTD806")
    assert f.detail.startswith("A training trial (its gradients and two optimizer moments, on a copy) needs about")
    assert "FTD806" in got.skip_reason


class _Padding:
    """A target whose collator right-pads ids and makes the labels from them, padding masked (-100)."""

    def fixed_batch(self):
        return None

    def collate(self, rows):
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([r["input_ids"] + [0] * (longest - len(r["input_ids"])) for r in rows])
        return {"input_ids": ids, "labels": ids.masked_fill(ids == 0, -100)}


def test_a_batch_cut_for_time_keeps_rows_with_something_to_predict():
    from ftdoctor.checks.overfit import _affordable_batch

    # The first row is a blank line of a corpus: padding only, every label -100 (its loss alone would be NaN).
    features = [{"input_ids": [0, 0]}, {"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}, {"input_ids": [4, 4, 4]}]
    target = _Padding()
    batch = target.collate(features)
    step = {"step_seconds": 2.0}  # a step of 4 rows takes 2 s: 30 s of trials afford 1 row
    for rows in (features, None):  # cut from the rows, or sliced from the collated batch
        cut, note = _affordable_batch(batch, rows, target, step, 30.0)
        assert note == "1 of 4 rows (time)" and cut["input_ids"].shape[0] == 1
        assert (cut["labels"] != -100).any(), cut


class _PromptedLM(torch.nn.Module):
    """A never-trained language model whose only trainable parameters are a shift of its hidden states with a weak
    hold on them (as a few prompt-tuning embeddings on a random model): the loss moves, but slowly, at any rate."""

    def __init__(self, hold: float, vocab: int = 50, dim: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(vocab_size=vocab)
        self.embed = torch.nn.Embedding(vocab, dim).requires_grad_(False)
        self.norm = torch.nn.LayerNorm(dim).requires_grad_(False)
        self.head = torch.nn.Linear(dim, vocab).requires_grad_(False)
        self.hold = hold
        self.prompt = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, input_ids, labels=None):
        logits = self.head(self.norm(self.embed(input_ids)) + self.hold * self.prompt)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()) if labels is not None else None
        return {"loss": loss, "logits": logits}


def _lm_overfit(model, lr):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (8, 6), generator=g)
    optimizer = torch.optim.SGD([model.prompt], lr=lr)
    values = values_for(model, {"input_ids": ids, "labels": ids}, optimizer=optimizer, task="causal-lm")
    return call("FTD701", step_evidence={}, **values)


def test_a_never_trained_model_whose_loss_falls_slowly_at_every_rate_learns():
    got = _lm_overfit(_PromptedLM(hold=0.5), 1e-3)
    f = got.one("FTD704")
    assert got.evidence["never_trained"] is True
    assert all(outcome != "learned" for _, outcome in _outcomes(got))
    assert "the loss does fall" in f.detail and "it learns slowly from scratch" in f.detail and f.severity == "info"


def test_a_never_trained_model_whose_loss_does_not_depend_on_the_trained_weights_cannot_learn():
    got = _lm_overfit(_PromptedLM(hold=0.0), 1e-3)
    got.one("FTD701")
    assert got.evidence["never_trained"] is True and {o for _, o in _outcomes(got)} == {"stalled"}


def test_a_never_trained_classifier_reaching_only_the_label_prior_cannot_learn():
    got = _overfit(classifier(norm=True), 1.0, random_batch(same_inputs=True))
    got.one("FTD701")
    assert got.evidence["never_trained"] is True


class _BiasOnly(torch.nn.Module):
    """A classifier whose only trainable weights are its class bias, over a frozen body (prompt tuning or a small
    adapter over a frozen model): the bias can learn the labels' frequencies and nothing else."""

    def __init__(self, trained_body: bool):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(num_labels=2, problem_type=None)
        self.body = torch.nn.Linear(16, 256).requires_grad_(False)
        self.norm = torch.nn.LayerNorm(256).requires_grad_(False)
        self.head = torch.nn.Linear(256, 2, bias=False).requires_grad_(False)
        self.bias = torch.nn.Parameter(torch.zeros(2))
        if trained_body:  # normalisation weights moved away from their initial ones: a pretrained body
            with torch.no_grad():
                self.norm.weight.mul_(0.9)

    def forward(self, x, labels=None):
        logits = self.head(self.norm(self.body(x))) * 0.0 + self.bias
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def _bias_only(trained_body: bool):
    model = _BiasOnly(trained_body)
    batch = random_batch()
    # uneven labels (12 of one class, 4 of the other): the prior is below the first loss, so the loss moves
    batch["labels"] = torch.tensor([1] * 12 + [0] * 4)
    values = values_for(
        model,
        batch,
        optimizer=torch.optim.SGD([model.bias], lr=1.0),
        task="sequence-classification",
    )
    return call("FTD701", step_evidence={}, **values)


def test_a_few_trainable_weights_over_a_frozen_never_trained_model_are_no_verdict():
    got = _bias_only(trained_body=False)
    f = got.one("FTD706")
    assert f.severity == "info" and "frozen model that has never been trained" in f.detail
    assert 0 < f.evidence["trainable_share"] < 0.5 and got.evidence["never_trained"] is True


def test_the_same_weights_over_a_pretrained_frozen_model_that_cannot_learn_are_an_error():
    got = _bias_only(trained_body=True)
    assert got.evidence["never_trained"] is False
    got.one("FTD701")


def test_norm_layers_initialised_to_zero_are_never_trained():
    from ftdoctor.checks.overfit import never_trained

    class GemmaRMSNorm(torch.nn.Module):  # scales by (1 + weight): initialised to 0
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(8))

    model = torch.nn.Sequential(GemmaRMSNorm(), torch.nn.Linear(8, 8), GemmaRMSNorm(), torch.nn.LayerNorm(0))
    assert never_trained(model)  # a norm over no features has nothing to read, and is no error
    with torch.no_grad():
        model[2].weight[3] = 0.2  # a trained layer's weights differ
    assert not never_trained(model)


class _DistilledToItsTwin(torch.nn.Module):
    """A student whose loss is its divergence from a teacher with the same weights: 0 (up to rounding) from the
    start, nothing to learn."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.student = torch.nn.Linear(16, 8)
        self.teacher = torch.nn.Linear(16, 8).requires_grad_(False)
        self.teacher.load_state_dict(self.student.state_dict())

    def forward(self, x, labels=None):
        logits = self.student(x)
        target = torch.softmax(self.teacher(x), -1)
        loss = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), target, reduction="batchmean")
        return {"loss": loss, "logits": logits}


def test_a_loss_already_at_its_floor_is_no_verdict():
    model = _DistilledToItsTwin()
    optimizer = torch.optim.SGD(model.student.parameters(), lr=1e-3)
    values = values_for(model, random_batch(), optimizer=optimizer, task="causal-lm")
    got = call("FTD701", step_evidence={}, **values)
    assert got.findings == [] and "already at its floor" in got.skip_reason
    assert [r["steps"] for r in got.evidence["runs"]] == [1]


class _ScaledLoss(torch.nn.Module):
    """A classifier whose loss is scaled far down (a loss averaged over a huge constant, say): plain gradient steps
    are scaled down with it at every rate the sweep tries, while AdamW's steps do not depend on the loss's scale."""

    def __init__(self):
        super().__init__()
        self.inner = classifier()
        self.config = self.inner.config

    def forward(self, x, labels=None):
        out = self.inner(x, labels)
        return {**out, "loss": out["loss"] * 1e-5 if out["loss"] is not None else None}


def test_plain_sgd_that_cannot_move_the_loss_while_adamw_learns_is_slow_not_broken():
    got = _overfit(_ScaledLoss(), 0.01)
    f = got.one("FTD707")
    assert f.severity == "info" and {o for _, o in _outcomes(got)} == {"stalled"}
    control = got.evidence["adaptive_control"]
    assert control[0]["lr"] == 1e-3 and control[-1]["outcome"] in ("learned", "slow")
    assert "No rate tried with SGD (0.01, 0.1, 1) learned one batch" in f.detail and "AdamW at 0.001" in f.detail


def test_adamw_control_that_cannot_beat_the_label_prior_keeps_the_error():
    # the near miss: inputs all alike, so AdamW too learns only the labels' frequencies
    got = _overfit(classifier(), 0.01, random_batch(same_inputs=True))
    got.one("FTD701")
    assert [c["lr"] for c in got.evidence["adaptive_control"]] == [1e-3, 1e-4]


def test_an_adaptive_optimizer_gets_no_control_trial():
    model = classifier()
    values = values_for(
        model,
        random_batch(same_inputs=True),
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2),
        task="sequence-classification",
    )
    got = call("FTD701", step_evidence={}, **values)
    got.one("FTD701")
    assert "adaptive_control" not in got.evidence


def test_a_loss_gone_flat_after_a_step_that_threw_the_weights_is_too_high_not_too_low():
    """race_mc_learning_rate_collapse: at lr=0.2 one step moved the weights by 1.1 times their size and the loss
    then sat at ln(4), every choice alike; the sweep went up (nothing above 0.2 to try) and said FTD701."""
    from ftdoctor.checks.overfit import Trial, _sweep

    flat = [1.3863] * 11
    collapsed = Trial(0.2, flat, None, None, step_size=1.15)
    assert collapsed.outcome == "stalled" and _sweep(collapsed)[:2] == pytest.approx([0.02, 0.002])
    # the near miss: the same flat loss after a step that barely moved the weights is a rate too low
    barely = Trial(0.2, flat, None, None, step_size=1e-5)
    assert _sweep(barely) == []  # nothing above 0.2 within the sweep's range
    assert _sweep(Trial(1e-5, flat, None, None, step_size=1e-6)) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])


class _ConstantFeatures(torch.nn.Module):
    """A trainable head over a frozen body whose features are the same for every row (a random-init stand-in can
    collapse them so): with balanced labels the loss starts at the prior and can only stray from it."""

    def __init__(self, trained_body: bool):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(num_labels=2, problem_type=None)
        self.body = torch.nn.Linear(16, 64).requires_grad_(False)
        self.norm = torch.nn.LayerNorm(64).requires_grad_(False)
        self.pad = torch.nn.Linear(64, 64).requires_grad_(False)  # frozen weight: the trainable share stays small
        self.head = torch.nn.Linear(64, 2)
        with torch.no_grad():
            self.head.weight.zero_()  # a zero-initialised head (as PEFT methods start): the first loss is the prior
            self.head.bias.zero_()
            if trained_body:
                self.norm.weight.mul_(0.9)

    def forward(self, x, labels=None):
        logits = self.head(self.norm(self.body(torch.ones_like(x) + 1e-4 * x)))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def _constant_features(trained_body: bool):
    model = _ConstantFeatures(trained_body)
    batch = random_batch()
    batch["labels"] = torch.tensor([0, 1] * 8)
    values = values_for(
        model,
        batch,
        optimizer=torch.optim.AdamW(model.head.parameters(), lr=0.02),
        task="sequence-classification",
    )
    return call("FTD701", step_evidence={}, **values)


def test_a_head_over_a_never_trained_body_whose_loss_only_strays_from_the_prior_is_no_verdict():
    """peft-frod_text_classification: the loss sat at ln 2 at 0.02 and rose at 0.2; it moved, up, so the trained
    weights reach it, and a frozen random body explains why it cannot fall."""
    got = _constant_features(trained_body=False)
    got.one("FTD706")


def test_the_same_head_over_a_trained_body_is_an_error():
    got = _constant_features(trained_body=True)
    got.one("FTD701")
