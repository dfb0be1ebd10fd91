"""Alpaca-CoT's finetune.py: LoRA instruction tuning where rows are padded to CUTOFF_LEN and the prompt part of
`labels` is set to -100, then batched by DataCollatorForLanguageModeling(mlm=False), which ignores the given labels
and rebuilds them from input_ids. The instruction is trained along with the response; nothing fails.
PhoebusSi/Alpaca-CoT#143."""

import transformers
from datasets import load_from_disk
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftdoctor.fixtures import fixture_path

MICRO_BATCH_SIZE = 4
CUTOFF_LEN = 48
base_model = fixture_path("models/llama-chat-tiny")  # "decapoda-research/llama-7b-hf"
tokenizer = AutoTokenizer.from_pretrained(base_model)
tokenizer.pad_token_id = 0
model = AutoModelForCausalLM.from_pretrained(base_model)
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.05,
                                         bias="none", task_type="CAUSAL_LM"))
data = load_from_disk(fixture_path("datasets/prompt-completion"))


def generate_and_tokenize_prompt(data_point):
    user_prompt = data_point["prompt"]
    len_user_prompt_tokens = len(tokenizer(user_prompt, truncation=True, max_length=CUTOFF_LEN + 1)["input_ids"]) - 1
    full = tokenizer(user_prompt + data_point["completion"] + tokenizer.eos_token, truncation=True,
                     max_length=CUTOFF_LEN + 1, padding="max_length")
    full_tokens, attention_mask = full["input_ids"][:-1], full["attention_mask"][:-1]
    labels = [-100] * len_user_prompt_tokens + full_tokens[len_user_prompt_tokens:]
    return {
        "input_ids": full_tokens,
        "labels": [t if m else -100 for t, m in zip(labels, attention_mask)],  # padding is not trained
        "attention_mask": attention_mask,
    }


train_data = data["train"].shuffle(seed=0).map(generate_and_tokenize_prompt, remove_columns=["prompt", "completion"])

trainer = transformers.Trainer(
    model=model,
    train_dataset=train_data,
    args=transformers.TrainingArguments(per_device_train_batch_size=MICRO_BATCH_SIZE, warmup_steps=2, max_steps=10,
                                        learning_rate=3e-3, logging_steps=5, output_dir="lora-alpaca-cot",
                                        save_strategy="no", report_to="none"),
    data_collator=transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False),
)
model.config.use_cache = False
trainer.train()
