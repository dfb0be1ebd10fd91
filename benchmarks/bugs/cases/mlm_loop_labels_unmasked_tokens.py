"""Domain-adaptive masked-LM training of BERT in a plain PyTorch loop that masks 15% of the tokens by hand and passes
the original ids as labels for every position: the unmasked positions are then trained to copy their input, which is
trivial, so the loss is low (0.1-0.2) while the model barely learns to fill masks. huggingface/transformers#20797
(labels must be -100 everywhere except the masked positions)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForMaskedLM, AutoTokenizer

from ftdoctor.fixtures import fixture_path

tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/bert-tiny"))  # "dbmdz/bert-base-italian-xxl-cased"
model = AutoModelForMaskedLM.from_pretrained(fixture_path("models/bert-tiny"))
texts = list(load_from_disk(fixture_path("datasets/corpus"))["train"]["text"])
enc = tokenizer(texts, padding="max_length", truncation=True, max_length=40, return_tensors="pt")
rows = [{"input_ids": i, "attention_mask": m} for i, m in zip(enc["input_ids"], enc["attention_mask"])]
loader = DataLoader(rows, batch_size=16, shuffle=True)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
special = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])

model.train()
for epoch in range(2):
    for batch in loader:
        labels = batch["input_ids"].clone()
        inputs = batch["input_ids"].clone()
        candidates = ~torch.isin(inputs, special)
        mask = (torch.rand(inputs.shape) < 0.15) & candidates
        inputs[mask] = tokenizer.mask_token_id
        outputs = model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {outputs.loss.item():.4f}")
