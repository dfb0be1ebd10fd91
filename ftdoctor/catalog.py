"""The findings catalog, rendered from the rules registered next to each check (one source of text)."""

from __future__ import annotations

from .findings import RULES, STAGES, Rule


def rules() -> list[Rule]:
    from .registry import load_checks

    load_checks()
    return sorted(RULES.values(), key=lambda r: (STAGES.index(r.stage) if r.stage in STAGES else 99, r.code))


def find_rule(code_or_name: str) -> Rule | None:
    key = code_or_name.strip()
    for r in rules():
        if key.upper() == r.code or key.lower() == r.name:
            return r
    return None


def rule_page(r: Rule) -> str:
    out = [f"{r.code} {r.name}  ({r.stage} stage, {r.severity})", "", r.title, "", "Why it matters", "  " + r.why.replace("\n", "\n  ")]
    if r.broken:
        out += ["", "Broken", _indent(r.broken)]
    if r.fixed:
        out += ["", "Fixed", _indent(r.fixed)]
    return "\n".join(out)


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def markdown_catalog() -> str:
    lines = ["| code | name | stage | severity | what it detects |", "|---|---|---|---|---|"]
    for r in rules():
        lines.append(f"| [{r.code}](#{r.code.lower()}-{r.name}) | `{r.name}` | {r.stage} | {r.severity} | {r.title} |")
    for r in rules():
        lines += ["", f"### {r.code} {r.name}", "", f"*{r.stage} stage, {r.severity}.* {r.title}.", "", " ".join(r.why.split())]
        if r.broken:
            lines += ["", "Broken:", "", "```python", r.broken, "```"]
        if r.fixed:
            lines += ["", "Fixed:", "", "```python", r.fixed, "```"]
    return "\n".join(lines)


def update_readme(path: str) -> None:
    """Rewrite the catalog between the README's markers: `python -m ftdoctor.catalog README.md`."""
    import re

    text = open(path, encoding="utf-8").read()
    block = "<!-- catalog:start -->\n" + markdown_catalog() + "\n<!-- catalog:end -->"
    text = re.sub(r"<!-- catalog:start -->.*<!-- catalog:end -->", lambda m: block, text, flags=re.S)
    open(path, "w", encoding="utf-8").write(text)


if __name__ == "__main__":
    import sys

    update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
