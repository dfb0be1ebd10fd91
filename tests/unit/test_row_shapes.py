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


def test_cut_row_leaves_rows_without_token_ids_alone():
    for row in ({"input_ids": torch.tensor(5)}, {"text": "x" * 100}, (torch.arange(40), torch.tensor(1))):
        assert cut_row(row, 32) is row
