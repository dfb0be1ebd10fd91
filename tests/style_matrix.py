"""The same fine-tuning pipelines written in the styles people write them in, generated from one description.

A pipeline is a set of knobs on one correct MNLI sequence-classification script (bert-tiny, 3 classes); a bug
turns one knob. A style is a way of writing the training part: the Trainer, a loop over a DataLoader, over one
reused batch, over a list of batches, over a generator, over index slices of tensors, an Accelerate loop, a loop
with its own loss function, everything inside main(), a notebook. `render(pipeline, style)` returns the script.
"""

from __future__ import annotations

import json
import textwrap

# name -> (knobs, expected (stage, code) or None for the correct one, styles it cannot occur in)
PIPELINES = {
    "correct": ({}, None, ()),
    "num_labels_short": ({"num_labels": 2}, ("config", "FTD101"), ()),
    "learning_rate_zero": ({"lr": 0.0}, ("backward", "FTD503"), ()),
    "no_zero_grad": ({"zero_grad": False}, ("backward", "FTD510"), ("trainer",)),
    "everything_frozen": ({"freeze": True}, ("backward", "FTD507"), ()),
    "vocab_too_small": ({"vocab": 60}, ("config", "FTD103"), ()),
}

STYLES = (
    "trainer",
    "dataloader",
    "one_batch",
    "batch_list",
    "generator",
    "slices",
    "accelerate",
    "own_loss",
    "main_function",
    "notebook",
)

PREAMBLE = """
import torch
from datasets import load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
from ftdoctor.fixtures import fixture_path

torch.manual_seed(0)
raw = load_from_disk(fixture_path("datasets/mnli"))
checkpoint = fixture_path("models/bert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
tokenized = raw.map(lambda e: tokenizer(e["premise"], e["hypothesis"], truncation=True), batched=True)
tokenized = tokenized.remove_columns(["premise", "hypothesis", "idx"]).rename_column("label", "labels")
collator = DataCollatorWithPadding(tokenizer)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels={num_labels})
{vocab}{freeze}"""

TRAINER = """
from transformers import Trainer, TrainingArguments

args = TrainingArguments("out", learning_rate={lr}, per_device_train_batch_size=8, max_steps=5, report_to=[],
                         save_strategy="no", use_cpu=True)
trainer = Trainer(model, args, train_dataset=tokenized["train"], data_collator=collator)
trainer.train()
"""

# The body of each loop style: it defines `batches` (an iterable of dicts the model takes as **kwargs).
BATCH_SOURCES = {
    "dataloader": """
from torch.utils.data import DataLoader

batches = DataLoader(tokenized["train"], batch_size=8, shuffle=True, collate_fn=collator)
""",
    "one_batch": """
batch = collator([tokenized["train"][i] for i in range(8)])
batches = [batch] * 5
""",
    "batch_list": """
train = tokenized["train"]
batches = [collator([train[j] for j in range(i, min(i + 8, len(train)))]) for i in range(0, 40, 8)]
""",
    "generator": """
def make_batches(dataset, size):
    rows = []
    for row in dataset:
        rows.append(row)
        if len(rows) == size:
            yield collator(rows)
            rows = []

batches = make_batches(tokenized["train"], 8)
""",
}

LOOP = """
optimizer = torch.optim.AdamW(model.parameters(), lr={lr})
model.train()
for step, batch in enumerate(batches):
    outputs = model(**batch)
    loss = outputs.loss
    loss.backward()
    optimizer.step()
{zero}    if step == 4:
        break
"""

SLICES = """
train = raw["train"][:]  # a dict of lists
enc = tokenizer(train["premise"], train["hypothesis"], truncation=True, padding=True, return_tensors="pt")
labels = torch.tensor(train["label"])
optimizer = torch.optim.AdamW(model.parameters(), lr={lr})
model.train()
for i in range(0, 40, 8):
    outputs = model(input_ids=enc["input_ids"][i:i + 8], attention_mask=enc["attention_mask"][i:i + 8],
                    labels=labels[i:i + 8])
    outputs.loss.backward()
    optimizer.step()
{zero}"""

ACCELERATE = """
from accelerate import Accelerator
from torch.utils.data import DataLoader

accelerator = Accelerator(cpu=True)
loader = DataLoader(tokenized["train"], batch_size=8, shuffle=True, collate_fn=collator)
optimizer = torch.optim.AdamW(model.parameters(), lr={lr})
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
model.train()
for step, batch in enumerate(loader):
    outputs = model(**batch)
    accelerator.backward(outputs.loss)
    optimizer.step()
{zero}    if step == 4:
        break
"""

OWN_LOSS = """
import torch.nn.functional as F
from torch.utils.data import DataLoader

loader = DataLoader(tokenized["train"], batch_size=8, shuffle=True, collate_fn=collator)
optimizer = torch.optim.AdamW(model.parameters(), lr={lr})
model.train()
for step, batch in enumerate(loader):
    targets = batch.pop("labels")
    logits = model(**batch).logits
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
{zero}    if step == 4:
        break
"""


def knobs(pipeline: str) -> dict:
    base = {"num_labels": 3, "lr": 3e-3, "zero_grad": True, "freeze": False, "vocab": None}
    base.update(PIPELINES[pipeline][0])
    return base


def _zero(k: dict, indent: str = "    ") -> str:
    return f"{indent}optimizer.zero_grad()\n" if k["zero_grad"] else ""


def _training(style: str, k: dict) -> str:
    lr = repr(k["lr"])
    if style == "trainer":
        return TRAINER.format(lr=lr)
    if style in BATCH_SOURCES:
        return BATCH_SOURCES[style] + LOOP.format(lr=lr, zero=_zero(k))
    if style == "slices":
        return SLICES.format(lr=lr, zero=_zero(k))
    if style == "accelerate":
        return ACCELERATE.format(lr=lr, zero=_zero(k))
    if style == "own_loss":
        return OWN_LOSS.format(lr=lr, zero=_zero(k))
    raise ValueError(style)


def render(pipeline: str, style: str) -> str:
    """The script (or, for the notebook style, the .ipynb JSON) of ``pipeline`` written in ``style``."""
    k = knobs(pipeline)
    vocab = f"model.resize_token_embeddings({k['vocab']})\n" if k["vocab"] else ""
    freeze = "for p in model.parameters():\n    p.requires_grad = False\n" if k["freeze"] else ""
    head = PREAMBLE.format(num_labels=k["num_labels"], vocab=vocab, freeze=freeze)
    if style == "main_function":
        body = head + _training("dataloader", k)
        return "def main():\n" + textwrap.indent(body, "    ") + '\n\nif __name__ == "__main__":\n    main()\n'
    if style == "notebook":
        cells = [
            head,
            "!pip install -q transformers  # a shell line, as notebooks have them\n%matplotlib inline\n",
            _training("dataloader", k),
        ]
        return json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "metadata": {},
                        "source": c.splitlines(True),
                        "outputs": [],
                        "execution_count": None,
                    }
                    for c in cells
                ]
                + [{"cell_type": "markdown", "metadata": {}, "source": ["# notes\n"]}],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    return head + _training(style, k)


def applies(pipeline: str, style: str) -> bool:
    return style not in PIPELINES[pipeline][2]


def filename(pipeline: str, style: str) -> str:
    return f"{pipeline}__{style}" + (".ipynb" if style == "notebook" else ".py")
