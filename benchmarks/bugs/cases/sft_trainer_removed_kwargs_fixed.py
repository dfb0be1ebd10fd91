"""Chapter 12 of "Hands-On Large Language Models" (fixed twin of sft_trainer_removed_kwargs): the dataset and length
settings live in SFTConfig (max_seq_length is max_length there) and the tokenizer is passed as processing_class,
as the thread settled for current TRL (HandsOnLLM/Hands-On-Large-Language-Models#32)."""

from datasets import load_from_disk
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/llama-chat-tiny")  # "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"
dataset = load_from_disk(fixture_path("datasets/text-lm"))["train"]  # formatted chats in a "text" column

model = AutoModelForCausalLM.from_pretrained(model_name)
model.config.use_cache = False
tokenizer = AutoTokenizer.from_pretrained(model_name)
tokenizer.pad_token = "<|finetune_right_pad_id|>"
tokenizer.padding_side = "left"

peft_config = LoraConfig(lora_alpha=32, lora_dropout=0.1, r=64, bias="none", task_type="CAUSAL_LM",
                         target_modules=["k_proj", "gate_proj", "v_proj", "up_proj", "q_proj", "o_proj", "down_proj"])

output_dir = "./results"
training_arguments = SFTConfig(
    output_dir=output_dir,
    dataset_text_field="text",
    max_length=512,
    bf16=False,
    per_device_train_batch_size=2,
    gradient_accumulation_steps=4,
    optim="adamw_torch",
    learning_rate=2e-3,
    lr_scheduler_type="cosine",
    max_steps=10,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)

trainer = SFTTrainer(
    model=model,
    train_dataset=dataset,
    processing_class=tokenizer,
    args=training_arguments,
    peft_config=peft_config,
)
trainer.train()
