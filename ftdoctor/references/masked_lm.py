"""Masked language modelling with DistilBERT, as the Hugging Face course teaches it (chapter 7, section 3):
tokenize, concatenate every text and cut the stream into blocks of `chunk_size` tokens, let
`DataCollatorForLanguageModeling` mask 15% of the tokens at random (labels -100 everywhere else), and report the
perplexity, exp(eval loss).
"""

import math

from datasets import load_from_disk
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
    set_seed,
)

from ftdoctor.fixtures import fixture_path

set_seed(0)
checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
raw_datasets = load_from_disk(fixture_path("datasets/corpus"))  # load_dataset("imdb") or any text dataset
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
chunk_size = 32


def tokenize_function(examples):
    result = tokenizer(examples["text"])
    if tokenizer.is_fast:
        result["word_ids"] = [result.word_ids(i) for i in range(len(result["input_ids"]))]
    return result


def group_texts(examples):
    # Concatenate all texts, drop the remainder that does not fill a chunk, and split into chunks.
    concatenated = {k: sum(examples[k], []) for k in examples.keys()}
    total_length = (len(concatenated["input_ids"]) // chunk_size) * chunk_size
    result = {k: [t[i : i + chunk_size] for i in range(0, total_length, chunk_size)] for k, t in concatenated.items()}
    # The collator makes the labels (a copy of the inputs at the masked positions); this column is its source.
    result["labels"] = result["input_ids"].copy()
    return result


tokenized_datasets = raw_datasets.map(tokenize_function, batched=True, remove_columns=["text"])
lm_datasets = tokenized_datasets.map(group_texts, batched=True).remove_columns(["word_ids"])

model = AutoModelForMaskedLM.from_pretrained(checkpoint)
data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)

training_args = TrainingArguments(
    "distilbert-finetuned-corpus",
    eval_strategy="epoch",
    save_strategy="no",
    # A tiny random-init model needs a far larger step than a pretrained one (2e-5 in the course): 5e-3 brings
    # its perplexity down from the vocabulary size to a handful of words in a few epochs.
    learning_rate=5e-3,
    weight_decay=0.01,
    num_train_epochs=5,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=32,
    report_to="none",
    seed=0,
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=lm_datasets["train"],
    eval_dataset=lm_datasets["validation"],
    data_collator=data_collator,
    processing_class=tokenizer,
)

metric_name = "perplexity"
metrics_before = trainer.evaluate()
metrics_before[metric_name] = math.exp(metrics_before["eval_loss"])
trainer.train()
metrics_after = trainer.evaluate()
metrics_after[metric_name] = math.exp(metrics_after["eval_loss"])
print(f"Perplexity before training: {metrics_before[metric_name]:.2f}, after: {metrics_after[metric_name]:.2f}")
