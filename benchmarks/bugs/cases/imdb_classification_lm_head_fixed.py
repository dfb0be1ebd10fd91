"""IMDb sentiment classification following the "custom datasets" tutorial (fixed twin of imdb_classification_lm_head):
the model has a sequence-classification head (AutoModelForSequenceClassification), as in the tutorial
(huggingface/transformers#7421)."""

import torch
from datasets import load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

tokenizer = AutoTokenizer.from_pretrained(fixture_path("models/bert-tiny"))  # "bert-base-multilingual-cased"
model = AutoModelForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=2)

reviews = load_from_disk(fixture_path("datasets/reviews"))
train_texts = list(reviews["train"]["text"])
train_labels = [int(stars >= 3) for stars in reviews["train"]["label"]]
train_encodings = tokenizer(train_texts, truncation=True, padding=True)


class IMDbDataset(torch.utils.data.Dataset):
    def __init__(self, encodings, labels):
        self.encodings = encodings
        self.labels = labels

    def __getitem__(self, idx):
        item = {key: torch.tensor(val[idx]) for key, val in self.encodings.items()}
        item["labels"] = torch.tensor(self.labels[idx])
        return item

    def __len__(self):
        return len(self.labels)


train_dataset = IMDbDataset(train_encodings, train_labels)
training_args = TrainingArguments(output_dir="./results", max_steps=10, per_device_train_batch_size=16,
                                  learning_rate=3e-3, warmup_steps=2, weight_decay=0.01, save_strategy="no",
                                  report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset)
trainer.train()
