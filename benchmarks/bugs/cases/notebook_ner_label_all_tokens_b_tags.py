"""The token-classification notebook of huggingface/notebooks, run as cells, with its default label_all_tokens=True:
tokenize_and_align_labels gives every piece of a word the word's label, so a word tagged B-ORG split in two pieces
becomes B-ORG B-ORG: two entity starts where there is one entity. Training and seqeval run; both learn and count
the wrong entity boundaries. huggingface/notebooks#250 (run_ner.py maps the copies to I- tags)."""

# In[1]:
import evaluate
import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

task = "ner"
model_checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
batch_size = 16
datasets = load_from_disk(fixture_path("datasets/ner"))  # load_dataset("conll2003")
label_list = datasets["train"].features[f"{task}_tags"].feature.names
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)

# In[2]:
label_all_tokens = True


def tokenize_and_align_labels(examples):
    tokenized_inputs = tokenizer(examples["tokens"], truncation=True, is_split_into_words=True)
    labels = []
    for i, label in enumerate(examples[f"{task}_tags"]):
        word_ids = tokenized_inputs.word_ids(batch_index=i)
        previous_word_idx = None
        label_ids = []
        for word_idx in word_ids:
            if word_idx is None:
                label_ids.append(-100)
            elif word_idx != previous_word_idx:
                label_ids.append(label[word_idx])
            else:
                label_ids.append(label[word_idx] if label_all_tokens else -100)
            previous_word_idx = word_idx
        labels.append(label_ids)
    tokenized_inputs["labels"] = labels
    return tokenized_inputs


tokenized_datasets = datasets.map(tokenize_and_align_labels, batched=True)

# In[3]:
model = AutoModelForTokenClassification.from_pretrained(model_checkpoint, num_labels=len(label_list))
args = TrainingArguments(f"{task}-finetuned", eval_strategy="steps", eval_steps=10, learning_rate=1e-2,
                         per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
                         max_steps=10, weight_decay=0.01, save_strategy="no", report_to="none")
data_collator = DataCollatorForTokenClassification(tokenizer)
metric = evaluate.load(fixture_path("metrics/seqeval"))


def compute_metrics(p):
    predictions, labels = p
    predictions = np.argmax(predictions, axis=2)
    true_predictions = [[label_list[p] for (p, l) in zip(prediction, label) if l != -100]
                        for prediction, label in zip(predictions, labels)]
    true_labels = [[label_list[l] for (p, l) in zip(prediction, label) if l != -100]
                   for prediction, label in zip(predictions, labels)]
    results = metric.compute(predictions=true_predictions, references=true_labels)
    return {"precision": results["overall_precision"], "recall": results["overall_recall"],
            "f1": results["overall_f1"], "accuracy": results["overall_accuracy"]}


# In[4]:
trainer = Trainer(model, args, train_dataset=tokenized_datasets["train"], eval_dataset=tokenized_datasets["validation"],
                  data_collator=data_collator, processing_class=tokenizer, compute_metrics=compute_metrics)
trainer.train()
