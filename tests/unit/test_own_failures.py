"""ftdoctor's failures stay ftdoctor's: a crashed check is named as ftdoctor's, its dependants skip with that
reason, the other stages' findings stand, the header never says OK, and the exit code follows the findings
(2 only when no stage could run at all)."""

from __future__ import annotations

import pytest

from ftdoctor.core.findings import finding
from ftdoctor.core.registry import Check, Provide
from ftdoctor.core.report import Report, StageResult
from ftdoctor.core.rules import RULES, rule
from ftdoctor.engine.walk import walk
from ftdoctor.entry.cli import exit_code
from ftdoctor.output.terminal import render_text


@pytest.fixture
def rules():
    made = []

    def make(code, stage, severity="error"):
        made.append(code)
        return rule(code, code.lower(), stage, severity, f"title of {code}", "why")

    yield make
    for code in made:
        RULES.pop(code, None)


def _check(stage, func, provides=(), codes=()):
    return Check(f"test.{func.__name__}", stage, func, tuple(provides), tuple(codes), 0)


def test_a_crashed_provider_skips_its_dependants_with_that_reason_and_other_findings_stand(rules):
    rules("TSTC01", "decode", "warning")

    def collate_batch(rows):
        raise KeyError("a bug of ftdoctor's")

    def forward(batch):
        raise AssertionError("must not run without a batch")

    def decoded(rows):
        return finding("TSTC01", "a warning found before the crash")

    report = walk(
        {"rows": [1]},
        stages=["decode", "collate", "forward"],
        checks=[
            _check("decode", decoded, codes=["TSTC01"]),
            _check("collate", collate_batch, provides=["batch"]),
            _check("forward", forward),
        ],
    )
    collate, forward_st = report.stage("collate"), report.stage("forward")
    assert collate.crashed == ["test.collate_batch"] and collate.status == "skip"
    assert forward_st.status == "skip" and "test.collate_batch crashed" in forward_st.reason
    assert [f.code for f in report.findings] == ["TSTC01"]
    assert report.ok and not report.complete and report.walked
    assert report.to_dict()["stages"][1]["crashed"] == ["test.collate_batch"]
    assert StageResult.from_dict(report.to_dict()["stages"][1]).crashed == ["test.collate_batch"]


def test_the_header_never_says_ok_when_a_check_crashed(rules):
    rules("TSTC02", "config", "info")

    def fine(rows):
        return finding("TSTC02", "all good")

    def crashes(rows):
        return 1 / 0

    clean = walk({"rows": []}, stages=["config"], checks=[_check("config", fine, codes=["TSTC02"])])
    assert " OK " in render_text(clean)
    report = walk(
        {"rows": []}, stages=["config"], checks=[_check("config", fine, codes=["TSTC02"]), _check("config", crashes)]
    )
    text = render_text(report)
    assert report.stage("config").status == "pass" and report.stage("config").crashed == ["test.crashes"]
    assert " OK " not in text and "INCOMPLETE" in text and "incomplete: the check test.crashes crashed" in text
    assert "ZeroDivisionError" in text  # the crash itself is shown, named as ftdoctor's


def test_exit_code_follows_the_findings_unless_no_stage_ran():
    def report(statuses, errors=(), findings=()):
        stages = [StageResult(f"s{i}", status) for i, status in enumerate(statuses)]
        stages[0].findings = list(findings)
        return Report("x.py", stages=stages, internal_errors=list(errors))

    err = finding("FTD900", "the pipeline's code raised")
    assert exit_code(report(["pass", "skip"])) == 0
    assert exit_code(report(["pass", "skip"], errors=["check x crashed"])) == 0
    assert exit_code(report(["fail", "skip"], errors=["check x crashed"], findings=[err])) == 1
    assert exit_code(report(["skip", "skip"], errors=["check x crashed"])) == 2
    assert exit_code(report(["skip", "skip"])) == 0


def test_a_check_that_returns_a_provide_with_an_undeclared_code_keeps_the_report(rules, monkeypatch):
    from ftdoctor.engine.walk import STRICT_ENV

    monkeypatch.delenv(STRICT_ENV, raising=False)  # as in a user's run
    rules("TSTC03", "metrics")
    rules("TSTC04", "metrics")

    def metric(rows):
        return Provide({}, [finding("TSTC04", "not declared by this check")])

    report = walk({"rows": []}, stages=["metrics"], checks=[_check("metrics", metric, codes=["TSTC03"])])
    assert [f.code for f in report.findings] == ["TSTC04"] and not report.ok
    assert exit_code(report) == 1
