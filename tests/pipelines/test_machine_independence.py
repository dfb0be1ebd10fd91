"""Verdicts do not depend on the machine: a judgement that a time budget cuts short is undecided (FTD705, info),
never an error or a warning, and correct pipelines give the same findings on a busy machine as on an idle one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import findings_at

pytestmark = pytest.mark.slow

STAGES = ["setup", "config", "decode", "collate", "forward", "backward", "overfit"]
# Correct pipelines whose overfit stage trains for real (a loop; a LoRA adapter loaded for further training; a
# Trainer): the kinds that were told "cannot learn even one batch" when two other jobs shared the two cores.
CORRECT = ["torch_loop_fixed.py", "peft_resume_adapter_fixed.py", "mrpc_bert_fixed.py"]


# The default fast budget, time limit included (check_pipeline lifts the limit unless a test sets one).
TIMED = {"overfit_seconds": 30.0}


def _verdicts(report):
    return sorted((s.stage, f.code, f.severity) for s in report.stages for f in s.findings)


@pytest.mark.parametrize("name", CORRECT)
def test_a_slow_machine_gets_no_verdict_instead_of_a_wrong_one(check_pipeline, monkeypatch, name):
    """Every step of the overfit trials "takes" 4 s (the stage's clock is the boundary faked here): the 30 s run
    out after a few steps, as on a machine many times slower. The stage says so, and says nothing else."""
    import itertools

    import ftdoctor.checks.overfit as overfit

    ticks = itertools.count()
    monkeypatch.setattr(overfit, "clock", lambda: 4.0 * next(ticks))
    report = check_pipeline(name, stages=STAGES, options=TIMED)
    overfit_findings = findings_at(report, "overfit")
    assert all(f.severity == "info" for f in overfit_findings), _verdicts(report)
    assert not any(f.severity in ("error", "warning") for f in report.findings), _verdicts(report)


@pytest.mark.subprocess
def test_a_busy_machine_gives_the_same_findings_as_an_idle_one(check_pipeline):
    idle = {name: _verdicts(check_pipeline(name, stages=STAGES, options=TIMED)) for name in CORRECT}
    # Two processes that keep both cores busy for the whole second walk.
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        busy = {name: _verdicts(check_pipeline(name, stages=STAGES, options=TIMED)) for name in CORRECT}
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert busy == idle
    assert not any(sev == "error" for found in idle.values() for _, _, sev in found), idle


def test_a_diverging_trial_cut_short_is_no_verdict_either(check_pipeline, monkeypatch):
    """At a rate that makes the loss jump, a trial cut after a few steps looks diverged and no other rate got
    tried: that was reported as "cannot learn even one batch" (FTD701). Nothing is known: no verdict."""
    import itertools

    import ftdoctor.checks.overfit as overfit

    ticks = itertools.count()
    monkeypatch.setattr(overfit, "clock", lambda: 4.0 * next(ticks))
    report = check_pipeline("bert_mrpc_learning_rate_too_high.py", stages=STAGES, options=TIMED)
    codes = [f.code for f in findings_at(report, "overfit")]
    assert codes == ["FTD705"], _verdicts(report)
