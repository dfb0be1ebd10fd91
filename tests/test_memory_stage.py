"""The memory stage: exact parameter/gradient/optimizer bytes, worst-case rows, and a verdict for a named device."""

from __future__ import annotations

import pytest

from conftest import findings_at, pipeline_path


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    import os

    from ftdoctor.capture import capture_script

    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("memory"))
    try:
        cap = capture_script(pipeline_path("course_mnli_fixed.py"))
    finally:
        os.chdir(old)
    assert cap.outcome == "training", cap.output
    return cap.trainer


def _memory(trainer, **options):
    import ftdoctor

    report = ftdoctor.check(trainer, stages=["decode", "collate", "forward", "backward", "memory"], **options)
    (f,) = findings_at(report, "memory")
    return f


def test_exact_parameter_gradient_and_adamw_bytes(trainer):
    ev = _memory(trainer).evidence
    params = list(trainer.model.parameters())
    n = sum(p.numel() for p in params)
    assert ev["params_bytes"] == 4 * n
    assert ev["grads_bytes"] == 4 * sum(p.numel() for p in params if p.requires_grad)
    # AdamW keeps two float32 moments per trainable parameter, plus a step counter per tensor.
    moments = 2 * 4 * sum(p.numel() for p in params if p.requires_grad)
    assert moments <= ev["optimizer_bytes"] <= moments + 8 * len(params)
    import torch

    if not torch.cuda.is_available():  # with no GPU and no --gpu-memory nothing is known about the device
        assert ev["device_memory_bytes"] is None and ev["max_batch_size"] is None


def test_worst_case_is_the_longest_row_of_the_dataset(trainer):
    ev = _memory(trainer).evidence
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert ev["worst_case_seq_len"] == max(lengths)
    assert ev["activations_bytes"] > 0
    assert ev["peak_train_bytes"] == ev["params_bytes"] + ev["grads_bytes"] + ev["optimizer_bytes"] + ev["activations_bytes"]


def test_a_device_too_small_gets_a_configuration_that_keeps_the_effective_batch(trainer):
    fits = _memory(trainer, gpu_memory=24 * 2**30)
    assert fits.code == "FTD801" and fits.evidence["max_batch_size"] > trainer.args.per_device_train_batch_size
    ev = fits.evidence
    # A device that holds the fixed part and about two rows of activations.
    fixed = ev["params_bytes"] + ev["grads_bytes"] + ev["optimizer_bytes"]
    small = int((fixed + 2.5 * ev["activation_bytes_per_row"]) / 0.9)
    tight = _memory(trainer, gpu_memory=small)
    assert tight.code == "FTD802" and tight.severity == "error"
    assert "gradient_accumulation_steps=" in tight.fix
    assert tight.evidence["max_batch_size"] < trainer.args.per_device_train_batch_size
