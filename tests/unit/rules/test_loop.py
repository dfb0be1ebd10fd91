"""The hand-written loop's rules (checks/loop.py, registered at forward, backward and metrics), one check each on a
hand-built record of what the capture hooks saw, and FTD900, the walk's relay of an error of the pipeline's own code
that no check diagnosed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftdoctor.capture import LoopRecord
from ftdoctor.core.source import Site

from ._build_b import (
    bert,
    call,
    capture,
    line_of,
    one_thread,  # noqa: F401  (the fixture below)
    pipeline,
    write_script,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _loop_pipeline(tmp_path=None, script_text=None, optimizer=None, lr_scheduler=None, **namespace):
    """A loop pipeline whose script (if given) holds ``namespace`` (the script's variables) when training starts."""
    model = bert()
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-3)
    script = write_script(tmp_path, script_text) if script_text else None
    cap = capture(script, {"model": model, **namespace})
    cap.train_site = Site(cap.script, 12)
    return pipeline(model, optimizer=optimizer, capture=cap, lr_scheduler=lr_scheduler), cap


def test_model_left_in_eval_mode():
    p, cap = _loop_pipeline()
    f = call("FTD410", loop=LoopRecord(model_training=False), pipeline=p).one("FTD410")
    assert "`model.training == False`" in f.detail and "model.train()" in f.fix
    assert f.location == str(cap.train_site)


def test_batch_on_another_device():
    p, _ = _loop_pipeline()
    rec = LoopRecord(model_training=True, input_devices=["cpu"], param_device="cuda:0")
    f = call("FTD411", loop=rec, pipeline=p).one("FTD411")
    assert "on `cuda:0` but the batch is on `cpu`" in f.detail and "v.to(device)" in f.fix
    assert f.evidence == {"param_device": "cuda:0", "input_devices": ["cpu"]}


def test_a_training_model_with_its_batch_on_its_device_is_fine():
    p, _ = _loop_pipeline()
    rec = LoopRecord(model_training=True, input_devices=["cuda:0"], param_device="cuda:0")
    assert call("FTD410", loop=rec, pipeline=p).findings == []


def test_gradients_never_zeroed_names_the_script_optimizer():
    model = bert()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    p, _ = _loop_pipeline(optimizer=opt, optim=opt)
    f = call("FTD510", loop=LoopRecord(grads_accumulated=True), pipeline=p).one("FTD510")
    assert (
        "never zeroes them" in f.detail and f.fix == "Call `optim.zero_grad()` after `optim.step()` in every iteration."
    )


def test_scheduler_stepped_before_the_optimizer():
    model = bert()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LinearLR(opt)
    p, cap = _loop_pipeline(optimizer=opt, lr_scheduler=sched, opt=opt, scheduler=sched)
    site = Site(cap.script, 40)
    got = call("FTD511", loop=LoopRecord(grads_accumulated=False, scheduler_before_optimizer=site), pipeline=p)
    f = got.one("FTD511")
    assert f.detail == "`scheduler.step()` ran before the first `opt.step()`." and f.location == str(site)
    assert f.fix == "Call `scheduler.step()` after `opt.step()`."
    assert got.codes == ["FTD511"]


def test_a_loop_that_zeroes_and_steps_in_order_is_fine():
    p, _ = _loop_pipeline()
    assert call("FTD510", loop=LoopRecord(grads_accumulated=False), pipeline=p).findings == []


EVAL_IN_TRAIN_MODE = """
import torch

for batch in train_loader:
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()

for batch in eval_loader:  # the evaluation
    outputs = model(**batch)
"""

EVAL_FIXED = """
import torch


@torch.no_grad()
def evaluate(model, eval_loader):
    model.eval()
    for batch in eval_loader:
        outputs = model(**batch)
    model.train()


for batch in train_loader:
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
evaluate(model, eval_loader)
"""


def _eval_values(tmp_path, text):
    eval_loader = torch.utils.data.DataLoader([{"input_ids": [1, 2]}], batch_size=1)
    p, cap = _loop_pipeline(tmp_path, text, eval_loader=eval_loader)
    p.extra["eval_dataloader"] = eval_loader
    return {"loop": LoopRecord(), "pipeline": p}, cap


def test_evaluation_loop_without_eval_mode_or_no_grad(tmp_path):
    values, cap = _eval_values(tmp_path, EVAL_IN_TRAIN_MODE)
    f = call("FTD610", **values).one("FTD610")
    assert f.detail == "The evaluation loop over `eval_loader` runs without `model.eval()` and `torch.no_grad()`."
    assert f.location == str(Site(cap.script, line_of(cap.script, "# the evaluation")))
    assert f.evidence == {"missing": ["`model.eval()`", "`torch.no_grad()`"]}


def test_evaluation_loop_in_a_no_grad_function_in_eval_mode_is_fine(tmp_path):
    values, _ = _eval_values(tmp_path, EVAL_FIXED)
    assert call("FTD610", **values).findings == []


TRAIN_LOOP_ONLY = """
for epoch in range(2):
    for batch in train_loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
"""


def test_the_training_loop_is_no_evaluation_loop(tmp_path):
    # the loader taken for the evaluation one is iterated by a loop that calls backward: it trains
    eval_loader = torch.utils.data.DataLoader([{"input_ids": [1, 2]}], batch_size=1)
    p, _ = _loop_pipeline(tmp_path, TRAIN_LOOP_ONLY.replace("train_loader", "eval_loader"), eval_loader=eval_loader)
    p.extra["eval_dataloader"] = eval_loader
    assert call("FTD610", loop=LoopRecord(), pipeline=p).findings == []


def test_the_training_loader_itself_is_no_evaluation_loader(tmp_path):
    loader = torch.utils.data.DataLoader([{"input_ids": [1, 2]}], batch_size=1)
    p, _ = _loop_pipeline(tmp_path, EVAL_IN_TRAIN_MODE, eval_loader=loader)
    p.extra["eval_dataloader"] = p.extra["train_dataloader"] = loader
    assert call("FTD610", loop=LoopRecord(), pipeline=p).findings == []


def test_an_error_of_the_pipeline_no_check_diagnosed_is_relayed():
    """FTD900 is the walk's rule, not a check's: a check that lets the user's error through (run_user raised it
    and nothing caught it) has it reported at its stage, not as ftdoctor's own crash."""
    from ftdoctor.core.registry import Check, run_user
    from ftdoctor.core.report import StageResult
    from ftdoctor.engine.walk import Context, run_stage

    def collate(rows):
        return {"input_ids": torch.tensor([r["input_ids"] for r in rows])}  # ragged rows: no padding

    def batches_of_two(data_collator):
        run_user("the data collator", data_collator, [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}])

    ctx = Context({"data_collator": collate, "findings_so_far": []})
    result, internal = StageResult("collate"), []
    run_stage("collate", ctx, result, internal, [Check("team.batches_of_two", "collate", batches_of_two)])
    (f,) = result.findings
    assert f.code == "FTD900" and f.severity == "error" and result.status == "fail" and internal == []
    assert f.detail.startswith(
        "While collate ran, the data collator raised ValueError: expected sequence of length 3 at dim 1 (got 1) — at "
    )
    assert "`rows` = list[2] of dict" in f.detail  # the rows the collator could not stack
    assert f.evidence["check"] == "team.batches_of_two" and "ValueError" in f.evidence["traceback"]


# --- the loop's structure around its step: read from the script, judged with the objects it holds ------------------


def _structured(tmp_path, text, model=None, dataloader=None, **namespace):
    """A loop pipeline of the script ``text``, whose training forward is the line marked `# forward`."""
    model = model if model is not None else bert()
    p, cap = _loop_pipeline(tmp_path, text, model=model, **namespace)
    p.model = model
    site = Site(cap.script, line_of(cap.script, "# forward"))
    cap.train_site = site
    return {"loop": LoopRecord(model_training=True, train_site=site, dataloader=dataloader), "pipeline": p}, cap


VALIDATE_INSIDE = """
def validate(model, loader):
    model.eval()
    for batch in loader:
        model(**batch)


model.train()
for epoch in range(2):
    for step, batch in enumerate(train_loader):
        loss = model(**batch).loss  # forward
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            validate(model, val_loader)
"""


def test_validation_inside_the_loop_leaves_eval_mode(tmp_path):
    values, cap = _structured(tmp_path, VALIDATE_INSIDE)
    f = call("FTD410", **values).one("FTD410")
    assert f.location == str(Site(cap.script, line_of(cap.script, "validate(model, val_loader)")))
    assert "never back" in f.detail and "model.train()" in f.fix


def test_validation_followed_by_train_mode_is_silent(tmp_path):
    fixed = VALIDATE_INSIDE.replace(
        "            validate(model, val_loader)\n",
        "            validate(model, val_loader)\n            model.train()\n",
    )
    values, _ = _structured(tmp_path, fixed)
    assert call("FTD410", **values).findings == []


def test_another_model_put_in_eval_mode_inside_the_loop_is_silent(tmp_path):
    distil = """
    model.train()
    for batch in train_loader:
        teacher.eval()
        loss = model(**batch).loss  # forward
        loss.backward()
        optimizer.step()
    """
    values, _ = _structured(tmp_path, distil, teacher=bert(seed=1))
    assert call("FTD410", **values).findings == []


ACCUMULATE = """
for epoch in range(2):
    with accelerator.accumulate(model):
        for batch in loader:
            loss = model(**batch).loss  # forward
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
"""


def test_accumulate_around_the_whole_loop(tmp_path):
    values, cap = _structured(tmp_path, ACCUMULATE, accelerator=SimpleNamespace(gradient_accumulation_steps=2))
    f = call("FTD521", **values).one("FTD521")
    assert f.location == str(Site(cap.script, line_of(cap.script, "with accelerator.accumulate")))
    assert f.evidence["gradient_accumulation_steps"] == 2 and "inside the loop" in f.fix


def test_accumulate_entered_for_each_step_is_silent(tmp_path):
    per_step = """
    for epoch in range(2):
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss  # forward
                accelerator.backward(loss)
                optimizer.step()
    """
    values, _ = _structured(tmp_path, per_step, accelerator=SimpleNamespace(gradient_accumulation_steps=2))
    assert call("FTD521", **values).findings == []


PER_EPOCH = """
for epoch in range(num_epochs):
    for batch in loader:
        loss = model(**batch).loss  # forward
        loss.backward()
        optimizer.step()
    scheduler.step()
"""


def _scheduled(tmp_path, text, build):
    from transformers import get_linear_schedule_with_warmup

    model = bert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(list(range(40)), batch_size=4)  # 10 batches per epoch
    sched = build(opt, get_linear_schedule_with_warmup)
    values, cap = _structured(tmp_path, text, model=model, dataloader=loader, num_epochs=3, scheduler=sched)
    values["pipeline"].lr_scheduler = sched
    values["pipeline"].optimizer = opt
    return {**values, "lr_scheduler": sched}, cap


def test_step_schedule_stepped_once_per_epoch(tmp_path):
    values, cap = _scheduled(tmp_path, PER_EPOCH, lambda opt, warmup: warmup(opt, 5, 30))
    f = call("FTD522", **values).one("FTD522")
    assert f.evidence == {"horizon": 30, "warmup": 5, "batches_per_epoch": 10, "epochs": 3}
    assert f.location == str(Site(cap.script, line_of(cap.script, "    scheduler.step()")))


def test_epoch_schedule_stepped_once_per_epoch_is_silent(tmp_path):
    values, _ = _scheduled(tmp_path, PER_EPOCH, lambda opt, _: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 3))
    assert call("FTD522", **values).findings == []


def test_step_schedule_stepped_every_step_is_silent(tmp_path):
    per_step = PER_EPOCH.replace(
        "        optimizer.step()\n    scheduler.step()", "        optimizer.step()\n        scheduler.step()"
    )
    values, _ = _scheduled(tmp_path, per_step, lambda opt, warmup: warmup(opt, 5, 30))
    assert call("FTD522", **values).findings == []


REGRESSION_EVAL = """
for batch in train_loader:
    loss = model(**batch).loss  # forward
    loss.backward()
    optimizer.step()

for batch in eval_loader:
    outputs = model(**batch)
    predictions = outputs.logits.argmax(dim=-1)
"""


def test_argmax_of_a_regression_head(tmp_path):
    model = bert(num_labels=1)
    values, cap = _structured(tmp_path, REGRESSION_EVAL, model=model)
    f = call("FTD631", **values, model=model).one("FTD631")
    assert f.location == str(Site(cap.script, line_of(cap.script, "argmax(dim=-1)")))
    assert "squeeze(-1)" in f.fix


def test_argmax_on_the_branch_a_regression_flag_rules_out_is_silent(tmp_path):
    model = bert(num_labels=1)
    text = REGRESSION_EVAL.replace(
        "outputs.logits.argmax(dim=-1)",
        "outputs.logits.argmax(dim=-1) if not is_regression else outputs.logits.squeeze()",
    )
    values, _ = _structured(tmp_path, text, model=model, is_regression=True)
    assert call("FTD631", **values, model=model).findings == []


def test_argmax_of_a_classification_head_is_silent(tmp_path):
    model = bert(num_labels=3)
    values, _ = _structured(tmp_path, REGRESSION_EVAL, model=model)
    assert call("FTD631", **values, model=model).findings == []
