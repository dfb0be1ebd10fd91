"""Multi-label tagging with a transformers sequence classifier configured with
problem_type="multi_label_classification", trained in a plain PyTorch loop. The multi-hot targets are built as
integers, and BCEWithLogitsLoss needs floats: "result type Float can't be cast to the desired output type Long".
Lightning-AI/torchmetrics#1367."""

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
    enc["labels"] = [[int(stars >= 3), int(stars <= 1), int("price" in text)]
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
