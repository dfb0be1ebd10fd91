"""Seq2seq fine-tuning in a plain PyTorch loop (fixed twin of seq2seq_decoder_inputs_equal_labels): only labels
are passed and the model builds decoder_input_ids by shifting them right, as the maintainers answered
(huggingface/transformers#11977)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from ftdoctor.fixtures import fixture_path

tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/bart-tiny"))  # "t5-small"
model = AutoModelForSeq2SeqLM.from_pretrained(fixture_path("models/bart-tiny"))
pairs = load_from_disk(fixture_path("datasets/translation"))["train"].select(range(128))

source = tokenizer([p["en"] for p in pairs["translation"]], padding="max_length", truncation=True, max_length=24,
                   return_tensors="pt")
target = tokenizer([p["fr"] for p in pairs["translation"]], padding="max_length", truncation=True, max_length=24,
                   return_tensors="pt")
rows = [{"input_ids": a, "attention_mask": b, "decoder_input_ids": c, "decoder_attention_mask": d}
        for a, b, c, d in zip(source["input_ids"], source["attention_mask"], target["input_ids"],
                              target["attention_mask"])]
loader = DataLoader(rows, batch_size=16, shuffle=True)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

model.train()
for epoch in range(3):
    for batch in loader:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        decoder_input_ids = batch["decoder_input_ids"]
        decoder_attention_mask = batch["decoder_attention_mask"]
        labels = decoder_input_ids.clone()
        labels[labels == tokenizer.pad_token_id] = -100  # do label mask
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {outputs.loss.item():.4f}")
