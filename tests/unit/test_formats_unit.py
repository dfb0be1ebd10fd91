"""The CI formats' escaping, on hand-built values, and the README's quick start."""

from __future__ import annotations

from pathlib import Path

from helpers import ROOT


def test_github_escaping():
    from ftdoctor.output.github import workflow_command

    cmd = workflow_command("warning", "50% done\r\nnext: a, b", file="dir,x/a:b.py", line=3, title="T1: x, y")
    assert cmd == "::warning file=dir%2Cx/a%3Ab.py,line=3,title=T1%3A x%2C y::50%25 done%0D%0Anext: a, b"


def test_readme_quick_start_is_two_lines_and_says_the_demo_exits_1():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    demo, tests = block.strip().splitlines()
    assert "ftdoctor demo" in demo and "exits 1" in demo and "&&" in demo
    assert "pytest" in tests and "&&" in tests
    assert Path(ROOT / ".pre-commit-hooks.yaml").is_file()
