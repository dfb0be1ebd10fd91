"""Multi-class text classification with the Trainer (fixed twin of f1_default_average_multiclass): F1 is averaged
over the classes (average="macro"), as the thread answered (huggingface/transformers#16641)."""

import evaluate
import numpy as np
from datasets import Dataset, load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

my_data = load_from_disk(fixture_path("datasets/reviews"))["train"].to_pandas()  # the reporter's own DataFrame
dataset = Dataset.from_pandas(my_data).train_test_split(test_size=0.2, seed=0)
tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/bert-tiny"))  # "bert-base-cased"


def tokenize_function(examples):
    return tokenizer(examples["text"], padding="max_length", truncation=True, max_length=48)


tokenized = dataset.map(tokenize_function, batched=True)
model = AutoModelForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=5)
metric = evaluate.load(fixture_path("metrics/f1"))


def compute_metrics(eval_pred):
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    return metric.compute(predictions=predictions, references=labels, average="macro")


training_args = TrainingArguments(output_dir="./checkpoints", eval_strategy="steps", eval_steps=5, max_steps=10,
                                  learning_rate=3e-3, per_device_train_batch_size=16, save_strategy="no",
                                  report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=tokenized["train"], eval_dataset=tokenized["test"],
                  compute_metrics=compute_metrics)
trainer.train()
