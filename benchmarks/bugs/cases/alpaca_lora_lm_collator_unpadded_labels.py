"""alpaca-lora style LoRA fine-tuning (PEFT + Trainer) with train_on_inputs=False, where the collator was switched
to DataCollatorForLanguageModeling(mlm=False): it pads input_ids but not the prompt-masked `labels` lists, which
differ in length, so the first batch fails with "Unable to create tensor". tloen/alpaca-lora#412."""

import transformers
from datasets import load_from_disk
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftdoctor.fixtures import fixture_path

base_model = fixture_path("models/llama-chat-tiny")  # "decapoda-research/llama-7b-hf"
data = load_from_disk(fixture_path("datasets/prompt-completion"))
cutoff_len = 64
train_on_inputs = False

tokenizer = AutoTokenizer.from_pretrained(base_model)
tokenizer.pad_token_id = 0  # unk: different from the eos token
tokenizer.padding_side = "left"


def tokenize(prompt, add_eos_token=True):
    result = tokenizer(prompt, truncation=True, max_length=cutoff_len, padding=False, return_tensors=None)
    if result["input_ids"][-1] != tokenizer.eos_token_id and len(result["input_ids"]) < cutoff_len and add_eos_token:
        result["input_ids"].append(tokenizer.eos_token_id)
        result["attention_mask"].append(1)
    result["labels"] = result["input_ids"].copy()
    return result


def generate_and_tokenize_prompt(data_point):
    full_prompt = data_point["prompt"] + data_point["completion"]
    tokenized_full_prompt = tokenize(full_prompt)
    if not train_on_inputs:
        tokenized_user_prompt = tokenize(data_point["prompt"], add_eos_token=False)
        user_prompt_len = len(tokenized_user_prompt["input_ids"])
        tokenized_full_prompt["labels"] = [-100] * user_prompt_len + tokenized_full_prompt["labels"][user_prompt_len:]
    return tokenized_full_prompt


train_data = data["train"].shuffle(seed=42).map(generate_and_tokenize_prompt, remove_columns=["prompt", "completion"])

model = AutoModelForCausalLM.from_pretrained(base_model)
config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.05, bias="none",
                    task_type="CAUSAL_LM")
model = get_peft_model(model, config)
model.print_trainable_parameters()

trainer = transformers.Trainer(
    model=model,
    train_dataset=train_data,
    args=transformers.TrainingArguments(
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        warmup_steps=2,
        max_steps=10,
        learning_rate=3e-3,
        logging_steps=5,
        output_dir="lora-alpaca",
        save_strategy="no",
        report_to="none",
    ),
    data_collator=transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False),
)
model.config.use_cache = False
trainer.train()
