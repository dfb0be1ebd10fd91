"""STS-B-style regression (num_labels=1) with run_glue_no_trainer.py's Accelerate loop, whose evaluation always took
the argmax of the logits: with a single output column the argmax is 0 for every pair, so Pearson/Spearman are
computed on constant predictions and the reported score says nothing about the model.
huggingface/transformers#11555 (fixed in #11569: squeeze the logits for regression)."""

import evaluate
import torch
from accelerate import Accelerator
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

accelerator = Accelerator()
raw_datasets = load_from_disk(fixture_path("datasets/mrpc"))


def to_similarity(example):
    # an STS-B-like 0..5 similarity score from the paraphrase label and the word overlap of the pair
    a, b = set(example["sentence1"].lower().split()), set(example["sentence2"].lower().split())
    return {"label": float(3.0 * example["label"] + 2.0 * len(a & b) / max(len(a | b), 1))}


raw_datasets = raw_datasets.cast_column("label", raw_datasets["train"].features["idx"]).map(to_similarity)
is_regression = True
num_labels = 1

model_name_or_path = fixture_path("models/bert-tiny")
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, num_labels=num_labels)


def preprocess_function(examples):
    result = tokenizer(examples["sentence1"], examples["sentence2"], truncation=True, max_length=128)
    result["labels"] = examples["label"]
    return result


processed = raw_datasets.map(preprocess_function, batched=True, remove_columns=raw_datasets["train"].column_names)
collate = DataCollatorWithPadding(tokenizer)
train_dataloader = DataLoader(processed["train"], shuffle=True, collate_fn=collate, batch_size=16)
eval_dataloader = DataLoader(processed["validation"], collate_fn=collate, batch_size=32)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
model, optimizer, train_dataloader, eval_dataloader = accelerator.prepare(model, optimizer, train_dataloader,
                                                                          eval_dataloader)
metric = evaluate.load(fixture_path("metrics/glue"), "stsb")

for epoch in range(2):
    model.train()
    for batch in train_dataloader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    for batch in eval_dataloader:
        with torch.no_grad():
            outputs = model(**batch)
        predictions = outputs.logits.argmax(dim=-1)
        metric.add_batch(predictions=accelerator.gather(predictions), references=accelerator.gather(batch["labels"]))
    accelerator.print(f"epoch {epoch}: {metric.compute()}")
