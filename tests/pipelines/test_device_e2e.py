"""Whole walks with the model on a (fake) GPU: the stages ask that device for memory, and a CUDA error is replayed
on the CPU with its cause named (the parts are tested on their own in tests/unit/test_device.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_stages_check_the_memory_of_the_device_they_run_on(check_pipeline, fake_gpu):
    """A model stage on the GPU asks the GPU for room: with none, it says so (FTD806), nothing is killed."""
    fake_gpu["free"] = 1024
    report = check_pipeline("mrpc_bert_fixed.py", stages=["decode", "collate", "forward", "backward"])
    skipped = [f for s in report.stages for f in s.findings if f.code == "FTD806"]
    assert skipped and report.stage("forward").status == "warn" and report.stage("backward").status == "skip"
    assert report.budget["device"] == "cpu"


def test_a_walk_on_the_gpu_names_the_cause_of_a_cuda_error_and_skips_what_needs_the_gpu(
    check_pipeline, fake_gpu, monkeypatch
):
    """The whole walk, with the model's forward on the (fake) GPU failing as a kernel assert does: the forward stage
    reports the CPU's error, matched to the finding that predicted it (tokens added to the tokenizer, beyond the
    embeddings), and the later model stages say why they did not run."""
    from ftdoctor.core.registry import UserCodeError
    from ftdoctor.runtime import twin
    from ftdoctor.targets.trainer import TrainerTarget

    stand_ins = []
    real_stand_in, real_run = twin.stand_in, TrainerTarget.run_loss

    def stand_in(model, layers=None):
        stand_ins.append(real_stand_in(model, layers))
        return stand_ins[-1]

    failed = []

    def run_loss(self, model, batch):
        """The user's model runs on the GPU: what fails there fails as a kernel assert, and after one nothing
        runs; the stand-in runs on the CPU."""
        if any(model is s for s in stand_ins):
            return real_run(self, model, batch)
        if not failed:
            try:
                return real_run(self, model, batch)
            except UserCodeError:
                failed.append(True)
        raise UserCodeError("the model's forward", RuntimeError("CUDA error: device-side assert triggered"))

    monkeypatch.setattr(twin, "stand_in", stand_in)
    monkeypatch.setattr(TrainerTarget, "run_loss", run_loss)
    report = check_pipeline(
        "bert_mrpc_added_tokens.py", stages=["config", "decode", "collate", "forward", "backward", "overfit"]
    )
    assert any(f.code == "FTD103" for f in report.stage("config").findings)
    forward = report.stage("forward")
    assert forward.status == "skip" and "FTD103" in forward.reason, forward  # the CPU's IndexError, explained
    assert stand_ins, "the CUDA error was not replayed"
    assert report.stage("backward").status != "fail"  # its step needs the forward's model: not run
    assert "GPU cannot be used after `RuntimeError: CUDA error: device-side assert" in report.stage("overfit").reason
