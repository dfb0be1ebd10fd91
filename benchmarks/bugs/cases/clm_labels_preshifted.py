"""Causal LM fine-tuning with the Trainer, the run_clm.py way (concatenate, cut into blocks), except that the labels
are shifted by hand as proposed in huggingface/transformers#24910: the model shifts labels itself, so each position
is trained to predict the token two steps ahead. Training runs and the loss falls, on the wrong objective."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/gpt2-tiny")  # "gpt2"
raw_datasets = load_from_disk(fixture_path("datasets/corpus"))  # load_dataset("wikitext", "wikitext-2-raw-v1")
tokenizer = AutoTokenizer.from_pretrained(model_name)
block_size = 32


def tokenize_function(examples):
    return tokenizer(examples["text"])


tokenized_datasets = raw_datasets.map(tokenize_function, batched=True, remove_columns=["text"])


def group_texts(examples):
    concatenated = {k: sum(examples[k], []) for k in examples.keys()}
    total_length = (len(concatenated["input_ids"]) // (block_size + 1)) * (block_size + 1)
    result = {k: [t[i: i + block_size + 1] for i in range(0, total_length, block_size + 1)]
              for k, t in concatenated.items()}
    # next-token targets: the input without its last token, the labels without their first
    result["labels"] = [ids[1:] for ids in result["input_ids"]]
    result["input_ids"] = [ids[:-1] for ids in result["input_ids"]]
    result["attention_mask"] = [m[:-1] for m in result["attention_mask"]]
    return result


lm_datasets = tokenized_datasets.map(group_texts, batched=True)

model = AutoModelForCausalLM.from_pretrained(model_name)
training_args = TrainingArguments(
    output_dir="clm-out",
    per_device_train_batch_size=8,
    learning_rate=2e-3,
    max_steps=15,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=lm_datasets["train"],
    eval_dataset=lm_datasets["validation"],
    data_collator=default_data_collator,
)
trainer.train()
