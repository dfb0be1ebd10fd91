"""The command's generated text that needs no process: the README catalog."""

from __future__ import annotations

from helpers import ROOT


def test_readme_catalog_is_generated_from_the_rules():
    from ftdoctor.output.rule_pages import markdown_catalog

    readme = (ROOT / "README.md").read_text()
    assert markdown_catalog() in readme, "README catalog is stale: regenerate with `ftdoctor explain --markdown`"
