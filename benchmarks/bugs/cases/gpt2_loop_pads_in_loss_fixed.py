"""GPT-2 fine-tuned in a plain PyTorch loop (fixed twin of gpt2_loop_pads_in_loss): the padded positions of the
labels are set to -100 so the loss ignores them (huggingface/transformers#7135)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import GPT2LMHeadModel, GPT2Tokenizer

from ftdoctor.fixtures import fixture_path

tokenizer = GPT2Tokenizer.from_pretrained(fixture_path("models/gpt2-tiny"))  # "gpt2"
tokenizer.pad_token = tokenizer.eos_token
model = GPT2LMHeadModel.from_pretrained(fixture_path("models/gpt2-tiny"))

texts = load_from_disk(fixture_path("datasets/text-lm"))["train"]["text"]
enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=48, return_tensors="pt")
examples = [{"input_ids": i, "attention_mask": m} for i, m in zip(enc["input_ids"], enc["attention_mask"])]
loader = DataLoader(examples, batch_size=8, shuffle=True)

optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
model.train()
for epoch in range(3):
    for batch in loader:
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100  # padding is not a target
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {outputs.loss.item():.3f}")
