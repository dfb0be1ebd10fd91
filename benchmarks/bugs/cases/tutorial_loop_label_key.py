"""The "fine-tune a pretrained model in native PyTorch" tutorial of the transformers docs, with the step that renames
the `label` column to `labels` left out: every batch carries `label`, which the model does not take as its labels,
so no loss is computed and the first step fails (then: "forward() got an unexpected keyword argument 'label'").
huggingface/transformers#12631."""

import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_scheduler

from ftdoctor.fixtures import fixture_path

raw_datasets = load_from_disk(fixture_path("datasets/reviews"))  # load_dataset("imdb")
tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/bert-tiny"))  # "bert-base-cased"


def tokenize_function(examples):
    return tokenizer(examples["text"], padding="max_length", truncation=True, max_length=64)


tokenized_datasets = raw_datasets.map(tokenize_function, batched=True)
tokenized_datasets = tokenized_datasets.remove_columns(["text"])
tokenized_datasets.set_format("torch")

small_train_dataset = tokenized_datasets["train"].shuffle(seed=42).select(range(128))
train_dataloader = DataLoader(small_train_dataset, shuffle=True, batch_size=8)
model = AutoModelForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=5)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
num_epochs = 2
num_training_steps = num_epochs * len(train_dataloader)
lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0, num_training_steps=num_training_steps)

model.train()
for epoch in range(num_epochs):
    for batch in train_dataloader:
        outputs = model(**batch)
        loss = outputs.loss
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
