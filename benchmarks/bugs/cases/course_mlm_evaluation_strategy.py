"""Chapter 7 of the Hugging Face course, fine-tuning a masked language model with the Trainer, copied with the
TrainingArguments of its time: `evaluation_strategy` was renamed `eval_strategy` and the old name is gone in
transformers 5, so building the arguments raises TypeError. huggingface/course#987."""

from datasets import load_from_disk
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
model = AutoModelForMaskedLM.from_pretrained(model_checkpoint)
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
imdb_dataset = load_from_disk(fixture_path("datasets/corpus"))  # load_dataset("imdb")


def tokenize_function(examples):
    return tokenizer(examples["text"])


tokenized_datasets = imdb_dataset.map(tokenize_function, batched=True, remove_columns=["text"])
chunk_size = 32


def group_texts(examples):
    concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
    total_length = (len(concatenated_examples["input_ids"]) // chunk_size) * chunk_size
    result = {k: [t[i: i + chunk_size] for i in range(0, total_length, chunk_size)]
              for k, t in concatenated_examples.items()}
    result["labels"] = result["input_ids"].copy()
    return result


lm_datasets = tokenized_datasets.map(group_texts, batched=True)
data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)

batch_size = 16
logging_steps = len(lm_datasets["train"]) // batch_size
training_args = TrainingArguments(
    output_dir="distilbert-finetuned-imdb",
    evaluation_strategy="epoch",
    learning_rate=3e-3,
    weight_decay=0.01,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=batch_size,
    max_steps=10,
    save_strategy="no",
    logging_steps=logging_steps,
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=lm_datasets["train"],
    eval_dataset=lm_datasets["validation"],
    data_collator=data_collator,
    processing_class=tokenizer,
)
trainer.train()
