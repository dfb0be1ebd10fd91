"""Extractive QA with the Trainer (fixed twin of qa_truncation_without_stride): long contexts are split into
overlapping windows (return_overflowing_tokens with a doc_stride), so every answer lies whole in some window, as
the thread pointed to (huggingface/transformers#456)."""

from datasets import load_from_disk
from transformers import (
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/bert-tiny")  # "bert-base-uncased"
raw = load_from_disk(fixture_path("datasets/qa"))  # SQuAD
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
max_seq_length = 64
doc_stride = 24


def prepare_train_features(examples):
    tokenized = tokenizer(examples["question"], examples["context"], truncation="only_second",
                          max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
                          return_offsets_mapping=True, padding="max_length")
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    tokenized["start_positions"], tokenized["end_positions"] = [], []
    for i, offsets in enumerate(offset_mapping):
        answers = examples["answers"][sample_mapping[i]]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        sequence_ids = tokenized.sequence_ids(i)
        context_start = sequence_ids.index(1)
        context_end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
        if offsets[context_start][0] > start_char or offsets[context_end][1] < end_char:
            tokenized["start_positions"].append(0)  # answer not in the window: label it at CLS
            tokenized["end_positions"].append(0)
            continue
        idx = context_start
        while idx <= context_end and offsets[idx][0] <= start_char:
            idx += 1
        tokenized["start_positions"].append(idx - 1)
        idx = context_end
        while idx >= context_start and offsets[idx][1] >= end_char:
            idx -= 1
        tokenized["end_positions"].append(idx + 1)
    return tokenized


train_dataset = raw["train"].map(prepare_train_features, batched=True, remove_columns=raw["train"].column_names)
model = AutoModelForQuestionAnswering.from_pretrained(model_checkpoint)
args = TrainingArguments("qa-out", per_device_train_batch_size=16, learning_rate=3e-3, max_steps=10, save_strategy="no",
                         report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=default_data_collator,
                  processing_class=tokenizer)
trainer.train()
