"""Extractive QA with the Trainer in the manner of run_qa.py, run with `--load_best_model_at_end` and
`--metric_for_best_model loss`: the validation features are built for post-processing (offsets and example ids, no
answer positions), so evaluation computes no loss, and the first evaluation stops training with a KeyError for
'eval_loss'. huggingface/transformers#29801 ("run_qa.py script does not compute eval_loss")."""

from datasets import load_from_disk
from transformers import (
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/distilbert-tiny")  # "distilbert-base-cased"
raw_datasets = load_from_disk(fixture_path("datasets/qa"))  # load_dataset("squad_v2")
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
max_seq_length = 128
doc_stride = 32


def prepare_train_features(examples):
    examples["question"] = [q.lstrip() for q in examples["question"]]
    tokenized = tokenizer(examples["question"], examples["context"], truncation="only_second",
                          max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
                          return_offsets_mapping=True, padding="max_length")
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    tokenized["start_positions"], tokenized["end_positions"] = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start_index = sequence_ids.index(1)
        token_end_index = len(input_ids) - 1 - sequence_ids[::-1].index(1)
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            tokenized["start_positions"].append(cls_index)
            tokenized["end_positions"].append(cls_index)
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            tokenized["start_positions"].append(token_start_index - 1)
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            tokenized["end_positions"].append(token_end_index + 1)
    return tokenized


def prepare_validation_features(examples):
    examples["question"] = [q.lstrip() for q in examples["question"]]
    tokenized = tokenizer(examples["question"], examples["context"], truncation="only_second",
                          max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
                          return_offsets_mapping=True, padding="max_length")
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    tokenized["example_id"] = []
    for i in range(len(tokenized["input_ids"])):
        sequence_ids = tokenized.sequence_ids(i)
        tokenized["example_id"].append(examples["id"][sample_mapping[i]])
        tokenized["offset_mapping"][i] = [(o if sequence_ids[k] == 1 else None)
                                          for k, o in enumerate(tokenized["offset_mapping"][i])]
    return tokenized


train_dataset = raw_datasets["train"].map(prepare_train_features, batched=True,
                                          remove_columns=raw_datasets["train"].column_names)
eval_dataset = raw_datasets["validation"].map(prepare_validation_features, batched=True,
                                              remove_columns=raw_datasets["validation"].column_names)

training_args = TrainingArguments(
    output_dir="./qa-squad",
    learning_rate=3e-3,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    max_steps=10,
    eval_strategy="steps",
    eval_steps=5,
    save_strategy="steps",
    save_steps=5,
    save_total_limit=1,
    load_best_model_at_end=True,
    metric_for_best_model="loss",
    report_to="none",
)
model = AutoModelForQuestionAnswering.from_pretrained(model_name_or_path)
trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                  processing_class=tokenizer, data_collator=default_data_collator)
trainer.train()
