"""Masked-LM pretraining in a hand-written loop with one short example per batch (fixed twin of
mlm_single_short_example_nan): the collator masks at least one token of every example, so no batch is left without a
masked token and the loss stays finite (huggingface/transformers#16711)."""

import torch
from datasets import load_from_disk
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bert-tiny")  # "nreimers/BERT-Tiny_L-2_H-128_A-2"
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForMaskedLM.from_pretrained(model_name)


class AtLeastOneMaskCollator(DataCollatorForLanguageModeling):
    """Mask 15% of the tokens, and at least one token of every example (the reporter's local fix)."""

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        inputs, labels = super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)
        for row in range(labels.shape[0]):
            if (labels[row] != -100).any():
                continue
            original = inputs[row].clone()  # nothing was masked or replaced in this row
            candidates = [i for i, t in enumerate(original.tolist()) if t not in self.tokenizer.all_special_ids]
            position = candidates[torch.randint(len(candidates), (1,)).item()]
            labels[row, position] = original[position]
            inputs[row, position] = self.tokenizer.mask_token_id
        return inputs, labels


coll = AtLeastOneMaskCollator(tokenizer=tokenizer, mlm_probability=0.15)

corpus = load_from_disk(fixture_path("datasets/corpus"))["train"]
sentences = [s.strip() + "." for text in corpus["text"][:20] for s in text.split(".") if s.strip()]
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

model.train()
tr_loss = 0.0
for step, text in enumerate(sentences):
    data = tokenizer(text, truncation=True, max_length=512, return_special_tokens_mask=True)
    mini_batch = coll([data])  # one example per batch, as in large-model pre-training
    loss = model(**mini_batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    tr_loss += loss.item()
    if step % 5 == 4:
        print(f"step {step + 1}: average loss {tr_loss / (step + 1):.4f}")
