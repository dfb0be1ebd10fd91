"""LoRA fine-tuning with PEFT and the Trainer, with the LoraConfig copied from a LLaMA recipe
(target_modules=["q_proj", "v_proj"]) onto a model of another family, whose attention projection is named
differently: get_peft_model raises "Target modules ['q_proj', 'v_proj'] not found in the base model".
huggingface/peft#294 (gpt-neox names it query_key_value; target_modules=None lets PEFT pick)."""

from datasets import load_from_disk
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_id = fixture_path("models/gpt2-tiny")  # "EleutherAI/gpt-neox-20b" in the report
tokenizer = AutoTokenizer.from_pretrained(model_id)
tokenizer.pad_token = tokenizer.eos_token
model = AutoModelForCausalLM.from_pretrained(model_id)

config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.05, bias="none",
                    task_type="CAUSAL_LM")
model = get_peft_model(model, config)
model.print_trainable_parameters()

data = load_from_disk(fixture_path("datasets/text-lm"))
data = data.map(lambda samples: tokenizer(samples["text"]), batched=True, remove_columns=["text"])
trainer = Trainer(
    model=model,
    train_dataset=data["train"],
    args=TrainingArguments(per_device_train_batch_size=4, gradient_accumulation_steps=2, warmup_steps=2, max_steps=10,
                           learning_rate=3e-3, logging_steps=5, output_dir="outputs", save_strategy="no",
                           report_to="none"),
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
)
model.config.use_cache = False
trainer.train()
