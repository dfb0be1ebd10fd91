"""The report as SARIF 2.1.0: a rule per code seen, a result per finding, an invocation per script."""

from __future__ import annotations

import json
import os
from typing import Any

from ftdoctor.core.report import CHECK_ERROR, INTERNAL_ERROR, _jsonable
from ftdoctor.core.untrusted import BLOCK, cut, deep, json_text, visible
from ftdoctor.output.document import Outcome, _place, _root, _workspace_path

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def to_sarif(outcomes: list[Outcome]) -> str:
    """One run of the tool over every script checked: a rule per code seen, a result per finding (suppressed
    ones carry their suppression), an invocation per script."""
    from ftdoctor.core.rules import RULES, home_page
    from ftdoctor.output.rule_pages import rules as catalog

    catalog()  # the built-in rules' text (their why, their page)
    seen: dict[str, Any] = {}
    for o in outcomes:
        if o.report is not None:
            for f in [f for st in o.report.stages for f in st.findings] + [s.finding for s in o.report.suppressed]:
                seen.setdefault(f.code, f)
    rule_list, index = [], {}
    for code in sorted(seen):
        index[code] = len(rule_list)
        rule_list.append(_sarif_rule(code, RULES.get(code), seen[code]))
    results, invocations = [], []
    for o in outcomes:
        invocations.append(_sarif_invocation(o))
        if o.report is None:
            continue
        script = o.report.script or o.script or ""
        for st in o.report.stages:
            for f in st.findings:
                results.append(_sarif_result(f, st.stage, script, index))
        for s in o.report.suppressed:
            r = _sarif_result(s.finding, s.stage, script, index)
            r["suppressions"] = [
                {
                    "kind": "inSource" if s.reason == "inline comment" else "external",
                    "justification": f"ignored by {s.reason}",
                }
            ]
            results.append(r)
    driver = {"name": "ftdoctor", "version": _version(), "rules": rule_list}
    if home_page():
        driver["informationUri"] = home_page()
    run = {
        "tool": {"driver": driver},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": _file_uri(_root()) + "/"}},
        "invocations": invocations,
        "results": results,
    }
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    # Every text of the log shown as a viewer should show it: control characters as escapes, nothing XML forbids.
    log = deep(json.loads(json.dumps(log, default=_jsonable)), visible)
    return json_text(json.dumps(log, indent=2))


def _sarif_rule(code: str, rule: Any, example: Any) -> dict[str, Any]:
    if rule is None:  # a team's own check: its text lives in the script's process; the finding's title is known
        return {
            "id": code,
            "shortDescription": {"text": example.title},
            "defaultConfiguration": {"level": _SARIF_LEVEL.get(example.severity, "warning")},
        }
    out: dict[str, Any] = {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": " ".join(rule.why.split())},
        "help": {"text": " ".join(rule.why.split()), "markdown": _help_markdown(rule)},
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        "properties": {"tags": [rule.stage], "fix_safe": rule.fix_safe, "added": rule.added},
    }
    if rule.url:
        out["helpUri"] = rule.url
    return out


def _help_markdown(rule: Any) -> str:
    parts = [" ".join(rule.why.split())]
    if rule.broken:
        parts.append("Broken:\n\n```python\n" + rule.broken + "\n```")
    if rule.fixed:
        parts.append("Fixed:\n\n```python\n" + rule.fixed + "\n```")
    return "\n\n".join(parts)


def _sarif_result(f: Any, stage: str, script: str, index: dict[str, int]) -> dict[str, Any]:
    file, line, where = _place(f.location, script)
    text = where + f.detail + (f" Fix: {f.fix}" if f.fix else "")
    artifact: dict[str, Any] = {"uri": _uri(file)}
    if not os.path.isabs(file):
        artifact["uriBaseId"] = "%SRCROOT%"
    # A finding about the pipeline as a whole is shown at the top of its script.
    physical = {"artifactLocation": artifact, "region": {"startLine": line or 1}}
    props: dict[str, Any] = {"stage": stage, "script": _workspace_path(script), "severity": f.severity}
    if "severity_from_rule" in f.evidence:
        props["severity_from_rule"] = f.evidence["severity_from_rule"]
    return {
        "ruleId": f.code,
        "ruleIndex": index[f.code],
        "level": _SARIF_LEVEL.get(f.severity, "warning"),
        "message": {"text": text},
        "locations": [{"physicalLocation": physical}],
        "properties": props,
    }


def _sarif_invocation(o: Outcome) -> dict[str, Any]:
    notes = []
    if o.error is not None or o.report is None:
        notes.append({"level": "error", "message": {"text": cut(o.error or "no report", BLOCK)}})
    if o.report is not None:
        notes += [
            {"level": "error", "message": {"text": f"{CHECK_ERROR}: {cut(e, BLOCK)}"}} for e in o.report.check_errors
        ]
        notes += [
            {"level": "error", "message": {"text": f"{INTERNAL_ERROR}: {cut(e, BLOCK)}"}}
            for e in o.report.internal_errors
        ]
    inv: dict[str, Any] = {"executionSuccessful": not notes, "exitCode": o.code}
    if o.script:
        inv["properties"] = {"script": _workspace_path(o.script)}
    if notes:
        inv["toolExecutionNotifications"] = notes
    return inv


def _uri(path: str) -> str:
    return _file_uri(path) if os.path.isabs(path) else _quote(path.replace(os.sep, "/"))


def _file_uri(path: str) -> str:
    from pathlib import Path

    try:
        return Path(path).absolute().as_uri()
    except (UnicodeEncodeError, ValueError):  # a name that is not text (a lone surrogate): its bytes, quoted
        return "file://" + _quote(os.path.abspath(path).replace(os.sep, "/"))


def _quote(path: str) -> str:
    from urllib.parse import quote

    try:  # a file name's undecodable bytes come back as they were on disk
        return quote(path, errors="surrogateescape")
    except UnicodeEncodeError:
        return quote(path, errors="replace")


def _version() -> str:
    from ftdoctor.core.rules import VERSION

    return VERSION
