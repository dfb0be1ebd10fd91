"""Token classification (NER) with BERT, as the Hugging Face course teaches it (chapter 7, section 2).

Words are split into WordPiece pieces, so the word-level tags are aligned to tokens with `word_ids()`: the first
piece of each word takes the word's tag, special tokens and continuation pieces take -100 (the loss ignores them).
`DataCollatorForTokenClassification` pads the labels with -100; the metric is seqeval's entity F1 on tag sequences
with the -100 positions removed.
"""

import evaluate
import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

from ftdoctor.fixtures import fixture_path

set_seed(0)
checkpoint = fixture_path("models/bert-tiny")  # "bert-base-cased"
raw_datasets = load_from_disk(fixture_path("datasets/ner"))  # load_dataset("conll2003")
label_names = raw_datasets["train"].features["ner_tags"].feature.names
id2label = dict(enumerate(label_names))
label2id = {name: i for i, name in id2label.items()}

tokenizer = AutoTokenizer.from_pretrained(checkpoint)


def align_labels_with_tokens(labels, word_ids):
    """The word's tag on its first piece; -100 on special tokens and on the word's other pieces."""
    new_labels, previous_word = [], None
    for word_id in word_ids:
        if word_id is None or word_id == previous_word:
            new_labels.append(-100)
        else:
            new_labels.append(labels[word_id])
        previous_word = word_id
    return new_labels


def tokenize_and_align_labels(examples):
    tokenized_inputs = tokenizer(examples["tokens"], truncation=True, is_split_into_words=True)
    tokenized_inputs["labels"] = [
        align_labels_with_tokens(labels, tokenized_inputs.word_ids(i)) for i, labels in enumerate(examples["ner_tags"])
    ]
    return tokenized_inputs


tokenized_datasets = raw_datasets.map(
    tokenize_and_align_labels, batched=True, remove_columns=raw_datasets["train"].column_names
)
data_collator = DataCollatorForTokenClassification(tokenizer=tokenizer)

model = AutoModelForTokenClassification.from_pretrained(checkpoint, id2label=id2label, label2id=label2id)
metric = evaluate.load(fixture_path("metrics/seqeval"))  # evaluate.load("seqeval")


def compute_metrics(eval_preds):
    logits, labels = eval_preds
    predictions = np.argmax(logits, axis=-1)
    # Drop the positions the loss ignores (-100: special tokens, continuation pieces, padding).
    true_labels = [[label_names[l] for l in label if l != -100] for label in labels]
    true_predictions = [
        [label_names[p] for p, l in zip(prediction, label) if l != -100]
        for prediction, label in zip(predictions, labels)
    ]
    all_metrics = metric.compute(predictions=true_predictions, references=true_labels)
    return {
        "precision": all_metrics["overall_precision"],
        "recall": all_metrics["overall_recall"],
        "f1": all_metrics["overall_f1"],
        "accuracy": all_metrics["overall_accuracy"],
    }


args = TrainingArguments(
    "bert-finetuned-ner",
    eval_strategy="epoch",
    save_strategy="no",
    # A tiny random-init model needs a far larger step than a pretrained one (2e-5 in the course): at 2e-5 it
    # would not move in a few epochs; 1e-2 learns the fixture's tagging rule in seconds.
    learning_rate=1e-2,
    num_train_epochs=4,
    per_device_train_batch_size=16,
    weight_decay=0.01,
    report_to="none",
    seed=0,
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=tokenized_datasets["train"],
    eval_dataset=tokenized_datasets["validation"],
    data_collator=data_collator,
    compute_metrics=compute_metrics,
    processing_class=tokenizer,
)

metric_name = "eval_f1"
metrics_before = trainer.evaluate()
trainer.train()
metrics_after = trainer.evaluate()
print(f"entity F1 before training: {metrics_before[metric_name]:.3f}, after: {metrics_after[metric_name]:.3f}")
