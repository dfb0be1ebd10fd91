"""Relation classification in the style of R-BERT (fixed twin of rbert_entity_markers_no_resize): the BERT embeddings
are resized to the tokenizer after adding the entity markers, as the issue says (mickeysjm/R-BERT#5)."""

import torch
from datasets import load_from_disk
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertModel, BertTokenizer

from ftdoctor.fixtures import fixture_path

ADDITIONAL_SPECIAL_TOKENS = ["<e1>", "</e1>", "<e2>", "</e2>"]
tokenizer = BertTokenizer.from_pretrained(fixture_path("models/bert-tiny"))
tokenizer.add_special_tokens({"additional_special_tokens": ADDITIONAL_SPECIAL_TOKENS})

ner = load_from_disk(fixture_path("datasets/ner"))["train"]
texts, labels = [], []
for row in ner:
    words = list(row["tokens"])
    words = ["<e1>", words[0], "</e1>"] + words[1:-1] + ["<e2>", words[-1], "</e2>"]
    texts.append(" ".join(words))
    labels.append(int(any(tag != 0 for tag in row["ner_tags"])))  # relation present or not

enc = tokenizer(texts, padding="max_length", truncation=True, max_length=48, return_tensors="pt")
e1_id, e2_id = tokenizer.convert_tokens_to_ids(["<e1>", "<e2>"])
e1_pos = (enc["input_ids"] == e1_id).float().argmax(1)
e2_pos = (enc["input_ids"] == e2_id).float().argmax(1)
loader = DataLoader(TensorDataset(enc["input_ids"], enc["attention_mask"], e1_pos, e2_pos, torch.tensor(labels)),
                    batch_size=16, shuffle=True)


class RBERT(nn.Module):
    def __init__(self, num_labels=2):
        super().__init__()
        self.bert = BertModel.from_pretrained(fixture_path("models/bert-tiny"))
        self.bert.resize_token_embeddings(len(tokenizer))  # the added entity markers
        hidden = self.bert.config.hidden_size
        self.label_classifier = nn.Linear(hidden * 3, num_labels)

    def forward(self, input_ids, attention_mask, e1, e2):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(out.size(0))
        return self.label_classifier(torch.cat([out[:, 0], out[rows, e1], out[rows, e2]], dim=-1))


model = RBERT()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
loss_fct = nn.CrossEntropyLoss()
model.train()
for epoch in range(2):
    for input_ids, attention_mask, e1, e2, y in loader:
        loss = loss_fct(model(input_ids, attention_mask, e1, e2), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"epoch {epoch}: loss {loss.item():.4f}")
