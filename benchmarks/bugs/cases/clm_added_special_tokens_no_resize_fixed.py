"""Causal LM fine-tuning of GPT-2 with added special tokens (fixed twin of clm_added_special_tokens_no_resize): the
embedding matrix is resized to the tokenizer, as the maintainers answered (huggingface/transformers#11102)."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/gpt2-tiny")  # models/original/ (a GPT-2 checkpoint)
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
tokenizer.add_special_tokens({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|pad|>"})
model = AutoModelForCausalLM.from_pretrained(model_name_or_path)
model.resize_token_embeddings(len(tokenizer))

raw_datasets = load_from_disk(fixture_path("datasets/text-lm"))
block_size = 32


def tokenize_function(examples):
    return tokenizer([tokenizer.bos_token + t + tokenizer.eos_token for t in examples["text"]])


def group_texts(examples):
    concatenated = {k: sum(examples[k], []) for k in examples.keys()}
    total_length = (len(concatenated["input_ids"]) // block_size) * block_size
    result = {k: [t[i: i + block_size] for i in range(0, total_length, block_size)] for k, t in concatenated.items()}
    result["labels"] = result["input_ids"].copy()
    return result


lm_datasets = raw_datasets.map(tokenize_function, batched=True, remove_columns=["text"]).map(group_texts, batched=True)
training_args = TrainingArguments(output_dir="models/finetuned", per_device_train_batch_size=4, learning_rate=2e-3,
                                  max_steps=10, save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=lm_datasets["train"],
                  eval_dataset=lm_datasets["test"], processing_class=tokenizer, data_collator=default_data_collator)
trainer.train()
