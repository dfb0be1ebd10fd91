"""Multiple choice (SWAG) with BERT, as the Hugging Face docs teach it (task guide "Multiple choice").

Each example is a context (`sent1`), the start of the next sentence (`sent2`) and four candidate endings; the label
is the index of the right ending. Preprocessing repeats each context four times, pairs it with `sent2` + each
ending, tokenizes the flat list of pairs and un-flattens it into lists of four; `DataCollatorForMultipleChoice`
pads all choices of a batch together and reshapes them to (batch, 4, length). The model scores each choice and
accuracy is taken on the argmax over the four choices.
"""

import evaluate
import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForMultipleChoice,
    AutoTokenizer,
    DataCollatorForMultipleChoice,
    Trainer,
    TrainingArguments,
    set_seed,
)

from ftdoctor.fixtures import fixture_path

set_seed(0)
checkpoint = fixture_path("models/bert-tiny")  # "google-bert/bert-base-uncased"
swag = load_from_disk(fixture_path("datasets/swag"))  # load_dataset("swag", "regular")
tokenizer = AutoTokenizer.from_pretrained(checkpoint)

ending_names = ["ending0", "ending1", "ending2", "ending3"]
num_choices = len(ending_names)


def preprocess_function(examples):
    # The context once per ending, and the start of the next sentence completed by each ending.
    first_sentences = [[context] * num_choices for context in examples["sent1"]]
    question_headers = examples["sent2"]
    second_sentences = [
        [f"{header} {examples[end][i]}" for end in ending_names] for i, header in enumerate(question_headers)
    ]
    first_sentences = sum(first_sentences, [])
    second_sentences = sum(second_sentences, [])
    tokenized_examples = tokenizer(first_sentences, second_sentences, truncation=True)
    # Un-flatten: every example gets a list of `num_choices` encodings.
    return {k: [v[i : i + num_choices] for i in range(0, len(v), num_choices)] for k, v in tokenized_examples.items()}


tokenized_swag = swag.map(
    preprocess_function, batched=True, remove_columns=[c for c in swag["train"].column_names if c != "label"]
)
# Pads the flattened choices of a batch and reshapes them to (batch, num_choices, length).
data_collator = DataCollatorForMultipleChoice(tokenizer=tokenizer)

accuracy = evaluate.load(fixture_path("metrics/accuracy"))  # evaluate.load("accuracy")


def compute_metrics(eval_pred):
    predictions, labels = eval_pred
    predictions = np.argmax(predictions, axis=1)  # logits are (batch, num_choices)
    return accuracy.compute(predictions=predictions, references=labels)


model = AutoModelForMultipleChoice.from_pretrained(checkpoint)
training_args = TrainingArguments(
    "bert-finetuned-swag",
    eval_strategy="epoch",
    save_strategy="no",
    # A tiny random-init model needs a far larger step than a pretrained one (5e-5 in the docs): 3e-3 learns the
    # fixture's rule (the right ending is the one that neither negates nor hedges) in a few epochs.
    learning_rate=3e-3,
    num_train_epochs=8,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=16,
    weight_decay=0.01,
    report_to="none",
    seed=0,
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=tokenized_swag["train"],
    eval_dataset=tokenized_swag["validation"],
    processing_class=tokenizer,
    data_collator=data_collator,
    compute_metrics=compute_metrics,
)

metric_name = "eval_accuracy"
metrics_before = trainer.evaluate()
trainer.train()
metrics_after = trainer.evaluate()
print(f"Accuracy before training: {metrics_before[metric_name]:.3f}, after: {metrics_after[metric_name]:.3f}")
