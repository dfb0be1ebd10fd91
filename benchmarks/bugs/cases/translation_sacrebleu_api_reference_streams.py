"""Translation fine-tuning with Seq2SeqTrainer and predict_with_generate, scored by calling the sacrebleu package
directly with one list of references per sentence (the shape the `evaluate` wrapper takes): sacrebleu's corpus_bleu
reads its second argument as reference *streams*, so with N one-element lists it scores only the first sentence
against N alternative references and silently ignores the rest. mjpost/sacrebleu#220."""

import numpy as np
import sacrebleu
from datasets import load_from_disk
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/bart-tiny")
raw = load_from_disk(fixture_path("datasets/translation"))
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)


def preprocess(examples):
    inputs = [ex["en"] for ex in examples["translation"]]
    targets = [ex["fr"] for ex in examples["translation"]]
    return tokenizer(inputs, text_target=targets, max_length=32, truncation=True)


tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names)
model = AutoModelForSeq2SeqLM.from_pretrained(model_checkpoint)


def compute_metrics(eval_preds):
    preds, labels = eval_preds
    preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
    labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
    hyps = [p.strip() for p in tokenizer.batch_decode(preds, skip_special_tokens=True)]
    refs = [[r.strip()] for r in tokenizer.batch_decode(labels, skip_special_tokens=True)]
    return {"bleu": sacrebleu.corpus_bleu(hyps, refs).score}


args = Seq2SeqTrainingArguments("bart-en-fr", eval_strategy="steps", eval_steps=10, save_strategy="no",
                                learning_rate=3e-3, per_device_train_batch_size=32, per_device_eval_batch_size=32,
                                max_steps=10, predict_with_generate=True, generation_max_length=32, report_to="none")
trainer = Seq2SeqTrainer(model, args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                         data_collator=DataCollatorForSeq2Seq(tokenizer, model=model), processing_class=tokenizer,
                         compute_metrics=compute_metrics)
trainer.train()
