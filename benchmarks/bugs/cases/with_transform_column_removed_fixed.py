"""Masked-LM fine-tuning with an on-the-fly tokenizing transform (fixed twin of with_transform_column_removed):
remove_unused_columns=False keeps the raw `text` column for the transform, as the thread advised
(huggingface/transformers#22119)."""

from datasets import load_from_disk
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bert-tiny")  # "bert-base-uncased"
dataset = load_from_disk(fixture_path("datasets/corpus"))
tokenizer = AutoTokenizer.from_pretrained(model_name)


def tokenize(batch):
    return tokenizer(batch["text"], truncation=True, max_length=64)


train_dataset = dataset["train"].with_transform(tokenize)
eval_dataset = dataset["validation"].with_transform(tokenize)

model = AutoModelForMaskedLM.from_pretrained(model_name)
args = TrainingArguments(
    output_dir="mlm-transform",
    per_device_train_batch_size=16,
    learning_rate=3e-3,
    max_steps=10,
    save_strategy="no",
    report_to="none",
    remove_unused_columns=False,  # the transform needs the raw text column
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
)
trainer.train()
