"""GPT-2 fine-tuned on MNLI with the Trainer, as run_glue.py does for BERT: GPT-2's tokenizer has no pad token, so the
padding collator raises "Asking to pad but the tokenizer does not have a padding token" at the first batch.
huggingface/transformers#9785."""

import numpy as np
from datasets import load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/gpt2-tiny")  # "gpt2"
raw_datasets = load_from_disk(fixture_path("datasets/mnli"))  # load_dataset("glue", "mnli")
label_list = raw_datasets["train"].features["label"].names

tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, num_labels=len(label_list))


def preprocess_function(examples):
    return tokenizer(examples["premise"], examples["hypothesis"], truncation=True, max_length=128)


train_dataset = raw_datasets["train"].map(preprocess_function, batched=True)
eval_dataset = raw_datasets["validation_matched"].map(preprocess_function, batched=True)


def compute_metrics(p):
    preds = np.argmax(p.predictions, axis=1)
    return {"accuracy": float((preds == p.label_ids).mean())}


training_args = TrainingArguments(output_dir="models/gpt2/mnli/", per_device_train_batch_size=10,
                                  gradient_accumulation_steps=2, learning_rate=2e-3, max_steps=10,
                                  save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                  compute_metrics=compute_metrics, processing_class=tokenizer)
trainer.train()
