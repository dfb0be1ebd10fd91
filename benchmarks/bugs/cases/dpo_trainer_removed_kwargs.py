"""DPO training in the style of MedicalGPT's dpo_training.py, written for an older TRL: beta, max_prompt_length,
max_length and tokenizer passed to DPOTrainer itself. They moved to DPOConfig (and tokenizer became
processing_class), so the trainer is never built: "DPOTrainer.__init__() got an unexpected keyword argument".
huggingface/trl#2853."""

from copy import deepcopy

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/qwen2-chat-tiny")  # "Qwen/Qwen1.5-0.5B-Chat"
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForCausalLM.from_pretrained(model_name_or_path)

raw = load_from_disk(fixture_path("datasets/preference"))
train_dataset, eval_dataset = raw["train"], raw["test"]
max_source_length, max_target_length = 48, 32
full_max_length = max_source_length + max_target_length

training_args = DPOConfig(
    output_dir="outputs-dpo",
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    max_steps=10,
    logging_steps=5,
    learning_rate=1e-3,
    save_strategy="no",
    bf16=False,
    report_to="none",
)
trainer = DPOTrainer(
    model,
    ref_model=deepcopy(model),
    args=training_args,
    beta=0.1,
    train_dataset=train_dataset,
    eval_dataset=eval_dataset,
    tokenizer=tokenizer,
    max_prompt_length=max_source_length,
    max_length=full_max_length,
)
trainer.train()
