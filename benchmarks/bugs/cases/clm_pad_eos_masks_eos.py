"""Causal LM fine-tuning of GPT-2 as the language-modeling guide shows it: pad_token = eos_token and
DataCollatorForLanguageModeling(mlm=False). The collator sets every position whose id is the pad id to -100, so the
EOS appended to each text is never a target: the model never learns to stop. huggingface/transformers#23530."""

from datasets import load_from_disk
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/gpt2-tiny")  # "gpt2"
raw = load_from_disk(fixture_path("datasets/text-lm"))  # short question/answer texts

tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
tokenizer.pad_token = tokenizer.eos_token


def tokenize(batch):
    # each example ends with EOS so that the model learns where an answer stops
    return tokenizer([t + tokenizer.eos_token for t in batch["text"]], truncation=True, max_length=64)


tokenized = raw.map(tokenize, batched=True, remove_columns=["text"])
data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False)

model = AutoModelForCausalLM.from_pretrained(model_checkpoint)

training_args = TrainingArguments(
    output_dir="gpt2-answers",
    per_device_train_batch_size=8,
    learning_rate=2e-3,
    max_steps=15,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=tokenized["train"],
    eval_dataset=tokenized["test"],
    data_collator=data_collator,
)
trainer.train()
