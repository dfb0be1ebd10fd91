"""A PEFT LoRA text-classification notebook (fixed twin of peft_lora_textcls_evaluation_strategy): the argument is
eval_strategy, its current name (aws-samples/aws-ai-ml-workshop-kr#151)."""

# In[1]:
import evaluate
import numpy as np
from datasets import load_from_disk
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
id2label = {0: "Negative", 1: "Positive"}
label2id = {"Negative": 0, "Positive": 1}
model = AutoModelForSequenceClassification.from_pretrained(model_checkpoint, num_labels=2, id2label=id2label,
                                                           label2id=label2id)
reviews = load_from_disk(fixture_path("datasets/reviews"))
dataset = reviews.map(lambda row: {"label": int(row["label"] >= 3)}).cast_column(
    "label", reviews["train"].features["label"].__class__(names=["Negative", "Positive"]))

# In[2]:
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint, add_prefix_space=True)


def tokenize_function(examples):
    return tokenizer(examples["text"], truncation=True, max_length=64)


tokenized_dataset = dataset.map(tokenize_function, batched=True)
data_collator = DataCollatorWithPadding(tokenizer=tokenizer)
accuracy = evaluate.load(fixture_path("metrics/accuracy"))


def compute_metrics(p):
    predictions, labels = p
    predictions = np.argmax(predictions, axis=1)
    return accuracy.compute(predictions=predictions, references=labels)


# In[3]:
peft_config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=32, lora_dropout=0.01, target_modules=["q_lin"])
model = get_peft_model(model, peft_config)
model.print_trainable_parameters()

# In[4]:
lr = 1e-2
batch_size = 16
training_args = TrainingArguments(
    output_dir=model_checkpoint.split("/")[-1] + "-lora-text-classification",
    learning_rate=lr,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=batch_size,
    max_steps=10,
    weight_decay=0.01,
    eval_strategy="epoch",
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(model=model, args=training_args, train_dataset=tokenized_dataset["train"],
                  eval_dataset=tokenized_dataset["test"], processing_class=tokenizer, data_collator=data_collator,
                  compute_metrics=compute_metrics)
trainer.train()
