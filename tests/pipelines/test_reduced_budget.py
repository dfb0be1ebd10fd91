"""The zoo at reduced size: every broken fixture is still found when the fast budget is forced to its smallest
batch (2 rows, rows cut to their last 32 tokens), as it is for a model too large for the machine.

The bug tables are those of the stage tests; only the budget differs. A detection that needs the user's full
batch or full rows would pass those tests and fail here. The walk runs as in ftdoctor's child process (the
model worked on in place, restored from its snapshot between uses), as the stage tests' in-process walks do not."""

from __future__ import annotations

import pytest
from helpers import findings_at
from test_contracts import CASES as CONTRACTS
from test_contracts import NEEDS
from test_data_stages import BROKEN as DATA_BUGS
from test_data_stages import DATA_STAGES
from test_model_stages import CASES as MODEL_BUGS

pytestmark = pytest.mark.slow

CASES = (
    [(name, list(DATA_STAGES), stage, code) for name, stage, code, _ in DATA_BUGS]
    + [(name, stages, stage, code) for name, stages, stage, code, _ in MODEL_BUGS]
    + [(name, NEEDS[stage], stage, code) for name, stage, code, _, _ in CONTRACTS]
)
try:  # the LLM bug classes, when trl and peft are installed
    import peft  # noqa: F401
    import trl  # noqa: F401
    from test_supervised import BROKEN as LLM_BUGS

    CASES += [(name, ["decode", "collate", "forward"], "collate", code) for name, code, _ in LLM_BUGS]
except ImportError:
    pass


def smallest_budget():
    from ftdoctor.engine.budget import MIN_TOKENS, Budget

    # The overfit stage without its time limit: what is tested here is the batch's size, not the machine's speed.
    return Budget(
        "fast",
        rows=2,
        max_tokens=MIN_TOKENS,
        overfit_seconds=None,
        notes=["forced by the test: 2 rows per batch", f"rows cut to their last {MIN_TOKENS} tokens"],
    )


@pytest.mark.parametrize("name,stages,stage,code", CASES, ids=[c[0].removesuffix(".py") for c in CASES])
def test_broken_fixture_found_at_reduced_size(check_pipeline, name, stages, stage, code):
    report = check_pipeline(name, stages=stages, options={"budget": smallest_budget(), "disposable": True})
    found = findings_at(report, stage, code)
    assert found, {s.stage: [(f.code, f.detail[:120]) for f in s.findings] or s.reason for s in report.stages}


def test_the_report_says_what_ran_at_reduced_size(check_pipeline):
    import json

    from ftdoctor.core.report import Report
    from ftdoctor.output.terminal import render_text

    report = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate"], options={"budget": smallest_budget()})
    doc = json.loads(report.to_json())
    assert doc["budget"]["mode"] == "fast" and doc["budget"]["rows"] == 2
    assert any("2 rows per batch" in note for note in doc["budget"]["reduced"])
    assert Report.from_dict(doc).budget == doc["budget"]  # the child's report keeps it
    assert "budget fast: forced by the test" in render_text(report)
    full = check_pipeline("course_mnli_fixed.py", stages=["decode"], options={"budget": "full"})
    assert full.budget["mode"] == "full" and not full.budget["reduced"]
    assert "budget" not in render_text(full).splitlines()[1]
