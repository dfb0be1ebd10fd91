"""Findings and the rule catalog they come from (one place per finding: code, title, why, examples)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STAGES = ("setup", "config", "decode", "collate", "forward", "backward", "metrics", "overfit", "memory", "distributed")
# The stages a plain run walks; `distributed` runs only when the script is launched on several ranks (--nproc).
DEFAULT_STAGES = STAGES[:-1]


def default_stages(nproc: int = 1) -> list[str]:
    """The stages a walk runs when none are asked for: the distributed stage too with more than one process."""
    return [*DEFAULT_STAGES, "distributed"] if nproc > 1 else list(DEFAULT_STAGES)
SEVERITIES = ("error", "warning", "info")
# What each stage builds on: asking for a stage runs these first (their findings are reported too).
DEPENDS = {"setup": (), "config": ("setup",), "decode": ("setup",), "collate": ("decode",), "forward": ("collate",),
           "backward": ("forward",), "metrics": ("collate", "forward"), "overfit": ("backward",),
           "memory": ("backward",), "distributed": ("setup",)}


def with_dependencies(stages) -> list[str]:
    """The stages asked for and every stage they need, in walk order."""
    wanted: set[str] = set()
    todo = list(stages)
    while todo:
        stage = todo.pop()
        if stage in wanted:
            continue
        wanted.add(stage)
        todo.extend(DEPENDS.get(stage, ()))
    return [s for s in STAGES if s in wanted]
VERSION_ADDED = "0.1.0"  # the version a rule appeared in, unless its registration says otherwise
# Rule pages are the README catalog's sections; codes starting with FTD are ftdoctor's own (a team's checks use
# their own prefix and have no page here).
DOCS_URL = "https://github.com/ftdoctor/ftdoctor/blob/main/README.md"


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
    def anchor(self) -> str:
        """The README heading's anchor (GitHub's slug of "FTD101 num-labels-mismatch")."""
        return f"{self.code.lower()}-{self.name}"

    @property
    def url(self) -> str | None:
        """The rule's stable page: its section of the README catalog."""
        return f"{DOCS_URL}#{self.anchor}" if self.code.startswith("FTD") else None


@dataclass
class Finding:
    """One problem found in a pipeline, with its cause and a concrete fix."""

    code: str
    severity: str
    title: str
    detail: str
    fix: str = ""
    location: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


RULES: dict[str, Rule] = {}


def rule_url(code: str) -> str | None:
    """The page of ``code``; the built-in catalog is loaded on first use (cheap: no torch)."""
    r = RULES.get(code)
    if r is None and code.startswith("FTD"):
        from .registry import load_checks

        load_checks()
        r = RULES.get(code)
    return r.url if r is not None else None


def rule(code: str, name: str, stage: str, severity: str, title: str, why: str, broken: str = "", fixed: str = "",
         *, added: str = VERSION_ADDED, fix_safe: bool = False) -> Rule:
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


def finding(code: str, detail: str, fix: str = "", *, location: str | None = None,
            evidence: dict[str, Any] | None = None) -> Finding:
    """A finding of rule ``code``: its severity and title come from the rule (a case that needs another severity
    is another rule)."""
    r = RULES[code]
    return Finding(code=code, severity=r.severity, title=r.title, detail=detail, fix=fix, location=location,
                   evidence=dict(evidence or {}))


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


# Rules of the harness itself; the stage rules live next to their checks in checks/<stage>.py.
rule("FTD900", "user-code-error", "setup", "error", "The pipeline's own code raised while ftdoctor ran it",
     """
     A collator, model forward, loss or metric function of the pipeline raised an exception that no check
     could trace to a known cause. The exception and the line are shown; the same error would stop training.
     """)
