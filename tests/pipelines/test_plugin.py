"""pytest --ftdoctor on a temporary project: one item per stage, findings as failure text, user checks."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest
from helpers import pipeline_path

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

USER_CHECK = """
from ftdoctor import stage_check


@stage_check("decode", code="TEAM001", title="Training rows shorter than the team's minimum", severity="warning",
             fix="Filter short rows: dataset.filter(lambda e: len(e['input_ids']) >= 20)")
def rows_long_enough(train_features):
    short = [f for f in train_features if len(f["input_ids"]) < 20]
    if short:
        return f"{len(short)} of {len(train_features)} sampled rows have fewer than 20 tokens"
"""

USER_TEST = """
def test_batch_has_labels(ftdoctor_batch):
    assert "labels" in ftdoctor_batch

def test_pipeline_has_a_tokenizer(ftdoctor_pipeline):
    assert ftdoctor_pipeline.tokenizer is not None

def test_plain():
    assert True
"""


@pytest.fixture
def project(pytester):
    shutil.copy(pipeline_path("course_mnli_broken.py"), pytester.path / "broken.py")
    shutil.copy(pipeline_path("course_mnli_fixed.py"), pytester.path / "fixed.py")
    pytester.makeini("[pytest]\nftdoctor_scripts =\n    broken.py\n    fixed.py\n")
    (pytester.path / "ftdoctor_checks").mkdir()
    (pytester.path / "ftdoctor_checks" / "team.py").write_text(USER_CHECK)
    pytester.makepyfile(test_team=USER_TEST)
    return pytester


def test_stage_items_fail_with_the_fix_and_correct_pipeline_passes(project):
    xml = project.path / "junit.xml"
    result = project.runpytest_subprocess("--ftdoctor", "-rA", "-p", "no:cacheprovider", f"--junitxml={xml}")
    outcomes = result.parseoutcomes()
    out = result.stdout.str()
    # broken.py: config, decode, collate and metrics fail; the rest of its model stages skip.
    for stage in ("config", "decode", "collate", "metrics"):
        result.stdout.fnmatch_lines([f"FAILED broken.py::{stage}*"])
    assert "num_labels=3" in out and "DataCollatorWithPadding" in out and "argmax" in out
    assert "Traceback" not in out and "ftdoctor/engine/walk.py" not in out
    assert "broken.py:" in out  # the user's line is shown
    # fixed.py passes every stage; its warnings (if any) land in the warnings summary, not as failures.
    assert "FAILED fixed.py" not in out
    assert outcomes["failed"] == 4
    tree = ET.parse(xml)
    cases = [c for c in tree.iter("testcase") if c.get("classname", "").startswith(("broken", "fixed"))]
    assert len(cases) == 18  # 9 stages x 2 scripts
    # the team's own check runs and its finding shows in pytest's output
    assert "TEAM001" in out
    # team tests with the fixtures run once per script (broken.py has no batch to give them)
    result.stdout.fnmatch_lines(
        ["PASSED test_team.py::test_batch_has_labels[[]fixed.py[]]", "SKIPPED *test_team.py*the walk has no `batch`*"]
    )
    result.stdout.fnmatch_lines(["SKIPPED [[]*[]] broken.py:*no batch*"])


def test_k_selects_stages_and_x_stops(project):
    result = project.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider", "-k", "config and broken", "-q")
    result.assert_outcomes(failed=1, deselected=result.parseoutcomes()["deselected"])
    result = project.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider", "-x", "-q")
    assert result.parseoutcomes()["failed"] == 1


def test_without_the_option_nothing_extra_is_collected(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    # the fixture-based tests skip (they need --ftdoctor), the plain test passes, no stage item exists
    result.assert_outcomes(passed=1, skipped=2)
    assert "broken.py::" not in result.stdout.str()


def test_user_check_appears_in_cli_json(project):
    from helpers import run_cli

    proc = run_cli("check", "broken.py", "--json", "--stages", "decode", cwd=project.path)
    rep = json.loads(proc.stdout)
    codes = [f["code"] for s in rep["stages"] for f in s["findings"]]
    assert "TEAM001" in codes and "FTD201" in codes
