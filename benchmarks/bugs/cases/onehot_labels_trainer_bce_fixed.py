"""Multi-class BERT fine-tuning with the plain Trainer (fixed twin of onehot_labels_trainer_bce): labels are class
ids, so the model trains with cross-entropy (single-label classification), as activetigger/activetigger#1031 did."""

from datasets import load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/distilbert-tiny")  # a BERT model chosen in the interface
ds = load_from_disk(fixture_path("datasets/reviews"))
labels = ds["train"].features["label"].names
tokenizer = AutoTokenizer.from_pretrained(model_name)


def preprocess(batch):
    enc = tokenizer(batch["text"], truncation=True, max_length=64)
    enc["labels"] = batch["label"]  # class ids: single-label classification (cross-entropy)
    return enc


ds = ds.map(preprocess, batched=True, remove_columns=["text", "label"])
bert_model = AutoModelForSequenceClassification.from_pretrained(
    model_name, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})

training_args = TrainingArguments(output_dir="bert-train", per_device_train_batch_size=16, learning_rate=3e-3,
                                  max_steps=15, logging_steps=5, save_strategy="no", report_to="none")
trainer = Trainer(model=bert_model, args=training_args, train_dataset=ds["train"], eval_dataset=ds["test"],
                  data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()
