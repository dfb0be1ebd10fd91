"""The task-contract rules are in the catalog with their stage and a broken and a fixed example."""

from __future__ import annotations


def test_new_rules_are_in_the_catalog():
    from ftdoctor.output.rule_pages import rules

    codes = {r.code: r for r in rules()}
    for code, stage in (
        ("FTD221", "decode"),
        ("FTD222", "decode"),
        ("FTD223", "decode"),
        ("FTD224", "decode"),
        ("FTD225", "decode"),
        ("FTD321", "collate"),
        ("FTD322", "collate"),
        ("FTD323", "collate"),
        ("FTD421", "forward"),
        ("FTD621", "metrics"),
        ("FTD622", "metrics"),
    ):
        assert codes[code].stage == stage and codes[code].broken and codes[code].fixed
