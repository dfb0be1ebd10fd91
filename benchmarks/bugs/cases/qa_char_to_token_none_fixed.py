"""Extractive QA following the "custom datasets" SQuAD tutorial (fixed twin of qa_char_to_token_none): a missing
start and a missing end are each replaced by model_max_length, as huggingface/transformers#10374 fixed the docs for
#10210; the model ignores those out-of-range positions."""

import torch
from datasets import load_from_disk
from transformers import DistilBertForQuestionAnswering, DistilBertTokenizerFast, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

squad = load_from_disk(fixture_path("datasets/qa"))  # SQuAD-shaped json, read with read_squad() in the tutorial


def read_squad(split):
    contexts, questions, answers = [], [], []
    for row in squad[split]:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            contexts.append(row["context"])
            questions.append(row["question"])
            answers.append({"text": text, "answer_start": start})
    return contexts, questions, answers


train_contexts, train_questions, train_answers = read_squad("train")
val_contexts, val_questions, val_answers = read_squad("validation")


def add_end_idx(answers, contexts):
    for answer, context in zip(answers, contexts):
        gold_text = answer["text"]
        start_idx = answer["answer_start"]
        end_idx = start_idx + len(gold_text)
        if context[start_idx:end_idx] == gold_text:
            answer["answer_end"] = end_idx
        elif context[start_idx - 1:end_idx - 1] == gold_text:
            answer["answer_start"] = start_idx - 1
            answer["answer_end"] = end_idx - 1
        elif context[start_idx - 2:end_idx - 2] == gold_text:
            answer["answer_start"] = start_idx - 2
            answer["answer_end"] = end_idx - 2


add_end_idx(train_answers, train_contexts)
add_end_idx(val_answers, val_contexts)

tokenizer = DistilBertTokenizerFast.from_pretrained(fixture_path("models/distilbert-tiny"))  # distilbert-base-uncased
train_encodings = tokenizer(train_contexts, train_questions, truncation=True, padding=True)
val_encodings = tokenizer(val_contexts, val_questions, truncation=True, padding=True)


def add_token_positions(encodings, answers):
    start_positions = []
    end_positions = []
    for i in range(len(answers)):
        start_positions.append(encodings.char_to_token(i, answers[i]["answer_start"]))
        end_positions.append(encodings.char_to_token(i, answers[i]["answer_end"] - 1))
        # if None, the answer passage has been truncated
        if start_positions[-1] is None:
            start_positions[-1] = tokenizer.model_max_length
        if end_positions[-1] is None:
            end_positions[-1] = tokenizer.model_max_length
    encodings.update({"start_positions": start_positions, "end_positions": end_positions})


add_token_positions(train_encodings, train_answers)
add_token_positions(val_encodings, val_answers)


class SquadDataset(torch.utils.data.Dataset):
    def __init__(self, encodings):
        self.encodings = encodings

    def __getitem__(self, idx):
        return {key: torch.tensor(val[idx]) for key, val in self.encodings.items()}

    def __len__(self):
        return len(self.encodings.input_ids)


train_dataset = SquadDataset(train_encodings)
val_dataset = SquadDataset(val_encodings)

model = DistilBertForQuestionAnswering.from_pretrained(fixture_path("models/distilbert-tiny"))

training_args = TrainingArguments(
    output_dir="./results",
    max_steps=10,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    learning_rate=5e-3,
    warmup_steps=2,
    weight_decay=0.01,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=val_dataset)
trainer.train()
