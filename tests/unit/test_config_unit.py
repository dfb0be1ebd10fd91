"""[tool.ftdoctor] read and validated, and the silencing policy applied to a report, without running anything
(the command line over the settings is in tests/pipelines/test_config.py)."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest
from helpers import pipeline_path

from ftdoctor.core.findings import Finding
from ftdoctor.core.report import Report, StageResult
from ftdoctor.core.rules import page_url
from ftdoctor.entry.settings import ConfigError, find_pyproject, load, parse_gpu_memory
from ftdoctor.output.suppression import Policy, apply_policy


def _project(tmp_path, table: str, *scripts: str):
    for name, fixture in (("broken.py", "course_mnli_broken.py"), ("fixed.py", "course_mnli_fixed.py")):
        if name in scripts:
            shutil.copy(pipeline_path(fixture), tmp_path / name)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'team'\n\n[tool.ftdoctor]\n" + textwrap.dedent(table))
    return tmp_path


def test_settings_are_validated_where_they_are_read(tmp_path):
    _project(
        tmp_path,
        """
        scripts = "train.py --epochs 1"
        ignore = "FTD209, FTD404"
        timeout = 30
        walk-timeout = 60
        budget = "fast"
        gpu-memory = "A100-80GB"
    """,
    )
    s = load(str(tmp_path))
    assert s.scripts == [(str(tmp_path / "train.py"), ["--epochs", "1"])]
    assert s.ignore == ["FTD209", "FTD404"] and (s.timeout, s.walk_timeout, s.budget) == (30.0, 60.0, "fast")
    assert s.options() == {"gpu_memory": 80 * 2**30, "gpu_name": "A100-80GB", "budget": "fast"}
    for bad, message in (
        ('stages = ["decod"]', "unknown stage"),
        ('severity = {FTD209 = "fatal"}', "one of"),
        ('ignore = ["FTD999"]', "no finding FTD999"),
        ("offline = 1", "true or false"),
        ('budget = "huge"', "fast, full"),
        ("timeout = -1", "positive"),
        ('gpu-memory = "a toaster"', "known GPU"),
    ):
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
    from ftdoctor.entry.cli import _parse_size, build_parser
    from ftdoctor.runtime import devices as gpu

    assert parse_gpu_memory("24GiB") == (24 * 2**30, None)
    assert parse_gpu_memory("A100-80GB") == (80 * 2**30, "A100-80GB")
    assert _parse_size("A100-80GB") == 80 * 2**30
    args = build_parser().parse_args(["check", "train.py", "--gpu-memory", "A100-80GB"])
    assert args.gpu_memory == (80 * 2**30, "A100-80GB")
    device = gpu.plan_device(80 * 2**30, name="A100-80GB")
    assert device.name == "A100-80GB" and device.source == "--gpu-memory"


SOURCE = """\
import os
x = 1  # ftdoctor: ignore
y = 2  # ftdoctor: ignore[FTD209, FTD404]
z = "# ftdoctor: ignore"
call(
    a,
)  # ftdoctor: ignore[FTD101]
w = 3  # ftdoctor: ignored
"""


def _report(path, *findings):
    stage = StageResult(
        "decode",
        "fail",
        findings=[
            Finding(code, severity, code, "detail", "fix", f"{path}:{line}" if line else None)
            for code, severity, line in findings
        ],
    )
    return Report(script=str(path), stages=[stage, StageResult("forward", "skip", reason="no batch")])


def test_policy_sources_and_recomputed_status(tmp_path):
    src = tmp_path / "train.py"
    src.write_text(SOURCE)
    rep = _report(
        src,
        ("FTD201", "error", 2),
        ("FTD209", "warning", 3),
        ("FTD203", "error", 3),
        ("FTD205", "error", 4),
        ("FTD101", "error", 5),
        ("FTD206", "error", 8),
        ("FTD208", "warning", None),
        ("FTD210", "error", 1),
    )
    policy = Policy.from_lists(
        config_ignore=["FTD208", "FTD210"], command_line_ignore=["FTD210"], severity={"FTD206": "warning"}
    )
    apply_policy(rep, policy)
    reasons = {s.finding.code: s.reason for s in rep.suppressed}
    assert reasons == {
        "FTD201": "inline comment",
        "FTD209": "inline comment",
        "FTD101": "inline comment",
        "FTD208": "config",
        "FTD210": "command line",
    }
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
    assert rep.ok and rep.stages[0].status == "pass" and rep.summary() == {"pass": 1, "warn": 0, "fail": 0, "skip": 1}
