"""Multiple-choice reading comprehension (RACE) fine-tuned with the hand-written loop of the old
run_multiple_choice.py: the learning rate is too high for the model, the choice scores collapse to equal values and
the evaluation loss sits at ln(4) = 1.386 with accuracy at chance, however long it trains.
huggingface/transformers#1851 (the same symptom and fix, a lower learning rate, in zihangdai/xlnet#232). The rates
here are scaled for the tiny test model, whose sensible range is higher; SWAG rows stand in for RACE."""

import numpy as np
import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModelForMultipleChoice, AutoTokenizer, get_linear_schedule_with_warmup

from ftdoctor.fixtures import fixture_path

model_name_or_path = fixture_path("models/bert-tiny")  # "roberta-base"
learning_rate = 0.2
max_seq_length = 48
num_train_epochs = 3

tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
model = AutoModelForMultipleChoice.from_pretrained(model_name_or_path)
race = load_from_disk(fixture_path("datasets/swag"))


def convert_examples_to_features(rows):
    contexts = [[row["sent1"]] * 4 for row in rows]
    endings = [[f"{row['sent2']} {row[f'ending{i}']}" for i in range(4)] for row in rows]
    enc = tokenizer(sum(contexts, []), sum(endings, []), truncation=True, max_length=max_seq_length,
                    padding="max_length", return_tensors="pt")
    shape = (len(rows), 4, max_seq_length)
    return TensorDataset(enc["input_ids"].view(shape), enc["attention_mask"].view(shape),
                         enc["token_type_ids"].view(shape), torch.tensor([row["label"] for row in rows]))


train_dataset = convert_examples_to_features(list(race["train"]))
eval_dataset = convert_examples_to_features(list(race["validation"]))
train_dataloader = DataLoader(train_dataset, batch_size=8, shuffle=True)
eval_dataloader = DataLoader(eval_dataset, batch_size=16)

t_total = len(train_dataloader) * num_train_epochs
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, eps=1e-8)
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=t_total)


def evaluate():
    model.eval()
    eval_loss, preds, out_label_ids = 0.0, [], []
    with torch.no_grad():
        for input_ids, attention_mask, token_type_ids, labels in eval_dataloader:
            outputs = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            labels=labels)
            eval_loss += outputs.loss.item()
            preds.append(outputs.logits.numpy())
            out_label_ids.append(labels.numpy())
    acc = (np.argmax(np.concatenate(preds), axis=1) == np.concatenate(out_label_ids)).mean()
    return {"eval_acc": acc, "eval_loss": eval_loss / len(eval_dataloader)}


global_step = 0
model.zero_grad()
for _ in range(num_train_epochs):
    for step, (input_ids, attention_mask, token_type_ids, labels) in enumerate(train_dataloader):
        model.train()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                     labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        model.zero_grad()
        global_step += 1
    print(global_step, evaluate())
