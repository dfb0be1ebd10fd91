"""Causal LM fine-tuning of GPT-2 (fixed twin of clm_pad_eos_masks_eos): a pad token of its own, distinct from
EOS, so the collator masks only the padding and the EOS that ends each text is trained
(huggingface/transformers#23530)."""

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
tokenizer.add_special_tokens({"pad_token": "<|pad|>"})  # not eos: the collator masks every pad-id position


def tokenize(batch):
    # each example ends with EOS so that the model learns where an answer stops
    return tokenizer([t + tokenizer.eos_token for t in batch["text"]], truncation=True, max_length=64)


tokenized = raw.map(tokenize, batched=True, remove_columns=["text"])
data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False)

model = AutoModelForCausalLM.from_pretrained(model_checkpoint)
model.resize_token_embeddings(len(tokenizer))

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
