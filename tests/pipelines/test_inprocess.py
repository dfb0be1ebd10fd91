"""In-process pre-flight: ftdoctor.preflight and FtDoctorCallback change nothing about the run they check."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _trainer(tmp_path, dataset="mrpc", num_labels=2, callbacks=None, seed=0):
    from datasets import load_from_disk
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from ftdoctor.fixtures import fixture_path

    ckpt = fixture_path("models/bert-tiny")
    tok = AutoTokenizer.from_pretrained(ckpt)
    raw = load_from_disk(fixture_path(f"datasets/{dataset}"))
    a, b = ("sentence1", "sentence2") if dataset == "mrpc" else ("premise", "hypothesis")
    data = raw.map(lambda e: tok(e[a], e[b], truncation=True), batched=True)
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=num_labels)
    args = TrainingArguments(
        str(tmp_path / "out"),
        max_steps=5,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        seed=seed,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        dataloader_pin_memory=False,
    )
    return Trainer(
        model,
        args,
        train_dataset=data["train"],
        data_collator=DataCollatorWithPadding(tok),
        processing_class=tok,
        callbacks=callbacks,
    )


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("with_trainer", [False, True], ids=["callback-kwargs", "callback-with-trainer"])
def test_callback_leaves_training_bit_identical(tmp_path, with_trainer):
    import torch

    from ftdoctor import FtDoctorCallback

    plain = _trainer(tmp_path / "a")
    plain.train()
    expected = _weights(plain.model)

    checked = _trainer(tmp_path / "b")
    callback = FtDoctorCallback(checked if with_trainer else None)
    checked.add_callback(callback)
    checked.train()
    assert callback.report is not None and callback.report.ok, str(callback.report)
    assert not callback.report.internal_errors, callback.report.internal_errors
    assert callback.report.stage("overfit").status in ("pass", "warn")  # the walk really trained a copy
    got = _weights(checked.model)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected), "the callback changed the training run"


def test_callback_stops_a_broken_pipeline_before_the_first_step(tmp_path):
    from ftdoctor import FtDoctorCallback, PreflightError

    trainer = _trainer(tmp_path, dataset="mnli", num_labels=2)  # 3 classes in the data
    trainer.add_callback(FtDoctorCallback())
    before = _weights(trainer.model)
    with pytest.raises(PreflightError) as err:
        trainer.train()
    assert "FTD101" in str(err.value) and "num_labels=3" in str(err.value)
    assert trainer.state.global_step == 0
    import torch

    assert all(torch.equal(v, before[k]) for k, v in _weights(trainer.model).items())


def test_preflight_on_a_trainer_and_on_loop_parts(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    import ftdoctor

    trainer = _trainer(tmp_path)
    report = ftdoctor.preflight(trainer)
    assert report.ok
    rng = torch.get_rng_state()
    cols = [c for c in trainer.train_dataset.column_names if c not in ("sentence1", "sentence2", "idx")]
    ds = trainer.train_dataset.select_columns(cols).rename_column("label", "labels")
    dl = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=trainer.data_collator)
    opt = torch.optim.AdamW(trainer.model.parameters(), lr=3e-3)
    report = ftdoctor.preflight(model=trainer.model, dataloader=dl, optimizer=opt)
    assert report.ok, str(report)
    assert torch.equal(torch.get_rng_state(), rng)
    broken = _trainer(tmp_path / "broken", dataset="mnli", num_labels=2)
    with pytest.raises(ftdoctor.PreflightError):
        ftdoctor.preflight(broken)
