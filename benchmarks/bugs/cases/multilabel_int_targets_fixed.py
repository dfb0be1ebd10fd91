"""Multi-label tagging in a plain PyTorch loop (fixed twin of multilabel_int_targets): the multi-hot targets are
floats, as BCEWithLogitsLoss needs (Lightning-AI/torchmetrics#1367)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bert-tiny")  # "roberta-large"
tags = ["positive", "negative", "about_price"]
raw = load_from_disk(fixture_path("datasets/reviews"))["train"].select(range(96))

tokenizer = AutoTokenizer.from_pretrained(model_name)


def encode(batch):
    enc = tokenizer(batch["text"], truncation=True, max_length=64)
    enc["labels"] = [[float(stars >= 3), float(stars <= 1), float("price" in text)]
                     for stars, text in zip(batch["label"], batch["text"])]
    return enc


train = raw.map(encode, batched=True, remove_columns=raw.column_names)
loader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))

hf_config = AutoConfig.from_pretrained(model_name, num_labels=len(tags), problem_type="multi_label_classification")
model = AutoModelForSequenceClassification.from_pretrained(model_name, config=hf_config)
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)

model.train()
for epoch in range(2):
    for batch in loader:
        outputs = model(**batch)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {outputs.loss.item():.4f}")
