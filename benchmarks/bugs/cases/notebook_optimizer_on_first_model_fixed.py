"""A notebook that builds the model twice (fixed twin of notebook_optimizer_on_first_model): the optimizer is created
after the model that is trained, as the maintainer fixed the tutorial (spro/practical-pytorch#9)."""

# In[1]:
import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/distilbert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)

# In[2]:
learning_rate = 3e-3
criterion = torch.nn.CrossEntropyLoss()

# In[3]:
raw = load_from_disk(fixture_path("datasets/mrpc"))
train = raw["train"].map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True), batched=True,
                         remove_columns=["sentence1", "sentence2", "idx"])
loader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))

# In[4]:
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)  # bound to the model that trains


def train_step(batch):
    optimizer.zero_grad()
    labels = batch.pop("labels")
    output = model(**batch).logits
    loss = criterion(output, labels)
    loss.backward()
    optimizer.step()
    return loss.item()


# In[5]:
model.train()
for epoch in range(3):
    losses = [train_step(batch) for batch in loader]
    print(f"epoch {epoch}: loss {sum(losses) / len(losses):.4f}")
