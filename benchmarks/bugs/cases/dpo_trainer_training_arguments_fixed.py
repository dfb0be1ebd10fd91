"""DPO with TRL's DPOTrainer (fixed twin of dpo_trainer_training_arguments): the arguments are a DPOConfig, as the
maintainers answered (huggingface/trl#2291)."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from ftdoctor.fixtures import fixture_path

model_id = fixture_path("models/qwen2-chat-tiny")  # "Qwen/Qwen2-VL-7B-Instruct" in the report
model = AutoModelForCausalLM.from_pretrained(model_id)
tokenizer = AutoTokenizer.from_pretrained(model_id)
dataset = load_from_disk(fixture_path("datasets/preference"))

training_args = DPOConfig(output_dir="dpo-out", per_device_train_batch_size=4, learning_rate=1e-3,
                          max_steps=10, logging_steps=5, save_strategy="no", bf16=False, report_to="none")
trainer = DPOTrainer(model=model, args=training_args, train_dataset=dataset["train"], processing_class=tokenizer)
trainer.train()
