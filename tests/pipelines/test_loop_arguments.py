"""In a loop, the checks judge what the model was called with: labels built in the loop body are labels."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

LOOP = """
import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/gpt2-tiny"))
tokenizer.pad_token = tokenizer.eos_token
raw = load_from_disk(fixture_path("datasets/reviews"))
ds = raw["train"].map(lambda b: tokenizer([t + tokenizer.eos_token for t in b["text"]], truncation=True,
                                          max_length=64), batched=True, remove_columns=raw["train"].column_names)
loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
model = AutoModelForCausalLM.from_pretrained(fixture_path("models/gpt2-tiny"))
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
model.train()
for step, batch in enumerate(loader):
    CALL
    out.loss.backward()
    opt.step()
    opt.zero_grad()
    if step == 3:
        break
"""
BODY_LABELS = (
    'labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)\n'
    "    out = model(**batch, labels=labels)"
)


def _check(tmp_path, monkeypatch, call):
    from ftdoctor.process.parent import check_script

    path = tmp_path / "loop.py"
    path.write_text(LOOP.replace("CALL", call))
    monkeypatch.chdir(tmp_path)
    result = check_script(
        str(path), [], timeout=300, in_process=True, stages=["decode", "collate", "forward", "backward"]
    )
    assert result.report is not None, result.message
    return result.report


def test_labels_built_in_the_loop_body_are_the_batchs_labels(tmp_path, monkeypatch):
    report = _check(tmp_path, monkeypatch, BODY_LABELS)
    assert not report.internal_errors
    assert [f.code for f in report.findings if f.severity == "error"] == [], report.findings
    assert report.stage("forward").status == "pass" and report.stage("backward").status != "skip"


def test_a_loop_that_never_gives_labels_is_still_told(tmp_path, monkeypatch):
    report = _check(tmp_path, monkeypatch, "out = model(**batch)")
    assert "FTD304" in [f.code for f in report.findings]
