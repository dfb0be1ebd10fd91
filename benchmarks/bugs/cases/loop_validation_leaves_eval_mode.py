"""A hand-written fine-tuning loop that validates every few steps inside the epoch: validate() switches the model to
eval mode and the loop only calls model.train() at the start of each epoch, so after the first validation the rest
of the epoch trains with dropout off. Nothing fails; training quietly differs from what was configured.
fartashf/vsepp#4 ("Finish validation without running model.train()")."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/bert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
raw = load_from_disk(fixture_path("datasets/mnli"))
encoded = raw.map(lambda b: tokenizer(b["premise"], b["hypothesis"], truncation=True, max_length=96), batched=True,
                  remove_columns=["premise", "hypothesis", "idx"]).rename_column("label", "labels")
collate = DataCollatorWithPadding(tokenizer)
train_loader = DataLoader(encoded["train"], batch_size=16, shuffle=True, collate_fn=collate)
val_loader = DataLoader(encoded["validation_matched"], batch_size=32, collate_fn=collate)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=3)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
val_step = 5


def validate(val_loader, model):
    model.eval()
    correct = 0
    with torch.no_grad():
        for batch in val_loader:
            correct += (model(**batch).logits.argmax(-1) == batch["labels"]).sum().item()
    return correct / len(val_loader.dataset)


step = 0
for epoch in range(2):
    model.train()
    for batch in train_loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        if step % val_step == 0:
            print(f"step {step}: val accuracy {validate(val_loader, model):.3f}")
