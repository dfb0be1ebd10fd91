"""NER fine-tuning with the Trainer, batches built by DataCollatorWithPadding: it pads input_ids and attention_mask
but leaves the word-aligned `labels` lists at their own lengths, so the first batch cannot become a tensor.
Reported in huggingface/transformers#8116 (the thread that led to DataCollatorForTokenClassification)."""

from datasets import load_from_disk
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bert-tiny")  # "bert-base-cased"
datasets = load_from_disk(fixture_path("datasets/ner"))  # load_dataset("conll2003")
label_list = datasets["train"].features["ner_tags"].feature.names
tokenizer = AutoTokenizer.from_pretrained(model_name)


def tokenize_and_align_labels(examples):
    tokenized_inputs = tokenizer(examples["tokens"], truncation=True, is_split_into_words=True)
    labels = []
    for i, label in enumerate(examples["ner_tags"]):
        word_ids = tokenized_inputs.word_ids(batch_index=i)
        previous_word_idx = None
        label_ids = []
        for word_idx in word_ids:
            if word_idx is None:
                label_ids.append(-100)
            elif word_idx != previous_word_idx:
                label_ids.append(label[word_idx])
            else:
                label_ids.append(-100)
            previous_word_idx = word_idx
        labels.append(label_ids)
    tokenized_inputs["labels"] = labels
    return tokenized_inputs


tokenized_datasets = datasets.map(tokenize_and_align_labels, batched=True,
                                  remove_columns=datasets["train"].column_names)

model = AutoModelForTokenClassification.from_pretrained(model_name, num_labels=len(label_list))

args = TrainingArguments(
    "ner-out",
    learning_rate=1e-2,
    per_device_train_batch_size=16,
    max_steps=10,
    save_strategy="no",
    report_to="none",
)
data_collator = DataCollatorWithPadding(tokenizer)

trainer = Trainer(
    model,
    args,
    train_dataset=tokenized_datasets["train"],
    eval_dataset=tokenized_datasets["validation"],
    data_collator=data_collator,
    processing_class=tokenizer,
)
trainer.train()
