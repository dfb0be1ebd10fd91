"""Causal LM fine-tuning following run_clm.py (fixed twin of clm_group_texts_no_separator): each document ends with
the EOS token before group_texts concatenates them, so document boundaries are marked and trained, as the thread
settled (huggingface/transformers#23198)."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/gpt2-tiny")  # "EleutherAI/gpt-j-6b" in the report
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForCausalLM.from_pretrained(model_name_or_path)
raw_datasets = load_from_disk(fixture_path("datasets/text-lm"))
block_size = 48


def tokenize_function(examples, text_column_name="text"):
    return tokenizer([text + tokenizer.eos_token for text in examples[text_column_name]])


def group_texts(examples):
    concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
    total_length = len(concatenated_examples[list(examples.keys())[0]])
    total_length = (total_length // block_size) * block_size
    result = {k: [t[i: i + block_size] for i in range(0, total_length, block_size)]
              for k, t in concatenated_examples.items()}
    result["labels"] = result["input_ids"].copy()
    return result


tokenized_datasets = raw_datasets.map(tokenize_function, batched=True, remove_columns=["text"])
lm_datasets = tokenized_datasets.map(group_texts, batched=True)

training_args = TrainingArguments(output_dir="clm-out", per_device_train_batch_size=4, learning_rate=2e-3,
                                  max_steps=15, save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=lm_datasets["train"],
                  eval_dataset=lm_datasets["test"], data_collator=default_data_collator)
trainer.train()
