"""A custom classification model (an encoder plus a linear head, its forward written as forward(self, **inputs))
trained with the Trainer and a custom loss: the Trainer keeps only the dataset columns named in the forward's
signature, finds none, and drops every input column, so the batches reach the model without input_ids.
huggingface/transformers#25054 (remove_unused_columns=True deletes the dataset)."""

from datasets import load_from_disk
from torch import nn
from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

checkpoint = fixture_path("models/bert-tiny")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
raw = load_from_disk(fixture_path("datasets/mrpc"))
train = raw["train"].map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True), batched=True,
                         remove_columns=["sentence1", "sentence2", "idx"])


class PairClassifier(nn.Module):
    def __init__(self, name, num_labels=2):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(name)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, **inputs):
        labels = inputs.pop("labels", None)
        hidden = self.encoder(**inputs).last_hidden_state[:, 0]
        logits = self.head(hidden)
        return {"logits": logits} if labels is None else {"logits": logits, "labels": labels}


class CustomLossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = nn.functional.cross_entropy(outputs["logits"], outputs["labels"])
        return (loss, outputs) if return_outputs else loss


model = PairClassifier(checkpoint)
args = TrainingArguments("pair-classifier", per_device_train_batch_size=16, learning_rate=3e-3, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = CustomLossTrainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()
