"""BERT fine-tuning following Chris McCormick's tutorial (fixed twin of tutorial_loop_bertmodel_labels): the model is
BertForSequenceClassification, which has the classification head and computes the loss from labels, as the tutorial
uses (allenai/allennlp#3377)."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from transformers import BertForSequenceClassification, BertTokenizer

from ftdoctor.fixtures import fixture_path

tokenizer = BertTokenizer.from_pretrained(fixture_path("models/bert-tiny"), do_lower_case=True)
rows = load_from_disk(fixture_path("datasets/mrpc"))["train"]  # CoLA in the tutorial
encoded = tokenizer(list(rows["sentence1"]), padding="max_length", truncation=True, max_length=48, return_tensors="pt")
train_data = TensorDataset(encoded["input_ids"], encoded["attention_mask"], torch.tensor(rows["label"]))
train_dataloader = DataLoader(train_data, sampler=RandomSampler(train_data), batch_size=32)

model = BertForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=2)
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
