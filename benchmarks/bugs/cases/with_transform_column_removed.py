"""Masked-LM fine-tuning with the Trainer on a raw text dataset tokenized on the fly with Dataset.with_transform.
The Trainer drops the columns the model's forward does not name (here `text`) before the transform runs, so the
transform finds no text and the first batch fails. huggingface/transformers#22119."""

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
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
)
trainer.train()
