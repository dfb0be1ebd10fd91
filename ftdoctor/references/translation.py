"""Translation with BART and `Seq2SeqTrainer`, as the Hugging Face course teaches it (chapter 7, section 4).

Targets are tokenized with `text_target=`, `DataCollatorForSeq2Seq(model=...)` pads the labels with -100 (ignored
by the loss) and derives `decoder_input_ids` from them, evaluation generates (`predict_with_generate=True`), and
`compute_metrics` replaces -100 by the pad id before decoding, then scores with sacreBLEU.
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
checkpoint = fixture_path("models/bart-tiny")  # "Helsinki-NLP/opus-mt-en-fr"
raw_datasets = load_from_disk(fixture_path("datasets/translation"))  # load_dataset("kde4", lang1="en", lang2="fr")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
source_lang, target_lang = "en", "fr"
max_length = 32


def preprocess_function(examples):
    inputs = [ex[source_lang] for ex in examples["translation"]]
    targets = [ex[target_lang] for ex in examples["translation"]]
    return tokenizer(inputs, text_target=targets, max_length=max_length, truncation=True)


tokenized_datasets = raw_datasets.map(
    preprocess_function, batched=True, remove_columns=raw_datasets["train"].column_names
)

model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)
data_collator = DataCollatorForSeq2Seq(tokenizer, model=model)
metric = evaluate.load(fixture_path("metrics/sacrebleu"))  # evaluate.load("sacrebleu")


def compute_metrics(eval_preds):
    preds, labels = eval_preds
    # In case the model returns more than the prediction logits
    if isinstance(preds, tuple):
        preds = preds[0]
    # -100 marks padding (labels, and predictions padded across batches) and is no token id: replace it to decode.
    preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
    decoded_preds = tokenizer.batch_decode(preds, skip_special_tokens=True)
    labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
    decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
    decoded_preds = [pred.strip() for pred in decoded_preds]
    decoded_labels = [[label.strip()] for label in decoded_labels]
    result = metric.compute(predictions=decoded_preds, references=decoded_labels)
    return {"bleu": result["score"]}


args = Seq2SeqTrainingArguments(
    "bart-finetuned-en-to-fr",
    eval_strategy="no",
    save_strategy="no",
    # A tiny random-init model needs a far larger step than a pretrained one (2e-5 in the course): 1e-2 learns
    # the fixture's word-by-word mapping in a few epochs.
    learning_rate=1e-2,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    weight_decay=0.01,
    num_train_epochs=6,
    predict_with_generate=True,
    generation_max_length=max_length,
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

metric_name = "eval_bleu"
metrics_before = trainer.evaluate(max_length=max_length)
trainer.train()
metrics_after = trainer.evaluate(max_length=max_length)
print(f"BLEU before training: {metrics_before[metric_name]:.2f}, after: {metrics_after[metric_name]:.2f}")
