"""Instruction tuning of a causal LM with the Trainer (fixed twin of causal_lm_no_labels_default_collator): the
language-modeling collator builds `labels` from input_ids, as baize's finetune.py does
(project-baize/baize-chatbot#62)."""

from datasets import load_from_disk
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

prune_model_path = fixture_path("models/llama-chat-tiny")
tokenizer = AutoTokenizer.from_pretrained(prune_model_path, use_fast=False, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(prune_model_path, trust_remote_code=True)
tokenizer.pad_token_id = 0
tokenizer.padding_side = "left"

CUTOFF_LEN = 64
data = load_from_disk(fixture_path("datasets/text-lm"))


def tokenize(example):
    result = tokenizer(example["text"], truncation=True, max_length=CUTOFF_LEN + 1, padding=False)
    return {"input_ids": result["input_ids"][:-1], "attention_mask": result["attention_mask"][:-1]}


train_data = data["train"].shuffle(seed=0).map(tokenize, remove_columns=["text"])
val_data = data["test"].map(tokenize, remove_columns=["text"])

trainer = Trainer(
    model=model,
    train_dataset=train_data,
    eval_dataset=val_data,
    args=TrainingArguments(per_device_train_batch_size=4, gradient_accumulation_steps=2, warmup_steps=2,
                           max_steps=10, learning_rate=2e-3, logging_steps=5, output_dir="baize-out",
                           save_strategy="no", report_to="none"),
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
)
model.config.use_cache = False
trainer.train()
