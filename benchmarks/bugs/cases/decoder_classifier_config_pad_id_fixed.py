"""A decoder model fine-tuned for classification with the Trainer (fixed twin of
decoder_classifier_config_pad_id): the model config is given the pad token id, as the thread settled
(babylm/evaluation-pipeline-2023#5)."""

from datasets import load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/gpt2-tiny")  # a BabyLM decoder checkpoint
raw_datasets = load_from_disk(fixture_path("datasets/mrpc"))  # a (Super)GLUE task
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token

model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, num_labels=2)
model.config.pad_token_id = tokenizer.pad_token_id


def preprocess_function(examples):
    return tokenizer(examples["sentence1"], examples["sentence2"], padding="max_length", max_length=64,
                     truncation=True)


raw_datasets = raw_datasets.map(preprocess_function, batched=True)
training_args = TrainingArguments(output_dir="finetune-out", per_device_train_batch_size=16, learning_rate=2e-3,
                                  max_steps=10, save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=raw_datasets["train"],
                  eval_dataset=raw_datasets["validation"])
train_result = trainer.train()
