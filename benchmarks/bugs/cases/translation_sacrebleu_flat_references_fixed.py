"""Translation fine-tuning with Seq2SeqTrainer (fixed twin of translation_sacrebleu_flat_references): each prediction
gets a list holding its reference, the format the metric expects (huggingface/datasets#796)."""

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

model_checkpoint = fixture_path("models/bart-tiny")  # "Helsinki-NLP/opus-mt-en-fr"
raw_datasets = load_from_disk(fixture_path("datasets/translation"))  # load_dataset("kde4", lang1="en", lang2="fr")
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
max_length = 32


def preprocess_function(examples):
    inputs = [ex["en"] for ex in examples["translation"]]
    targets = [ex["fr"] for ex in examples["translation"]]
    return tokenizer(inputs, text_target=targets, max_length=max_length, truncation=True)


tokenized_datasets = raw_datasets.map(preprocess_function, batched=True,
                                      remove_columns=raw_datasets["train"].column_names)
model = AutoModelForSeq2SeqLM.from_pretrained(model_checkpoint)
data_collator = DataCollatorForSeq2Seq(tokenizer, model=model)
metric = evaluate.load(fixture_path("metrics/sacrebleu"))


def compute_metrics(eval_preds):
    preds, labels = eval_preds
    if isinstance(preds, tuple):
        preds = preds[0]
    preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
    decoded_preds = tokenizer.batch_decode(preds, skip_special_tokens=True)
    labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
    decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
    decoded_preds = [pred.strip() for pred in decoded_preds]
    decoded_labels = [[label.strip()] for label in decoded_labels]  # one list of references per prediction
    result = metric.compute(predictions=decoded_preds, references=decoded_labels)
    return {"bleu": result["score"]}


args = Seq2SeqTrainingArguments("marian-finetuned-kde4-en-to-fr", eval_strategy="steps", eval_steps=10,
                                save_strategy="no", learning_rate=3e-3, per_device_train_batch_size=32,
                                per_device_eval_batch_size=32, max_steps=10, predict_with_generate=True,
                                generation_max_length=max_length, report_to="none")
trainer = Seq2SeqTrainer(model, args, train_dataset=tokenized_datasets["train"],
                         eval_dataset=tokenized_datasets["validation"], data_collator=data_collator,
                         processing_class=tokenizer, compute_metrics=compute_metrics)
trainer.train()
