"""DPO on a preference dataset with TRL's DPOTrainer given a plain transformers TrainingArguments: DPOTrainer reads
DPO-specific fields (model_init_kwargs, beta, ...) from its args, which TrainingArguments does not have, so building
the trainer fails with an AttributeError. huggingface/trl#2291 (DPOTrainer expects a DPOConfig)."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments
from trl import DPOTrainer

from ftdoctor.fixtures import fixture_path

model_id = fixture_path("models/qwen2-chat-tiny")  # "Qwen/Qwen2-VL-7B-Instruct" in the report
model = AutoModelForCausalLM.from_pretrained(model_id)
tokenizer = AutoTokenizer.from_pretrained(model_id)
dataset = load_from_disk(fixture_path("datasets/preference"))

training_args = TrainingArguments(output_dir="dpo-out", per_device_train_batch_size=4, learning_rate=1e-3,
                                  max_steps=10, logging_steps=5, save_strategy="no", report_to="none")
trainer = DPOTrainer(model=model, args=training_args, train_dataset=dataset["train"], processing_class=tokenizer)
trainer.train()
