"""Summarization fine-tuning (fixed twin of seq2seq_metric_teacher_forced): Seq2SeqTrainer with
predict_with_generate=True, so compute_metrics scores generated summaries, as the thread concluded
(huggingface/transformers#10245)."""

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

model_name = fixture_path("models/bart-tiny")  # "t5-small"
tokenizer = AutoTokenizer.from_pretrained(model_name)
raw = load_from_disk(fixture_path("datasets/summaries"))


def preprocess(batch):
    model_inputs = tokenizer(batch["document"], max_length=64, truncation=True)
    model_inputs["labels"] = tokenizer(text_target=batch["summary"], max_length=24, truncation=True)["input_ids"]
    return model_inputs


tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names)
model = AutoModelForSeq2SeqLM.from_pretrained(model_name)
rouge = evaluate.load(fixture_path("metrics/rouge"))


def compute_metrics(eval_pred):
    preds, labels = eval_pred  # generated token ids
    preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
    labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
    decoded_preds = tokenizer.batch_decode(preds, skip_special_tokens=True)
    decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
    return rouge.compute(predictions=decoded_preds, references=decoded_labels)


args = Seq2SeqTrainingArguments(output_dir="bart-summaries", per_device_train_batch_size=16, per_device_eval_batch_size=16,
                         learning_rate=3e-3, max_steps=10, eval_strategy="steps", eval_steps=10, save_strategy="no",
                         report_to="none", predict_with_generate=True, generation_max_length=24)
trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                         data_collator=DataCollatorForSeq2Seq(tokenizer, model=model), compute_metrics=compute_metrics)
trainer.train()
