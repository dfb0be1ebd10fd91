"""Masked-LM pretraining in a hand-written loop with one short example per batch, masked by
DataCollatorForLanguageModeling at 15%: for a sentence of a few tokens the collator often masks none, every label of
that batch is then -100 and the masked-LM loss is NaN. The loop runs to the end; the running loss it reports is NaN
from the first such batch on (in the thread, the NaN loss broke the gradient exchange between workers).
huggingface/transformers#16711 ("AutoModelForMaskedLM produces NaN if no token is masked"; the reporter's fix: make
sure at least one token of each example is masked)."""

import torch
from datasets import load_from_disk
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bert-tiny")  # "nreimers/BERT-Tiny_L-2_H-128_A-2"
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForMaskedLM.from_pretrained(model_name)
coll = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)

corpus = load_from_disk(fixture_path("datasets/corpus"))["train"]
sentences = [s.strip() + "." for text in corpus["text"][:20] for s in text.split(".") if s.strip()]
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

model.train()
tr_loss = 0.0
for step, text in enumerate(sentences):
    data = tokenizer(text, truncation=True, max_length=512, return_special_tokens_mask=True)
    mini_batch = coll([data])  # one example per batch, as in large-model pre-training
    loss = model(**mini_batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    tr_loss += loss.item()
    if step % 5 == 4:
        print(f"step {step + 1}: average loss {tr_loss / (step + 1):.4f}")
