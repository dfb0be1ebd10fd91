"""Instruction tuning with the Trainer (fixed twin of sft_prompt_mask_overwritten): rows are already padded and
carry their prompt-masked `labels`, so default_data_collator stacks them as they are and only the response is
trained (huggingface/transformers#26357)."""

from datasets import load_from_disk
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    default_data_collator,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

base_model = fixture_path("models/llama-chat-tiny")  # a Llama checkpoint
data = load_from_disk(fixture_path("datasets/prompt-completion"))
cutoff_len = 48

tokenizer = AutoTokenizer.from_pretrained(base_model)
tokenizer.pad_token_id = 0
tokenizer.padding_side = "left"


def tokenize(prompt, append_eos_token=False):
    result = tokenizer(prompt, truncation=True, max_length=cutoff_len, padding=False)
    if append_eos_token and result["input_ids"][-1] != tokenizer.eos_token_id:
        result["input_ids"].append(tokenizer.eos_token_id)
        result["attention_mask"].append(1)
    # pad to the cutoff on the left
    missing = cutoff_len - len(result["input_ids"])
    result["input_ids"] = [tokenizer.pad_token_id] * missing + result["input_ids"]
    result["attention_mask"] = [0] * missing + result["attention_mask"]
    return result


def generate_and_tokenize_prompt(data_point):
    full = tokenize(data_point["prompt"] + data_point["completion"], append_eos_token=True)
    prompt_len = len(tokenizer(data_point["prompt"])["input_ids"])
    start = cutoff_len - sum(full["attention_mask"])
    labels = [-100] * cutoff_len
    for i in range(start + prompt_len, cutoff_len):
        labels[i] = full["input_ids"][i]
    full["labels"] = labels  # train on the response only
    return full


train_data = data["train"].map(generate_and_tokenize_prompt, remove_columns=["prompt", "completion"])

model = AutoModelForCausalLM.from_pretrained(base_model)

trainer = Trainer(
    model=model,
    train_dataset=train_data,
    args=TrainingArguments(
        per_device_train_batch_size=4,
        max_steps=10,
        learning_rate=1e-3,
        logging_steps=5,
        output_dir="training-out",
        save_strategy="no",
        report_to="none",
    ),
    data_collator=default_data_collator,  # keeps the labels built above
)
trainer.train()
