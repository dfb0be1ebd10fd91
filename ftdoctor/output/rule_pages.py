"""The rule pages, rendered from the rules registered next to each check (one source of text): `docs/rules/CODE.md`
and their index, `ftdoctor explain CODE` (the same page, offline) and `ftdoctor rules`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ftdoctor.core.rules import RULES, Rule
from ftdoctor.core.stages import STAGES

PAGE = re.compile(r"FTD\d+\.md")  # a generated page; anything else in the folder is left alone
INDEX = "README.md"


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
    return {
        "code": r.code,
        "name": r.name,
        "stage": r.stage,
        "severity": r.severity,
        "title": r.title,
        "fix_safe": r.fix_safe,
        "added": r.added,
        "url": r.url,
        "why": r.why,
        "broken": r.broken,
        "fixed": r.fixed,
    }


_SAFETY = {
    True: "Safe: the fix can be applied as written.",
    False: "Unsafe: the fix needs a look at the pipeline before it is applied.",
}


def rule_page(r: Rule) -> str:
    """The page of one rule, in Markdown: `docs/rules/CODE.md` and what `ftdoctor explain CODE` prints. Every page
    has the same sections, in the same order."""
    out = [
        f"# {r.code} {r.name}",
        "",
        f"Stage: {r.stage}. Severity: {r.severity}.",
        "",
        "## What it finds",
        "",
        r.title + ".",
        "",
        "## Why it matters",
        "",
        r.why,
        "",
        "## Example",
        "",
    ]
    if r.broken or r.fixed:
        for label, code in (("Broken", r.broken), ("Fixed", r.fixed)):
            out += (
                [f"{label}:", ""]
                + (["```python", code, "```"] if code else [f"This rule has no {label.lower()} example."])
                + [""]
            )
    else:
        out += ["None: this rule has no broken and fixed example.", ""]
    out += ["## Fix safety", "", _SAFETY[r.fix_safe], "", "## Added in", "", r.added]
    return "\n".join(out) + "\n"


def rules_table(selected: list[Rule]) -> str:
    """`ftdoctor rules`: one line per rule."""
    n = max([len("name"), *(len(r.name) for r in selected)]) + 2
    s = max([len("stage"), *(len(r.stage) for r in selected)]) + 2
    head = f"{'code':<8}{'name':<{n}}{'stage':<{s}}{'severity':<9}{'fix':<7}{'added':<7}title"
    lines = [head]
    for r in selected:
        lines.append(f"{r.code:<8}{r.name:<{n}}{r.stage:<{s}}{r.severity:<9}{fix_label(r):<7}{r.added:<7}{r.title}")
    return "\n".join(lines)


def paged_rules() -> list[Rule]:
    """The rules that have a page: ftdoctor's own (FTD codes); a plugin's or a team's codes have none here."""
    return [r for r in rules() if r.code.startswith("FTD")]


def index_page(selected: list[Rule]) -> str:
    """`docs/rules/README.md`: one row per rule, its code linked to its page."""
    out = [
        "# ftdoctor rules",
        "",
        "Every finding ftdoctor reports is one of these rules: a stable code, a name, and a page that says",
        "what it finds, why it matters, a broken and a fixed example where there is one, whether its fix is",
        "safe to apply as written, and the version that added it. `ftdoctor explain CODE` prints the same",
        "page offline; `ftdoctor rules` lists the rules (`--stage`, `--severity`, `--json`).",
        "",
        "These pages are generated from the rules declared next to each check (`rule(...)` in `checks/`):",
        "do not edit them by hand, run `ftdoctor rules --write-pages docs/rules` (a test fails when they are",
        "stale).",
        "",
        "| code | name | stage | severity | title |",
        "|---|---|---|---|---|",
    ]
    for r in selected:
        title = r.title.replace("|", "\\|")
        out.append(f"| [{r.code}]({r.code}.md) | `{r.name}` | {r.stage} | {r.severity} | {title} |")
    return "\n".join(out) + "\n"


def render_pages() -> dict[str, str]:
    """Every generated file of the rules folder, by file name: one page per rule and the index."""
    selected = paged_rules()
    pages = {f"{r.code}.md": rule_page(r) for r in selected}
    pages[INDEX] = index_page(selected)
    return dict(sorted(pages.items()))


def write_pages(folder: str | Path) -> tuple[list[str], list[str]]:
    """Write the rule pages and their index into ``folder`` and remove the pages of rules that no longer exist;
    return (written, removed) file names. Only files whose text changed are rewritten."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pages = render_pages()
    written, removed = [], []
    for name, text in pages.items():
        path = folder / name
        data = text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)  # bytes: the same file on every platform (no CRLF)
            written.append(name)
    for path in sorted(folder.iterdir()):
        if PAGE.fullmatch(path.name) and path.name not in pages:
            path.unlink()
            removed.append(path.name)
    return written, removed
