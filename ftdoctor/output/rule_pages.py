"""The findings catalog, rendered from the rules registered next to each check (one source of text)."""

from __future__ import annotations

from typing import Any

from ftdoctor.core.rules import RULES, Rule
from ftdoctor.core.stages import STAGES


def rules(stage: str | None = None, severity: str | None = None) -> list[Rule]:
    """Every rule in catalog order (stage, then code), optionally only one stage's or one severity's."""
    from ftdoctor.core.registry import load_checks

    load_checks()
    out = sorted(RULES.values(), key=lambda r: (STAGES.index(r.stage) if r.stage in STAGES else 99, r.code))
    return [r for r in out if (stage is None or r.stage == stage) and (severity is None or r.severity == severity)]


def find_rule(code_or_name: str) -> Rule | None:
    key = code_or_name.strip()
    for r in rules():
        if key.upper() == r.code or key.lower() == r.name:
            return r
    return None


def fix_label(r: Rule) -> str:
    """Like ruff's fix applicability: a safe fix can be applied as written; an unsafe one needs a look first."""
    return "safe" if r.fix_safe else "unsafe"


def rule_dict(r: Rule) -> dict[str, Any]:
    """A rule as data (`ftdoctor rules --json`, the SARIF rule list)."""
    return {"code": r.code, "name": r.name, "stage": r.stage, "severity": r.severity, "title": r.title,
            "fix_safe": r.fix_safe, "added": r.added, "url": r.url, "why": r.why, "broken": r.broken,
            "fixed": r.fixed}


def rule_page(r: Rule) -> str:
    out = [f"{r.code} {r.name}  ({r.stage} stage, {r.severity})", "", r.title, "",
           f"Added in {r.added}. Fix: {fix_label(r)}" + ("" if r.fix_safe else " (review it before applying)") + "."]
    if r.url:
        out.append(r.url)
    out += ["", "Why it matters", "  " + r.why.replace("\n", "\n  ")]
    if r.broken:
        out += ["", "Broken", _indent(r.broken)]
    if r.fixed:
        out += ["", "Fixed", _indent(r.fixed)]
    return "\n".join(out)


def rules_table(selected: list[Rule]) -> str:
    """`ftdoctor rules`: one line per rule."""
    n = max([len("name"), *(len(r.name) for r in selected)]) + 2
    s = max([len("stage"), *(len(r.stage) for r in selected)]) + 2
    head = f"{'code':<8}{'name':<{n}}{'stage':<{s}}{'severity':<9}{'fix':<7}{'added':<7}title"
    lines = [head]
    for r in selected:
        lines.append(f"{r.code:<8}{r.name:<{n}}{r.stage:<{s}}{r.severity:<9}{fix_label(r):<7}{r.added:<7}{r.title}")
    return "\n".join(lines)


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def markdown_catalog() -> str:
    lines = ["| code | name | stage | severity | fix | added | what it detects |",
             "|---|---|---|---|---|---|---|"]
    for r in rules():
        lines.append(f"| [{r.code}](#{r.anchor}) | `{r.name}` | {r.stage} | {r.severity} | {fix_label(r)} | {r.added} "
                     f"| {r.title} |")
    for r in rules():
        lines += ["", f"### {r.code} {r.name}", "",
                  f"*{r.stage} stage, {r.severity}; fix {fix_label(r)}; added in {r.added}.* {r.title}.", "",
                  " ".join(r.why.split())]
        if r.broken:
            lines += ["", "Broken:", "", "```python", r.broken, "```"]
        if r.fixed:
            lines += ["", "Fixed:", "", "```python", r.fixed, "```"]
    return "\n".join(lines)


def update_readme(path: str) -> None:
    """Rewrite the catalog between the README's markers: `python -m ftdoctor.output.rule_pages README.md`."""
    import re

    text = open(path, encoding="utf-8").read()
    block = "<!-- catalog:start -->\n" + markdown_catalog() + "\n<!-- catalog:end -->"
    text = re.sub(r"<!-- catalog:start -->.*<!-- catalog:end -->", lambda m: block, text, flags=re.S)
    open(path, "w", encoding="utf-8").write(text)


if __name__ == "__main__":
    import sys

    update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
