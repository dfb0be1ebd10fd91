"""GLUE-style sequence classification with a BART classifier and the Trainer, with run_glue.py's compute_metrics
(np.argmax(p.predictions, axis=1)): BART's classifier also returns its encoder's last hidden state, so the Trainer
hands compute_metrics a tuple (logits, encoder states) and the argmax fails at the first evaluation.
huggingface/transformers#7247 (fixed in run_glue.py by #7248)."""

import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/bart-tiny")  # "facebook/bart-base"
raw = load_from_disk(fixture_path("datasets/mrpc"))
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
encoded = raw.map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True, max_length=128), batched=True)
model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, num_labels=2)


def compute_metrics_fn(p: EvalPrediction):
    preds = np.argmax(p.predictions, axis=1)
    return {"acc": float((preds == p.label_ids).mean())}


args = TrainingArguments("bart-mrpc", per_device_train_batch_size=16, per_device_eval_batch_size=16,
                         learning_rate=3e-3, max_steps=10, eval_strategy="steps", eval_steps=10, save_strategy="no",
                         report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                  data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics_fn)
trainer.train()
