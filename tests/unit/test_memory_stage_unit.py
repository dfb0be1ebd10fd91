"""The memory stage's measurements on tiny hand-built models and datasets: the activation fit, the worst-case
rows, optimizer state and the device inventory."""

from __future__ import annotations

import pytest


def _pad_collator(rows):
    """Pads input_ids with 0; per-token labels (language modelling) are the inputs, else one label per row."""
    import torch

    n = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([list(r["input_ids"]) + [0] * (n - len(r["input_ids"])) for r in rows])
    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (n - len(r["input_ids"])) for r in rows])
    labels = ids.clone() if isinstance(rows[0]["labels"], list) else torch.tensor([r["labels"] for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("kind", ["bert-sdpa", "bert-eager", "gpt2"])
def test_activation_fit_extrapolates_in_length_and_batch(kind):
    """Fitted at up to 16 tokens and batch 2; checked at 96 tokens, batch 3 (eager attention keeps S x S)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    from ftdoctor.runtime.memory_model import fit_activations, saved_activation_bytes
    from ftdoctor.targets.base import model_loss

    torch.manual_seed(0)
    if kind.startswith("bert"):
        model = BertForSequenceClassification(
            BertConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                vocab_size=100,
                num_labels=3,
                attn_implementation="eager" if kind == "bert-eager" else "sdpa",
            )
        )
        row = {"input_ids": [i % 99 + 1 for i in range(96)], "labels": 1}
    else:
        model = GPT2LMHeadModel(
            GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=128, bos_token_id=0, eos_token_id=0)
        )
        row = {"input_ids": [i % 99 + 1 for i in range(96)]}
        row["labels"] = list(row["input_ids"])
    for dtype in (None, torch.bfloat16):
        fit = fit_activations(model, row, _pad_collator, model_loss, dtype=dtype, fit_length=16)
        assert max(s for s, _, _ in fit.shapes) <= 16
        direct, _ = saved_activation_bytes(model, _pad_collator([row] * 3), model_loss, dtype=dtype)
        assert abs(fit.total(3, 96) - direct) <= 0.15 * direct, (kind, dtype, fit.total(3, 96), direct)
        assert (fit.c > 0) == (kind == "bert-eager")  # only eager attention materialises S x S on a GPU


def test_worst_case_rows_are_the_longest_not_the_first_batch():
    from datasets import Dataset

    from ftdoctor.runtime.memory_model import worst_case_rows

    lengths = [5, 7, 6, 40, 8, 33, 9]
    ds = Dataset.from_dict({"input_ids": [[1] * n for n in lengths], "label": [0] * len(lengths)})
    rows = worst_case_rows(ds, [ds[0]], 3)
    assert [len(r["input_ids"]) for r in rows] == [40, 33, 9]
    assert [len(r["input_ids"]) for r in worst_case_rows(ds, [ds[0]], 9)][7:] == [40, 33]  # cycles when short


def test_optimizer_state_by_type_without_a_measured_step():
    import torch

    from ftdoctor.runtime.memory_model import optimizer_state_estimate

    params = [torch.nn.Parameter(torch.zeros(64, 32)), torch.nn.Parameter(torch.zeros(32))]
    n = 64 * 32 + 32
    assert optimizer_state_estimate("AdamW", params)[0] == 2 * 4 * n + 4 * 2
    assert optimizer_state_estimate("SGD", params)[0] == 0
    assert optimizer_state_estimate("sgd-momentum", params)[0] == 4 * n
    assert optimizer_state_estimate("Adafactor", params)[0] == (64 + 32) * 4 + 32 * 4
    assert optimizer_state_estimate("adamw_bnb_8bit", params)[0] < 2.1 * n


def test_device_inventory_without_a_gpu_and_the_named_device():
    import torch

    from ftdoctor.entry.cli import _parse_size
    from ftdoctor.runtime import devices

    if not torch.cuda.is_available():
        assert devices.inventory() == [] and devices.plan_device() is None
    named = devices.plan_device(_parse_size("A100-80GB"))
    assert named.total_bytes == 80 * 2**30 and named.source == "--gpu-memory"
    busy = devices.Device(0, "NVIDIA H100", 80 * 2**30, 50 * 2**30, [{"pid": 1, "used_bytes": 30 * 2**30}])
    assert busy.plannable_bytes == 50 * 2**30 - devices.CONTEXT_RESERVE
