"""Multiple-choice fine-tuning in a hand-written loop (fixed twin of swag_loop_no_zero_grad): gradients are zeroed
after each optimizer step, as the maintainers fixed the example (huggingface/transformers#340)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModelForMultipleChoice, AutoTokenizer

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bert-tiny")  # "openai-gpt" in the original example
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForMultipleChoice.from_pretrained(model_name)
swag = load_from_disk(fixture_path("datasets/swag"))["train"]
ending_names = ["ending0", "ending1", "ending2", "ending3"]


def pre_process_dataset(rows, max_len=40):
    first = [[row["sent1"]] * 4 for row in rows]
    second = [[f"{row['sent2']} {row[end]}" for end in ending_names] for row in rows]
    enc = tokenizer(sum(first, []), sum(second, []), truncation=True, padding="max_length", max_length=max_len,
                    return_tensors="pt")
    shape = (len(rows), 4, max_len)
    return TensorDataset(enc["input_ids"].view(shape), enc["attention_mask"].view(shape),
                         enc["token_type_ids"].view(shape), torch.tensor([row["label"] for row in rows]))


train_data = pre_process_dataset(list(swag))
train_dataloader = DataLoader(train_data, batch_size=8, shuffle=True)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

model.train()
for epoch in range(2):
    tr_loss = 0
    for step, batch in enumerate(train_dataloader):
        input_ids, attention_mask, token_type_ids, mc_labels = batch
        loss = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                     labels=mc_labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tr_loss += loss.item()
    print(f"epoch {epoch}: training loss {tr_loss / (step + 1):.3f}")
