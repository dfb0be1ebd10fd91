"""The shapes a user's objects take, generated from one description: each way the libraries let a script hand its
rows, batches, model outputs, losses, metric inputs and labels to training, written as a tiny script around the
random-init models and fixed-vocabulary tokenizers of tests/unit/rules/_build.py (built in the script: nothing is
loaded from a hub).

A shape is a correct script unless it names the finding it must produce (a broken variant). Every shape is walked
by the stages that touch the user's objects; a stage that cannot apply to a shape is listed with the reason.
`render(name)` returns the script.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

# The stages that touch a user's objects (setup and distributed read the script and the ranks, not these shapes).
STAGES = ("config", "decode", "collate", "forward", "backward", "metrics", "overfit", "memory")

PREAMBLE = """
import torch
from datasets import Dataset
from rules._build import bart, bert, causal, gpt2, wordpiece
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

torch.manual_seed(0)
TEXTS = ["the film was good", "a bad movie", "great plot and actors", "awful film", "john lives in paris",
         "mary works at acme bank", "the cat sat on the mat", "what a great old movie"]
LABELS = [1, 0, 1, 0, 1, 1, 0, 1]
EVAL_TEXTS = ["the dog sat in the park", "a very bad plot", "who lives in london", "an old city"]
EVAL_LABELS = [1, 0, 1, 0]
tok = wordpiece()
raw = Dataset.from_dict({"text": TEXTS, "label": LABELS})
raw_eval = Dataset.from_dict({"text": EVAL_TEXTS, "label": EVAL_LABELS})


def encode(ds):
    out = ds.map(lambda e: tok(e["text"], truncation=True), batched=True, remove_columns=["text"])
    return out.rename_column("label", "labels")


encoded, encoded_eval = encode(raw), encode(raw_eval)
args = TrainingArguments("out", per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=2,
                         learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True)
"""

# Causal-LM rows: the texts tokenized with the decoder-style tokenizer, EOS appended (the model learns to stop).
CAUSAL = """
ctok = causal()
lm_rows = Dataset.from_dict({"text": TEXTS}).map(
    lambda e: ctok([t + ctok.eos_token for t in e["text"]]), batched=True, remove_columns=["text"])
"""

LOOP_END = """
    opt.step()
    opt.zero_grad()
"""


# A dataset of its own keys (ids, a mask, per-token tags, -100 on the special tokens and the padding), which the
# loop maps to the model's arguments itself.
TAGGED = (
    """
from torch.utils.data import DataLoader

class Tagged(torch.utils.data.Dataset):
    def __init__(self):
        self.enc = tok(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")

    def __len__(self):
        return len(TEXTS)

    def __getitem__(self, i):
        ids = self.enc["input_ids"][i]
        special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id)
        return {{"{ids}": ids, "{mask}": self.enc["attention_mask"][i], "{tags}": (ids % 2).masked_fill(special, -100)}}

model = bert("BertForTokenClassification", num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for b in DataLoader(Tagged(), batch_size=4):
    tags = b["{tags}"].masked_fill(b["{mask}"] == 0, -100)
    loss = model(input_ids=b["{ids}"], attention_mask=b["{mask}"], labels=tags).loss
    loss.backward()
"""
    + LOOP_END
)


@dataclass(frozen=True)
class Shape:
    """One shape of a user's object, as a script; ``expect`` is (stage, code) for a broken variant."""

    dimension: str
    body: str
    expect: tuple[str, str] | None = None
    not_applicable: dict[str, str] = field(default_factory=dict)
    causal: bool = False


OWN_LOSS = (
    "the loop computes its loss from slices of the logits in its own code, which ftdoctor cannot run again: the "
    "loop's own first step is checked instead"
)
NO_METRICS = {"metrics": "the script has no compute_metrics and no evaluation data: nothing of it to judge"}
LOOP_METRICS = {"metrics": "a hand-written loop without evaluation: the metrics stage has nothing to run"}


ACCURACY = """
def compute_metrics(p):
    return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

"""


def _trainer(
    model: str, train: str, extra: str = "", cls: str = "Trainer", metrics: bool = False, eval_ds: str = "encoded_eval"
) -> str:
    evals = f", eval_dataset={eval_ds}, compute_metrics=compute_metrics" if metrics else ""
    return (
        f"model = {model}\n"
        f"trainer = {cls}(model=model, args=args, train_dataset={train}{evals}{extra})\n"
        "trainer.train()\n"
    )


SHAPES: dict[str, Shape] = {
    # -- rows -------------------------------------------------------------------------------------------------
    "rows_dict": Shape(
        "rows",
        """
def compute_metrics(p):
    return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}
"""
        + _trainer("bert(num_labels=2)", "encoded", ", data_collator=DataCollatorWithPadding(tok)", metrics=True),
    ),
    "rows_torch_formatted": Shape(
        "rows",
        ACCURACY
        + _trainer(
            "bert(num_labels=2)",
            'encoded.with_format("torch")',
            ", data_collator=DataCollatorWithPadding(tok)",
            metrics=True,
            eval_ds='encoded_eval.with_format("torch")',
        ),
    ),
    "rows_numpy_formatted": Shape(
        "rows",
        ACCURACY
        + _trainer(
            "bert(num_labels=2)",
            'encoded.with_format("numpy")',
            ", data_collator=DataCollatorWithPadding(tok)",
            metrics=True,
            eval_ds='encoded_eval.with_format("numpy")',
        ),
    ),
    "rows_with_transform": Shape(
        "rows",
        """
def transform(batch):
    out = tok(batch["text"], truncation=True)
    out["labels"] = batch["label"]
    return out

args.remove_unused_columns = False
"""
        + ACCURACY
        + _trainer(
            "bert(num_labels=2)",
            "raw.with_transform(transform)",
            ", data_collator=DataCollatorWithPadding(tok)",
            metrics=True,
            eval_ds="raw_eval.with_transform(transform)",
        ),
    ),
    "rows_set_transform": Shape(
        "rows",
        """
def transform(batch):
    out = tok(batch["text"], truncation=True)
    out["labels"] = batch["label"]
    return out

train = raw.map(lambda e: e)
train.set_transform(transform)
args.remove_unused_columns = False
"""
        + _trainer("bert(num_labels=2)", "train", ", data_collator=DataCollatorWithPadding(tok)"),
        not_applicable=NO_METRICS,
    ),
    "rows_with_transform_of_a_removed_column": Shape(
        "rows",
        """
def transform(batch):
    out = tok(batch["text"], truncation=True)
    out["labels"] = batch["label"]
    return out

"""
        + _trainer(
            "bert(num_labels=2)", "raw.with_transform(transform)", ", data_collator=DataCollatorWithPadding(tok)"
        ),
        # Named before the rows are read (the transform reads a column the Trainer removes); the crash is predicted.
        expect=("decode", "FTD218"),
    ),
    "rows_with_transform_that_raises": Shape(
        "rows",
        """
def transform(batch):
    out = tok(batch["txt"], truncation=True)
    out["labels"] = batch["label"]
    return out

args.remove_unused_columns = False
"""
        + _trainer(
            "bert(num_labels=2)", "raw.with_transform(transform)", ", data_collator=DataCollatorWithPadding(tok)"
        ),
        # A column no row has, every column kept: the user's own failure, at the transform's line.
        expect=("decode", "FTD900"),
    ),
    "rows_batch_encoding": Shape(
        "rows",
        """
class Encoded(torch.utils.data.Dataset):
    def __len__(self):
        return len(TEXTS)

    def __getitem__(self, i):
        enc = tok(TEXTS[i], truncation=True, padding="max_length", max_length=16, return_tensors="pt")
        enc = enc.__class__({k: v[0] for k, v in enc.items()})
        enc["labels"] = torch.tensor(LABELS[i])
        return enc

"""
        + _trainer("bert(num_labels=2)", "Encoded()"),
        not_applicable=NO_METRICS,
    ),
    "rows_getitem_class": Shape(
        "rows",
        """
class Rows:
    def __init__(self, texts, labels):
        self.enc, self.labels = tok(texts, truncation=True), labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i]}

"""
        + ACCURACY
        + _trainer(
            "bert(num_labels=2)",
            "Rows(TEXTS, LABELS)",
            ", data_collator=DataCollatorWithPadding(tok)",
            metrics=True,
            eval_ds="Rows(EVAL_TEXTS, EVAL_LABELS)",
        ),
    ),
    "rows_torch_iterable": Shape(
        "rows",
        """
class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        for text, label in zip(TEXTS, LABELS):
            yield {**tok(text, truncation=True), "labels": label}

"""
        + _trainer("bert(num_labels=2)", "Stream()", ", data_collator=DataCollatorWithPadding(tok)"),
        not_applicable=NO_METRICS,
    ),
    "rows_hf_iterable": Shape(
        "rows",
        ACCURACY
        + _trainer(
            "bert(num_labels=2)",
            "encoded.to_iterable_dataset()",
            ", data_collator=DataCollatorWithPadding(tok)",
            metrics=True,
            eval_ds="encoded_eval.to_iterable_dataset()",
        ),
    ),
    "rows_tensor_dataset_tuples": Shape(
        "rows",
        """
from torch.utils.data import DataLoader, TensorDataset

enc = tok(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
data = TensorDataset(enc["input_ids"], enc["attention_mask"], torch.tensor(LABELS))
model = bert(num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for ids, mask, y in DataLoader(data, batch_size=4, shuffle=True):
    loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "rows_tensor_dataset_made_a_dict_by_the_loop": Shape(
        "rows",
        """
from torch.utils.data import DataLoader, TensorDataset

enc = tok(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
data = TensorDataset(enc["input_ids"], enc["attention_mask"], torch.tensor(LABELS))
model = bert(num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step, batch in enumerate(DataLoader(data, batch_size=4)):
    batch = {"input_ids": batch[0], "attention_mask": batch[1], "labels": batch[2]}
    loss = model(**batch).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "rows_list": Shape(
        "rows",
        """
from torch.utils.data import DataLoader

class Rows(torch.utils.data.Dataset):
    def __init__(self):
        self.enc = tok(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")

    def __len__(self):
        return len(TEXTS)

    def __getitem__(self, i):
        return [self.enc["input_ids"][i], self.enc["attention_mask"][i], LABELS[i]]

model = bert(num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for ids, mask, y in DataLoader(Rows(), batch_size=4):
    loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "rows_own_keys_mapped_by_the_loop": Shape(
        "rows",
        TAGGED.format(ids="ids", mask="mask", tags="tags"),
        not_applicable=LOOP_METRICS,
    ),
    "rows_own_keys_partly_the_model_s": Shape(
        "rows",
        TAGGED.format(ids="ids", mask="attention_mask", tags="tags"),
        not_applicable=LOOP_METRICS,
    ),
    # -- batches ----------------------------------------------------------------------------------------------
    "batch_dict": Shape(
        "batches",
        """
from torch.utils.data import DataLoader

model = bert(num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(encoded, batch_size=4, shuffle=True, collate_fn=DataCollatorWithPadding(tok)):
    loss = model(**batch).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "batch_tuple": Shape(
        "batches",
        """
from torch.utils.data import DataLoader

pad = DataCollatorWithPadding(tok)

def collate(rows):
    b = pad(rows)
    return b["input_ids"], b["attention_mask"], b["labels"]

model = bert(num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for ids, mask, y in DataLoader(encoded, batch_size=4, collate_fn=collate):
    loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "batch_list": Shape(
        "batches",
        """
from torch.utils.data import DataLoader

pad = DataCollatorWithPadding(tok)

def collate(rows):
    b = pad(rows)
    return [b["input_ids"], b["attention_mask"], b["labels"]]

model = bert(num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(encoded, batch_size=4, collate_fn=collate):
    loss = model(input_ids=batch[0], attention_mask=batch[1], labels=batch[2]).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "batch_encoding": Shape(
        "batches",
        """
from torch.utils.data import DataLoader

def collate(rows):
    enc = tok([r["text"] for r in rows], padding=True, truncation=True, return_tensors="pt")
    enc["labels"] = torch.tensor([r["label"] for r in rows])
    return enc

model = bert(num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(raw, batch_size=4, collate_fn=collate):
    loss = model(**batch).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "batch_encoding_in_a_trainer": Shape(
        "batches",
        """
def collate(rows):
    enc = tok([r["text"] for r in rows], padding=True, truncation=True, return_tensors="pt")
    enc["labels"] = torch.tensor([r["label"] for r in rows])
    return enc

args.remove_unused_columns = False
"""
        + _trainer("bert(num_labels=2)", "raw", ", data_collator=collate"),
        not_applicable=NO_METRICS,
    ),
    "batch_list_of_seq2seq_batches_made_ahead": Shape(
        "batches",
        CAUSAL
        + """
from transformers import DataCollatorForSeq2Seq

model = bart(tokenizer=ctok)
pairs = Dataset.from_dict({"src": TEXTS, "tgt": TEXTS[::-1]}).map(
    lambda e: {**ctok(e["src"]), "labels": ctok([t + ctok.eos_token for t in e["tgt"]])["input_ids"]},
    batched=True, remove_columns=["src", "tgt"])
collator = DataCollatorForSeq2Seq(ctok, model=model)
batches = [collator([pairs[i] for i in range(j, j + 4)]) for j in (0, 4)]
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in batches:
    loss = model(**batch).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
        causal=True,
    ),
    # -- model outputs ----------------------------------------------------------------------------------------
    "output_tuple_return_dict_false": Shape(
        "outputs",
        """
def compute_metrics(p):
    return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}
"""
        + _trainer(
            "bert(num_labels=2, return_dict=False)",
            "encoded",
            ", data_collator=DataCollatorWithPadding(tok)",
            metrics=True,
        ),
    ),
    "output_tuple_in_a_loop": Shape(
        "outputs",
        """
from torch.utils.data import DataLoader

model = bert(num_labels=2, return_dict=False)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(encoded, batch_size=4, collate_fn=DataCollatorWithPadding(tok)):
    loss, logits = model(**batch)
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "output_dict": Shape(
        "outputs",
        """
class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = bert("BertModel")
        self.head = torch.nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask, labels=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.head(hidden[:, 0])
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}

"""
        + _trainer("Classifier()", "encoded", ", data_collator=DataCollatorWithPadding(tok)"),
        not_applicable=NO_METRICS,
    ),
    "output_bare_tensor": Shape(
        "outputs",
        """
from torch.utils.data import DataLoader

class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = bert("BertModel")
        self.head = torch.nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])

model = Classifier()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(encoded, batch_size=4, collate_fn=DataCollatorWithPadding(tok)):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "output_bare_tensor_in_a_trainer": Shape(
        "outputs",
        """
class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = bert("BertModel", add_pooling_layer=False)
        self.head = torch.nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])


class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        logits = model(**inputs)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return (loss, {"logits": logits}) if return_outputs else loss

args.remove_unused_columns = False
args.label_names = ["labels"]  # forward takes no labels: without it evaluation passes them to the model
"""
        + ACCURACY
        + _trainer(
            "Classifier()",
            "encoded",
            ", data_collator=DataCollatorWithPadding(tok)",
            cls="LossTrainer",
            metrics=True,
        ),
    ),
    "output_bare_tensor_in_a_trainer_without_label_names": Shape(
        "outputs",
        """
class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = bert("BertModel", add_pooling_layer=False)
        self.head = torch.nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])


class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        logits = model(**inputs)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return (loss, {"logits": logits}) if return_outputs else loss

args.remove_unused_columns = False
"""
        + ACCURACY
        + _trainer(
            "Classifier()",
            "encoded",
            ", data_collator=DataCollatorWithPadding(tok)",
            cls="LossTrainer",
            metrics=True,
        ),
        expect=("metrics", "FTD900"),  # forward takes no labels: the evaluation passes them to the model
    ),
    # -- compute_loss -----------------------------------------------------------------------------------------
    "compute_loss_bare_tensor": Shape(
        "compute_loss",
        """
class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        logits = model(**inputs).logits
        return torch.nn.functional.cross_entropy(logits, labels)

"""
        + _trainer("bert(num_labels=2)", "encoded", ", data_collator=DataCollatorWithPadding(tok)", cls="LossTrainer"),
        not_applicable=NO_METRICS,
    ),
    "compute_loss_bare_tensor_with_evaluation": Shape(
        "compute_loss",
        """
class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        logits = model(**inputs).logits
        return torch.nn.functional.cross_entropy(logits, labels)

"""
        + ACCURACY
        + _trainer(
            "bert(num_labels=2)",
            "encoded",
            ", data_collator=DataCollatorWithPadding(tok)",
            cls="LossTrainer",
            metrics=True,
        ),
        expect=("metrics", "FTD900"),
    ),
    "compute_loss_pair": Shape(
        "compute_loss",
        """
class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = torch.nn.functional.cross_entropy(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

def compute_metrics(p):
    return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

"""
        + _trainer(
            "bert(num_labels=2)",
            "encoded",
            ", data_collator=DataCollatorWithPadding(tok)",
            cls="LossTrainer",
            metrics=True,
        ),
    ),
    # -- compute_metrics inputs -------------------------------------------------------------------------------
    "metrics_eval_prediction": Shape(
        "metrics",
        """
from transformers import EvalPrediction

def compute_metrics(p: EvalPrediction):
    preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
    return {"accuracy": float((preds.argmax(-1) == p.label_ids).mean())}

"""
        + _trainer("bert(num_labels=2)", "encoded", ", data_collator=DataCollatorWithPadding(tok)", metrics=True),
    ),
    "metrics_tuple": Shape(
        "metrics",
        """
import numpy as np

def compute_metrics(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}

"""
        + _trainer("bert(num_labels=2)", "encoded", ", data_collator=DataCollatorWithPadding(tok)", metrics=True),
    ),
    "metrics_label_ids_none": Shape(
        "metrics",
        """
import numpy as np

def compute_metrics(p):
    probs = np.exp(p.predictions) / np.exp(p.predictions).sum(-1, keepdims=True)
    out = {"confidence": float(probs.max(-1).mean())}
    if p.label_ids is not None:
        out["accuracy"] = float((p.predictions.argmax(-1) == p.label_ids).mean())
    return out

encoded_eval = encoded_eval.remove_columns(["labels"])
"""
        + _trainer("bert(num_labels=2)", "encoded", ", data_collator=DataCollatorWithPadding(tok)", metrics=True),
    ),
    "metrics_ignore_index": Shape(
        "metrics",
        """
import numpy as np
from transformers import DataCollatorForTokenClassification

def tags(e):
    enc = tok(e["text"], truncation=True)
    enc["labels"] = [[-100] + [i % 2 for i in range(len(ids) - 2)] + [-100] for ids in enc["input_ids"]]
    return enc

encoded = raw.map(tags, batched=True, remove_columns=["text", "label"])
encoded_eval = raw_eval.map(tags, batched=True, remove_columns=["text", "label"])

def compute_metrics(p):
    preds, labels = p.predictions.argmax(-1), p.label_ids
    keep = labels != -100
    return {"accuracy": float((preds[keep] == labels[keep]).mean())}

"""
        + _trainer(
            'bert("BertForTokenClassification", num_labels=2)',
            "encoded",
            ", data_collator=DataCollatorForTokenClassification(tok)",
            metrics=True,
        ),
    ),
    # -- labels: made by the collator, by the loop, inside compute_loss ----------------------------------------
    "labels_by_the_causal_collator": Shape(
        "labels",
        CAUSAL
        + """
from transformers import DataCollatorForLanguageModeling

"""
        + _trainer(
            "gpt2(tokenizer=ctok)", "lm_rows", ", data_collator=DataCollatorForLanguageModeling(ctok, mlm=False)"
        ),
        not_applicable=NO_METRICS,
        causal=True,
    ),
    "labels_by_the_mlm_collator": Shape(
        "labels",
        """
from transformers import DataCollatorForLanguageModeling

mlm_rows = encoded.remove_columns(["labels"])
"""
        + _trainer(
            'bert("BertForMaskedLM")',
            "mlm_rows",
            # rows of a few words: at the default 0.15 a batch of them often has no masked token (FTD341)
            ", data_collator=DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.3)",
        ),
        not_applicable=NO_METRICS,
    ),
    "labels_by_the_loop_masked_fill": Shape(
        "labels",
        CAUSAL
        + """
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

model = gpt2(tokenizer=ctok)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(lm_rows, batch_size=4, collate_fn=DataCollatorWithPadding(ctok)):
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
        causal=True,
    ),
    "labels_shifted_by_the_loop_s_own_loss": Shape(
        "labels",
        CAUSAL
        + """
from torch.utils.data import DataLoader

model = gpt2(tokenizer=ctok)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(lm_rows, batch_size=4, collate_fn=DataCollatorWithPadding(ctok)):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
    loss.backward()
"""
        + LOOP_END,
        not_applicable={
            **LOOP_METRICS,
            **dict.fromkeys(("backward", "overfit", "memory"), OWN_LOSS),
        },
        causal=True,
    ),
    "labels_pre_shifted_in_the_rows": Shape(
        "labels",
        CAUSAL
        + """
from torch.utils.data import DataLoader

def shifted(e):
    return {"labels": [ids[1:] + [-100] for ids in e["input_ids"]]}

rows = lm_rows.map(shifted, batched=True)

def collate(batch):
    width = max(len(r["input_ids"]) for r in batch)
    def pad(v, fill):
        return v + [fill] * (width - len(v))
    return {"input_ids": torch.tensor([pad(r["input_ids"], ctok.pad_token_id) for r in batch]),
            "attention_mask": torch.tensor([pad(r["attention_mask"], 0) for r in batch]),
            "labels": torch.tensor([pad(r["labels"], -100) for r in batch])}

model = gpt2(tokenizer=ctok)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(rows, batch_size=4, collate_fn=collate):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), batch["labels"].view(-1))
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
        causal=True,
    ),
    "labels_by_the_loop_from_a_tokenizing_collate_fn": Shape(
        "labels",
        CAUSAL
        + """
from torch.utils.data import DataLoader

def collate(rows):
    return ctok([r["text"] + ctok.eos_token for r in rows], padding=True, return_tensors="pt")

model = gpt2(tokenizer=ctok)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(Dataset.from_dict({"text": TEXTS}), batch_size=4, collate_fn=collate):
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
        causal=True,
    ),
    "labels_by_the_mlm_collator_in_a_loop": Shape(
        "labels",
        """
from torch.utils.data import DataLoader
from transformers import DataCollatorForLanguageModeling

model = bert("BertForMaskedLM")
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
mlm = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.3)
for batch in DataLoader(encoded.remove_columns(["labels"]), batch_size=4, collate_fn=mlm):
    loss = model(**batch).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "labels_seq2seq_loop_decoder_inputs": Shape(
        "labels",
        CAUSAL
        + """
from torch.utils.data import DataLoader
from transformers.models.bart.modeling_bart import shift_tokens_right

model = bart(tokenizer=ctok)
cfg = model.config
pairs = Dataset.from_dict({"src": TEXTS, "tgt": TEXTS[::-1]})

def encode_pair(e):
    enc = ctok(e["src"], truncation=True)
    enc["labels"] = ctok([t + ctok.eos_token for t in e["tgt"]])["input_ids"]
    return enc

seq = pairs.map(encode_pair, batched=True, remove_columns=["src", "tgt"])

def collate(rows):
    b = ctok.pad([{k: r[k] for k in ("input_ids", "attention_mask")} for r in rows], return_tensors="pt")
    labels = ctok.pad({"input_ids": [r["labels"] for r in rows]}, return_tensors="pt")["input_ids"]
    b["labels"] = labels.masked_fill(labels == ctok.pad_token_id, -100)
    return b

opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(seq, batch_size=4, collate_fn=collate):
    dec = shift_tokens_right(batch["labels"], cfg.pad_token_id, cfg.decoder_start_token_id)
    loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec,
                 labels=batch["labels"]).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
        causal=True,
    ),
    "labels_seq2seq_loop_makes_labels_and_decoder_inputs": Shape(
        "labels",
        CAUSAL
        + """
from torch.utils.data import DataLoader
from transformers.models.bart.modeling_bart import shift_tokens_right

model = bart(tokenizer=ctok)
cfg = model.config
pairs = Dataset.from_dict({"src": TEXTS, "tgt": TEXTS[::-1]}).map(
    lambda e: {**ctok(e["src"]), "target_ids": ctok([t + ctok.eos_token for t in e["tgt"]])["input_ids"]},
    batched=True, remove_columns=["src", "tgt"])

def collate(rows):
    b = ctok.pad([{k: r[k] for k in ("input_ids", "attention_mask")} for r in rows], return_tensors="pt")
    b["target_ids"] = ctok.pad({"input_ids": [r["target_ids"] for r in rows]}, return_tensors="pt")["input_ids"]
    return b

opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(pairs, batch_size=4, collate_fn=collate):
    labels = batch["target_ids"].masked_fill(batch["target_ids"] == ctok.pad_token_id, -100)
    dec = shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
    loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec,
                 labels=labels).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
        causal=True,
    ),
    "labels_mlm_masked_by_the_loop": Shape(
        "labels",
        """
from torch.utils.data import DataLoader

model = bert("BertForMaskedLM")
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(0)
for batch in DataLoader(encoded.remove_columns(["labels"]), batch_size=4, collate_fn=DataCollatorWithPadding(tok)):
    ids = batch["input_ids"]
    pick = (torch.rand(ids.shape, generator=g) < 0.3) & (ids > 4)
    labels = ids.masked_fill(~pick, -100)
    inputs = ids.masked_fill(pick, tok.mask_token_id)
    loss = model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels).loss
    loss.backward()
"""
        + LOOP_END,
        not_applicable=LOOP_METRICS,
    ),
    "labels_inside_compute_loss": Shape(
        "labels",
        CAUSAL
        + """
from transformers import DataCollatorWithPadding

class LMTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        outputs = model(**inputs, labels=labels)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

"""
        + _trainer("gpt2(tokenizer=ctok)", "lm_rows", ", data_collator=DataCollatorWithPadding(ctok)", cls="LMTrainer"),
        not_applicable=NO_METRICS,
        causal=True,
    ),
}


def render(name: str) -> str:
    """The script of shape ``name``."""
    return textwrap.dedent(PREAMBLE).lstrip("\n") + SHAPES[name].body.lstrip("\n")


def pairs() -> list[tuple[str, str]]:
    """Every (shape, stage) of the matrix, those that cannot apply included (the test says why)."""
    return [(name, stage) for name in SHAPES for stage in STAGES]
