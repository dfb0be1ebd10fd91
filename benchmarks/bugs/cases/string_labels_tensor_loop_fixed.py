"""Sentiment fine-tuning in the style of prateekjoshi565/Fine-Tuning-BERT (fixed twin of string_labels_tensor_loop):
the word labels are mapped to class ids before they become a tensor (prateekjoshi565/Fine-Tuning-BERT#9)."""

import pandas as pd
import torch
import torch.nn as nn
from datasets import load_from_disk
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from transformers import AutoModel, AutoTokenizer

from ftdoctor.fixtures import fixture_path

device = torch.device("cpu")
reviews = load_from_disk(fixture_path("datasets/reviews"))["train"].to_pandas()
# the CSV of the report: a text column and a label column of words
df = pd.DataFrame({"text": reviews["text"],
                   "label": reviews["label"].map(lambda s: "negative" if s < 2 else ("notr" if s == 2 else "positive"))})

train_text, val_text, train_labels, val_labels = train_test_split(df["text"], df["label"], random_state=2018,
                                                                  test_size=0.3, stratify=df["label"])

bert = AutoModel.from_pretrained(fixture_path("models/bert-tiny"))  # "bert-base-uncased"
tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/bert-tiny"))
max_seq_len = 25

tokens_train = tokenizer(train_text.tolist(), max_length=max_seq_len, padding="max_length",
                         truncation=True)

train_seq = torch.tensor(tokens_train["input_ids"])
train_mask = torch.tensor(tokens_train["attention_mask"])
label_ids = {"negative": 0, "notr": 1, "positive": 2}
train_y = torch.tensor(train_labels.map(label_ids).tolist())

batch_size = 32
train_data = TensorDataset(train_seq, train_mask, train_y)
train_dataloader = DataLoader(train_data, sampler=RandomSampler(train_data), batch_size=batch_size)

for param in bert.parameters():
    param.requires_grad = False


class BERT_Arch(nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(0.1)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(bert.config.hidden_size, 64)
        self.fc2 = nn.Linear(64, 3)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, sent_id, mask):
        cls_hs = self.bert(sent_id, attention_mask=mask).last_hidden_state[:, 0]
        x = self.dropout(self.relu(self.fc1(cls_hs)))
        return self.softmax(self.fc2(x))


model = BERT_Arch(bert).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
cross_entropy = nn.NLLLoss()


def train():
    model.train()
    total_loss = 0
    for step, batch in enumerate(train_dataloader):
        sent_id, mask, labels = [r.to(device) for r in batch]
        model.zero_grad()
        preds = model(sent_id, mask)
        loss = cross_entropy(preds, labels)
        total_loss = total_loss + loss.item()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return total_loss / len(train_dataloader)


for epoch in range(2):
    print(f"epoch {epoch}: training loss {train():.3f}")
