"""The walk leaves the user's objects exactly as the script left them and writes nothing."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import pytest
from helpers import pipeline_path

pytestmark = pytest.mark.slow


def _digest_state(model, optimizer=None) -> str:
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    if optimizer is not None:
        for state in optimizer.state.values():
            for v in state.values():
                if torch.is_tensor(v):
                    h.update(v.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        h.update(repr([{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]).encode())
    return h.hexdigest()


def _rng_digest() -> str:
    import torch

    h = hashlib.sha256()
    h.update(repr(random.getstate()).encode())
    h.update(repr(np.random.get_state()[1].tolist()).encode())
    h.update(torch.get_rng_state().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture
def captured(tmp_path, monkeypatch):
    from ftdoctor.capture import capture_script

    monkeypatch.chdir(tmp_path)
    cap = capture_script(pipeline_path("course_mnli_fixed.py"))
    assert cap.outcome == "training", cap.output
    return cap


def test_walk_restores_weights_optimizer_and_rng(captured, tmp_path):
    import torch

    import ftdoctor

    trainer = captured.trainer
    # A user optimizer that already took a step, so it has state worth protecting.
    opt = torch.optim.AdamW(trainer.model.parameters(), lr=1e-3)
    trainer.model.train()
    batch = trainer.data_collator(
        [trainer.train_dataset.remove_columns(["premise", "hypothesis", "idx"])[i] for i in range(4)]
    )
    device = next(trainer.model.parameters()).device  # the Trainer put it on the GPU, if there is one
    trainer.model(**{k: v.to(device) for k, v in batch.items()}).loss.backward()
    opt.step()
    opt.zero_grad()
    trainer.optimizer = opt
    trainer.model.eval()
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(5)
    before = (_digest_state(trainer.model, opt), _rng_digest(), trainer.model.training)
    out_dir = trainer.args.output_dir
    listing = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else None

    report = ftdoctor.check(trainer)

    assert report.stage("overfit").status in ("pass", "warn")  # the training stages really ran
    assert report.stage("backward").status == "pass"
    assert (_digest_state(trainer.model, opt), _rng_digest(), trainer.model.training) == before
    assert trainer.optimizer is opt
    assert (sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else None) == listing


@pytest.mark.subprocess
def test_nothing_after_train_runs_and_output_dir_untouched(tmp_path, monkeypatch):
    from ftdoctor.process.parent import check_script

    script = tmp_path / "train.py"
    marker = tmp_path / "after_train.txt"
    src = open(pipeline_path("course_mnli_fixed.py")).read()
    src = src.replace('"distilbert-finetuned-mnli"', repr(str(tmp_path / "out")))
    src += f"\nopen({str(marker)!r}, 'w').write('trained')\n"
    script.write_text(src)
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path / "out")) if (tmp_path / "out").exists() else []
    result = check_script(
        str(script), stages=["config", "decode", "collate", "forward", "backward", "metrics", "overfit"]
    )
    assert result.report is not None and result.report.ok, str(result.report)
    assert not marker.exists(), "a line after trainer.train() ran"
    after = sorted(os.listdir(tmp_path / "out")) if (tmp_path / "out").exists() else []
    assert after == before


@pytest.mark.subprocess
def test_script_sees_its_argv_main_and_directory(tmp_path, monkeypatch):
    """The script runs as `python SCRIPT ARGS` would."""
    from ftdoctor.process.parent import check_script

    (tmp_path / "helper_mod.py").write_text("VALUE = 42\n")
    work = tmp_path / "cwd"
    work.mkdir()
    script = tmp_path / "train.py"
    script.write_text(
        "import os, sys, json\n"
        "import helper_mod\n"
        f"json.dump({{'argv': sys.argv, 'name': __name__, 'cwd': os.getcwd(), 'v': helper_mod.VALUE}}, "
        f"open({str(tmp_path / 'seen.json')!r}, 'w'))\n"
    )
    monkeypatch.chdir(work)
    result = check_script(str(script), ["--epochs", "3"])
    assert result.report is None and "without starting training" in result.message
    import json

    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {"argv": [str(script), "--epochs", "3"], "name": "__main__", "cwd": str(work), "v": 42}


def test_metrics_run_on_the_cpu_copy_even_when_the_trainer_targets_a_gpu(captured, monkeypatch):
    """On a GPU machine the Trainer moves eval inputs to args.device; the walk must keep them with its CPU copy."""
    import ftdoctor

    trainer = captured.trainer

    def to_gpu(self, inputs):
        raise AssertionError("inputs were moved to args.device")

    monkeypatch.setattr(type(trainer), "_prepare_inputs", to_gpu)
    model = trainer.model
    report = ftdoctor.check(trainer, stages=["decode", "collate", "forward", "metrics"])
    assert report.stage("metrics").status == "pass", str(report)
    assert report.stage("metrics").evidence["source"] == "eval batch"
    assert trainer.model is model and "_prepare_inputs" not in vars(trainer)
