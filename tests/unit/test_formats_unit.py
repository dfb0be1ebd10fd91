"""The CI formats' escaping, on hand-built values."""

from __future__ import annotations


def test_github_escaping():
    from ftdoctor.output.github import workflow_command

    cmd = workflow_command("warning", "50% done\r\nnext: a, b", file="dir,x/a:b.py", line=3, title="T1: x, y")
    assert cmd == "::warning file=dir%2Cx/a%3Ab.py,line=3,title=T1%3A x%2C y::50%25 done%0D%0Anext: a, b"
