"""open-r1's SFT recipe (TRL SFTTrainer on a conversational `messages` dataset) pointed at a base checkpoint: a base
model's tokenizer ships no chat template, so rendering the conversations fails with "Cannot use chat template
functions because tokenizer.chat_template is not set". huggingface/open-r1#85 (use an instruct tokenizer or set a
template)."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/llama-tiny-no-template")  # a base (not instruct) checkpoint
dataset = load_from_disk(fixture_path("datasets/chat"))  # conversations in a "messages" column

tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
tokenizer.pad_token = "<|finetune_right_pad_id|>"
model = AutoModelForCausalLM.from_pretrained(model_name_or_path)

training_args = SFTConfig(output_dir="data/sft-base", per_device_train_batch_size=4, learning_rate=3e-3,
                          max_steps=10, logging_steps=5, save_strategy="no", bf16=False, report_to="none")
trainer = SFTTrainer(model=model, args=training_args, train_dataset=dataset["train"],
                     eval_dataset=dataset["test"], processing_class=tokenizer)
trainer.train()
