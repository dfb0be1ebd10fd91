"""A fine-tuning loop in the style of a course notebook whose validation pass runs the model in training mode (no
model.eval()): dropout stays on while measuring validation loss and accuracy, so the reported numbers are noisy and
pessimistic and the "best" epoch is picked on them. udacity/deep-learning-v2-pytorch#3."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/distilbert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
raw = load_from_disk(fixture_path("datasets/reviews"))
encoded = raw.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True,
                  remove_columns=["text"]).rename_column("label", "labels")
collate = DataCollatorWithPadding(tokenizer)
train_loader = DataLoader(encoded["train"], batch_size=16, shuffle=True, collate_fn=collate)
valid_loader = DataLoader(encoded["test"], batch_size=32, collate_fn=collate)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=5)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
valid_loss_min = float("inf")

for epoch in range(2):
    train_loss = 0.0
    model.train()
    for batch in train_loader:
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
    valid_loss = 0.0
    with torch.no_grad():
        for batch in valid_loader:
            valid_loss += model(**batch).loss.item()
    valid_loss /= len(valid_loader)
    print(f"epoch {epoch}: train {train_loss / len(train_loader):.4f} valid {valid_loss:.4f}")
    if valid_loss <= valid_loss_min:
        torch.save(model.state_dict(), "model_best.pt")
        valid_loss_min = valid_loss
