"""Unsloth-notebook SFT with TRL's SFTTrainer (fixed twin of sft_padding_collator_no_labels): no data_collator is
passed, so SFTTrainer uses its own collator, which pads and builds the language-modeling labels (unslothai/unsloth#455)."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ftdoctor.fixtures import fixture_path

max_seq_length = 128
model = AutoModelForCausalLM.from_pretrained(fixture_path("models/qwen2-chat-tiny"))  # "unsloth/llama-3-8b-bnb-4bit"
tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/qwen2-chat-tiny"))
train_dataset = load_from_disk(fixture_path("datasets/text-lm"))["train"]

trainer = SFTTrainer(
    model=model,
    processing_class=tokenizer,
    train_dataset=train_dataset,
    args=SFTConfig(
        dataset_text_field="text",
        max_length=max_seq_length,
        packing=False,  # Can make training 5x faster for short sequences.
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
