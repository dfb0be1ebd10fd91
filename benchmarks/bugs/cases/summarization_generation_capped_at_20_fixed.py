"""Summarization with Seq2SeqTrainer in the manner of run_seq2seq.py (fixed twin of
summarization_generation_capped_at_20): evaluation generates up to the target length, through
Seq2SeqTrainingArguments.generation_max_length (huggingface/transformers#10032)."""

import evaluate
import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/bart-tiny")  # "t5-small"
max_source_length = 96
max_target_length = 48
val_max_target_length = 48

tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path)
raw_datasets = load_from_disk(fixture_path("datasets/summaries"))  # load_dataset("cnn_dailymail", "3.0.0")


def to_highlights(example):
    sentences = [s.strip() + "." for s in example["document"].split(".") if s.strip()]
    return {"article": example["document"], "highlights": " ".join(sentences[:3])}


raw_datasets = raw_datasets.map(to_highlights, remove_columns=["id", "document", "summary"])


def preprocess_function(examples, max_target):
    model_inputs = tokenizer(examples["article"], max_length=max_source_length, truncation=True)
    labels = tokenizer(text_target=examples["highlights"], max_length=max_target, truncation=True)
    model_inputs["labels"] = labels["input_ids"]
    return model_inputs


train_dataset = raw_datasets["train"].map(preprocess_function, batched=True, fn_kwargs={"max_target": max_target_length},
                                          remove_columns=["article", "highlights"])
eval_dataset = raw_datasets["validation"].select(range(8)).map(preprocess_function, batched=True,
                                              fn_kwargs={"max_target": val_max_target_length},
                                              remove_columns=["article", "highlights"])

metric = evaluate.load(fixture_path("metrics/rouge"))


def compute_metrics(eval_preds):
    preds, labels = eval_preds
    preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
    labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
    decoded_preds = tokenizer.batch_decode(preds, skip_special_tokens=True)
    decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
    result = metric.compute(predictions=decoded_preds, references=decoded_labels, use_stemmer=True)
    result["gen_len"] = np.mean([np.count_nonzero(pred != tokenizer.pad_token_id) for pred in preds])
    return {k: round(float(v), 4) for k, v in result.items()}


training_args = Seq2SeqTrainingArguments(
    output_dir="tmp",
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    learning_rate=3e-3,
    max_steps=12,
    eval_strategy="steps",
    eval_steps=12,
    save_strategy="no",
    predict_with_generate=True,
    generation_max_length=val_max_target_length,
    report_to="none",
)
trainer = Seq2SeqTrainer(
    model=model,
    args=training_args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    processing_class=tokenizer,
    data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
    compute_metrics=compute_metrics,
)
trainer.train()
