"""The rule catalog: every finding's code, stage, severity, title, why it matters and a broken and fixed example,
fixed where the rule is declared."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ftdoctor.core.stages import STAGES

SEVERITIES = ("error", "warning", "info")


VERSION = "0.1.0"  # ftdoctor's version (ftdoctor.__version__)
VERSION_ADDED = "0.1.0"  # the version a rule appeared in, unless its registration says otherwise


DISTRIBUTION = "pytest-ftdoctor"
RULE_PAGES = "docs/rules"  # one page per rule, generated from this catalog (ftdoctor rules --write-pages)


@functools.lru_cache(maxsize=1)
def home_page() -> str | None:
    """The project's source home from the installed package's metadata (``[project.urls]``), or None while it
    names none: a link is only given where it leads somewhere."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        md = metadata(DISTRIBUTION)
    except (ImportError, PackageNotFoundError):
        return None
    urls = {}
    for entry in md.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip().rstrip("/")
    for label in ("source", "repository", "homepage"):
        if urls.get(label, "").startswith("https://"):
            return urls[label]
    return None


def page_url(code: str) -> str | None:
    """Where the page of rule ``code`` is published: ``docs/rules/CODE.md`` under the project's home; None for a
    team's own codes (they have no page here) and while the package names no home."""
    home = home_page()
    if home is None or not code.startswith("FTD"):
        return None
    return f"{home}/blob/main/{RULE_PAGES}/{code}.md"


@dataclass(frozen=True)
class Rule:
    """A documented finding: what ftdoctor detects, why it matters, a broken and a fixed example."""

    code: str
    name: str
    stage: str
    severity: str
    title: str
    why: str
    broken: str = ""
    fixed: str = ""
    added: str = VERSION_ADDED
    fix_safe: bool = False  # the fix can be applied as written, without a judgement call about the pipeline

    @property
    def url(self) -> str | None:
        """The rule's published page (``docs/rules/CODE.md``), or None where there is none."""
        return page_url(self.code)


RULES: dict[str, Rule] = {}


def rule_url(code: str) -> str | None:
    """The page of ``code`` (the catalog need not be loaded: the page is named by the code)."""
    return page_url(code)


def rule(
    code: str,
    name: str,
    stage: str,
    severity: str,
    title: str,
    why: str,
    broken: str = "",
    fixed: str = "",
    *,
    added: str = VERSION_ADDED,
    fix_safe: bool = False,
) -> Rule:
    """Register a rule in the catalog; codes are stable and unique, and code, stage and severity are fixed here."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} for rule {code}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r} for rule {code}")
    existing = RULES.get(code)
    new = Rule(code, name, stage, severity, title, _dedent(why), _dedent(broken), _dedent(fixed), added, fix_safe)
    if existing is not None and existing != new:
        raise ValueError(f"rule code {code} registered twice with different text")
    RULES[code] = new
    return new


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


# Rules of the harness itself; the stage rules live next to their checks in checks/<stage>.py.
rule(
    "FTD900",
    "user-code-error",
    "setup",
    "error",
    "The pipeline's own code raised while ftdoctor ran it",
    """
     A collator, model forward, loss or metric function of the pipeline raised an exception that no check
     could trace to a known cause. The exception and the line are shown; the same error would stop training.
     """,
)
