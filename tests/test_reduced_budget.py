"""The zoo at reduced size: every broken fixture is still found when the fast budget is forced to its smallest
batch (2 rows, rows cut to their last 32 tokens), as it is for a model too large for the machine.

The bug tables are those of the stage tests; only the budget differs. A detection that needs the user's full
batch or full rows would pass those tests and fail here. The walk runs as in ftdoctor's child process (the
model worked on in place, restored from its snapshot between uses), as the stage tests' in-process walks do not."""

from __future__ import annotations

import pytest

from conftest import findings_at
from test_contracts import CASES as CONTRACTS
from test_contracts import NEEDS
from test_data_stages import BROKEN as DATA_BUGS
from test_data_stages import DATA_STAGES
from test_model_stages import CASES as MODEL_BUGS

CASES = ([(name, list(DATA_STAGES), stage, code) for name, stage, code, _ in DATA_BUGS]
         + [(name, stages, stage, code) for name, stages, stage, code, _ in MODEL_BUGS]
         + [(name, NEEDS[stage], stage, code) for name, stage, code, _, _ in CONTRACTS])
try:  # the LLM bug classes, when trl and peft are installed
    import peft  # noqa: F401
    import trl  # noqa: F401
    from test_supervised import BROKEN as LLM_BUGS

    CASES += [(name, ["decode", "collate", "forward"], "collate", code) for name, code, _ in LLM_BUGS]
except ImportError:
    pass


def smallest_budget():
    from ftdoctor.engine.budget import Budget, MIN_TOKENS

    # The overfit stage without its time limit: what is tested here is the batch's size, not the machine's speed.
    return Budget("fast", rows=2, max_tokens=MIN_TOKENS, overfit_seconds=None,
                  notes=["forced by the test: 2 rows per batch", f"rows cut to their last {MIN_TOKENS} tokens"])


@pytest.mark.parametrize("name,stages,stage,code", CASES, ids=[c[0].removesuffix(".py") for c in CASES])
def test_broken_fixture_found_at_reduced_size(check_pipeline, name, stages, stage, code):
    report = check_pipeline(name, stages=stages, options={"budget": smallest_budget(), "disposable": True})
    found = findings_at(report, stage, code)
    assert found, {s.stage: [(f.code, f.detail[:120]) for f in s.findings] or s.reason for s in report.stages}


def test_the_report_says_what_ran_at_reduced_size(check_pipeline):
    import json

    from ftdoctor.core.report import Report
    from ftdoctor.output.terminal import render_text

    report = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate"],
                            options={"budget": smallest_budget()})
    doc = json.loads(report.to_json())
    assert doc["budget"]["mode"] == "fast" and doc["budget"]["rows"] == 2
    assert any("2 rows per batch" in note for note in doc["budget"]["reduced"])
    assert Report.from_dict(doc).budget == doc["budget"]  # the child's report keeps it
    assert "budget fast: forced by the test" in render_text(report)
    full = check_pipeline("course_mnli_fixed.py", stages=["decode"], options={"budget": "full"})
    assert full.budget["mode"] == "full" and not full.budget["reduced"]
    assert "budget" not in render_text(full).splitlines()[1]


def test_the_budget_names_each_reduction_once():
    """A model large for this machine cuts the rows and their length; the report says so once per reduction, with
    the reason, and says nothing for a small model on a batch it runs as configured."""
    import types

    import torch

    from ftdoctor.engine.budget import MAX_ROWS, MIN_TOKENS, decide

    large = torch.nn.Linear(20_000, 20_000, device="meta")  # 400M parameters, no memory
    budget = decide(large, types.SimpleNamespace(per_device_train_batch_size=32))
    assert budget.rows < MAX_ROWS and budget.max_tokens >= MIN_TOKENS
    assert budget.notes == [f"{budget.rows} of the configured 32 rows per batch (a 400M-parameter model)",
                            f"rows longer than {budget.max_tokens} tokens cut to their last {budget.max_tokens}"], \
        budget.notes
    small = decide(torch.nn.Linear(8, 8), types.SimpleNamespace(per_device_train_batch_size=32))
    assert small.notes == [f"{MAX_ROWS} of the configured 32 rows per batch"] and small.max_tokens is None
    assert decide(torch.nn.Linear(8, 8), types.SimpleNamespace(per_device_train_batch_size=4)).notes == []


def test_the_budget_is_the_same_under_any_load(monkeypatch):
    """Decided from the model's size and the kind of device, never from a measurement: a busy machine (here, a
    clock that says every matrix product takes a second) decides the same rows and tokens as an idle one."""
    import time
    import types

    import torch

    from ftdoctor.engine.budget import decide

    model = torch.nn.Linear(4_000, 4_000, device="meta")  # 16M parameters
    args = types.SimpleNamespace(per_device_train_batch_size=16)
    idle = decide(model, args)
    ticks = iter(range(10**6))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    busy = decide(model, args)
    assert (busy.rows, busy.max_tokens, busy.notes) == (idle.rows, idle.max_tokens, idle.notes)
    tiny = decide(torch.nn.Linear(300, 300), args)  # a 90k-parameter fixture model runs its 8 rows whole
    assert (tiny.rows, tiny.max_tokens) == (8, None)
