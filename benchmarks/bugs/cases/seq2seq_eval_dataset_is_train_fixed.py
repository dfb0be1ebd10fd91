"""Text-to-text training with Seq2SeqTrainer (fixed twin of seq2seq_eval_dataset_is_train): evaluation runs on the
held-out split, as the maintainer advised (ArvinZhuang/DSI-transformers#4)."""

from datasets import load_from_disk
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bart-tiny")  # "t5-large"
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForSeq2SeqLM.from_pretrained(model_name)
raw = load_from_disk(fixture_path("datasets/translation"))


def tokenize(batch):
    sources = [pair["en"] for pair in batch["translation"]]
    targets = [pair["fr"] for pair in batch["translation"]]
    return tokenizer(sources, text_target=targets, max_length=32, truncation=True)


train_dataset = raw["train"].map(tokenize, batched=True, remove_columns=raw["train"].column_names)
eval_dataset = raw["validation"].map(tokenize, batched=True, remove_columns=raw["validation"].column_names)

training_args = Seq2SeqTrainingArguments(output_dir="./results", learning_rate=3e-3, per_device_train_batch_size=32,
                                         per_device_eval_batch_size=32, max_steps=10, eval_strategy="steps",
                                         eval_steps=10, save_strategy="no", report_to="none")
trainer = Seq2SeqTrainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         data_collator=DataCollatorForSeq2Seq(tokenizer, model=model), processing_class=tokenizer)
trainer.train()
