"""BERT fine-tuning for sentence classification following Chris McCormick's tutorial (a TensorDataset, a hand-written
loop calling model(b_input_ids, token_type_ids=None, attention_mask=b_input_mask, labels=b_labels)), but with the
model built as BertModel: the bare encoder has no classification head and computes no loss from labels, so the loop
fails at its first step ("forward() got an unexpected keyword argument 'labels'" at the time).
allenai/allennlp#3377 (the tutorial uses BertForSequenceClassification)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from transformers import BertModel, BertTokenizer

from ftdoctor.fixtures import fixture_path

tokenizer = BertTokenizer.from_pretrained(fixture_path("models/bert-tiny"), do_lower_case=True)
rows = load_from_disk(fixture_path("datasets/mrpc"))["train"]  # CoLA in the tutorial
encoded = tokenizer(list(rows["sentence1"]), padding="max_length", truncation=True, max_length=48, return_tensors="pt")
train_data = TensorDataset(encoded["input_ids"], encoded["attention_mask"], torch.tensor(rows["label"]))
train_dataloader = DataLoader(train_data, sampler=RandomSampler(train_data), batch_size=32)

model = BertModel.from_pretrained(fixture_path("models/bert-tiny"))
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, eps=1e-8)
train_loss_set = []

for epoch in range(2):
    model.train()
    for step, batch in enumerate(train_dataloader):
        b_input_ids, b_input_mask, b_labels = batch
        optimizer.zero_grad()
        # Forward pass
        loss = model(b_input_ids, token_type_ids=None, attention_mask=b_input_mask, labels=b_labels)[0]
        train_loss_set.append(loss.item())
        # Backward pass
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: last loss {train_loss_set[-1]:.4f}")
