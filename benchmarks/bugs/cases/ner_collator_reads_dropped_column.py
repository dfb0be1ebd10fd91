"""NER with the Trainer and a custom collator that aligns the word-level tags to the tokens at batch time, from the
`ner_tags` column and the tokenizer's word ids: the Trainer drops `ner_tags` and `word_ids` (the model's forward
does not take them) before the collator runs, so the first batch raises KeyError. huggingface/transformers#19599."""

import torch
from datasets import load_from_disk
from transformers import AutoModelForTokenClassification, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/bert-tiny")  # "bert-base-cased"
raw = load_from_disk(fixture_path("datasets/ner"))
label_names = raw["train"].features["ner_tags"].feature.names
tokenizer = AutoTokenizer.from_pretrained(checkpoint)


def tokenize(batch):
    enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True)
    enc["word_ids"] = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(batch["tokens"]))]
    return enc


tokenized = raw.map(tokenize, batched=True, remove_columns=["id", "tokens"])


class AlignTagsCollator:
    """Pads the inputs and builds per-token labels from the word-level tags (first piece of a word only)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features):
        tags = [f.pop("ner_tags") for f in features]
        word_ids = [f.pop("word_ids") for f in features]
        batch = self.tokenizer.pad(features, return_tensors="pt")
        labels = torch.full(batch["input_ids"].shape, -100)
        for i, (row_tags, row_words) in enumerate(zip(tags, word_ids)):
            previous = None
            for j, w in enumerate(row_words):
                if w != -1 and w != previous:
                    labels[i, j] = row_tags[w]
                previous = w
        batch["labels"] = labels
        return batch


model = AutoModelForTokenClassification.from_pretrained(checkpoint, num_labels=len(label_names))
args = TrainingArguments("ner-align", per_device_train_batch_size=16, learning_rate=1e-2, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"], data_collator=AlignTagsCollator(tokenizer))
trainer.train()
