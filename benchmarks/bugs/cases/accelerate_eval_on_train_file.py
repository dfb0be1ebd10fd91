"""NLI fine-tuning with run_glue_no_trainer.py's Accelerate loop, launched with --validation_file pointing at the
training CSV (kawine/dataset_difficulty's finetune.sh): the "validation" accuracy is measured on the rows the model
trains on, so it reports memorisation, not generalisation. kawine/dataset_difficulty#7."""

import os

import evaluate
import torch
from accelerate import Accelerator
from datasets import load_dataset, load_from_disk
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    get_scheduler,
)

from ftdoctor.fixtures import fixture_path

# the CSV files of the run (snli_train_std.csv and friends), written from the local SNLI-shaped fixture
nli = load_from_disk(fixture_path("datasets/mnli"))
os.makedirs("data", exist_ok=True)
nli["train"].remove_columns("idx").to_csv("data/snli_train_std.csv")
nli["validation_matched"].remove_columns("idx").to_csv("data/snli_test_std.csv")

train_file = "data/snli_train_std.csv"
validation_file = "data/snli_train_std.csv"

accelerator = Accelerator()
raw_datasets = load_dataset("csv", data_files={"train": train_file, "validation": validation_file})
num_labels = 3

model_name_or_path = fixture_path("models/bert-tiny")  # "bert-base-uncased"
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, num_labels=num_labels)


def preprocess_function(examples):
    result = tokenizer(examples["premise"], examples["hypothesis"], truncation=True, max_length=128)
    result["labels"] = examples["label"]
    return result


processed_datasets = raw_datasets.map(preprocess_function, batched=True,
                                      remove_columns=raw_datasets["train"].column_names)
train_dataset = processed_datasets["train"]
eval_dataset = processed_datasets["validation"]

data_collator = DataCollatorWithPadding(tokenizer)
train_dataloader = DataLoader(train_dataset, shuffle=True, collate_fn=data_collator, batch_size=16)
eval_dataloader = DataLoader(eval_dataset, collate_fn=data_collator, batch_size=32)

optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
num_train_epochs = 2
max_train_steps = num_train_epochs * len(train_dataloader)
lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0, num_training_steps=max_train_steps)

model, optimizer, train_dataloader, eval_dataloader, lr_scheduler = accelerator.prepare(
    model, optimizer, train_dataloader, eval_dataloader, lr_scheduler)
metric = evaluate.load(fixture_path("metrics/accuracy"))

for epoch in range(num_train_epochs):
    model.train()
    for step, batch in enumerate(train_dataloader):
        outputs = model(**batch)
        accelerator.backward(outputs.loss)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()

    model.eval()
    for step, batch in enumerate(eval_dataloader):
        with torch.no_grad():
            outputs = model(**batch)
        predictions = outputs.logits.argmax(dim=-1)
        predictions, references = accelerator.gather_for_metrics((predictions, batch["labels"]))
        metric.add_batch(predictions=predictions, references=references)
    accelerator.print(f"epoch {epoch}: {metric.compute()}")
