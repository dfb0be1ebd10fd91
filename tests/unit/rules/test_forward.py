"""The forward stage's rules, one check each on hand-built models and batches (the loop's forward rules, FTD410 and
FTD411, are in test_loop.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ._build_b import (
    bart,
    bert,
    call,
    capture,
    gpt2,
    line_of,
    no_free_memory,
    one_thread,  # noqa: F401  (the fixture below)
    token_batch,
    values_for,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_forward_pass_of_a_correct_batch_provides_the_first_loss():
    model = bert()
    got = call("FTD401", **values_for(model, token_batch()))
    assert got.findings == [] and got.skip_reason is None
    assert math.isfinite(got.values["initial_loss"]) and got.values["work_model"] is not model
    assert got.evidence["logits_shape"] == [4, 3]


def test_no_labels_no_loss():
    batch = token_batch(labels=None)
    got = call("FTD401", **values_for(bert(), batch))
    f = got.one("FTD401")
    assert "BertForSequenceClassification" in f.detail and "['attention_mask', 'input_ids']" in f.detail
    assert "labels" in f.fix
    assert got.values["outputs"] is not None  # the logits still go on to the stages that need no loss


def test_no_loss_already_explained_by_collate_is_not_reported_twice():
    from ftdoctor.core.findings import finding

    earlier = [finding("FTD304", "no labels in the batch")]
    got = call("FTD401", **values_for(bert(), token_batch(labels=None), findings_so_far=earlier))
    assert got.findings == [] and "FTD304" in got.skip_reason


def test_per_token_labels_on_a_sequence_classifier():
    got = call("FTD402", **values_for(bert(), token_batch(labels="tokens")))
    f = got.one("FTD402")
    assert "Expected input batch_size (4) to match target batch_size (40)" in f.detail
    assert "AutoModelForTokenClassification" in f.fix and f.evidence["labels_shape"] == [4, 10]


def test_one_label_per_sequence_on_a_token_classifier():
    got = call("FTD402", **values_for(bert("TokenClassification"), token_batch(labels="classes")))
    f = got.one("FTD402")
    assert "AutoModelForSequenceClassification" in f.fix and f.evidence["labels_shape"] == [4]


class Raises(torch.nn.Module):
    """A model whose forward fails with a message that states its own remedy."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x, labels=None):
        raise ValueError("pixel_values has 3 channels. Please pass images with 4 channels.")


def test_forward_error_is_relayed_with_the_remedy_its_message_states():
    got = call("FTD405", **values_for(Raises(), {"x": torch.zeros(2, 4)}))
    f = got.one("FTD405")
    assert f.detail.startswith("ValueError: pixel_values has 3 channels. Please pass images with 4 channels — at ")
    assert "in Raises.forward(): `raise ValueError(" in f.detail and "`x` = Tensor[2, 4] float32" in f.detail
    assert f.fix.startswith("Please pass images with 4 channels.") and "(from the error message)" in f.fix
    assert got.skip_reason == f.evidence["exception"]


def test_short_of_memory_for_a_working_copy(monkeypatch):
    no_free_memory(monkeypatch)
    got = call("FTD806", stage="forward", **values_for(bert(), token_batch()))
    f = got.one("FTD806")
    assert "A working copy of the model needs about" in f.detail and "this machine has" in f.detail
    assert "FTD806" in got.skip_reason and got.values == {}


def _first_loss(model, batch, **kw):
    """The forward stage as the walk runs it: forward_pass, then the check of the loss it provides."""
    values = values_for(model, batch, **kw)
    first = call("FTD401", **values)
    return call("FTD403", **{**values, **first.values})


def test_loss_far_above_chance():
    values = values_for(bert(), token_batch(), task="sequence-classification")
    got = call("FTD404", initial_loss=12.0, outputs={}, **values)
    f = got.one("FTD404")
    assert "ln(3) = 1.10" in f.detail and f.evidence == {"loss": 12.0, "chance": pytest.approx(math.log(3))}


def test_a_fresh_head_starts_near_chance():
    got = _first_loss(bert(), token_batch(), task="sequence-classification")
    assert got.findings == []


def test_multi_label_loss_is_not_judged_against_ln_classes():
    values = values_for(bert(problem_type="multi_label_classification"), token_batch())
    assert call("FTD404", initial_loss=12.0, outputs={}, **values).findings == []


def test_nan_inputs_make_the_first_loss_nan():
    values = values_for(bert(), token_batch())
    values["batch"]["pixel_values"] = torch.tensor([[0.5, float("nan")]])
    got = call("FTD403", initial_loss=float("nan"), outputs={}, **values)
    f = got.one("FTD403")
    assert "non-finite values in ['pixel_values']" in f.detail and f.evidence["bad_inputs"] == ["pixel_values"]
    assert "Filter or fill rows with NaN/inf" in f.fix


def test_nan_weights_make_the_first_loss_nan():
    model = bert()
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    got = _first_loss(model, token_batch())
    f = got.one("FTD403")
    assert "1 weights are already NaN/inf (e.g. classifier.weight)" in f.detail and "Reload" in f.fix


def test_an_empty_attention_mask_is_named():
    values = values_for(bert(), token_batch())
    values["batch"]["attention_mask"][1] = 0
    got = call("FTD403", initial_loss=float("nan"), outputs={}, **values)
    assert "1 rows with an all-zero attention_mask" in got.one("FTD403").detail


class MeanOverKept(torch.nn.Module):
    """Averages the per-token loss over the positions ``keep`` selects: 0/0 when it selects none."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(100, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, input_ids, labels, keep):
        logits = self.head(self.emb(input_ids))
        per_token = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        loss = (per_token * keep).sum() / keep.sum()  # the division that makes the NaN
        return {"loss": loss, "logits": logits}


def test_the_operation_where_the_nan_is_born_is_shown():
    torch.manual_seed(0)
    batch = {
        "input_ids": torch.randint(0, 100, (2, 5)),
        "labels": torch.randint(0, 2, (2, 5)),
        "keep": torch.zeros(2, 5),
    }
    got = _first_loss(MeanOverKept(), batch, capture=capture(__file__))
    f = got.one("FTD403")
    assert f.location.endswith(f"test_forward.py:{line_of(__file__, '# the division that makes the NaN')}")
    assert "returns NaN/inf" in f.detail and "loss = (per_token * keep).sum() / keep.sum()" in f.detail
    assert "clamp(min=1)" in f.fix


def test_a_finite_custom_loss_passes():
    torch.manual_seed(0)
    batch = {
        "input_ids": torch.randint(0, 100, (2, 5)),
        "labels": torch.randint(0, 2, (2, 5)),
        "keep": torch.ones(2, 5),
    }
    assert _first_loss(MeanOverKept(), batch).findings == []


def _seq2seq_values(decoder_inputs):
    """A translation batch whose decoder inputs are the labels themselves, or the labels shifted right (BART's
    start id 2 first, -100 read as its pad id 1)."""
    labels = torch.tensor([[11, 12, 13, -100], [21, 22, 23, 24]])
    padded = torch.where(labels == -100, torch.tensor(1), labels)
    shifted = torch.cat([torch.full((2, 1), 2), padded[:, :-1]], 1)
    dec = {"labels": padded, "shifted": shifted}[decoder_inputs]
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8]] * 2), "labels": labels, "decoder_input_ids": dec}
    return values_for(bart(), batch, task="translation")


def test_decoder_inputs_equal_to_the_labels():
    got = call("FTD421", **_seq2seq_values("labels"))
    f = got.one("FTD421")
    assert "they equal the labels" in f.detail and f.evidence["equal_to_labels"] == 1.0
    assert "DataCollatorForSeq2Seq(tokenizer, model=model)" in f.fix and "reference show translation" in f.fix


def test_decoder_inputs_shifted_right_from_the_labels_pass():
    assert call("FTD421", **_seq2seq_values("shifted")).findings == []


def test_a_model_that_returns_a_tuple_has_a_loss():
    got = call("FTD401", **values_for(bert(return_dict=False), token_batch()))
    assert got.findings == [] and math.isfinite(got.values["initial_loss"])


class PerExampleLoss(torch.nn.Module):
    """Returns the loss of each example, not their mean (`reduction="none"`): training's backward would raise."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x, labels):
        logits = self.head(x)
        return {"loss": F.cross_entropy(logits, labels, reduction="none"), "logits": logits}


def test_a_loss_of_one_value_per_example_is_judged_by_its_mean_not_a_crash():
    """The forward stage reads the mean (chance level is judged on it); backward reports FTD505 for it."""
    got = call("FTD401", **values_for(PerExampleLoss(), {"x": torch.ones(3, 4), "labels": torch.tensor([0, 1, 0])}))
    assert not got.findings and got.evidence["loss_shape"] == [3]
    assert got.values["initial_loss"] == pytest.approx(got.evidence["loss"]) and 0 < got.evidence["loss"] < 5


def test_override_signature_names_the_parameter_the_trainer_passes():
    from types import SimpleNamespace

    from transformers import Trainer

    class WeightedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False):
            return None

    class UpToDate(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return None

    f = call("FTD406", pipeline=SimpleNamespace(trainer=WeightedTrainer.__new__(WeightedTrainer))).one("FTD406")
    assert f.evidence["argument"] == "num_items_in_batch" and "num_items_in_batch=None" in f.fix
    assert f.location.endswith(f"test_forward.py:{WeightedTrainer.compute_loss.__code__.co_firstlineno}")
    assert call("FTD406", pipeline=SimpleNamespace(trainer=UpToDate.__new__(UpToDate))).findings == []


# --- the contract before the forward: the head against the labels ----------------------------------------------------


def _base_bert():
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=bert().config.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    return transformers.BertModel(cfg)


def test_base_model_given_labels_has_no_head_to_use_them():
    got = call("FTD401", **values_for(_base_bert(), token_batch()))
    f = got.one("FTD401")
    assert f.detail.startswith("`BertModel` is a base model without a head") and f.evidence["labels_shape"] == [4]
    assert "AutoModelForSequenceClassification" in f.fix
    assert got.codes == ["FTD401"]  # the missing loss that follows is the one predicted, not a second finding


def test_per_token_labels_on_a_sequence_classifier_are_named_before_the_crash():
    got = call("FTD402", **values_for(bert(), token_batch(labels="tokens")))
    assert got.codes == ["FTD402"] and "predicted by FTD402" in got.skip_reason
    assert got.one("FTD402").detail.startswith("The labels are one per token ([4, 10], as long as `input_ids`)")


def test_labels_of_another_length_than_the_inputs_of_a_causal_lm():
    batch = token_batch(labels=None)
    batch["labels"] = batch["input_ids"][:, :4].clone()
    f = call("FTD402", **values_for(gpt2(), batch)).one("FTD402")
    assert "are not as long as the inputs ([4, 10])" in f.detail and "AutoModelForSeq2SeqLM" in f.fix


def test_labels_that_fit_the_head_leave_the_forward_alone():
    for model, batch in ((bert(), token_batch()), (bert("TokenClassification"), token_batch(labels="tokens"))):
        got = call("FTD402", **values_for(model, batch))
        assert got.findings == [] and math.isfinite(got.values["initial_loss"])
    got = call("FTD402", **values_for(gpt2(), token_batch(labels="ids")))
    assert got.findings == []
