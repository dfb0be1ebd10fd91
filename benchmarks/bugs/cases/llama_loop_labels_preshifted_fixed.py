"""Causal-LM fine-tuning of a Llama model in a plain PyTorch loop (fixed twin of llama_loop_labels_preshifted): labels
are the input ids themselves (padding masked), and the model shifts them, as the docs now state
(huggingface/transformers#44642)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, LlamaForCausalLM

from ftdoctor.fixtures import fixture_path

tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/llama-chat-tiny"))
model = LlamaForCausalLM.from_pretrained(fixture_path("models/llama-chat-tiny"))
texts = list(load_from_disk(fixture_path("datasets/text-lm"))["train"]["text"])
ids = tokenizer([t + tokenizer.eos_token for t in texts], padding="max_length", truncation=True, max_length=48,
                return_tensors="pt")
rows = [{"input_ids": i, "attention_mask": m} for i, m in zip(ids["input_ids"], ids["attention_mask"])]
loader = DataLoader(rows, batch_size=8, shuffle=True)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

model.train()
for epoch in range(2):
    for batch in loader:
        input_ids = batch["input_ids"]
        attention_mask = batch["attention_mask"]
        labels = batch["input_ids"].clone()  # the model shifts the labels inside
        labels[attention_mask == 0] = -100
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {loss.item():.4f}")
