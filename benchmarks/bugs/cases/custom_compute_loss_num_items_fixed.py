"""A Trainer subclass with a class-weighted loss (fixed twin of custom_compute_loss_num_items): the override takes
the num_items_in_batch argument that the Trainer passes since 4.46 (huggingface/transformers#36331)."""

import numpy as np
import torch
from datasets import load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
raw = load_from_disk(fixture_path("datasets/reviews"))
num_labels = raw["train"].features["label"].num_classes
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
tokenized = raw.map(lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])

counts = np.bincount(raw["train"]["label"], minlength=num_labels)
class_weights = torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1)), dtype=torch.float)


class CustomTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs[0]
        loss_fct = torch.nn.CrossEntropyLoss(weight=class_weights.to(logits.device))
        loss = loss_fct(logits.view(-1, model.config.num_labels), labels.view(-1))
        return (loss, outputs) if return_outputs else loss


model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=num_labels)
args = TrainingArguments("weighted-reviews", per_device_train_batch_size=16, learning_rate=3e-3, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = CustomTrainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["test"],
                        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
trainer.train()
