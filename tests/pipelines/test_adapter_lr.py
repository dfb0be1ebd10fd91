"""Learning-rate verdicts for adapter (LoRA) runs: the overfit stage says "too high" or "too low" with a rate that
worked on the user's model, in TRL, plain-Trainer and loop styles; a LoRA run at a LoRA rate passes; and a stage
that runs out of time says it has no verdict instead of blaming the pipeline."""

from __future__ import annotations

import pytest
from helpers import findings_at, pipeline_path

pytestmark = pytest.mark.slow

pytest.importorskip("peft")
pytest.importorskip("trl")

STAGES = ["decode", "collate", "forward", "backward", "overfit"]


def _overfit_codes(report):
    return [f.code for f in report.stage("overfit").findings]


def test_lora_rate_too_high_in_trl(check_pipeline):
    report = check_pipeline("trl_sft_lora_lr_too_high.py", stages=STAGES)
    f = findings_at(report, "overfit", "FTD702")
    assert f, _overfit_codes(report)
    assert "learning_rate=" in f[0].fix and "1e-4" in f[0].fix  # a measured rate, and the adapters' usual range
    path, line = f[0].location.rsplit(":", 1)
    assert "SFTConfig(" in open(path, encoding="utf-8").read().splitlines()[int(line) - 1]  # where the rate is set


def test_lora_rate_too_low_in_a_loop(check_pipeline):
    report = check_pipeline("peft_loop_lr_too_low.py", stages=STAGES)
    f = findings_at(report, "overfit", "FTD703")
    assert f, _overfit_codes(report)
    assert "lr=" in f[0].fix


def test_lora_rate_too_high_in_a_plain_trainer(tmp_path, monkeypatch):
    from ftdoctor.process.parent import check_script

    source = open(pipeline_path("peft_trainer_chat_fixed.py"), encoding="utf-8").read()
    assert "learning_rate=1e-2," in source
    path = tmp_path / "lora_lr_too_high.py"
    path.write_text(source.replace("learning_rate=1e-2,", "learning_rate=1.0,"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    report = check_script(str(path), timeout=300, in_process=True, stages=STAGES).report
    assert findings_at(report, "overfit", "FTD702"), _overfit_codes(report)


@pytest.mark.parametrize("name", ["trl_sft_lora_fixed.py", "peft_trainer_chat_fixed.py", "peft_loop_fixed.py"])
def test_lora_at_a_lora_rate_passes(check_pipeline, name):
    report = check_pipeline(name, stages=STAGES)
    assert report.stage("overfit").status == "pass", _overfit_codes(report)


def test_out_of_time_is_no_verdict(check_pipeline):
    """A stage cut by its time before the sweep could try other rates reports no verdict (info), never FTD701."""
    from ftdoctor.engine.budget import Budget

    report = check_pipeline(
        "peft_loop_lr_too_low.py", stages=STAGES, options={"budget": Budget("fast", overfit_seconds=0.01)}
    )
    codes = _overfit_codes(report)
    assert "FTD701" not in codes and "FTD703" not in codes, codes
    f = findings_at(report, "overfit", "FTD705")
    assert f and "--budget full" in f[0].fix and f[0].severity == "info" and f[0].evidence["cut"]
