"""Rows of every shape the libraries allow go through the data helpers without an exception of ftdoctor's."""

from __future__ import annotations

import numpy as np
import torch

from ftdoctor.facts.datasets import cut_row


def test_cut_row_keeps_scalar_columns_whatever_their_type():
    ids = list(range(50))
    for label in (1, torch.tensor(1), np.int64(1), np.array(1), "pos", None):
        row = {"input_ids": ids, "attention_mask": [1] * 50, "labels": label}
        out = cut_row(row, 32)
        assert out["input_ids"] == ids[18:] and out["attention_mask"] == [1] * 32
        assert out["labels"] is label


def test_cut_row_cuts_tensor_and_array_columns_together():
    row = {"input_ids": torch.arange(40), "labels": torch.arange(40) + 100, "token_type_ids": np.zeros(40)}
    out = cut_row(row, 32)
    assert out["input_ids"].tolist() == list(range(8, 40)) and out["labels"][0].item() == 108
    assert len(out["token_type_ids"]) == 32


def test_cut_row_keeps_the_text_of_a_row_padded_to_a_fixed_length():
    # padding="max_length": 40 real tokens then 60 pads; the cut ends at the last real token, not in the padding.
    row = {"input_ids": list(range(1, 41)) + [0] * 60, "attention_mask": [1] * 40 + [0] * 60, "label": 3}
    out = cut_row(row, 32)
    assert out["input_ids"] == list(range(9, 41)) and out["attention_mask"] == [1] * 32
    short = {"input_ids": torch.tensor([5] * 10 + [0] * 90), "attention_mask": torch.tensor([1] * 10 + [0] * 90)}
    out = cut_row(short, 32)
    assert out["input_ids"].tolist() == [5] * 10 + [0] * 22 and out["attention_mask"].sum().item() == 10
    # left padding: the real tokens are already at the end
    left = {"input_ids": [0] * 60 + list(range(1, 41)), "attention_mask": [0] * 60 + [1] * 40}
    assert cut_row(left, 32)["input_ids"] == list(range(9, 41))


def test_cut_row_leaves_rows_without_token_ids_alone():
    for row in ({"input_ids": torch.tensor(5)}, {"text": "x" * 100}, (torch.arange(40), torch.tensor(1))):
        assert cut_row(row, 32) is row


def test_loss_and_outputs_reads_every_shape_a_forward_returns():
    from transformers.modeling_outputs import SequenceClassifierOutput

    from ftdoctor.facts.models import loss_and_outputs

    loss, logits = torch.tensor(0.7), torch.zeros(2, 3)
    out = SequenceClassifierOutput(loss=loss, logits=logits)
    assert loss_and_outputs(out) == (loss, out)
    as_dict = {"loss": loss, "logits": logits}
    assert loss_and_outputs(as_dict) == (loss, as_dict)
    got_loss, got = loss_and_outputs((loss, logits))  # return_dict=False with labels
    assert got_loss is loss and got["logits"] is logits
    got_loss, got = loss_and_outputs((logits,), labelled=False)  # return_dict=False without labels
    assert got_loss is None and got["logits"] is logits
    assert loss_and_outputs(loss) == (loss, None)  # a loss function's result, or compute_loss's
    got_loss, got = loss_and_outputs(logits)  # a bare module returning logits
    assert got_loss is None and got["logits"] is logits


def test_a_trainer_whose_compute_loss_returns_a_bare_tensor_gives_its_loss():
    """A subclass that ignores return_outputs (the Trainer needs only the loss in training): the forward stage
    crashed with 'iteration over a 0-d tensor'."""
    import types

    from ftdoctor.targets.trainer import TrainerTarget

    class BareLossTrainer:
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return (model(inputs["x"]) - inputs["y"]).pow(2).mean()

    class PairTrainer:
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            pred = model(inputs["x"])
            loss = (pred - inputs["y"]).pow(2).mean()
            return (loss, (pred,)) if return_outputs else loss

    model = torch.nn.Linear(3, 1)
    batch = {"x": torch.ones(2, 3), "y": torch.zeros(2, 1)}
    for trainer in (BareLossTrainer(), PairTrainer()):
        target = TrainerTarget.__new__(TrainerTarget)
        target.pipeline = types.SimpleNamespace(trainer=trainer)
        loss, outputs = TrainerTarget.run_loss(target, model, batch)
        assert loss.dim() == 0 and loss.requires_grad
        assert outputs is None or outputs["logits"].shape == (2, 1)
