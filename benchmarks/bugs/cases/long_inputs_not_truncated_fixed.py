"""Passage relevance classification with BERT in a hand-written loop (fixed twin of long_inputs_not_truncated): the
pairs are truncated to the model's maximum length (max_length, truncation), as the maintainers answered
(huggingface/transformers#1791)."""

import random

import torch
from datasets import load_from_disk
from torch.nn.utils.rnn import pad_sequence
from transformers import BertForSequenceClassification, BertTokenizer

from ftdoctor.fixtures import fixture_path

random.seed(0)
tokenizer = BertTokenizer.from_pretrained(fixture_path("models/bert-tiny"))
model = BertForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=2)
qa = load_from_disk(fixture_path("datasets/qa"))["train"]
contexts = list(qa["context"])
pairs = []
for row in qa:
    pairs.append((row["question"], row["context"], 1))
    pairs.append((row["question"], random.choice(contexts), 0))  # a passage of another question

encoded = [(torch.tensor(tokenizer.encode(q, c, truncation="only_second", max_length=tokenizer.model_max_length)), label)
           for q, c, label in pairs]
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
model.train()
for epoch in range(2):
    random.shuffle(encoded)
    for i in range(0, len(encoded), 16):
        chunk = encoded[i: i + 16]
        input_ids = pad_sequence([ids for ids, _ in chunk], batch_first=True, padding_value=tokenizer.pad_token_id)
        labels = torch.tensor([label for _, label in chunk])
        outputs = model(input_ids, attention_mask=(input_ids != tokenizer.pad_token_id).long(), labels=labels)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {outputs.loss.item():.4f}")
