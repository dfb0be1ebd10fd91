"""Intent classification with the Trainer on a CSV of label names (fixed twin of trainer_string_labels): the label
names are converted to ids with label2id before training, as the maintainer answered
(huggingface/transformers#20638)."""

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

reviews = load_from_disk(fixture_path("datasets/reviews"))
names = reviews["train"].features["label"].names
os.makedirs("data", exist_ok=True)
for split in ("train", "test"):
    frame = reviews[split].to_pandas()
    frame["label"] = frame["label"].map(lambda i: names[i])  # the CSV stores label names
    frame.to_csv(f"data/{split}.csv", index=False)

dataset = load_dataset("csv", data_files={"train": "data/train.csv", "test": "data/test.csv"})
id2label = dict(enumerate(names))
label2id = {name: i for i, name in id2label.items()}
model_name = fixture_path("models/distilbert-tiny")
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=len(names), id2label=id2label,
                                                           label2id=label2id)
dataset = dataset.map(lambda row: {"labels": label2id[row["label"]]}, remove_columns=["label"])  # names -> class ids
tokenized = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True,
                        remove_columns=["text"])

args = TrainingArguments("intent-classifier", per_device_train_batch_size=16, learning_rate=3e-3, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["test"],
                  data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()
