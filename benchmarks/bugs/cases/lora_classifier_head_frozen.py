"""LoRA fine-tuning of a BERT classifier in a hand-written loop, as in TNI-playground/Fed_HeLLo: get_peft_model with a
LoraConfig that names only the attention projections and no task type, so the freshly initialised classifier head
is frozen with the rest of the base model and stays random; only the LoRA matrices train.
TNI-playground/Fed_HeLLo#2."""

import torch
from datasets import load_from_disk
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bert-tiny")  # "bert-base-uncased"
dataset = load_from_disk(fixture_path("datasets/mrpc"))
tokenizer = AutoTokenizer.from_pretrained(model_name)
encoded = dataset.map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True, max_length=64),
                      batched=True, remove_columns=["sentence1", "sentence2", "idx"])
encoded = encoded.rename_column("label", "labels")
train_loader = DataLoader(encoded["train"], batch_size=16, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))

net_glob = AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=2)
lora_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"])
net_glob = get_peft_model(net_glob, lora_config)
for n, p in net_glob.named_parameters():
    if p.requires_grad:
        print(n)

optimizer = torch.optim.AdamW([p for p in net_glob.parameters() if p.requires_grad], lr=5e-3)
net_glob.train()
for local_epoch in range(2):
    for batch in train_loader:
        loss = net_glob(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"local epoch {local_epoch}: loss {loss.item():.4f}")
