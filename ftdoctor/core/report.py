"""The report: data first (the JSON schema in DESIGN.md), rendering lives in render.py."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any

from ftdoctor.core.findings import Finding
from ftdoctor.core.rules import rule_url

SCHEMA = "ftdoctor.report/1"
# How each output names a failure of ftdoctor itself, and one of a check the project wrote (its file is to blame).
INTERNAL_ERROR = "ftdoctor internal error (a bug in ftdoctor, not in your pipeline)"
CHECK_ERROR = "a check of this project could not run (a fault in the check's own file, not in ftdoctor)"


def finding_dict(f: Finding) -> dict[str, Any]:
    """A finding as the JSON report writes it: its fields and the page of its rule."""
    return {**f.to_dict(), "url": rule_url(f.code)}


def stage_status(findings: list[Finding]) -> str:
    """The status of a stage that ran, from its findings."""
    if any(f.severity == "error" for f in findings):
        return "fail"
    if any(f.severity == "warning" for f in findings):
        return "warn"
    return "pass"


@dataclass
class StageResult:
    stage: str
    status: str = "skip"  # pass warn fail skip
    duration_s: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    reason: str | None = None  # why a stage was skipped
    evidence: dict[str, Any] = field(default_factory=dict)
    crashed: list[str] = field(default_factory=list)  # ftdoctor's own checks that crashed here (not the user's bug)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "stage": self.stage,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "findings": [finding_dict(f) for f in self.findings],
        }
        if self.reason:
            d["reason"] = self.reason
        if self.evidence:
            d["evidence"] = self.evidence
        if self.crashed:
            d["crashed"] = self.crashed
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageResult:
        return cls(
            d["stage"],
            d.get("status", "skip"),
            d.get("duration_s", 0.0),
            [Finding.from_dict(f) for f in d.get("findings", [])],
            d.get("reason"),
            d.get("evidence") or {},
            list(d.get("crashed") or []),
        )


@dataclass
class Suppressed:
    """A finding the project silenced, and how: "config", "command line" or "inline comment"."""

    stage: str
    finding: Finding
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**finding_dict(self.finding), "stage": self.stage, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Suppressed:
        return cls(d.get("stage", ""), Finding.from_dict(d), d.get("reason", ""))


@dataclass
class Report:
    script: str | None
    task: str | None = None
    stages: list[StageResult] = field(default_factory=list)
    duration_s: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)
    internal_errors: list[str] = field(default_factory=list)
    check_errors: list[str] = field(default_factory=list)  # a team's or a plugin's check that failed to load or run
    suppressed: list[Suppressed] = field(default_factory=list)  # findings removed by the project's policy
    # How much of the user's work the walk did: "fast" or "full", and what ran at reduced size.
    budget: dict[str, Any] | None = None
    # Why the walk stopped before its end (--walk-timeout): the stages here are those that finished. Not in the
    # JSON document, which carries the reason as "error".
    stopped: str | None = field(default=None, compare=False)
    # The live values the walk built (pipeline, batch, ...): for pytest fixtures and in-process use, never serialised.
    context: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def findings(self) -> list[Finding]:
        return [f for s in self.stages for f in s.findings]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def complete(self) -> bool:
        """Every check that ran finished: no internal error of ftdoctor's and no failure of a project's own check (a
        crashed check, a check that broke its contract, checks that failed to load) left part of it unjudged."""
        return not self.internal_errors and not self.check_errors

    @property
    def walked(self) -> bool:
        """At least one stage ran (was not skipped): the report judges something."""
        return any(s.status != "skip" for s in self.stages)

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    def summary(self) -> dict[str, int]:
        counts = {"pass": 0, "warn": 0, "fail": 0, "skip": 0}
        for s in self.stages:
            counts[s.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schema": SCHEMA,
            "ok": self.ok,
            "script": self.script,
            "task": self.task,
            "duration_s": round(self.duration_s, 3),
            "environment": self.environment,
            "stages": [s.to_dict() for s in self.stages],
            "summary": self.summary(),
            "suppressed": [s.to_dict() for s in self.suppressed],
        }
        if self.budget is not None:
            d["budget"] = self.budget
        if self.internal_errors:
            d["internal_errors"] = self.internal_errors
        if self.check_errors:
            d["check_errors"] = self.check_errors
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_jsonable)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """The report a child process sent (the JSON document), back as an object."""
        return cls(
            script=d.get("script"),
            task=d.get("task"),
            stages=[StageResult.from_dict(s) for s in d.get("stages", [])],
            duration_s=d.get("duration_s", 0.0),
            environment=d.get("environment") or {},
            internal_errors=list(d.get("internal_errors") or []),
            check_errors=list(d.get("check_errors") or []),
            suppressed=[Suppressed.from_dict(s) for s in d.get("suppressed") or []],
            budget=d.get("budget"),
        )


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def environment() -> dict[str, Any]:
    """Versions of the stack the walk ran on (only modules already imported: this must stay cheap)."""
    import sys

    env: dict[str, Any] = {"python": platform.python_version()}
    for mod in ("torch", "transformers", "datasets", "accelerate", "evaluate"):
        m = sys.modules.get(mod)
        if m is not None:
            env[mod] = getattr(m, "__version__", None)
    torch = sys.modules.get("torch")
    env["device"] = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    return env
