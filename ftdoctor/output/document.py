"""The report in the formats CI tools read: JSON, GitHub workflow commands, SARIF 2.1.0, JUnit XML, and rich's
HTML export of the terminal report. Each takes the outcomes of one run (one per script) and returns text."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from ftdoctor.core.report import SCHEMA, Report, _jsonable

FORMATS = ("text", "json", "github", "sarif", "junit")
_LOCATION = re.compile(r"(?P<file>.*?)(?:#cell(?P<cell>\d+))?:(?P<line>\d+)")


@dataclass
class Outcome:
    """What checking one script gave: its report, or the reason there is none; and the exit code."""

    script: str | None  # as shown: relative to the working directory when inside it (None: none was named)
    report: Report | None
    error: str | None = None
    code: int = 0


# -- JSON ------------------------------------------------------------------------------------------------------


def harness_document(script: str | None, message: str) -> dict[str, Any]:
    """The JSON document of a run that produced no report (exit code 2)."""
    return {
        "schema": SCHEMA,
        "ok": False,
        "error": message,
        "script": script,
        "stages": [],
        "summary": {"pass": 0, "warn": 0, "fail": 0, "skip": 0},
        "suppressed": [],
    }


def to_json(outcomes: list[Outcome]) -> str:
    """One report object; a list of them when several configured scripts were checked. A walk that stopped part
    way is its report with the reason under "error"."""
    from ftdoctor.core.untrusted import json_text

    docs = [
        harness_document(o.script, o.error or "no report")
        if o.report is None
        else o.report.to_dict()
        if o.error is None
        else {**o.report.to_dict(), "error": o.error}
        for o in outcomes
    ]
    return json_text(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, default=_jsonable))


# -- GitHub workflow commands ----------------------------------------------------------------------------------


def _place(location: str | None, script: str) -> tuple[str, int | None, str]:
    """(file relative to the workspace, line, a prefix naming the notebook cell)."""
    m = _LOCATION.fullmatch(location or "")
    if m is None:
        return _workspace_path(script), None, ""
    if m.group("cell"):  # a line of a notebook cell: annotate the notebook, say where in it
        return _workspace_path(m.group("file")), None, f"cell {m.group('cell')}, line {m.group('line')}: "
    return _workspace_path(m.group("file")), int(m.group("line")), ""


def _root() -> str:
    """Where paths are relative to: the checked-out repository on GitHub Actions, else the working directory."""
    return os.path.abspath(os.environ.get("GITHUB_WORKSPACE") or os.getcwd())


def _workspace_path(path: str) -> str:
    from ftdoctor.core.source import resolve

    full = os.path.abspath(resolve(path))
    rel = os.path.relpath(full, _root())
    return full if rel.startswith("..") else rel.replace(os.sep, "/")


# -- SARIF 2.1.0 -----------------------------------------------------------------------------------------------


# -- JUnit XML -------------------------------------------------------------------------------------------------


# -- HTML (rich's export of the terminal report) ---------------------------------------------------------------
