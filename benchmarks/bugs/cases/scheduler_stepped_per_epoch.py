"""Sequence classification in a hand-written loop with a transformers warmup schedule
(get_polynomial_decay_schedule_with_warmup, sized in optimizer steps) that is stepped once per epoch, as a
Lightning module with interval="epoch" does: the schedule's factor is 0 at step 0, so the whole first epoch trains
with a learning rate of 0, and later epochs crawl through the warmup. huggingface/transformers#20916."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    get_polynomial_decay_schedule_with_warmup,
)

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/bert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
raw = load_from_disk(fixture_path("datasets/reviews"))
train = raw["train"].map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True,
                         remove_columns=["text"]).rename_column("label", "labels")
loader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=5)

num_epochs = 3
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
scheduler = get_polynomial_decay_schedule_with_warmup(optimizer, num_warmup_steps=10,
                                                      num_training_steps=num_epochs * len(loader))

for epoch in range(num_epochs):
    model.train()
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    scheduler.step()  # once per epoch (interval="epoch")
    print(f"epoch {epoch}: lr {scheduler.get_last_lr()[0]:.2e} loss {loss.item():.4f}")
