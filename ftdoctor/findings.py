"""Findings and the rule catalog they come from (one place per finding: code, title, why, examples)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STAGES = ("setup", "config", "decode", "collate", "forward", "backward", "metrics", "overfit", "memory")
SEVERITIES = ("error", "warning", "info")


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


RULES: dict[str, Rule] = {}


def rule(code: str, name: str, stage: str, severity: str, title: str, why: str, broken: str = "", fixed: str = "") -> Rule:
    """Register a rule in the catalog; codes are stable and unique."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} for rule {code}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r} for rule {code}")
    existing = RULES.get(code)
    new = Rule(code, name, stage, severity, title, _dedent(why), _dedent(broken), _dedent(fixed))
    if existing is not None and existing != new:
        raise ValueError(f"rule code {code} registered twice with different text")
    RULES[code] = new
    return new


def finding(code: str, detail: str, fix: str = "", *, severity: str | None = None, title: str | None = None,
            location: str | None = None, evidence: dict[str, Any] | None = None) -> Finding:
    """Build a finding from its rule, overriding the severity or title where the case needs it."""
    r = RULES[code]
    return Finding(code=code, severity=severity or r.severity, title=title or r.title, detail=detail, fix=fix,
                   location=location, evidence=dict(evidence or {}))


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


# Rules of the harness itself; the stage rules live next to their checks in checks/<stage>.py.
rule("FTD900", "user-code-error", "setup", "error", "The pipeline's own code raised while ftdoctor ran it",
     """
     A collator, model forward, loss or metric function of the pipeline raised an exception that no check
     could trace to a known cause. The exception and the line are shown; the same error would stop training.
     """)
