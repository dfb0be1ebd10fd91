"""What the shape matrix (tests/shape_matrix.py) found, one test each: a script with the user's object in the shape
that broke a check or a target, captured and walked in this process, and beside each false alarm the near miss
whose real bug must still be reported."""

from __future__ import annotations

import os
import textwrap

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


HEAD = """
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from rules._build import bert, causal, gpt2, wordpiece
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

TEXTS = ["the film was good", "a bad movie", "great plot and actors", "awful film", "john lives in paris",
         "mary works at acme bank", "the cat sat on the mat", "what a great old movie"]
LABELS = [1, 0, 1, 0, 1, 1, 0, 1]
tok = wordpiece()
"""


def _run(tmp_path, body: str, stages=("decode", "collate", "forward")):
    """Capture the script ``HEAD + body`` in ``tmp_path`` and walk ``stages``: the capture and the report."""
    from ftdoctor.capture import capture_script
    from ftdoctor.process.child import walk_capture

    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(HEAD).lstrip() + textwrap.dedent(body).lstrip())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cap = capture_script(str(script), timeout=120)
        assert cap.outcome in ("training", "loop"), (cap.outcome, cap.exception, cap.output[-1500:])
        result = walk_capture(cap, stages=list(stages), options={"overfit_seconds": 3.0})
    finally:
        os.chdir(cwd)
    report = result.report
    assert report is not None and not report.internal_errors, report.internal_errors if report else result.message
    return cap, report


def _codes(report, stage):
    return [f.code for f in report.stage(stage).findings]


def _line(path, text):
    with open(path) as fh:
        return next(i for i, line in enumerate(fh, 1) if text in line)


# -- decode: a dataset whose transform raises is the user's failure, at the user's line ------------------------------

TRANSFORM = """
def transform(batch):
    out = tok(batch[{column!r}], truncation=True)  # the transform
    out["labels"] = batch["label"]
    return out

args = TrainingArguments("out", per_device_train_batch_size=4, max_steps=1, report_to=[], use_cpu=True,
                         remove_unused_columns={remove})
raw = Dataset.from_dict({{"text": TEXTS, "label": LABELS}})
trainer = Trainer(model=bert(num_labels=2), args=args, train_dataset=raw.with_transform(transform),
                  data_collator=DataCollatorWithPadding(tok))
trainer.train()
"""


def test_a_transform_that_raises_is_reported_at_its_line(tmp_path):
    """It crashed read_samples (an ftdoctor bug, every later stage skipped)."""
    cap, report = _run(tmp_path, TRANSFORM.format(column="txt", remove=False))
    (f,) = report.stage("decode").findings
    assert f.code == "FTD900" and "KeyError: 'txt'" in f.detail
    assert f.location == f"{cap.script}:{_line(cap.script, '# the transform')}"
    assert not report.stage("decode").crashed


def test_a_transform_reading_a_column_the_trainer_removed_names_remove_unused_columns(tmp_path):
    cap, report = _run(tmp_path, TRANSFORM.format(column="text", remove=True))
    # named before the rows are read (FTD218, the contract), and the crash that follows is the one it predicted
    (f,) = report.stage("decode").findings
    assert f.code == "FTD218" and "remove_unused_columns=False" in f.fix and f.location.startswith(cap.script)


def test_the_same_transform_with_every_column_kept_is_clean(tmp_path):
    _, report = _run(tmp_path, TRANSFORM.format(column="text", remove=False))
    assert _codes(report, "decode") == [] and report.stage("forward").status == "pass"


# -- a loop that maps its rows' keys to the model's arguments itself ---------------------------------------------------

OWN_KEYS = """
class Tagged(torch.utils.data.Dataset):
    def __init__(self):
        self.enc = tok(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")

    def __len__(self):
        return len(TEXTS)

    def __getitem__(self, i):
        ids = self.enc["input_ids"][i]
        special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id)
        return {{"ids": ids, "attention_mask": self.enc["attention_mask"][i], "tags": {tags}}}

model = bert("BertForTokenClassification", num_labels=2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for b in DataLoader(Tagged(), batch_size=4):
    loss = model(input_ids=b["ids"], attention_mask=b["attention_mask"], labels=b["tags"]).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
"""


def test_a_loop_feeding_its_model_under_other_names_is_read_from_its_batch(tmp_path):
    """The rows were cut to the batch's keys (only `attention_mask` was left): FTD201's raw-text path, then a crash
    in _same_split on a dataset without column names; the memory stage then batched them with the loop's collator."""
    _, report = _run(
        tmp_path, OWN_KEYS.format(tags="(ids % 2).masked_fill(special, -100)"), ("decode", "collate", "memory")
    )
    assert _codes(report, "decode") == [] and not report.stage("decode").crashed
    features = report.context["train_features"]
    assert set(features[0]) == {"input_ids", "attention_mask", "labels"}
    assert _codes(report, "memory") == ["FTD801"]


def test_a_loop_feeding_its_model_under_other_names_still_has_its_labels_judged(tmp_path):
    _, report = _run(tmp_path, OWN_KEYS.format(tags="ids % 2"), ("decode",))  # the special tokens are labelled
    assert _codes(report, "decode") == ["FTD221"]


SOURCE = """
model = bert("BertForTokenClassification", num_labels=2)
encoded = Dataset.from_dict({"text": TEXTS, "labels": LABELS}).map(lambda e: tok(e["text"]), batched=True)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
enc = tok(TEXTS[:4], padding=True, return_tensors="pt", return_special_tokens_mask=True)
labels = (enc["input_ids"] % 2).masked_fill(enc["special_tokens_mask"].bool(), -100)
loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
loss.backward()
opt.step()
"""


def test_a_dataset_of_the_script_is_not_the_loop_s_source_when_its_labels_differ(tmp_path):
    """The loop's batch matched `encoded` by its token ids, and encoded's one label per text was taken for the
    token classifier's labels (FTD221 at decode, FTD804 at memory)."""
    from ftdoctor.engine.pipeline import Pipeline

    cap, report = _run(tmp_path, SOURCE)
    assert Pipeline.from_loop(cap).train_dataset is not cap.namespace["encoded"]
    assert _codes(report, "decode") == []


def test_a_dataset_of_the_script_that_holds_the_batch_is_its_source(tmp_path):
    from rules._build import capture, dataset, encoded, wordpiece

    from ftdoctor.engine.pipeline import _source_dataset
    from ftdoctor.facts.datasets import rows_from_batch

    ds = encoded(wordpiece(), ["the film was good", "a bad movie"], labels=[1, 0])
    cap = capture(tmp_path, {"ds": ds, "other": dataset({"x": [1, 2]})})
    batch = {k: torch.tensor([ds[0][k]]) for k in ("input_ids", "attention_mask", "labels")}
    assert _source_dataset(rows_from_batch(batch), cap) is ds
    batch["labels"] = torch.tensor([1 - ds[0]["labels"]])  # labels the loop made itself
    assert _source_dataset(rows_from_batch(batch), cap) is None


# -- a loop's loss: the model's own in a return_dict=False tuple, the loop's own on flattened labels -------------------


def test_a_loop_unpacking_a_return_dict_false_tuple_trains_the_model_s_loss(tmp_path):
    """It was taken for the loop's own code: backward, overfit and memory skipped."""
    body = """
    model = bert(num_labels=2, return_dict=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    enc = tok(TEXTS[:4], padding=True, return_tensors="pt")
    loss, logits = model(**enc, labels=torch.tensor(LABELS[:4]))
    loss.backward()
    opt.step()
    """
    cap, report = _run(tmp_path, body, ("forward", "backward"))
    assert cap.loop.loss_source == "model"
    assert report.stage("backward").status == "pass"


PRE_SHIFTED = """
ctok = causal()
rows = Dataset.from_dict({{"text": TEXTS}}).map(
    lambda e: ctok([t + ctok.eos_token for t in e["text"]]), batched=True, remove_columns=["text"])
rows = rows.map(lambda e: {{"labels": [ids[1:] + [-100] for ids in e["input_ids"]]}}, batched=True)


def collate(batch):
    width = max(len(r["input_ids"]) for r in batch)
    return {{k: torch.tensor([r[k] + [fill] * (width - len(r[k])) for r in batch])
            for k, fill in (("input_ids", ctok.pad_token_id), ("attention_mask", 0), ("labels", -100))}}


model = gpt2(tokenizer=ctok)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(rows, batch_size=4, collate_fn=collate):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]{to_model}).logits
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), batch["labels"].view(-1))
    loss.backward()
    opt.step()
    opt.zero_grad()
"""


def test_labels_shifted_for_the_loop_s_own_loss_are_no_double_shift(tmp_path):
    """Labels that hold the next token, read only by the loop's own cross-entropy on flattened logits: FTD321 and
    FTD325 (the end token's label is -100 at its own position) at collate, and FTD402 at forward, because the
    replay did not flatten `labels.view(-1)`."""
    cap, report = _run(tmp_path, PRE_SHIFTED.format(to_model=""))
    assert cap.loop.loss_source == "criterion" and "labels" not in cap.loop.model_keys
    assert _codes(report, "collate") == [] and _codes(report, "forward") == []
    assert report.stage("forward").status == "pass"


def test_labels_shifted_by_hand_and_given_to_the_model_are_still_a_double_shift(tmp_path):
    _, report = _run(tmp_path, PRE_SHIFTED.format(to_model=', labels=batch["labels"]'))
    assert "FTD321" in _codes(report, "collate")


# -- a loop whose collate_fn tokenizes the text rows, and that makes its labels itself --------------------------------

TOKENIZING_COLLATE = """
ctok = causal()


def collate(rows):
    return ctok([r["text"] + ctok.eos_token for r in rows], padding=True, return_tensors="pt")


model = gpt2(tokenizer=ctok)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for batch in DataLoader(Dataset.from_dict({"text": TEXTS}), batch_size=4, collate_fn=collate):
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
"""


def test_a_loop_tokenizing_in_its_collate_fn_and_making_its_labels_is_not_raw_text(tmp_path):
    """The rows were cut to the batch's keys (none of the text rows' columns): FTD201 "raw text, tokenize first" at
    decode, and at memory FTD804 KeyError: 'text' (the loop's collate_fn given rows without their text)."""
    _, report = _run(tmp_path, TOKENIZING_COLLATE, ("decode", "collate", "forward", "memory"))
    assert _codes(report, "decode") == [] and _codes(report, "memory") == ["FTD801"]
    assert report.stage("forward").status == "pass"


# -- a Trainer whose compute_loss ignores return_outputs, with an evaluation ------------------------------------------

BARE_LOSS = """
class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = torch.nn.functional.cross_entropy(outputs.logits, labels)
        return {returned}


def compute_metrics(p):
    return {{"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}}


encoded = Dataset.from_dict({{"text": TEXTS, "label": LABELS}}).map(lambda e: tok(e["text"]), batched=True)
args = TrainingArguments("out", per_device_train_batch_size=4, max_steps=1, report_to=[], use_cpu=True)
trainer = LossTrainer(model=bert(num_labels=2), args=args, train_dataset=encoded, eval_dataset=encoded,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=compute_metrics)
trainer.train()
"""


def test_a_compute_loss_returning_the_loss_alone_fails_the_evaluation(tmp_path):
    """The evaluation unpacks `compute_loss(..., return_outputs=True)`: the metrics stage skipped, saying only
    that the model cannot predict, and the run's first evaluation failed."""
    cap, report = _run(tmp_path, BARE_LOSS.format(returned="loss"), ("metrics",))
    (f,) = report.stage("metrics").findings
    assert f.code == "FTD900" and "returns the loss alone" in f.detail and "(loss, outputs)" in f.fix
    assert f.location == f"{cap.script}:{_line(cap.script, 'def compute_loss')}"


def test_a_compute_loss_returning_its_outputs_when_asked_is_clean(tmp_path):
    _, report = _run(tmp_path, BARE_LOSS.format(returned="(loss, outputs) if return_outputs else loss"), ("metrics",))
    assert _codes(report, "metrics") == [] and report.stage("metrics").status == "pass"


# -- a loop that pops the labels and weighs its own cross-entropy by class ---------------------------------------------

WEIGHTED_LOOP = """
enc = Dataset.from_dict({"text": TEXTS, "label": LABELS}).map(lambda b: tok(b["text"]), batched=True,
                                                              remove_columns=["text"])
model = bert(num_labels=2)
loader = DataLoader(enc, batch_size=4, collate_fn=DataCollatorWithPadding(tok))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
weights = torch.tensor([1.0, 2.0])
for batch in loader:
    labels = batch.pop("labels")
    logits = model(**batch).logits
    loss = torch.nn.functional.cross_entropy(logits, {target}, weight=weights)
    loss.backward()
    opt.step()
    opt.zero_grad()
"""


def test_a_loop_that_pops_the_labels_for_its_weighted_loss_is_clean(tmp_path):
    """The collator puts the rows' `label` under `labels`, which the loop pops for its own loss: decode said FTD202
    (the label column dropped), and the memory stage FTD804 KeyError '__arg1' (the class weights taken for a
    tensor of the batch)."""
    cap, report = _run(
        tmp_path, WEIGHTED_LOOP.replace("{target}", "labels"), ("decode", "collate", "forward", "memory")
    )
    assert cap.loop.loss_source == "criterion"
    assert [f.code for s in report.stages for f in s.findings if f.severity != "info"] == []


def test_a_loss_argument_with_one_value_per_row_stays_the_batch_s(tmp_path):
    """The near miss: a target the loop makes from the labels (one per row) is made again for each batch; only the
    class weights (not one per row) are the same tensor for every batch."""
    cap, _ = _run(tmp_path, WEIGHTED_LOOP.replace("{target}", "1 - labels"), ("decode",))
    recipes = [*cap.loop.criterion_args, *cap.loop.criterion_kwargs.values()]
    assert ("batch", "__arg0", None) in recipes and list(cap.loop.extra) == ["__arg0"]
    const = [r for r in recipes if r[0] == "const" and torch.is_tensor(r[1])]
    assert len(const) == 1 and const[0][1].tolist() == [1.0, 2.0]
