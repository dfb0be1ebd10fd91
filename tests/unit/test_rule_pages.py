"""The rule pages in docs/rules: generated from the rules, current, the same page `ftdoctor explain` prints, and the
page every finding's url, SARIF helpUri and `ftdoctor rules --json` point at (when the package names a home)."""

from __future__ import annotations

import email.message
import importlib.metadata
import json
import re

import pytest
from helpers import ROOT

from ftdoctor.core import rules as rules_mod
from ftdoctor.core.findings import Finding, finding
from ftdoctor.core.report import Report, StageResult
from ftdoctor.core.rules import Rule
from ftdoctor.entry.cli import main
from ftdoctor.output import document, sarif
from ftdoctor.output.rule_pages import paged_rules, rule_page, rules, write_pages

DOCS = ROOT / "docs" / "rules"
SECTIONS = ["## What it finds", "## Why it matters", "## Example", "## Fix safety", "## Added in"]


def test_docs_rules_are_the_generated_pages(tmp_path):
    write_pages(tmp_path)
    fresh = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in DOCS.iterdir())
    hint = "docs/rules is stale: run `ftdoctor rules --write-pages docs/rules`"
    gone, missing = sorted(set(committed) - set(fresh)), sorted(set(fresh) - set(committed))
    assert not gone and not missing, f"{hint} (pages of rules that no longer exist: {gone}; missing: {missing})"
    for name in fresh:
        assert (DOCS / name).read_bytes() == (tmp_path / name).read_bytes(), f"{hint} ({name} differs)"
    assert len(fresh) == len(paged_rules()) + 1  # a page per rule, and the index


def test_the_index_links_every_page_once():
    index = (DOCS / "README.md").read_text()
    linked = re.findall(r"^\| \[(FTD\d+)\]\((FTD\d+)\.md\) \|", index, flags=re.M)
    assert [a for a, _ in linked] == [b for _, b in linked] == [r.code for r in paged_rules()]


def test_write_pages_removes_pages_of_gone_rules_and_nothing_else(tmp_path):
    (tmp_path / "FTD999.md").write_text("# FTD999 a rule that was removed\n")
    (tmp_path / "notes.txt").write_text("not a page\n")
    written, removed = write_pages(tmp_path)
    assert removed == ["FTD999.md"] and not (tmp_path / "FTD999.md").exists()
    assert (tmp_path / "notes.txt").read_text() == "not a page\n"
    assert len(written) == len(paged_rules()) + 1
    (tmp_path / "FTD101.md").write_text("edited by hand\n")
    assert write_pages(tmp_path) == (["FTD101.md"], [])  # only what changed is written again
    assert write_pages(tmp_path) == ([], [])


def _headings(page: str) -> list[str]:
    outside = re.sub(r"^```.*?^```$", "", page, flags=re.M | re.S)  # an example may hold "## " lines
    return re.findall(r"^#+ .*$", outside, flags=re.M)


def test_every_page_has_the_same_sections_in_order():
    for r in paged_rules():
        page = rule_page(r)
        assert _headings(page) == [f"# {r.code} {r.name}", *SECTIONS], r.code
        assert f"Stage: {r.stage}. Severity: {r.severity}." in page
        assert page.endswith(f"## Added in\n\n{r.added}\n")


def test_a_rule_without_examples_says_so_plainly():
    bare = Rule("FTD998", "bare-rule", "forward", "warning", "A rule without examples", "Why.")
    page = rule_page(bare)
    assert _headings(page) == ["# FTD998 bare-rule", *SECTIONS]
    assert "## Example\n\nNone: this rule has no broken and fixed example.\n" in page
    half = rule_page(Rule("FTD997", "half-rule", "forward", "error", "Broken only", "Why.", broken="x = 1"))
    assert "Broken:\n\n```python\nx = 1\n```" in half and "This rule has no fixed example." in half
    safe = rule_page(Rule("FTD996", "safe-rule", "config", "info", "Safe", "Why.", fixed="y = 2", fix_safe=True))
    assert "## Fix safety\n\nSafe: the fix can be applied as written.\n" in safe


@pytest.mark.parametrize("key", ["FTD101", "num-labels-mismatch", "ftd101"])
def test_explain_prints_the_committed_page(key, capsys):
    assert main(["explain", key]) == 0
    assert capsys.readouterr().out == (DOCS / "FTD101.md").read_text()


def _metadata(*urls: str) -> email.message.Message:
    md = email.message.Message()
    md["Name"] = rules_mod.DISTRIBUTION
    for url in urls:
        md["Project-URL"] = url
    return md


@pytest.fixture
def project_urls(monkeypatch):
    """Make the installed package's metadata name the given [project.urls]; home_page is cached, so cleared."""

    def set_urls(*urls: str) -> None:
        monkeypatch.setattr(importlib.metadata, "metadata", lambda name: _metadata(*urls))
        rules_mod.home_page.cache_clear()

    yield set_urls
    rules_mod.home_page.cache_clear()  # the real metadata again for the tests after this one


@pytest.mark.parametrize(
    "urls, home",
    [
        ((), None),  # pyproject names no home today: no link that leads nowhere
        (("Documentation, https://example.org/docs", "Homepage, http://example.org/home"), None),  # https home only
        (
            ("Homepage, https://example.org/home", "Source, https://example.org/ftdoctor/"),
            "https://example.org/ftdoctor",
        ),
    ],
)
def test_finding_urls_point_at_the_rule_page_only_when_there_is_a_home(project_urls, urls, home, capsys):
    project_urls(*urls)
    rules()  # the built-in rules registered (FTD101's severity and title)
    page = None if home is None else f"{home}/blob/main/docs/rules/FTD101.md"
    assert page is None or (ROOT / page.split("/blob/main/", 1)[1]).is_file()
    team = Finding("TEAM001", "warning", "Our own rule", "detail")  # a team's code has no page here
    report = Report("train.py", stages=[StageResult("config", "fail", findings=[finding("FTD101", "d", "f"), team])])
    outcome = document.Outcome("train.py", report, None, 1)

    found = json.loads(document.to_json([outcome]))["stages"][0]["findings"]
    assert [f["url"] for f in found] == [page, None]

    driver = json.loads(sarif.to_sarif([outcome]))["runs"][0]["tool"]["driver"]
    by_id = {r["id"]: r for r in driver["rules"]}
    assert by_id["FTD101"].get("helpUri") == page and "helpUri" not in by_id["TEAM001"]
    assert driver.get("informationUri") == home

    assert main(["rules", "--json", "--stage", "config"]) == 0
    listed = {r["code"]: r["url"] for r in json.loads(capsys.readouterr().out)}
    assert listed["FTD101"] == page
    assert all(
        url == (None if home is None else f"{home}/blob/main/docs/rules/{code}.md") for code, url in listed.items()
    )
