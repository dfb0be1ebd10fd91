"""NER with run_ner_no_trainer.py's Accelerate loop (fixed twin of ner_label_all_tokens_accelerate): only the first
piece of each word carries its tag, the others are -100, so seqeval counts one entity per entity
(huggingface/transformers#14043)."""

import evaluate
import torch
from accelerate import Accelerator
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification

from ftdoctor.fixtures import fixture_path

label_all_tokens = False
accelerator = Accelerator()
raw_datasets = load_from_disk(fixture_path("datasets/ner"))  # conll2003
label_list = raw_datasets["train"].features["ner_tags"].feature.names
model_name_or_path = fixture_path("models/bert-tiny")
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForTokenClassification.from_pretrained(model_name_or_path, num_labels=len(label_list))


def tokenize_and_align_labels(examples):
    tokenized_inputs = tokenizer(examples["tokens"], truncation=True, max_length=64, is_split_into_words=True)
    labels = []
    for i, label in enumerate(examples["ner_tags"]):
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


processed_raw_datasets = raw_datasets.map(tokenize_and_align_labels, batched=True,
                                          remove_columns=raw_datasets["train"].column_names)
data_collator = DataCollatorForTokenClassification(tokenizer)
train_dataloader = DataLoader(processed_raw_datasets["train"], shuffle=True, collate_fn=data_collator, batch_size=16)
eval_dataloader = DataLoader(processed_raw_datasets["validation"], collate_fn=data_collator, batch_size=32)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
model, optimizer, train_dataloader, eval_dataloader = accelerator.prepare(model, optimizer, train_dataloader,
                                                                          eval_dataloader)
metric = evaluate.load(fixture_path("metrics/seqeval"))


def get_labels(predictions, references):
    y_pred = predictions.detach().cpu().clone().numpy()
    y_true = references.detach().cpu().clone().numpy()
    true_predictions = [[label_list[p] for (p, l) in zip(pred, gold_label) if l != -100]
                        for pred, gold_label in zip(y_pred, y_true)]
    true_labels = [[label_list[l] for (p, l) in zip(pred, gold_label) if l != -100]
                   for pred, gold_label in zip(y_pred, y_true)]
    return true_predictions, true_labels


for epoch in range(2):
    model.train()
    for batch in train_dataloader:
        outputs = model(**batch)
        accelerator.backward(outputs.loss)
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    for batch in eval_dataloader:
        with torch.no_grad():
            predictions = model(**batch).logits.argmax(dim=-1)
        preds, refs = get_labels(*accelerator.gather_for_metrics((predictions, batch["labels"])))
        metric.add_batch(predictions=preds, references=refs)
    accelerator.print(f"epoch {epoch}:", metric.compute())
