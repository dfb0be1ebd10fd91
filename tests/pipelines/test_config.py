"""[tool.ftdoctor] in pyproject.toml, the command line over it, and silencing findings (config, --ignore, inline)."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest
from helpers import pipeline_path, run_cli

from ftdoctor.entry.settings import KEYS

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def _project(tmp_path, table: str, *scripts: str):
    for name, fixture in (("broken.py", "course_mnli_broken.py"), ("fixed.py", "course_mnli_fixed.py")):
        if name in scripts:
            shutil.copy(pipeline_path(fixture), tmp_path / name)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'team'\n\n[tool.ftdoctor]\n" + textwrap.dedent(table))
    return tmp_path


def test_configured_scripts_are_checked_and_the_command_line_overrides_the_settings(tmp_path):
    project = _project(
        tmp_path,
        """
        scripts = ["broken.py", "fixed.py"]
        stages = ["config"]
        severity = {FTD101 = "warning"}
        offline = true
    """,
        "broken.py",
        "fixed.py",
    )
    sub = project / "notebooks"
    sub.mkdir()  # found from below, like ruff and pytest; the scripts are relative to the pyproject.toml
    proc = run_cli("check", "--format", "json", cwd=sub)
    assert proc.returncode == 0, proc.stderr
    broken, fixed = json.loads(proc.stdout)
    assert [s["stage"] for s in broken["stages"]] == ["setup", "config"]  # stages: only config (and setup)
    config = broken["stages"][1]
    (regraded,) = config["findings"]
    assert regraded["code"] == "FTD101" and regraded["severity"] == "warning"
    assert regraded["evidence"]["severity_from_rule"] == "error"
    assert config["status"] == "warn" and broken["ok"] is True and broken["summary"]["warn"] == 1
    assert fixed["ok"] is True

    # --stages replaces the configured stages; the exit code is the worst of the scripts (broken.py fails).
    proc = run_cli("check", "--json", "--stages", "decode", cwd=sub)
    assert proc.returncode == 1, proc.stderr
    broken, fixed = json.loads(proc.stdout)
    assert "decode" in [s["stage"] for s in broken["stages"]] and "config" not in [s["stage"] for s in broken["stages"]]
    assert broken["ok"] is False and fixed["ok"] is True


def test_unknown_key_exits_2_and_lists_the_valid_keys(tmp_path):
    _project(tmp_path, 'ignor = ["FTD209"]\n')
    proc = run_cli("check", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 2
    assert "ignor" in proc.stderr and "did you mean `ignore`" in proc.stderr
    for key in KEYS:
        assert key in proc.stderr
    assert json.loads(proc.stdout)["error"].startswith("unknown key")  # the chosen format still gets its document


def test_the_memory_stage_names_the_gpu_and_html_keeps_the_evidence(tmp_path):
    page = tmp_path / "report.html"
    proc = run_cli(
        "check",
        pipeline_path("course_mnli_fixed.py"),
        "--stages",
        "memory",
        "--gpu-memory",
        "A100-80GB",
        "--format",
        "json",
        "--html",
        str(page),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    memory = next(s for s in json.loads(proc.stdout)["stages"] if s["stage"] == "memory")
    assert "Fits on A100-80GB (80.0 GiB)" in memory["findings"][0]["detail"]
    html = page.read_text()
    # rich's export of the text report: the decoded sample and the batch table are in it
    assert "<html" in html and "first training sample" in html and "input_ids" in html and "dtype" in html


def test_inline_comment_silences_exactly_that_finding_on_that_line(tmp_path):
    shutil.copy(pipeline_path("course_mnli_broken.py"), tmp_path / "broken.py")
    lines = (tmp_path / "broken.py").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("trainer = Trainer("))
    lines[at] += "  # ftdoctor: ignore[FTD301]"  # FTD201 points at the same line and must stay
    (tmp_path / "broken.py").write_text("\n".join(lines) + "\n")
    proc = run_cli("check", "broken.py", "--json", "--stages", "collate", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # FTD201 still fails the run
    rep = json.loads(proc.stdout)
    (silenced,) = rep["suppressed"]
    assert silenced["code"] == "FTD301" and silenced["reason"] == "inline comment"
    assert silenced["location"] == f"broken.py:{at + 1}" and silenced["stage"] == "collate"
    stages = {s["stage"]: s for s in rep["stages"]}
    assert [f["code"] for f in stages["decode"]["findings"]] == ["FTD201"]
    assert stages["decode"]["findings"][0]["location"] == f"broken.py:{at + 1}"
    assert stages["collate"]["findings"] == [] and stages["collate"]["status"] == "pass"
    assert rep["summary"]["fail"] == 1


# -- the policy on a report, without running anything ----------------------------------------------------------


def test_pytest_plugin_reads_the_table_and_its_options_override_it(pytester):
    shutil.copy(pipeline_path("course_mnli_broken.py"), pytester.path / "broken.py")
    (pytester.path / "pyproject.toml").write_text(
        '[tool.ftdoctor]\nscripts = ["broken.py"]\nstages = ["config"]\nignore = ["FTD101"]\n'
    )
    result = pytester.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1)  # one item (the configured stage), passing: its only finding is ignored
    result.stdout.fnmatch_lines(["PASSED broken.py::config*"])
    result = pytester.runpytest_subprocess(
        "--ftdoctor", "-p", "no:cacheprovider", "--ftdoctor-stages", "decode", "-o", "ftdoctor_ignore=FTD201"
    )
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider", "--ftdoctor-stages", "decode")
    result.assert_outcomes(failed=1)
    (pytester.path / "pyproject.toml").write_text('[tool.ftdoctor]\nscript = ["broken.py"]\n')
    result = pytester.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "did you mean `scripts`" in result.stderr.str()
