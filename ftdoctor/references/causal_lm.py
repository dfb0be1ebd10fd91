"""Causal language modelling with GPT-2, as the Hugging Face course and transformers' run_clm.py teach it: each
text ends with the end-of-text token, texts are concatenated and cut into blocks of `block_size` tokens, and the
labels are a copy of the inputs. The model shifts the labels itself, so they are never shifted by hand. Every block
is full, so nothing pads and `default_data_collator` stacks them; the end-of-text tokens between the texts stay
labels, so the model learns where a text ends. (GPT-2 has no pad token; were padding needed, padding with the
end-of-text token through DataCollatorForLanguageModeling would set the label of every end-of-text token to -100.)
The metric is the perplexity, exp(eval loss).
"""

import math

from datasets import load_from_disk
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from ftdoctor.fixtures import fixture_path

set_seed(0)
checkpoint = fixture_path("models/gpt2-tiny")  # "gpt2"
raw_datasets = load_from_disk(fixture_path("datasets/corpus"))  # any text dataset
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
tokenizer.pad_token = tokenizer.eos_token
block_size = 32


def tokenize_function(examples):
    return tokenizer([text + tokenizer.eos_token for text in examples["text"]])


def group_texts(examples):
    concatenated = {k: sum(examples[k], []) for k in examples.keys()}
    total_length = (len(concatenated["input_ids"]) // block_size) * block_size
    result = {k: [t[i : i + block_size] for i in range(0, total_length, block_size)] for k, t in concatenated.items()}
    result["labels"] = result["input_ids"].copy()  # not shifted: the model shifts them
    return result


tokenized_datasets = raw_datasets.map(tokenize_function, batched=True, remove_columns=["text"])
lm_datasets = tokenized_datasets.map(group_texts, batched=True)

model = AutoModelForCausalLM.from_pretrained(checkpoint, pad_token_id=tokenizer.pad_token_id)
data_collator = default_data_collator  # full blocks: nothing to pad

training_args = TrainingArguments(
    "gpt2-finetuned-corpus",
    eval_strategy="epoch",
    save_strategy="no",
    # A tiny random-init model needs a far larger step than a pretrained one (5e-4 in the course): 5e-3 brings
    # its perplexity down from the vocabulary size to a handful of words in a few epochs.
    learning_rate=5e-3,
    weight_decay=0.1,
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
