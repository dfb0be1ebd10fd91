"""Continuing LoRA fine-tuning of a published adapter (tloen/alpaca-lora-7b on a Llama base) in a plain PyTorch
loop: PeftModel.from_pretrained loads the adapter for inference unless is_trainable=True, so print_trainable_parameters
reports 0 and the first backward has nothing to differentiate ("element 0 of tensors does not require grad").
huggingface/peft#282."""

import torch
from datasets import load_from_disk
from peft import PeftModel
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorForLanguageModeling, LlamaForCausalLM

from ftdoctor.fixtures import fixture_path

orig_model = LlamaForCausalLM.from_pretrained(fixture_path("models/llama-chat-tiny"))  # decapoda-research/llama-7b-hf
tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/llama-chat-tiny"))
tokenizer.pad_token = "<|finetune_right_pad_id|>"
model = PeftModel.from_pretrained(orig_model, fixture_path("adapters/llama-chat-tiny-lora"))  # "tloen/alpaca-lora-7b"
model.print_trainable_parameters()

texts = load_from_disk(fixture_path("datasets/text-lm"))["train"]
tokenized = texts.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True,
                      remove_columns=["text"])
loader = DataLoader(tokenized, batch_size=8, shuffle=True, collate_fn=DataCollatorForLanguageModeling(tokenizer, mlm=False))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

model.train()
for epoch in range(2):
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {loss.item():.4f}")
