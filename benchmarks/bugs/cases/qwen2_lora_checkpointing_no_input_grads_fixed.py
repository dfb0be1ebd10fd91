"""LoRA fine-tuning of a Qwen2 instruct model with gradient checkpointing (fixed twin of
qwen2_lora_checkpointing_no_input_grads): model.enable_input_require_grads() before wrapping the model, as the thread
answered (datawhalechina/self-llm#172)."""

import torch
from datasets import load_from_disk
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

model_path = fixture_path("models/qwen2-chat-tiny")  # "qwen/Qwen2-7B-Instruct"
tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=False, trust_remote_code=True)
ds = load_from_disk(fixture_path("datasets/prompt-completion"))["train"]
MAX_LENGTH = 128


def process_func(example):
    instruction = tokenizer(f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                            f"{example['prompt']}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    response = tokenizer(f"{example['completion']}", add_special_tokens=False)
    input_ids = instruction["input_ids"] + response["input_ids"] + [tokenizer.pad_token_id]
    attention_mask = instruction["attention_mask"] + response["attention_mask"] + [1]
    labels = [-100] * len(instruction["input_ids"]) + response["input_ids"] + [tokenizer.pad_token_id]
    return {"input_ids": input_ids[:MAX_LENGTH], "attention_mask": attention_mask[:MAX_LENGTH],
            "labels": labels[:MAX_LENGTH]}


tokenized_id = ds.map(process_func, remove_columns=ds.column_names)

model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)
model.enable_input_require_grads()  # needed with gradient checkpointing and frozen embeddings

config = LoraConfig(task_type=TaskType.CAUSAL_LM, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                  "gate_proj", "up_proj", "down_proj"],
                    inference_mode=False, r=8, lora_alpha=32, lora_dropout=0.1)
model = get_peft_model(model, config)

args = TrainingArguments(
    output_dir="./output/Qwen2_instruct_lora",
    per_device_train_batch_size=4,
    gradient_accumulation_steps=2,
    logging_steps=5,
    max_steps=10,
    learning_rate=3e-3,
    save_strategy="no",
    gradient_checkpointing=True,
    gradient_checkpointing_kwargs={"use_reentrant": True},
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=tokenized_id,
    data_collator=DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True),
)
trainer.train()
