"""`ftdoctor check --nproc 2`: the script runs on two ranks under torchrun (gloo, CPU, 127.0.0.1) and the
`distributed` stage compares them. Each broken two-rank pipeline is named at that stage with its fix; each
correct one is clean; a collective only one rank enters becomes a finding, and no process is left behind."""

from __future__ import annotations

import json
import os

import pytest
from helpers import findings_at, pipeline_path, run_cli

pytestmark = pytest.mark.slow

TIMEOUT = "8"  # seconds a collective may wait for the other rank in these tests


def _check(name, tmp_path):
    proc = run_cli(
        "check",
        pipeline_path(name),
        "--nproc",
        "2",
        "--collective-timeout",
        TIMEOUT,
        "--json",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert not report.get("internal_errors"), report.get("internal_errors")
    return proc, report


def _findings(report, stage=None):
    return [f for s in report["stages"] for f in s["findings"] if stage is None or s["stage"] == stage]


@pytest.mark.subprocess
@pytest.mark.parametrize("name", ["ddp_trainer_fixed.py", "ddp_loop_fixed.py", "ddp_accelerate_fixed.py"])
def test_correct_two_rank_pipeline_is_clean(tmp_path, name):
    proc, report = _check(name, tmp_path)
    loud = [(f["code"], f["detail"]) for f in _findings(report) if f["severity"] != "info"]
    assert proc.returncode == 0 and report["ok"] and not loud, loud
    dist = next(s for s in report["stages"] if s["stage"] == "distributed")
    assert dist["status"] == "pass"


# script, code, a token of the detail, a token of the fix
BUGS = [
    ("ddp_loop_no_sampler.py", "FTD950", "Ranks 0, 1", "DistributedSampler"),
    ("ddp_accelerate_sharded_twice.py", "FTD951", "2 ranks", "accelerator.prepare"),
    ("ddp_loop_not_wrapped.py", "FTD955", "ranks 0, 1", "DistributedDataParallel(model)"),
    ("ddp_trainer_unused_parameters.py", "FTD956", "rank 0", "ddp_find_unused_parameters=True"),
]


@pytest.mark.subprocess
@pytest.mark.parametrize("name,code,detail,fix", BUGS, ids=[b[0] for b in BUGS])
def test_broken_two_rank_pipeline_is_named_at_the_distributed_stage(tmp_path, name, code, detail, fix):
    _, report = _check(name, tmp_path)
    found = [f for f in _findings(report, "distributed") if f["code"] == code]
    assert found, [(f["code"], f["detail"]) for f in _findings(report)]
    assert detail in found[0]["detail"] and fix in found[0]["fix"], found[0]
    assert not report["ok"]


@pytest.mark.subprocess
def test_a_collective_on_one_rank_becomes_a_finding_and_leaves_no_process(tmp_path):
    _, report = _check("ddp_accelerate_barrier_on_main.py", tmp_path)
    (f,) = [f for f in _findings(report, "distributed") if f["code"] == "FTD958"]
    ranks = {r["rank"]: r for r in f["evidence"]["ranks"]}
    assert set(ranks) == {0, 1}
    assert ranks[0]["site"].endswith("ddp_accelerate_barrier_on_main.py:24")  # the wait_for_everyone() under the if
    assert "rank 0 waited at" in f["detail"] and "rank 1 waited at" in f["detail"]
    # the setup stage says where to look instead of repeating the gloo error
    assert [x["code"] for x in _findings(report, "setup")] == ["FTD012"]
    script = pipeline_path("ddp_accelerate_barrier_on_main.py")
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                # the script's own path only: other tests (xdist workers) run ftdoctor children at the same time
                if script.encode() in cmdline:
                    left.append(pid)
            except OSError:
                pass
    assert not left, left


def test_without_nproc_there_is_no_distributed_stage(check_pipeline):
    report = check_pipeline("ddp_trainer_fixed.py")
    assert "distributed" not in [s.stage for s in report.stages]


CALLBACK_SCRIPT = """
import os
from datasets import load_from_disk
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
from ftdoctor import FtDoctorCallback, PreflightError
from ftdoctor.fixtures import fixture_path

args = TrainingArguments("out", max_steps=3, per_device_train_batch_size=8, learning_rate=3e-3, report_to=[],
                         save_strategy="no", use_cpu=True, ddp_find_unused_parameters=False)
ckpt = fixture_path("models/bert-tiny")
tok = AutoTokenizer.from_pretrained(ckpt)
raw = load_from_disk(fixture_path("datasets/mrpc"))
with args.main_process_first():
    data = raw.map(lambda e: tok(e["sentence1"], e["sentence2"], truncation=True), batched=True,
                   remove_columns=["sentence1", "sentence2", "idx"])
model = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=2)
if os.environ.get("UNUSED"):
    import torch
    model.aux = torch.nn.Linear(32, 2)  # never used by the loss
trainer = Trainer(model, args, train_dataset=data["train"], data_collator=DataCollatorWithPadding(tok),
                  callbacks=[FtDoctorCallback(stages=["distributed"])])
try:
    trainer.train()
    print("TRAINED rank", os.environ["RANK"], flush=True)
except PreflightError as e:
    print("STOPPED rank", os.environ["RANK"], [f.code for f in e.report.findings], flush=True)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("unused", [False, True], ids=["correct", "unused-parameters"])
def test_callback_under_torchrun_checks_every_rank_and_stops_them_together(tmp_path, unused):
    import subprocess
    import sys

    from ftdoctor.core.env import free_port

    script = tmp_path / "train.py"
    script.write_text(CALLBACK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"UNUSED": "1"} if unused else {})}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(script),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    if unused:  # every rank stops before the first step, with rank 0's finding
        assert out.count("STOPPED rank") == 2 and "FTD956" in out and "TRAINED" not in out, out + proc.stderr[-2000:]
    else:
        assert out.count("TRAINED rank") == 2, out + proc.stderr[:6000]


def test_a_torchrun_script_without_torchrun_is_walked_as_one_rank(check_pipeline):
    """`python ddp_train.py` fails ("RANK expected, but not set"); ftdoctor walks it as torchrun's rank 0 of 1
    and says how to check several ranks, then leaves this process as it found it."""
    import os

    report = check_pipeline("ddp_loop_fixed.py")
    assert report.ok, [(s.stage, [f.code for f in s.findings]) for s in report.stages]
    (note,) = findings_at(report, "setup", "FTD016")
    assert note.severity == "info" and "--nproc 2" in note.fix
    assert report.stage("overfit").status == "pass"
    import torch.distributed as dist

    assert "RANK" not in os.environ and not dist.is_initialized()
