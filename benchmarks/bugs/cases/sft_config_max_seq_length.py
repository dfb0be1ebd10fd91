"""Unsloth-style SFT of a small model with TRL's SFTTrainer, configured through SFTConfig(max_seq_length=...): TRL
renamed the field to max_length, so building the config fails with "SFTConfig.__init__() got an unexpected keyword
argument 'max_seq_length'". unslothai/unsloth#10785."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ftdoctor.fixtures import fixture_path

max_seq_length = 128
model = AutoModelForCausalLM.from_pretrained(fixture_path("models/qwen2-chat-tiny"))  # "unsloth/Qwen3.5-4B"
tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/qwen2-chat-tiny"))
dataset = load_from_disk(fixture_path("datasets/text-lm"))["train"]

trainer = SFTTrainer(
    model=model,
    processing_class=tokenizer,
    train_dataset=dataset,
    args=SFTConfig(
        dataset_text_field="text",
        max_seq_length=max_seq_length,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        warmup_steps=2,
        max_steps=10,
        learning_rate=3e-3,
        logging_steps=5,
        optim="adamw_torch",
        weight_decay=0.01,
        lr_scheduler_type="linear",
        seed=3407,
        output_dir="outputs",
        save_strategy="no",
        bf16=False,
        report_to="none",
    ),
)
trainer.train()
