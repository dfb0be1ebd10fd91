"""Extractive question answering with BERT, as the Hugging Face course teaches it (chapter 7, section 7).

Contexts longer than `max_length` are split into overlapping windows (`return_overflowing_tokens=True` with a
`stride`), so an answer near the end of a long context is kept in some window; each answer's character span is
mapped through `offset_mapping` to start/end token positions, and windows without the answer point at [CLS].
Validation keeps each window's offsets and example id, and post-processing turns start/end logits back into
answer text, scored by exact match and F1.
"""

import collections

import evaluate
import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    DefaultDataCollator,
    Trainer,
    TrainingArguments,
    set_seed,
)

from ftdoctor.fixtures import fixture_path

set_seed(0)
checkpoint = fixture_path("models/bert-tiny")  # "bert-base-cased"
raw_datasets = load_from_disk(fixture_path("datasets/qa"))  # load_dataset("squad")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
max_length, stride = 64, 24  # 384 and 128 in the course; the fixture's contexts run past 100 tokens


def preprocess_training_examples(examples):
    questions = [q.strip() for q in examples["question"]]
    inputs = tokenizer(
        questions,
        examples["context"],
        max_length=max_length,
        truncation="only_second",
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    offset_mapping = inputs.pop("offset_mapping")
    sample_map = inputs.pop("overflow_to_sample_mapping")
    answers = examples["answers"]
    start_positions, end_positions = [], []
    for i, offset in enumerate(offset_mapping):
        answer = answers[sample_map[i]]
        start_char = answer["answer_start"][0]
        end_char = answer["answer_start"][0] + len(answer["text"][0])
        sequence_ids = inputs.sequence_ids(i)
        # Find the start and end of the context
        idx = 0
        while sequence_ids[idx] != 1:
            idx += 1
        context_start = idx
        while sequence_ids[idx] == 1:
            idx += 1
        context_end = idx - 1
        # If the answer is not fully inside this window, the label is (0, 0): the [CLS] token
        if offset[context_start][0] > start_char or offset[context_end][1] < end_char:
            start_positions.append(0)
            end_positions.append(0)
        else:
            idx = context_start
            while idx <= context_end and offset[idx][0] <= start_char:
                idx += 1
            start_positions.append(idx - 1)
            idx = context_end
            while idx >= context_start and offset[idx][1] >= end_char:
                idx -= 1
            end_positions.append(idx + 1)
    inputs["start_positions"] = start_positions
    inputs["end_positions"] = end_positions
    return inputs


def preprocess_validation_examples(examples):
    questions = [q.strip() for q in examples["question"]]
    inputs = tokenizer(
        questions,
        examples["context"],
        max_length=max_length,
        truncation="only_second",
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    sample_map = inputs.pop("overflow_to_sample_mapping")
    example_ids = []
    for i in range(len(inputs["input_ids"])):
        example_ids.append(examples["id"][sample_map[i]])
        sequence_ids = inputs.sequence_ids(i)
        # Keep only the context's offsets, so post-processing never picks a span in the question
        inputs["offset_mapping"][i] = [
            o if sequence_ids[k] == 1 else None for k, o in enumerate(inputs["offset_mapping"][i])
        ]
    inputs["example_id"] = example_ids
    return inputs


train_dataset = raw_datasets["train"].map(
    preprocess_training_examples, batched=True, remove_columns=raw_datasets["train"].column_names
)
validation_dataset = raw_datasets["validation"].map(
    preprocess_validation_examples, batched=True, remove_columns=raw_datasets["validation"].column_names
)

metric = evaluate.load(fixture_path("metrics/squad"))  # evaluate.load("squad")
n_best, max_answer_length = 20, 10


def compute_metrics(start_logits, end_logits, features, examples):
    """Post-processing: the best-scoring valid span over every window of an example, as text."""
    example_to_features = collections.defaultdict(list)
    for idx, feature in enumerate(features):
        example_to_features[feature["example_id"]].append(idx)
    predicted_answers = []
    for example in examples:
        example_id, context = example["id"], example["context"]
        answers = []
        for feature_index in example_to_features[example_id]:
            start_logit, end_logit = start_logits[feature_index], end_logits[feature_index]
            offsets = features[feature_index]["offset_mapping"]
            start_indexes = np.argsort(start_logit)[-1 : -n_best - 1 : -1].tolist()
            end_indexes = np.argsort(end_logit)[-1 : -n_best - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    # Skip answers that are not fully in the context, or with a negative or too long length
                    if offsets[start_index] is None or offsets[end_index] is None:
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    answers.append(
                        {
                            "text": context[offsets[start_index][0] : offsets[end_index][1]],
                            "logit_score": start_logit[start_index] + end_logit[end_index],
                        }
                    )
        best = max(answers, key=lambda x: x["logit_score"]) if answers else {"text": ""}
        predicted_answers.append({"id": example_id, "prediction_text": best["text"]})
    theoretical_answers = [{"id": ex["id"], "answers": ex["answers"]} for ex in examples]
    return metric.compute(predictions=predicted_answers, references=theoretical_answers)


def evaluate_answers(trainer):
    predictions, _, _ = trainer.predict(validation_dataset.remove_columns(["example_id", "offset_mapping"]))
    start_logits, end_logits = predictions
    return compute_metrics(start_logits, end_logits, validation_dataset, raw_datasets["validation"])


model = AutoModelForQuestionAnswering.from_pretrained(checkpoint)
args = TrainingArguments(
    "bert-finetuned-squad",
    eval_strategy="no",
    save_strategy="no",
    # A tiny random-init model needs a far larger step than a pretrained one (2e-5 in the course): 5e-3 learns
    # to point at the fixture's answers in a few epochs.
    learning_rate=5e-3,
    num_train_epochs=6,
    per_device_train_batch_size=16,
    weight_decay=0.01,
    report_to="none",
    seed=0,
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=train_dataset,
    data_collator=DefaultDataCollator(),
    processing_class=tokenizer,
)

metric_name = "f1"
metrics_before = evaluate_answers(trainer)
trainer.train()
metrics_after = evaluate_answers(trainer)
print(
    f"F1 before training: {metrics_before['f1']:.1f}, after: {metrics_after['f1']:.1f} "
    f"(exact match {metrics_before['exact_match']:.1f} -> {metrics_after['exact_match']:.1f})"
)
