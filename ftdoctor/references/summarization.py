"""Summarization with BART and `Seq2SeqTrainer`, as the Hugging Face course teaches it (chapter 7, section 5).

Documents and summaries are tokenized in one call with `text_target=`, `DataCollatorForSeq2Seq(model=...)` pads the
labels with -100 (ignored by the loss) and derives `decoder_input_ids` from them, evaluation generates
(`predict_with_generate=True`), and `compute_metrics` replaces -100 by the pad id before decoding, then scores with
ROUGE (rouge-score).
"""

import evaluate
import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    set_seed,
)

from ftdoctor.fixtures import fixture_path

set_seed(0)
checkpoint = fixture_path("models/bart-tiny")  # "facebook/bart-base"
raw_datasets = load_from_disk(fixture_path("datasets/summaries"))  # load_dataset("xsum")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
max_input_length, max_target_length = 96, 24


def preprocess_function(examples):
    return tokenizer(
        examples["document"], text_target=examples["summary"], max_length=max_input_length, truncation=True
    )


tokenized_datasets = raw_datasets.map(
    preprocess_function, batched=True, remove_columns=raw_datasets["train"].column_names
)

model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)
data_collator = DataCollatorForSeq2Seq(tokenizer, model=model)
rouge_score = evaluate.load(fixture_path("metrics/rouge"))  # evaluate.load("rouge")


def compute_metrics(eval_pred):
    predictions, labels = eval_pred
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    # -100 marks padding (labels, and predictions padded across batches) and is no token id: replace it to decode.
    predictions = np.where(predictions != -100, predictions, tokenizer.pad_token_id)
    decoded_preds = tokenizer.batch_decode(predictions, skip_special_tokens=True)
    labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
    decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
    result = rouge_score.compute(
        predictions=[p.strip() for p in decoded_preds], references=[l.strip() for l in decoded_labels], use_stemmer=True
    )
    return {key: value * 100 for key, value in result.items()}


args = Seq2SeqTrainingArguments(
    "bart-finetuned-summaries",
    eval_strategy="no",
    save_strategy="no",
    # A tiny random-init model needs a far larger step than a pretrained one (5.6e-5 in the course): 1e-2 learns
    # to copy who did what from the first sentence in a few epochs.
    learning_rate=1e-2,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=32,
    weight_decay=0.01,
    num_train_epochs=6,
    predict_with_generate=True,
    generation_max_length=max_target_length,
    report_to="none",
    seed=0,
)
trainer = Seq2SeqTrainer(
    model,
    args,
    train_dataset=tokenized_datasets["train"],
    eval_dataset=tokenized_datasets["validation"],
    data_collator=data_collator,
    processing_class=tokenizer,
    compute_metrics=compute_metrics,
)

metric_name = "eval_rougeL"
metrics_before = trainer.evaluate(max_length=max_target_length)
trainer.train()
metrics_after = trainer.evaluate(max_length=max_target_length)
print(f"ROUGE-L before training: {metrics_before[metric_name]:.2f}, after: {metrics_after[metric_name]:.2f}")
