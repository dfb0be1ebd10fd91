"""`ftdoctor check --nproc 2`: the script runs on two ranks under torchrun (gloo, CPU, 127.0.0.1) and the
`distributed` stage compares them. Each broken two-rank pipeline is named at that stage with its fix; each
correct one is clean; a collective only one rank enters becomes a finding, and no process is left behind."""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import pipeline_path, run_cli

TIMEOUT = "8"  # seconds a collective may wait for the other rank in these tests


def _check(name, tmp_path):
    proc = run_cli("check", pipeline_path(name), "--nproc", "2", "--collective-timeout", TIMEOUT, "--json",
                   cwd=tmp_path, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert not report.get("internal_errors"), report.get("internal_errors")
    return proc, report


def _findings(report, stage=None):
    return [f for s in report["stages"] for f in s["findings"] if stage is None or s["stage"] == stage]


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


@pytest.mark.parametrize("name,code,detail,fix", BUGS, ids=[b[0] for b in BUGS])
def test_broken_two_rank_pipeline_is_named_at_the_distributed_stage(tmp_path, name, code, detail, fix):
    _, report = _check(name, tmp_path)
    found = [f for f in _findings(report, "distributed") if f["code"] == code]
    assert found, [(f["code"], f["detail"]) for f in _findings(report)]
    assert detail in found[0]["detail"] and fix in found[0]["fix"], found[0]
    assert not report["ok"]


def test_a_collective_on_one_rank_becomes_a_finding_and_leaves_no_process(tmp_path):
    start = time.monotonic()
    _, report = _check("ddp_accelerate_barrier_on_main.py", tmp_path)
    elapsed = time.monotonic() - start
    (f,) = [f for f in _findings(report, "distributed") if f["code"] == "FTD958"]
    ranks = {r["rank"]: r for r in f["evidence"]["ranks"]}
    assert set(ranks) == {0, 1}
    assert ranks[0]["site"].endswith("ddp_accelerate_barrier_on_main.py:24")  # the wait_for_everyone() under the if
    assert "rank 0 waited at" in f["detail"] and "rank 1 waited at" in f["detail"]
    # the setup stage says where to look instead of repeating the gloo error
    assert [x["code"] for x in _findings(report, "setup")] == ["FTD012"]
    assert elapsed < 120
    script = pipeline_path("ddp_accelerate_barrier_on_main.py")
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if script.encode() in fh.read() or b"ftdoctor.child" in fh.read():
                        left.append(pid)
            except OSError:
                pass
    assert not left, left


def test_without_nproc_there_is_no_distributed_stage(check_pipeline):
    report = check_pipeline("ddp_trainer_fixed.py")
    assert "distributed" not in [s.stage for s in report.stages]
