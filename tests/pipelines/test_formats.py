"""The report in CI formats (github, sarif, junit, html), the rule pages, and the output a person pipes or reads
at 80 columns."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from helpers import ROOT, pipeline_path, run_cli

from ftdoctor.core.rules import page_url

pytestmark = pytest.mark.slow

TITLES = {
    "FTD101": "The classifier has fewer outputs than the data has classes",
    "FTD201": "The trainer receives raw text, not token ids",
    "FTD301": "The collator cannot pad rows of different lengths",
    "FTD601": "compute_metrics passes logits where class ids are expected",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The course's broken MNLI script in a project directory: the paths in the reports are relative to it."""
    path = tmp_path_factory.mktemp("project")
    shutil.copy(pipeline_path("course_mnli_broken.py"), path / "broken.py")
    return path


def _unescape(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


@pytest.mark.subprocess
def test_github_format_is_one_workflow_command_per_finding(project):
    proc = run_cli("check", "broken.py", "--format", "github", cwd=project)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4
    source = (project / "broken.py").read_text().splitlines()
    for line in lines:
        m = re.fullmatch(r"::(error|warning|notice) ([^:]*)::(.*)", line)
        assert m, line
        props = dict(p.split("=", 1) for p in m.group(2).split(","))
        assert props["file"] == "broken.py" and props["line"].isdigit()
        code, title = _unescape(props["title"]).split(" ", 1)
        assert TITLES[code] == title and m.group(1) == "error"
        assert "(fix: " in m.group(3)
        assert source[int(props["line"]) - 1].strip()  # the line exists in the user's file
    assert any("line=31," in line and "FTD101" in line and "num_labels=3" in line for line in lines)


@pytest.mark.subprocess
def test_sarif_validates_against_the_schema_and_links_the_rules(project, tmp_path):
    import jsonschema

    page = tmp_path / "report.html"
    proc = run_cli("check", "broken.py", "--format", "sarif", "--html", str(page), cwd=project)
    assert proc.returncode == 1, proc.stderr
    log = json.loads(proc.stdout)
    schema = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(log)
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(TITLES)
    for r in rules:
        assert r["shortDescription"]["text"] == TITLES[r["id"]]
        assert r["fullDescription"]["text"] and r["help"]["text"] == r["fullDescription"]["text"]
        assert r.get("helpUri") == page_url(r["id"])
    results = run["results"]
    assert sorted(x["ruleId"] for x in results) == sorted(TITLES)
    for x in results:
        assert rules[x["ruleIndex"]]["id"] == x["ruleId"] and x["level"] == "error"
        loc = x["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"] == {"uri": "broken.py", "uriBaseId": "%SRCROOT%"}
        assert loc["region"]["startLine"] > 1
    assert run["invocations"][0]["executionSuccessful"] is True
    # --html writes rich's export of the same report next to any format
    html = page.read_text()
    for title in TITLES.values():
        assert title in html
    assert "first training sample" in html


@pytest.mark.subprocess
def test_junit_is_a_testsuite_with_a_testcase_per_stage(project):
    proc = run_cli("check", "broken.py", "--format", "junit", "--ignore", "FTD601", cwd=project)
    assert proc.returncode == 1, proc.stderr
    root = ET.fromstring(proc.stdout)
    assert root.tag == "testsuites"
    (suite,) = root.iter("testsuite")
    assert suite.get("name") == "broken.py"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == [
        "setup",
        "config",
        "decode",
        "collate",
        "forward",
        "backward",
        "metrics",
        "overfit",
        "memory",
    ]
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    skipped = {name for name, c in cases.items() if c.find("skipped") is not None}
    assert failed == {"config", "decode", "collate"}  # metrics failed only with FTD601, which is ignored
    assert "forward" in skipped and cases["forward"].find("skipped").get("message")
    failure = cases["config"].find("failure")
    assert failure.get("message").startswith("FTD101") and "fix: Pass `num_labels=3`" in failure.text
    assert int(suite.get("tests")) == len(cases) and int(suite.get("failures")) == len(failed)
    assert int(suite.get("skipped")) == len(skipped)
    assert "FTD601" in suite.find("system-out").text  # the suppressed finding is still named


@pytest.mark.subprocess
def test_harness_failures_still_print_the_chosen_format(tmp_path):
    proc = run_cli("check", "missing.py", "--json", cwd=tmp_path)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"].startswith("no such script")
    proc = run_cli("check", "missing.py", "--format", "github", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout.startswith("::error ") and "no such script" in proc.stdout
    proc = run_cli("check", "missing.py", "--format", "junit", cwd=tmp_path)
    assert proc.returncode == 2 and ET.fromstring(proc.stdout).find(".//error") is not None
    assert run_cli("check", "x.py", "--json", "--format", "sarif").returncode == 2


@pytest.mark.subprocess
def test_demo_at_80_columns_breaks_no_path_and_cuts_no_code(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    proc = run_cli("demo", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    real = os.path.realpath(pipeline_path("course_mnli_broken.py"))
    paths = re.findall(r"(\S+\.py)(?::\d+)?", out)
    assert paths
    for path in paths:  # every path shown is whole: the file itself, or its tail after "…/"
        assert os.path.realpath(path) == real or (path.startswith("…/") and real.endswith(path[1:])), path
    assert out.count("course_mnli") == len(paths)
    assert "from_pretrained(model_checkpoint)" in out  # the long line wrapped, not cropped
    assert "task: sequence-classification" in out


@pytest.mark.subprocess
def test_rules_lists_and_filters_with_pages():
    proc = run_cli("rules", "--stage", "decode", "--json")
    assert proc.returncode == 0, proc.stderr
    rules = json.loads(proc.stdout)
    assert rules and {r["stage"] for r in rules} == {"decode"}
    for r in rules:
        assert set(r) >= {"code", "name", "severity", "fix_safe", "added", "url"}
        assert r["url"] == page_url(r["code"])
        assert (ROOT / "docs" / "rules" / f"{r['code']}.md").is_file()  # the page its url names
    text = run_cli("rules", "--severity", "warning").stdout.splitlines()
    assert text[0].split() == ["code", "name", "stage", "severity", "fix", "added", "title"]
    assert all(line.split()[3] == "warning" for line in text[1:])
    page = run_cli("explain", "FTD101").stdout
    assert "## Added in\n\n0.1.0\n" in page and "## Fix safety\n\nUnsafe: " in page


@pytest.mark.subprocess
def test_rules_and_explain_import_nothing_heavy():
    code = (
        "import sys; from ftdoctor.entry.cli import main; main(['rules', '--json']); main(['explain', 'FTD101']); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("args", [["explain", "FTD101"], ["explain", "--all"], ["rules"], ["rules", "--json"]])
def test_output_into_a_closed_pipe_ends_quietly(args):
    proc = subprocess.Popen([sys.executable, "-m", "ftdoctor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written: every write gets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == "", err


@pytest.mark.subprocess
def test_explain_into_head_ends_quietly():
    cmd = f"{sys.executable} -m ftdoctor explain FTD101 | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("# FTD101") and proc.stderr == "", proc.stderr
