"""The engine without a model: how stages skip, fail and carry on, and what a check may report.

Each test builds its own checks (plain functions) and walks a small dict of values; nothing here loads torch.
"""

from __future__ import annotations

import pytest

from ftdoctor.core.findings import finding
from ftdoctor.core.registry import Check, Provide, Skip
from ftdoctor.core.rules import RULES, rule
from ftdoctor.engine.walk import walk
from ftdoctor.output.terminal import render_text


@pytest.fixture
def rules():
    """Rules for the checks of one test, removed afterwards (the catalog must not see them)."""
    made = []

    def make(code, stage, severity="error"):
        made.append(code)
        return rule(code, code.lower(), stage, severity, f"title of {code}", "why")

    yield make
    for code in made:
        RULES.pop(code, None)


def _check(stage, func, provides=(), codes=(), order=[0]):  # noqa: B006 (a counter kept across calls)
    order[0] += 1
    return Check(f"test.{func.__name__}", stage, func, tuple(provides), tuple(codes), order[0])


def test_a_failed_provider_skips_its_dependents_and_independent_stages_still_run(rules):
    rules("TST101", "collate")
    rules("TST102", "metrics")

    def build_batch(rows):
        return Provide({"batch": None}, [finding("TST101", "cannot pad")], skip_reason="no batch: cannot pad")

    def forward(batch):
        raise AssertionError("must not run without a batch")

    def metric(rows):
        return finding("TST102", "metric broken")

    report = walk(
        {"rows": [1, 2]},
        stages=["collate", "forward", "metrics"],
        checks=[
            _check("collate", build_batch, provides=["batch"], codes=["TST101"]),
            _check("forward", forward),
            _check("metrics", metric, codes=["TST102"]),
        ],
    )
    assert [(s.stage, s.status) for s in report.stages] == [
        ("collate", "fail"),
        ("forward", "skip"),
        ("metrics", "fail"),
    ]
    assert "no batch: cannot pad" in report.stage("forward").reason
    assert not report.internal_errors and not report.ok


def test_skip_gives_its_reason_and_provide_passes_values_and_evidence():
    def reader(rows):
        return Provide({"count": len(rows)}, evidence={"rows_read": len(rows)})

    def judge(count):
        raise Skip(f"cannot judge {count} rows")

    report = walk(
        {"rows": [1, 2, 3]},
        stages=["decode", "collate"],
        checks=[_check("decode", reader, provides=["count"]), _check("collate", judge)],
    )
    assert report.stage("decode").status == "pass"
    assert report.stage("decode").evidence == {"rows_read": 3}
    assert report.stage("collate").status == "skip" and report.stage("collate").reason == "cannot judge 3 rows"


def test_a_crashing_check_is_an_internal_error_and_the_walk_goes_on(rules):
    rules("TST201", "backward")

    def crashes(rows):
        return rows["no such key"]

    def later(rows):
        return finding("TST201", "found after the crash")

    report = walk(
        {"rows": []},
        stages=["forward", "backward"],
        checks=[_check("forward", crashes), _check("backward", later, codes=["TST201"])],
    )
    assert len(report.internal_errors) == 1 and "test.crashes" in report.internal_errors[0]
    assert "TypeError" in report.internal_errors[0]
    assert report.stage("forward").status == "skip" and "ftdoctor bug" in report.stage("forward").reason
    assert [f.code for f in report.findings] == ["TST201"]
    text = render_text(report)  # the report still prints, with the internal error named as ftdoctor's
    assert "TST201" in text and "a bug in ftdoctor" in text


def test_a_check_may_only_report_the_codes_it_declares(rules, monkeypatch):
    from ftdoctor.engine.walk import STRICT_ENV, UndeclaredFinding

    monkeypatch.delenv(STRICT_ENV, raising=False)  # as in a user's run
    rules("TST301", "config")
    rules("TST302", "config")

    def sneaky(rows):
        return [finding("TST301", "declared"), finding("TST302", "not declared")]

    report = walk({"rows": []}, stages=["config"], checks=[_check("config", sneaky, codes=["TST301"])])
    # A user's run keeps the report whole and names the broken contract as ftdoctor's ...
    assert any("TST302" in e and "does not declare" in e for e in report.internal_errors)
    assert [f.code for f in report.findings] == ["TST301", "TST302"]
    # ... while ftdoctor's own tests (FTDOCTOR_STRICT_CONTRACTS=1) stop at it.
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(UndeclaredFinding, match="TST302"):
        walk({"rows": []}, stages=["config"], checks=[_check("config", sneaky, codes=["TST301"])])


def test_severity_is_fixed_by_the_rule(rules, monkeypatch):
    from dataclasses import replace

    from ftdoctor.engine.walk import STRICT_ENV

    monkeypatch.delenv(STRICT_ENV, raising=False)  # as in a user's run
    rules("TST401", "config", severity="warning")

    def louder(rows):
        return replace(finding("TST401", "made louder"), severity="error")

    report = walk({"rows": []}, stages=["config"], checks=[_check("config", louder, codes=["TST401"])])
    assert any("its rule says warning" in e for e in report.internal_errors)
    assert report.ok and [f.severity for f in report.findings] == ["warning"]


def test_finding_takes_severity_and_title_from_its_rule_only(rules):
    rules("TST501", "decode", severity="info")
    f = finding("TST501", "detail")
    assert (f.severity, f.title) == ("info", "title of TST501")
    with pytest.raises(TypeError):
        finding("TST501", "detail", severity="error")


def test_user_code_errors_become_a_finding_not_an_internal_error():
    from ftdoctor.core.registry import run_user

    def collator(rows):
        raise ValueError("bad row")

    def build(rows):
        return run_user("the data collator", collator, rows)

    report = walk({"rows": [1]}, stages=["collate"], checks=[_check("collate", build)])
    assert not report.internal_errors
    (f,) = report.findings
    assert f.code == "FTD900" and "ValueError: bad row" in f.detail


def test_every_builtin_check_declares_rules_that_exist():
    from ftdoctor.core.registry import all_checks, load_checks

    load_checks()
    for chk in all_checks():
        for code in chk.codes:
            assert code in RULES, (chk.name, code)
