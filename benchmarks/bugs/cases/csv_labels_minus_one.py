"""Text classification from a CSV file (text, label) in the style of happy-transformer's HappyTextClassification
training, with labels coded -1/0/1 for negative/neutral/positive: cross-entropy takes class ids from 0, so training
stops with "IndexError: Target -1 is out of bounds". EricFillion/happy-transformer#248."""

import os

from datasets import load_dataset, load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

# train.csv of the report: a text column and a label column coded -1 (negative), 0 (neutral), 1 (positive)
reviews = load_from_disk(fixture_path("datasets/reviews"))["train"].to_pandas()
reviews["label"] = reviews["label"].map(lambda stars: -1 if stars < 2 else (0 if stars == 2 else 1))
os.makedirs("data", exist_ok=True)
reviews.to_csv("data/train.csv", index=False)

dataset = load_dataset("csv", data_files={"train": "data/train.csv"})["train"]
model_name = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=3)
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True,
                      remove_columns=["text"])

args = TrainingArguments("happy-out", per_device_train_batch_size=16, learning_rate=3e-3, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()
