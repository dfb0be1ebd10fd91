"""The huggingface/notebooks text_classification notebook (fixed twin of notebook_load_metric_removed): the metric
comes from evaluate.load, which replaced datasets.load_metric (huggingface/notebooks#568)."""

# In[1]:
import evaluate
import numpy as np
from datasets import load_from_disk

from ftdoctor.fixtures import fixture_path

task = "mrpc"
model_checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
batch_size = 16

# In[2]:
dataset = load_from_disk(fixture_path("datasets/mrpc"))  # load_dataset("glue", task)
metric = evaluate.load(fixture_path("metrics/glue"), task)  # evaluate.load("glue", task)

# In[3]:
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(model_checkpoint, use_fast=True)
sentence1_key, sentence2_key = "sentence1", "sentence2"


def preprocess_function(examples):
    return tokenizer(examples[sentence1_key], examples[sentence2_key], truncation=True)


encoded_dataset = dataset.map(preprocess_function, batched=True)

# In[4]:
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

num_labels = 2
model = AutoModelForSequenceClassification.from_pretrained(model_checkpoint, num_labels=num_labels)
metric_name = "accuracy"

args = TrainingArguments(
    f"{task}-finetuned",
    eval_strategy="epoch",
    save_strategy="no",
    learning_rate=3e-3,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=batch_size,
    max_steps=10,
    weight_decay=0.01,
    report_to="none",
)


def compute_metrics(eval_pred):
    predictions, labels = eval_pred
    predictions = np.argmax(predictions, axis=1)
    return metric.compute(predictions=predictions, references=labels)


# In[5]:
trainer = Trainer(
    model,
    args,
    train_dataset=encoded_dataset["train"],
    eval_dataset=encoded_dataset["validation"],
    processing_class=tokenizer,
    compute_metrics=compute_metrics,
)
trainer.train()
