"""A custom classification model trained with the Trainer and a custom loss (fixed twin of
custom_model_kwargs_columns_dropped): remove_unused_columns=False keeps the input columns, which the forward takes
through **inputs, as the thread concluded (huggingface/transformers#25054)."""

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
                         save_strategy="no", report_to="none", remove_unused_columns=False)
trainer = CustomLossTrainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()
