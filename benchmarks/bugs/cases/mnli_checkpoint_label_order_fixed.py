"""Continuing to fine-tune an MNLI checkpoint on the datasets library's MNLI (fixed twin of
mnli_checkpoint_label_order): the dataset's class ids are mapped to the checkpoint's through the label names
(Dataset.align_labels_with_mapping with model.config.label2id), as the thread concluded (DFKI-NLP/thermostat#10)."""

import os

import numpy as np
from datasets import load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

# stand-in for a downstream MNLI checkpoint on the hub (e.g. textattack/roberta-base-MNLI), saved with its label order
checkpoint = "mnli-downstream-checkpoint"
if not os.path.isdir(checkpoint):
    AutoModelForSequenceClassification.from_pretrained(
        fixture_path("models/bert-tiny"), num_labels=3,
        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2}).save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(fixture_path("models/bert-tiny")).save_pretrained(checkpoint)

dataset = load_from_disk(fixture_path("datasets/mnli"))  # load_dataset("multi_nli")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
dataset = dataset.align_labels_with_mapping(model.config.label2id, "label")  # the checkpoint's class order
encoded = dataset.map(lambda b: tokenizer(b["premise"], b["hypothesis"], truncation=True, max_length=96,
                                          padding="max_length"), batched=True)


def compute_metrics(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


args = TrainingArguments("mnli-continued", per_device_train_batch_size=16, learning_rate=3e-3, max_steps=10,
                         eval_strategy="steps", eval_steps=10, save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded["validation_matched"],
                  compute_metrics=compute_metrics)
trainer.train()
