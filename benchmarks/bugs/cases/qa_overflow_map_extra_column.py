"""The question-answering notebook's feature preparation (long contexts split into overlapping windows with
return_overflowing_tokens) extended with an extra tokenized column built once per example. The batched map then
returns more feature rows than there are values in the new column: "ArrowInvalid: Column ... expected length N but
got length M". huggingface/datasets#2070."""

# In[1]:
import random

from datasets import load_from_disk
from transformers import AutoTokenizer

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
datasets = load_from_disk(fixture_path("datasets/qa"))  # load_dataset("squad_v2")
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
max_length = 96
doc_stride = 32
pad_on_right = tokenizer.padding_side == "right"
random.seed(0)


# In[2]:
def generate_candidate_questions(examples):
    val_questions = examples["question"]
    candidate_questions = random.sample(list(datasets["train"]["question"]), len(val_questions))
    return [x[:max_length] for x in candidate_questions]


def prepare_validation_features(examples):
    examples["question"] = [q.lstrip() for q in examples["question"]]
    tokenized_examples = tokenizer(
        examples["question" if pad_on_right else "context"],
        examples["context" if pad_on_right else "question"],
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    sample_mapping = tokenized_examples.pop("overflow_to_sample_mapping")
    tokenized_examples["example_id"] = []
    for i in range(len(tokenized_examples["input_ids"])):
        sequence_ids = tokenized_examples.sequence_ids(i)
        context_index = 1 if pad_on_right else 0
        tokenized_examples["example_id"].append(examples["id"][sample_mapping[i]])
        tokenized_examples["offset_mapping"][i] = [
            (o if sequence_ids[k] == context_index else None) for k, o in enumerate(tokenized_examples["offset_mapping"][i])
        ]
    # candidate questions, tokenized with the original contexts
    candidates = tokenizer(generate_candidate_questions(examples), examples["context"], truncation="only_second",
                           max_length=max_length, padding="max_length")
    tokenized_examples["candidate_input_ids"] = candidates["input_ids"]
    tokenized_examples["candidate_attention_mask"] = candidates["attention_mask"]
    return tokenized_examples


def prepare_train_features(examples):
    examples["question"] = [q.lstrip() for q in examples["question"]]
    tokenized_examples = tokenizer(examples["question"], examples["context"], truncation="only_second",
                                   max_length=max_length, stride=doc_stride, return_overflowing_tokens=True,
                                   return_offsets_mapping=True, padding="max_length")
    sample_mapping = tokenized_examples.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized_examples.pop("offset_mapping")
    tokenized_examples["start_positions"] = []
    tokenized_examples["end_positions"] = []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized_examples["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized_examples.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start_index = sequence_ids.index(1)
        token_end_index = len(input_ids) - 1 - sequence_ids[::-1].index(1)
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            tokenized_examples["start_positions"].append(cls_index)
            tokenized_examples["end_positions"].append(cls_index)
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            tokenized_examples["start_positions"].append(token_start_index - 1)
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            tokenized_examples["end_positions"].append(token_end_index + 1)
    return tokenized_examples


# In[3]:
tokenized_train = datasets["train"].map(prepare_train_features, batched=True,
                                        remove_columns=datasets["train"].column_names)
validation_features = datasets["validation"].map(prepare_validation_features, batched=True,
                                                 remove_columns=datasets["validation"].column_names)

# In[4]:
from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments, default_data_collator

model = AutoModelForQuestionAnswering.from_pretrained(model_checkpoint)
args = TrainingArguments("qa-finetuned-squad", learning_rate=3e-3, per_device_train_batch_size=16, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = Trainer(model, args, train_dataset=tokenized_train, data_collator=default_data_collator,
                  processing_class=tokenizer)
trainer.train()
