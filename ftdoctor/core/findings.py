"""Findings and the rule catalog they come from (one place per finding: code, title, why, examples)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ftdoctor.core.rules import RULES


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
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def finding(
    code: str, detail: str, fix: str = "", *, location: str | None = None, evidence: dict[str, Any] | None = None
) -> Finding:
    """A finding of rule ``code``: its severity and title come from the rule (a case that needs another severity
    is another rule)."""
    r = RULES[code]
    return Finding(
        code=code,
        severity=r.severity,
        title=r.title,
        detail=detail,
        fix=fix,
        location=location,
        evidence=dict(evidence or {}),
    )
