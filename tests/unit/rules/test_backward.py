"""The backward stage's rules, one check each on hand-built models, batches and optimizers (the loop's backward rules,
FTD510 and FTD511, are in test_loop.py)."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._build_b import (
    bert,
    call,
    capture,
    line_of,
    no_free_memory,
    one_thread,  # noqa: F401  (the fixture below)
    token_batch,
    values_for,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _step(model, batch, optimizer=None, **kw):
    """one_optimizer_step on a working copy of ``model``, as the walk runs it after the forward stage."""
    optimizer = optimizer if optimizer is not None else torch.optim.AdamW(model.parameters(), lr=1e-3)
    values = values_for(model, batch, optimizer=optimizer, **kw)
    values["work_model"] = values["target"].work_model()
    return call("FTD501", **values)


def test_a_correct_step_moves_the_weights_and_measures_the_optimizer_state():
    got = _step(bert(), token_batch())
    assert got.findings == []
    ev = got.values["step_evidence"]
    assert ev["optimizer"] == "AdamW" and ev["moved"] > 0 and ev["trainable_numel"] == ev["total_numel"]
    trainable = sum(p.numel() * p.element_size() for p in bert().parameters())
    # Two moments per weight (and a step counter per tensor), scaled from the sampled parameters to all of them.
    assert 2 * trainable <= ev["optimizer_state_bytes"] <= 2 * trainable + 8 * ev["trainable_params"]


def test_nothing_trainable():
    model = bert()
    for p in model.parameters():
        p.requires_grad = False
    f = call("FTD507", **values_for(model)).one("FTD507")
    assert "No parameter of `BertForSequenceClassification` has requires_grad=True" in f.detail
    assert "`for p in model.classifier.parameters(): p.requires_grad = True`" in f.fix


def test_a_frozen_encoder_with_a_trainable_head_is_fine():
    model = bert()
    for p in model.bert.parameters():
        p.requires_grad = False
    assert call("FTD507", **values_for(model)).findings == []


def test_optimizer_of_another_model():
    model, other = bert(), bert(seed=1)
    got = _step(model, token_batch(), torch.optim.AdamW(other.parameters(), lr=1e-3))
    f = got.one("FTD504")
    trainable = sum(1 for _ in model.parameters())
    assert f"holds none of the {trainable} trainable parameters" in f.detail
    assert f.evidence == {"trainable": trainable, "held": 0}


def test_optimizer_built_before_the_encoder_was_unfrozen():
    model = bert()
    got = _step(model, token_batch(), torch.optim.AdamW(model.classifier.parameters(), lr=1e-3))
    f = got.one("FTD504")
    trainable = sum(1 for _ in model.parameters())
    assert f"holds 2 of {trainable} trainable parameters; missing: bert.embeddings" in f.detail
    assert "classifier.weight" not in f.evidence["missing"] and len(f.evidence["missing"]) == trainable - 2
    assert got.codes == ["FTD504"]  # what it holds still steps


def test_learning_rate_zero():
    model = bert()
    got = _step(model, token_batch(), torch.optim.SGD(model.parameters(), lr=0.0))
    f = got.one("FTD503")
    assert "learning rates [0.0]" in f.detail and "learning_rate=2e-5" in f.fix and f.evidence == {"lrs": [0.0]}


class SqrtOfZero(torch.nn.Module):
    """A finite loss whose gradient is not: d sqrt(u)/du is infinite at 0, times du/db = 0 is NaN."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x, labels):
        logits = self.head(x)
        penalty = torch.sqrt((self.head.bias * 0).sum())
        return {"loss": F.cross_entropy(logits, labels) + penalty, "logits": logits}


def test_nan_gradients_from_a_finite_loss():
    batch = {"x": torch.ones(4, 8), "labels": torch.tensor([0, 1, 0, 1])}
    f = _step(SqrtOfZero(), batch).one("FTD502")
    assert "1 parameters have NaN/inf gradients (e.g. head.bias)" in f.detail and f.evidence == {
        "parameters": ["head.bias"]
    }
    assert math.isfinite(float(re.search(r"the loss was (\S+)\.$", f.detail).group(1)))  # only the gradient is not


class NoGradEncoder(torch.nn.Module):
    """The broken example of FTD501: features computed under torch.no_grad(), so the encoder never learns."""

    base_model_prefix = "encoder"

    def __init__(self, unused_pooler=False):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(torch.nn.Embedding(100, 16), torch.nn.Linear(16, 16))
        self.pooler = torch.nn.Linear(16, 16) if unused_pooler else None
        self.classifier = torch.nn.Linear(16, 2)
        self.cut = not unused_pooler

    def forward(self, input_ids, labels):
        if self.cut:
            with torch.no_grad():  # the cut
                features = self.encoder(input_ids).mean(1)
        else:
            features = self.encoder(input_ids).mean(1)
        logits = self.classifier(features)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def _ids_batch():
    return {"input_ids": torch.arange(5, 45).reshape(4, 10), "labels": torch.tensor([0, 1, 0, 1])}


def test_most_parameters_without_gradient_point_at_the_cut():
    got = _step(NoGradEncoder(), _ids_batch(), capture=capture(__file__))
    f = got.one("FTD501")
    assert "3 of 5 trainable parameters got no gradient (e.g. encoder.0.weight, encoder.1.bias" in f.detail
    line = line_of(__file__, "# the cut")
    assert f.location.endswith(f"test_backward.py:{line}")
    assert "`with torch.no_grad():  # the cut`" in f.fix and "Remove the `torch.no_grad()`" in f.fix
    assert f.evidence["parameters"] == ["encoder.0.weight", "encoder.1.bias", "encoder.1.weight"]


def test_an_unused_module_is_a_minority_without_gradient():
    got = _step(NoGradEncoder(unused_pooler=True), _ids_batch())
    f = got.one("FTD506")
    assert f.detail.startswith("2 of 7 trainable parameters got no gradient (e.g. pooler.bias, pooler.weight)")
    assert "freeze on purpose" in f.fix and got.codes == ["FTD506"]


class EncoderWithHead(torch.nn.Module):
    """A custom head on a BertModel that reads the token states, not `pooler_output`: the pooler runs and gets no
    gradient by construction. With ``head_unused`` the loss forgets the head itself (the head gets no gradient)."""

    def __init__(self, head_unused=False):
        super().__init__()
        self.encoder = _bert_model()
        self.head = torch.nn.Linear(32, 2)
        self.head_unused = head_unused

    def forward(self, input_ids, attention_mask, labels):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.head(hidden[:, 0])
        scores = hidden[:, 0, :2] if self.head_unused else logits  # the bug: the head's logits are never used
        return {"loss": F.cross_entropy(scores, labels), "logits": logits}


def _bert_model():
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    return transformers.BertModel(cfg)


def test_a_pooler_the_loss_does_not_read_is_a_note():
    """It was FTD501, an error: the encoder counted as the head, and part of it got no gradient."""
    got = _step(EncoderWithHead(), token_batch(num_labels=2))
    f = got.one("FTD509")
    assert got.codes == ["FTD509"]
    assert f.evidence["parameters"] == ["encoder.pooler.dense.bias", "encoder.pooler.dense.weight"]
    assert "the loss does not read them" in f.detail


def test_a_head_the_loss_does_not_read_is_still_an_error():
    got = _step(EncoderWithHead(head_unused=True), token_batch(num_labels=2))
    f = got.one("FTD501")
    assert {"head.weight", "head.bias"} <= set(f.evidence["parameters"]) and "FTD509" in got.codes


def test_an_unused_module_frozen_on_purpose_is_fine():
    model = NoGradEncoder(unused_pooler=True)
    model.pooler.requires_grad_(False)
    assert _step(model, _ids_batch()).findings == []


class InPlaceAfterUse(torch.nn.Module):
    """sigmoid saves its output for backward; changing that output in place breaks the backward pass."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x, labels):
        probs = self.head(x).sigmoid()
        probs.mul_(0.5)
        return {"loss": F.binary_cross_entropy(probs[:, 1], labels.float()), "logits": probs}


def test_backward_error():
    batch = {"x": torch.ones(4, 8), "labels": torch.tensor([0, 1, 0, 1])}
    got = _step(InPlaceAfterUse(), batch)
    f = got.one("FTD505")
    assert f.detail.startswith(
        "RuntimeError: one of the variables needed for gradient computation has been modified by an inplace operation"
    )
    # No line of the user's code ran: the relay shows the batch the backward pass got and the library frame.
    assert "on `x` = Tensor[4, 8] float32, `labels` = Tensor[4] int64" in f.detail and "Raised in torch/" in f.detail
    assert got.skip_reason == f.evidence["exception"].splitlines()[0][:400]


def test_optimizer_step_error():
    model = bert()
    got = _step(model, token_batch(), torch.optim.SparseAdam(model.parameters(), lr=1e-3))
    f = got.one("FTD505")
    assert f.detail == (
        "optimizer.step() raised RuntimeError: SparseAdam does not support dense gradients, please "
        "consider Adam instead"
    )


class Checkpointed(torch.nn.Module):
    """Frozen embeddings, a trainable block run under activation checkpointing, a head outside it (or inside)."""

    def __init__(self, reentrant=True, head_inside=False):
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.Embedding(100, 16).requires_grad_(False)
        self.block = torch.nn.Linear(16, 16)
        self.classifier = torch.nn.Linear(16, 2).requires_grad_(not head_inside)
        self.reentrant = reentrant

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, input_ids, labels):
        h = checkpoint(self.block, self.embeddings(input_ids), use_reentrant=self.reentrant)  # the checkpoint
        logits = self.classifier(h.mean(1))
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
def test_reentrant_checkpoint_without_input_grads():
    got = _step(Checkpointed(), _ids_batch(), capture=capture(__file__))
    f = got.one("FTD508")
    line = line_of(__file__, "# the checkpoint")
    assert f.location.endswith(f"test_backward.py:{line}") and f"(at {f.location})" in f.detail
    assert "the input of 1 checkpointed block does not require grad (the embeddings are frozen)" in f.detail
    assert "2 of 4 trainable parameters get no gradient (e.g. block.bias, block.weight)" in f.detail
    assert "model.enable_input_require_grads()" in f.fix and got.codes == ["FTD508"]


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
def test_reentrant_checkpoint_around_everything_that_trains():
    got = _step(Checkpointed(head_inside=True), _ids_batch())
    f = got.one("FTD508")
    assert "the loss itself has no grad_fn" in f.detail and f.evidence["parameters"] == ["block.bias", "block.weight"]
    assert "FTD508" in got.skip_reason and got.codes == ["FTD508"]


def test_non_reentrant_checkpoint_is_fine():
    assert _step(Checkpointed(reentrant=False), _ids_batch()).findings == []


def test_short_of_memory_for_the_gradients(monkeypatch):
    model = bert()
    values = values_for(model, token_batch(), optimizer=torch.optim.AdamW(model.parameters()))
    values["work_model"] = values["target"].work_model()
    no_free_memory(monkeypatch)
    got = call("FTD806", stage="backward", **values)
    f = got.one("FTD806")
    assert f.detail.startswith("One optimizer step (the gradients, on a copy) needs about")
    assert f.evidence == {"needed_copies_of_trainable_weights": 2} and "FTD806" in got.skip_reason


# --- the contract before training: the task head trains ---------------------------------------------------------------


def _lora(**config):
    peft = pytest.importorskip("peft")
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"], **config)
    return peft.get_peft_model(bert(num_labels=2), lora)


def test_lora_without_task_type_freezes_the_new_classifier():
    model = _lora()
    f = call("FTD512", **values_for(model)).one("FTD512")  # a bare PeftModel: the task is its inner model's
    assert f.detail.startswith("`classifier`, the layer that scores the 2 classes, does not train")
    assert 'task_type="SEQ_CLS"' in f.fix and 'modules_to_save=["classifier"]' in f.fix


def test_lora_that_saves_the_head_or_a_model_that_trains_whole_is_silent():
    for model in (_lora(task_type="SEQ_CLS"), _lora(modules_to_save=["classifier"]), bert(num_labels=2)):
        assert call("FTD512", **values_for(model, task="sequence-classification")).findings == []
