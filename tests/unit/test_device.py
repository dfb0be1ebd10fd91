"""Where the walk runs the model (issue 12, item 4), and how it puts back what it changed.

No GPU is on the test machine: the accelerator is faked at the boundary only (the device a model reports, the free
memory the driver reports, the text a failed kernel raises); everything behind it is the real code on the CPU. The
`meta` device stands in for "another device" where tensors must really move.
"""

from __future__ import annotations

import pytest

from ftdoctor.runtime import devices


def _bert(num_labels=2):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def _batch(labels):
    import torch

    n = len(labels)
    return {
        "input_ids": torch.randint(5, 60, (n, 8), generator=torch.Generator().manual_seed(1)),
        "attention_mask": torch.ones(n, 8, dtype=torch.long),
        "labels": torch.tensor(labels),
    }


def _target(model):
    from types import SimpleNamespace

    from ftdoctor.targets.base import Target

    return Target(SimpleNamespace(model=model, args=None, data_collator=None, optimizer=None, tokenizer=None))


def _cuda_assert_on(model):
    """The model's forward fails on the device as a kernel assert does: with nothing about the cause."""

    def fail(module, args, kwargs):
        raise RuntimeError(
            "CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` to enable "
            "device-side assertions."
        )

    return model.register_forward_pre_hook(fail, with_kwargs=True)


# -- batches follow the model ----------------------------------------------------------------------------------


def test_a_batch_moves_to_the_models_device_and_stays_put_when_it_is_there():
    import torch

    from ftdoctor.runtime.devices import on_device

    batch = {
        "input_ids": torch.ones(2, 3, dtype=torch.long),
        "meta": ["a", "b"],
        "pairs": (torch.zeros(1), torch.zeros(2)),
    }
    assert on_device(batch, torch.device("cpu")) is batch
    moved = on_device(batch, torch.device("meta"))
    assert moved["input_ids"].device.type == "meta" and moved["pairs"][1].device.type == "meta"
    assert moved["meta"] == ["a", "b"] and batch["input_ids"].device.type == "cpu"  # the user's batch is untouched
    from transformers import BatchEncoding

    encoded = BatchEncoding({"input_ids": torch.ones(2, 3, dtype=torch.long), "nested": {"a": torch.zeros(1)}})
    moved = on_device(encoded, torch.device("meta"))  # what a padding collator returns is no dict subclass
    assert moved["input_ids"].device.type == "meta" and moved["nested"]["a"].device.type == "meta"


def test_the_targets_loss_runs_the_batch_where_the_model_is(monkeypatch):
    import torch

    from ftdoctor.runtime import devices

    model = _bert()
    seen = {}
    model.register_forward_pre_hook(lambda m, a, kw: seen.update(device=kw["input_ids"].device), with_kwargs=True)
    moves = []
    real = devices.on_device
    monkeypatch.setattr(devices, "on_device", lambda batch, device: moves.append(device) or real(batch, device))
    loss, _ = _target(model).loss(model, _batch([0, 1]))
    assert torch.isfinite(loss) and moves[0] == torch.device("cpu") and seen["device"].type == "cpu"


# -- how much of the device the walk may take --------------------------------------------------------------------


def test_free_memory_of_an_accelerator_is_the_drivers_and_short_of_memory_names_the_device(monkeypatch):
    import torch

    from ftdoctor.runtime import devices
    from ftdoctor.runtime import devices as budget

    asked = []
    monkeypatch.setattr(devices, "device_free_bytes", lambda device: asked.append(device) or 3 * 2**30)
    cuda = torch.device("cuda", 0)
    assert budget.free_memory(cuda) == 3 * 2**30
    assert budget.short_of_memory(2 * 2**30, "A step", cuda) is None
    reason = budget.short_of_memory(4 * 2**30, "A step", cuda)
    assert reason and "cuda:0 has 3.0 GiB free" in reason
    asked.clear()
    budget.free_memory()
    budget.short_of_memory(1, "A step", torch.device("cpu"))
    assert asked == []  # the CPU's free memory is the machine's, never the driver's


def test_a_copy_goes_beside_the_model_on_its_gpu_only_when_a_step_of_it_fits_there(fake_gpu, monkeypatch):
    import torch

    from ftdoctor.runtime import devices
    from ftdoctor.runtime.devices import trainable_bytes

    model = _bert()
    monkeypatch.setattr(devices, "model_device", lambda model: torch.device("meta"))  # where the script put it
    need = 4 * trainable_bytes(model)  # the copy, its gradients, two optimizer moments
    fake_gpu["free"] = 2 * need
    assert _target(model).work_device.type == "meta"
    fake_gpu["free"] = need // 2
    assert _target(model).work_device.type == "cpu"
    fake_gpu["free"] = 2 * need
    model.hf_device_map = {"bert": 0, "classifier": 1}  # dispatched over two GPUs: no copy goes whole to one
    assert _target(model).work_device.type == "cpu"
    del model.hf_device_map
    target = _target(model)
    target.in_place_allowed = True  # ftdoctor's own process: the model itself, where it is, whatever is free
    assert target.work_device.type == "meta" and target.copies() == 0
    target.discard()


# -- a CUDA error is replayed on the CPU ------------------------------------------------------------------------


def test_a_cuda_error_is_replayed_on_the_cpu_and_the_gpu_is_not_used_again(fake_gpu):
    from ftdoctor.core.registry import Skip, UserCodeError

    model = _bert(num_labels=2)
    _cuda_assert_on(model)
    target = _target(model)
    with pytest.raises(UserCodeError) as caught:
        target.loss(model, _batch([0, 5]))  # a label outside the 2 classes
    exc = caught.value.exc
    assert "out of bounds" in str(exc) or "Target 5" in str(exc), exc  # the CPU's error, not the kernel's
    assert any("device-side assert" in note for note in getattr(exc, "__notes__", []))
    assert "device-side assert" in target.device_error
    with pytest.raises(Skip, match="cannot be used after"):
        target.work_model()


def test_a_cuda_error_the_cpu_does_not_reproduce_stays_the_gpus(fake_gpu):
    from ftdoctor.core.registry import UserCodeError

    model = _bert(num_labels=2)
    _cuda_assert_on(model)
    with pytest.raises(UserCodeError) as caught:
        _target(model).loss(model, _batch([0, 1]))
    assert "device-side assert" in str(caught.value.exc)
    assert any("GPU kernel or the driver" in note for note in caught.value.exc.__notes__)


def test_an_error_on_the_cpu_is_never_replayed():
    from ftdoctor.core.registry import UserCodeError

    model = _bert(num_labels=2)
    target = _target(model)
    with pytest.raises(UserCodeError) as caught:
        target.loss(model, _batch([0, 5]))
    assert not getattr(caught.value.exc, "__notes__", None) and target.device_error is None


def test_the_stand_in_keeps_class_configuration_and_shapes_with_fresh_weights():
    import torch

    from ftdoctor.runtime import twin

    model = _bert(num_labels=3)
    made = twin.stand_in(model)
    assert type(made) is type(model) and made.config.num_hidden_layers == 2 and made.config.num_labels == 3
    assert made.bert.embeddings.word_embeddings.weight.shape == model.bert.embeddings.word_embeddings.weight.shape
    assert not torch.equal(made.classifier.weight, model.classifier.weight)
    assert model.config.num_hidden_layers == 3  # the user's config is not touched


# -- memory trials in this process, where the model already is -------------------------------------------------------


def _payload(model, batches):
    return {
        "model": model,
        "batches": batches,
        "mixed_precision": None,
        "gradient_checkpointing": False,
        "optimizer_class": "torch.optim.AdamW",
        "optimizer_kwargs": {"lr": 1e-3},
        "steps": 2,
    }


def test_trials_run_in_this_process_on_the_model_where_it_is():
    from ftdoctor.runtime import trials

    model = _bert()
    result = trials.run_trials_here(_payload(model, [(2, _batch([0, 1])), (4, _batch([0, 1, 1, 0]))]))
    assert [t.batch_size for t in result.trials] == [2, 4] and all(t.ok for t in result.trials)
    assert result.device_error is None and all(p.grad is None for p in model.parameters())


def test_a_cuda_error_in_the_trials_here_ends_them_with_the_error():
    from ftdoctor.runtime import trials

    model = _bert()
    _cuda_assert_on(model)
    result = trials.run_trials_here(_payload(model, [(2, _batch([0, 1])), (4, _batch([0, 1, 1, 0]))]))
    assert len(result.trials) == 1 and result.trials[0].cuda_error
    assert "device-side assert" in result.device_error


# -- the model worked on in place is put back ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["for-loop", "foreach", "fused"])
def test_what_any_adamw_steps_is_put_back_exactly(kind):
    """The fused AdamW writes the weights without moving their version counter: what an optimizer was about to
    step counts as changed."""
    import torch

    from ftdoctor.runtime.snapshot import WeightSnapshot

    model = _bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    snap = WeightSnapshot(model)
    try:
        options = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kind]
        opt = torch.optim.AdamW(model.parameters(), lr=0.1, **options)
        for _ in range(2):
            model(**_batch([0, 1])).loss.backward()
            opt.step()
        assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        snap.restore()
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())
    finally:
        snap.discard()


def test_only_what_an_optimizer_steps_is_saved_and_a_forward_saves_nothing():
    import torch

    from ftdoctor.runtime.snapshot import WeightSnapshot

    model = _bert()
    snap = WeightSnapshot(model)
    try:
        with torch.no_grad():
            model(**_batch([0, 1]))
        assert not snap.saved and not snap.on_disk
        head = [model.classifier.weight, model.classifier.bias]
        model(**_batch([0, 1])).loss.backward()
        torch.optim.SGD(head, lr=0.1).step()
        assert len(snap.saved) == 2 and snap.in_memory == sum(p.numel() * 4 for p in head)
    finally:
        snap.discard()


def test_beyond_its_share_of_free_memory_the_snapshot_goes_to_a_file_and_back(monkeypatch, tmp_path):
    import os

    import torch

    from ftdoctor.runtime import snapshot

    monkeypatch.setattr(devices, "free_memory", lambda device=None: 1024)  # a share of it holds nothing
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    model = _bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    snap = snapshot.WeightSnapshot(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(**_batch([0, 1])).loss.backward()
    opt.step()
    files = list(snap.files)
    assert files and all(os.path.exists(f) for f in files) and not snap.saved
    snap.restore()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    snap.discard()
    assert not any(os.path.exists(f) for f in files)


def test_a_step_that_computes_its_own_gradients_is_put_back_too():
    """LBFGS takes a closure and makes the gradients inside its step: nothing has one when the step begins."""
    import torch

    from ftdoctor.runtime.snapshot import WeightSnapshot

    model = _bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    snap = WeightSnapshot(model)
    try:
        opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=2)

        def closure():
            opt.zero_grad()
            loss = model(**_batch([0, 1])).loss
            loss.backward()
            return loss

        opt.step(closure)
        assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        snap.restore()
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not snap.unrestorable
    finally:
        snap.discard()
