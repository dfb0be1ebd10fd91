"""BERT fine-tuned for classification in a hand-written loop with Adam at a learning rate far above what the model
tolerates (the nlp-tutorial BERT example used 1e-3 for a full BERT): the updates overshoot, the loss jumps around and
the model settles on a poor solution instead of converging. graykode/nlp-tutorial#77 ("The Learning Rate in
5-2.BERT must be reduced"). The rates here are scaled for the tiny test model, whose sensible range is higher."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/bert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
raw = load_from_disk(fixture_path("datasets/mrpc"))
train = raw["train"].map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True), batched=True,
                         remove_columns=["sentence1", "sentence2", "idx"]).rename_column("label", "labels")
loader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
optimizer = torch.optim.Adam(model.parameters(), lr=0.5)

for epoch in range(3):
    model.train()
    for batch in loader:
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    print(f"Epoch: {epoch + 1:04d} cost = {loss.item():.6f}")
