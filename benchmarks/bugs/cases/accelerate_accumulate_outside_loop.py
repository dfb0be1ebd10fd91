"""Gradient accumulation with Accelerate written as the accumulate() docstring example once showed it: the
`with accelerator.accumulate(model):` block wraps the whole loop instead of each step, so Accelerate counts one
step for the entire epoch and, with gradient_accumulation_steps=2, never lets the optimizer step: the model does not
train ("I was wondering why my model wasn't converging well!"). huggingface/accelerate#1211."""

import torch
from accelerate import Accelerator
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

accelerator = Accelerator(gradient_accumulation_steps=2)
checkpoint = fixture_path("models/distilbert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
raw = load_from_disk(fixture_path("datasets/mrpc"))
train = raw["train"].map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True), batched=True,
                         remove_columns=["sentence1", "sentence2", "idx"]).rename_column("label", "labels")
training_dataloader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.1, total_iters=30)
model, optimizer, training_dataloader, scheduler = accelerator.prepare(model, optimizer, training_dataloader, scheduler)

model.train()
for epoch in range(2):
    with accelerator.accumulate(model):
        for batch in training_dataloader:
            outputs = model(**batch)
            loss = outputs.loss
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    accelerator.print(f"epoch {epoch}: loss {loss.item():.4f}")
