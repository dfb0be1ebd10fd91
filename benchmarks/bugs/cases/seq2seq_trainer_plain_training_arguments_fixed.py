"""Text classification trained with Seq2SeqTrainer and early stopping (fixed twin of
seq2seq_trainer_plain_training_arguments): the arguments are Seq2SeqTrainingArguments, the class Seq2SeqTrainer reads
(huggingface/transformers#18086)."""

import numpy as np
from datasets import load_from_disk
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/distilbert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
raw = load_from_disk(fixture_path("datasets/mrpc"))  # "ought/raft", "ade_corpus_v2"
encoded = raw.map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True), batched=True,
                  remove_columns=["sentence1", "sentence2", "idx"])
train_dataset, val_dataset = encoded["train"], encoded["validation"]


def compute_metrics(p):
    pred, labels = p
    pred = np.argmax(pred, axis=1)

    accuracy = accuracy_score(y_true=labels, y_pred=pred)
    recall = recall_score(y_true=labels, y_pred=pred)
    precision = precision_score(y_true=labels, y_pred=pred, zero_division=0)
    f1 = f1_score(y_true=labels, y_pred=pred)

    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


args = Seq2SeqTrainingArguments(
    output_dir="output",
    eval_strategy="steps",
    eval_steps=5,
    save_steps=5,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=8,
    max_steps=10,
    learning_rate=3e-3,
    seed=0,
    load_best_model_at_end=True,
    save_total_limit=1,
    report_to="none",
)
trainer = Seq2SeqTrainer(
    model=model,
    args=args,
    train_dataset=train_dataset,
    eval_dataset=val_dataset,
    data_collator=DataCollatorWithPadding(tokenizer),
    compute_metrics=compute_metrics,
    callbacks=[EarlyStoppingCallback(early_stopping_patience=3)],
)
trainer.train()
