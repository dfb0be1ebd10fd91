"""[tool.ftdoctor] in pyproject.toml, the command line over it, and silencing findings (config, --ignore, inline)."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from conftest import pipeline_path, run_cli

from ftdoctor.entry.settings import KEYS, ConfigError, find_pyproject, load, parse_gpu_memory
from ftdoctor.core.rules import page_url
from ftdoctor.core.findings import Finding
from ftdoctor.output.suppression import Policy, apply_policy
from ftdoctor.core.report import Report, StageResult


def _project(tmp_path, table: str, *scripts: str):
    for name, fixture in (("broken.py", "course_mnli_broken.py"), ("fixed.py", "course_mnli_fixed.py")):
        if name in scripts:
            shutil.copy(pipeline_path(fixture), tmp_path / name)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'team'\n\n[tool.ftdoctor]\n" + textwrap.dedent(table))
    return tmp_path


def test_configured_scripts_are_checked_and_the_command_line_overrides_the_settings(tmp_path):
    project = _project(tmp_path, """
        scripts = ["broken.py", "fixed.py"]
        stages = ["config"]
        severity = {FTD101 = "warning"}
        offline = true
    """, "broken.py", "fixed.py")
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


def test_settings_are_validated_where_they_are_read(tmp_path):
    _project(tmp_path, """
        scripts = "train.py --epochs 1"
        ignore = "FTD209, FTD404"
        timeout = 30
        walk-timeout = 60
        budget = "fast"
        gpu-memory = "A100-80GB"
    """)
    s = load(str(tmp_path))
    assert s.scripts == [(str(tmp_path / "train.py"), ["--epochs", "1"])]
    assert s.ignore == ["FTD209", "FTD404"] and (s.timeout, s.walk_timeout, s.budget) == (30.0, 60.0, "fast")
    assert s.options() == {"gpu_memory": 80 * 2**30, "gpu_name": "A100-80GB", "budget": "fast"}
    for bad, message in (('stages = ["decod"]', "unknown stage"), ('severity = {FTD209 = "fatal"}', "one of"),
                         ('ignore = ["FTD999"]', "no finding FTD999"), ("offline = 1", "true or false"),
                         ('budget = "huge"', "fast, full"), ("timeout = -1", "positive"),
                         ('gpu-memory = "a toaster"', "known GPU")):
        (tmp_path / "pyproject.toml").write_text(f"[tool.ftdoctor]\n{bad}\n")
        with pytest.raises(ConfigError, match=message):
            load(str(tmp_path))


def test_the_closest_pyproject_with_the_table_wins(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.ftdoctor]\nignore = ['FTD209']\n")
    inner = tmp_path / "pkg"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")  # no table: not ftdoctor's
    assert find_pyproject(str(inner)) == str(tmp_path / "pyproject.toml")
    assert load(str(inner)).ignore == ["FTD209"]


def test_gpu_memory_keeps_the_gpu_name():
    from ftdoctor.runtime import devices as gpu
    from ftdoctor.entry.cli import _parse_size, build_parser

    assert parse_gpu_memory("24GiB") == (24 * 2**30, None)
    assert parse_gpu_memory("A100-80GB") == (80 * 2**30, "A100-80GB")
    assert _parse_size("A100-80GB") == 80 * 2**30
    args = build_parser().parse_args(["check", "train.py", "--gpu-memory", "A100-80GB"])
    assert args.gpu_memory == (80 * 2**30, "A100-80GB")
    device = gpu.plan_device(80 * 2**30, name="A100-80GB")
    assert device.name == "A100-80GB" and device.source == "--gpu-memory"


def test_the_memory_stage_names_the_gpu_and_html_keeps_the_evidence(tmp_path):
    page = tmp_path / "report.html"
    proc = run_cli("check", pipeline_path("course_mnli_fixed.py"), "--stages", "memory", "--gpu-memory",
                   "A100-80GB", "--format", "json", "--html", str(page), cwd=tmp_path)
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

SOURCE = '''\
import os
x = 1  # ftdoctor: ignore
y = 2  # ftdoctor: ignore[FTD209, FTD404]
z = "# ftdoctor: ignore"
call(
    a,
)  # ftdoctor: ignore[FTD101]
w = 3  # ftdoctor: ignored
'''


def _report(path, *findings):
    stage = StageResult("decode", "fail", findings=[Finding(code, severity, code, "detail", "fix",
                                                            f"{path}:{line}" if line else None)
                                                    for code, severity, line in findings])
    return Report(script=str(path), stages=[stage, StageResult("forward", "skip", reason="no batch")])


def test_policy_sources_and_recomputed_status(tmp_path):
    src = tmp_path / "train.py"
    src.write_text(SOURCE)
    rep = _report(src, ("FTD201", "error", 2), ("FTD209", "warning", 3), ("FTD203", "error", 3),
                  ("FTD205", "error", 4), ("FTD101", "error", 5), ("FTD206", "error", 8),
                  ("FTD208", "warning", None), ("FTD210", "error", 1))
    policy = Policy.from_lists(config_ignore=["FTD208", "FTD210"], command_line_ignore=["FTD210"],
                               severity={"FTD206": "warning"})
    apply_policy(rep, policy)
    reasons = {s.finding.code: s.reason for s in rep.suppressed}
    assert reasons == {"FTD201": "inline comment", "FTD209": "inline comment", "FTD101": "inline comment",
                       "FTD208": "config", "FTD210": "command line"}
    kept = {f.code: f for f in rep.stages[0].findings}
    # codes not listed on the line, a comment inside a string, and `ignored` silence nothing
    assert set(kept) == {"FTD203", "FTD205", "FTD206"}
    assert kept["FTD206"].severity == "warning" and kept["FTD206"].evidence["severity_from_rule"] == "error"
    assert rep.stages[0].status == "fail" and rep.stages[1].status == "skip"
    doc = json.loads(rep.to_json())
    assert {s["code"] for s in doc["suppressed"]} == set(reasons)
    assert all(s["stage"] == "decode" and s["url"] == page_url(s["code"]) for s in doc["suppressed"])

    rep = _report(src, ("FTD203", "error", 3))
    apply_policy(rep, Policy.from_lists(command_line_ignore=["FTD203"]))
    assert rep.ok and rep.stages[0].status == "pass" and rep.summary() == {"pass": 1, "warn": 0, "fail": 0,
                                                                           "skip": 1}


def test_pytest_plugin_reads_the_table_and_its_options_override_it(pytester):
    shutil.copy(pipeline_path("course_mnli_broken.py"), pytester.path / "broken.py")
    (pytester.path / "pyproject.toml").write_text('[tool.ftdoctor]\nscripts = ["broken.py"]\nstages = ["config"]\n'
                                                  'ignore = ["FTD101"]\n')
    result = pytester.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1)  # one item (the configured stage), passing: its only finding is ignored
    result.stdout.fnmatch_lines(["PASSED broken.py::config*"])
    result = pytester.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider", "--ftdoctor-stages", "decode",
                                           "-o", "ftdoctor_ignore=FTD201")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider", "--ftdoctor-stages", "decode")
    result.assert_outcomes(failed=1)
    (pytester.path / "pyproject.toml").write_text('[tool.ftdoctor]\nscript = ["broken.py"]\n')
    result = pytester.runpytest_subprocess("--ftdoctor", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "did you mean `scripts`" in result.stderr.str()
