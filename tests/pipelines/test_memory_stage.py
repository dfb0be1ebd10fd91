"""The memory stage: exact parameter/gradient/optimizer bytes, worst-case rows, and a verdict for a named device."""

from __future__ import annotations

import pytest
from helpers import findings_at, pipeline_path

pytestmark = pytest.mark.slow


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
    found = findings_at(report, "memory")
    assert len(found) == 1, [(f.code, f.detail) for f in found]
    return found[0]


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
    # One step as the Trainer takes it: gradients are set to None between steps, so the peak is the larger of
    # (activations + the start-of-backward transient) and the gradients, on top of parameters and optimizer state.
    resident = ev["params_bytes"] + ev["optimizer_bytes"]
    live = max(ev["activations_bytes"] + ev["transient_bytes"], ev["grads_bytes"])
    assert ev["peak_train_bytes"] == resident + live


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
    suggested = tight.evidence["suggested"]
    effective = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    assert suggested["per_device_train_batch_size"] * suggested["gradient_accumulation_steps"] == effective
    assert 1 <= suggested["per_device_train_batch_size"] <= tight.evidence["max_batch_size"] + 1


def test_activations_match_a_direct_measurement_at_the_worst_case_batch(trainer):
    """The fit uses batches of 1 and 2 and at most 48 tokens; the configured batch of the longest rows is new."""
    from ftdoctor.runtime.memory_model import saved_activation_bytes, worst_case_rows
    from ftdoctor.targets import work_copy as copy_model

    ev = _memory(trainer).evidence
    bs = trainer.args.per_device_train_batch_size
    assert [b for _, b, _ in ev["activation_fit"]["measured"]] == [1, 1, 1, 2]
    train = trainer._remove_unused_columns(trainer.train_dataset, "training")
    rows = worst_case_rows(train, [train[0]], bs)
    direct, _ = saved_activation_bytes(
        copy_model(trainer.model),
        dict(trainer.data_collator(rows)),
        lambda m, b: trainer.compute_loss(m, b, return_outputs=True),
    )
    assert abs(ev["activations_bytes"] - direct) <= 0.15 * direct


@pytest.mark.subprocess
def test_trial_steps_run_in_a_child_process(trainer):
    """The real child entry point, on the CPU: two steps per batch size, one JSON line per trial."""
    from ftdoctor.runtime import trials
    from ftdoctor.targets import work_copy as copy_model

    train = trainer._remove_unused_columns(trainer.train_dataset, "training")
    batch = dict(trainer.data_collator([train[i] for i in range(4)]))
    result = trials.run_trials(
        {
            "model": copy_model(trainer.model),
            "batches": [(4, batch)],
            "device": "cpu",
            "optimizer_class": "torch.optim.AdamW",
            "optimizer_kwargs": {"lr": 1e-3},
        },
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert [(t.batch_size, t.ok) for t in result.trials] == [(4, True)]


@pytest.fixture
def fake_device(monkeypatch):
    """Trial steps go to a child process that fails like a GPU does (tests/fake_gpu.py)."""
    import os

    import fake_gpu

    from ftdoctor.runtime import trials

    here = os.path.dirname(os.path.abspath(fake_gpu.__file__))  # tests/, on this process's path by pythonpath
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(trials, "TRIAL_TARGET", "fake_gpu:device_assert")


def _with_second_longest_row(trainer, column, value):
    """The training set with ``column`` of its second-longest row set to ``value``: the first batch and the longest
    row (which the CPU measures) stay clean; only a batch of the longest rows, as the GPU trial runs, has it."""
    from datasets import Value

    ds = trainer.train_dataset
    if column == "label":  # a ClassLabel column refuses a class it does not have
        ds = ds.cast_column("label", Value("int64"))
    lengths = [len(x) for x in ds["input_ids"]]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    second = order[1]
    assert second >= trainer.args.per_device_train_batch_size, "the row must not be in the first batch"

    def edit(row, i):
        return {column: value(row[column])} if i == second else {}

    return ds.map(edit, with_indices=True)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "column, value, cause",
    [
        ("label", lambda v: 7, ("FTD203", "FTD101")),
        ("input_ids", lambda ids: ids[:-2] + [10_000_000] + ids[-1:], ("FTD207", "FTD103")),
    ],
)
def test_a_cuda_error_in_the_trial_is_replayed_on_the_cpu(trainer, fake_device, column, value, cause):
    ev = _memory(trainer).evidence
    device = int(
        (ev["params_bytes"] + ev["optimizer_bytes"] + ev["grads_bytes"] + 20 * ev["activation_bytes_per_row"]) / 0.9
    )  # room for a trial batch of about 20 rows
    saved = trainer.train_dataset
    trainer.train_dataset = _with_second_longest_row(trainer, column, value)
    try:
        import ftdoctor

        report = ftdoctor.check(
            trainer, stages=["decode", "collate", "forward", "backward", "memory"], gpu_memory=device, gpu_probe=True
        )
    finally:
        trainer.train_dataset = saved
    (replayed,) = findings_at(report, "memory", "FTD803")
    assert "device-side assert" in replayed.evidence["device_error"]
    assert ("out of bounds" in replayed.evidence["cpu_error"]) == (column == "label")
    assert ("index out of range" in replayed.evidence["cpu_error"]) == (column == "input_ids")
    assert set(replayed.evidence["root_cause"]) & set(cause), replayed.evidence
    assert findings_at(report, "memory", "FTD801")  # the estimate is still reported


def test_a_cuda_error_in_the_trial_on_the_model_in_place_is_replayed_on_a_stand_in(trainer, monkeypatch):
    """In ftdoctor's own process, with the model already on the (fake) GPU, the trial steps run on it there; a
    kernel assert on a bad label ends them, and the CPU replays the rows on a stand-in of the model (the weights
    on the GPU cannot be read any more)."""
    import ftdoctor
    from ftdoctor.runtime import devices, trials

    ev = _memory(trainer).evidence
    device = int(
        (ev["params_bytes"] + ev["optimizer_bytes"] + ev["grads_bytes"] + 20 * ev["activation_bytes_per_row"]) / 0.9
    )
    n_classes = trainer.model.config.num_labels

    def kernel(module, args, kwargs):  # what a CUDA loss kernel does with a label outside the classes
        labels = kwargs.get("labels")
        if labels is not None and int(labels.max()) >= n_classes:
            raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(devices, "is_accelerator", lambda device: True)
    monkeypatch.setattr(devices, "device_free_bytes", lambda device: 1 << 40)
    monkeypatch.setattr(trials, "run_trials", lambda *a, **k: pytest.fail("a second process was started"))
    hook = trainer.model.register_forward_pre_hook(kernel, with_kwargs=True)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}  # after a GPU error none is put back
    saved = trainer.train_dataset
    trainer.train_dataset = _with_second_longest_row(trainer, "label", lambda v: 7)
    try:
        report = ftdoctor.check(
            trainer,
            stages=["decode", "collate", "forward", "backward", "memory"],
            gpu_memory=device,
            gpu_probe=True,
            disposable=True,
        )
    finally:
        trainer.train_dataset = saved
        hook.remove()
        trainer.model.load_state_dict(weights)
    assert report.budget["in_place"]
    (replayed,) = findings_at(report, "memory", "FTD803")
    assert "device-side assert" in replayed.evidence["device_error"]
    assert "out of bounds" in replayed.evidence["cpu_error"]
    assert report.context["target"].device_error  # nothing later uses the GPU


def test_causal_lm_evaluation_keeps_every_logit_on_the_device(check_pipeline):
    """The Trainer piles eval logits (rows x length x vocabulary) on the GPU: the fix moves them off and keeps ids."""
    report = check_pipeline("gpt2_causal_lm_fixed.py", stages=["decode", "collate", "forward", "backward", "memory"])
    (est,) = findings_at(report, "memory")
    ev = est.evidence
    assert (
        ev["eval_accumulated_bytes"] > 0 and ev["peak_eval_bytes"] > ev["params_bytes"] + ev["eval_accumulated_bytes"]
    )
    import ftdoctor

    trainer = report.context["trainer"]
    small = int((ev["params_bytes"] + ev["optimizer_bytes"] + ev["grads_bytes"] + ev["eval_accumulated_bytes"]) / 0.9)
    tight = findings_at(
        ftdoctor.check(trainer, stages=["decode", "collate", "forward", "backward", "memory"], gpu_memory=small),
        "memory",
    )[0]
    assert tight.code == "FTD802"
    assert "eval_accumulation_steps=" in tight.fix and "preprocess_logits_for_metrics" in tight.fix


def test_an_adapter_run_that_does_not_fit_is_offered_a_4bit_base_not_lora(check_pipeline):
    """A LoRA user whose frozen base does not fit is told to quantize the base (QLoRA), never to use LoRA."""
    pytest.importorskip("peft")
    stages = ["decode", "collate", "forward", "backward", "memory"]
    (est,) = findings_at(check_pipeline("peft_trainer_chat_fixed.py", stages=stages), "memory")
    ev = est.evidence
    assert ev["grads_bytes"] < ev["params_bytes"] / 10  # only the adapters train
    small = int(ev["params_bytes"] * 0.8)  # not even the weights fit
    (tight,) = findings_at(
        check_pipeline("peft_trainer_chat_fixed.py", stages=stages, options={"gpu_memory": small}), "memory"
    )
    assert tight.code == "FTD802"
    assert "load_in_4bit=True" in tight.fix and "prepare_model_for_kbit_training" in tight.fix
    assert "LoRA with peft" not in tight.fix
