"""Live progress of a whole walk, through the child process of `ftdoctor check`."""

from __future__ import annotations

import pytest
from helpers import pipeline_path

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def test_the_overfit_stage_reports_its_trials_through_the_child_process(tmp_path, monkeypatch):
    from ftdoctor.process.parent import check_script

    monkeypatch.chdir(tmp_path)
    events = []
    result = check_script(
        pipeline_path("course_mnli_fixed.py"),
        timeout=300,
        stages=["decode", "collate", "forward", "backward", "overfit"],
        progress=lambda kind, value=None: events.append((kind, value)),
    )
    assert result.report is not None, result.message
    steps = [value for kind, value in events if kind == "step"]
    assert steps and all(v.startswith("overfit: trial 1 of up to 1 at lr=") for v in steps[:1]), events
