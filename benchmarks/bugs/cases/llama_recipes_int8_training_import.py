"""llama-recipes' peft_finetuning notebook (LoRA on a Llama model with the Trainer, packed samsum-style rows) on a
recent PEFT: prepare_model_for_int8_training was deprecated and removed in PEFT 0.10, so the import fails.
huggingface/peft#1583."""

import torch
from datasets import load_from_disk
from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_int8_training
from transformers import AutoTokenizer, LlamaForCausalLM, Trainer, TrainingArguments, default_data_collator

from ftdoctor.fixtures import fixture_path

model_id = fixture_path("models/llama-chat-tiny")  # "meta-llama/Llama-2-7b-hf"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = LlamaForCausalLM.from_pretrained(model_id, torch_dtype=torch.float32)

raw = load_from_disk(fixture_path("datasets/prompt-completion"))["train"]
chunk = 32


def tokenize_and_pack(batch):
    ids = sum(tokenizer([p + c + tokenizer.eos_token for p, c in zip(batch["prompt"], batch["completion"])])["input_ids"], [])
    blocks = [ids[i: i + chunk] for i in range(0, len(ids) - chunk + 1, chunk)]
    return {"input_ids": blocks, "attention_mask": [[1] * chunk for _ in blocks], "labels": [b[:] for b in blocks]}


train_dataset = raw.map(tokenize_and_pack, batched=True, remove_columns=raw.column_names)

model.train()


def create_peft_config(model):
    peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, inference_mode=False, r=8, lora_alpha=32, lora_dropout=0.05,
                             target_modules=["q_proj", "v_proj"])
    model = prepare_model_for_int8_training(model)
    model = get_peft_model(model, peft_config)
    model.print_trainable_parameters()
    return model, peft_config


model, lora_config = create_peft_config(model)

training_args = TrainingArguments(output_dir="tmp/llama-output", bf16=False,
                                  per_device_train_batch_size=4, learning_rate=3e-3, max_steps=10, logging_steps=5,
                                  optim="adamw_torch", save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, data_collator=default_data_collator)
trainer.train()
