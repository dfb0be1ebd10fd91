"""Translation fine-tuning with Seq2SeqTrainer (fixed twin of translation_as_target_tokenizer): targets are tokenized
with text_target=, which replaced the as_target_tokenizer() context manager (huggingface/course#316)."""

from datasets import load_from_disk
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/bart-tiny")  # "Helsinki-NLP/opus-mt-en-fr"
raw_datasets = load_from_disk(fixture_path("datasets/translation"))
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
max_input_length = max_target_length = 32


def preprocess_function(examples):
    inputs = [ex["en"] for ex in examples["translation"]]
    targets = [ex["fr"] for ex in examples["translation"]]
    return tokenizer(inputs, text_target=targets, max_length=max_input_length, truncation=True)


tokenized_datasets = raw_datasets.map(preprocess_function, batched=True,
                                      remove_columns=raw_datasets["train"].column_names)
model = AutoModelForSeq2SeqLM.from_pretrained(model_checkpoint)
args = Seq2SeqTrainingArguments("marian-finetuned-en-to-fr", learning_rate=3e-3, per_device_train_batch_size=32,
                                max_steps=10, save_strategy="no", report_to="none")
trainer = Seq2SeqTrainer(model, args, train_dataset=tokenized_datasets["train"],
                         eval_dataset=tokenized_datasets["validation"],
                         data_collator=DataCollatorForSeq2Seq(tokenizer, model=model), processing_class=tokenizer)
trainer.train()
