"""Intent classification with a BERT classifier in a hand-written fine-tuning loop (gnn_cross_lingual's
bert_finetune.py): num_labels is set for fewer classes than the dataset in use has intents, so the loss
fails with "IndexError: Target N is out of bounds". TencentGameMate/gnn_cross_lingual#5."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertForSequenceClassification, BertTokenizer

from ftdoctor.fixtures import fixture_path

tokenizer = BertTokenizer.from_pretrained(fixture_path("models/bert-tiny"))
rows = load_from_disk(fixture_path("datasets/reviews"))["train"]
# intents of the dataset in use: the review's stars crossed with whether it mentions a price (10 classes)
intents = [stars * 2 + int("price" in text) for stars, text in zip(rows["label"], rows["text"])]


def finetune_model(texts, labels, num_labels=8, epochs=2):
    model = BertForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=num_labels)
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=48, return_tensors="pt")
    data = TensorDataset(enc["input_ids"], enc["attention_mask"], torch.tensor(labels))
    loader = DataLoader(data, batch_size=16, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(epochs):
        for b_input_ids, b_input_mask, b_labels in loader:
            model.zero_grad()
            loss = model(b_input_ids, attention_mask=b_input_mask, labels=b_labels).loss
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}")
    return model


model = finetune_model(list(rows["text"]), intents)
