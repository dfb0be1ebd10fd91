"""The report in the formats CI tools read: JSON, GitHub workflow commands, SARIF 2.1.0, JUnit XML, and rich's
HTML export of the terminal report. Each takes the outcomes of one run (one per script) and returns text."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from .report import SCHEMA, Report, _jsonable

FORMATS = ("text", "json", "github", "sarif", "junit")
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
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
    return {"schema": SCHEMA, "ok": False, "error": message, "script": script, "stages": [],
            "summary": {"pass": 0, "warn": 0, "fail": 0, "skip": 0}, "suppressed": []}


def to_json(outcomes: list[Outcome]) -> str:
    """One report object; a list of them when several configured scripts were checked."""
    docs = [o.report.to_dict() if o.report is not None else harness_document(o.script, o.error or "no report")
            for o in outcomes]
    return json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, default=_jsonable)


# -- GitHub workflow commands ----------------------------------------------------------------------------------

_GITHUB_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(level: str, message: str, **props: Any) -> str:
    """`::level file=F,line=N,title=T::message`, escaped as the Actions runner expects."""
    head = ",".join(f"{k}={_escape_property(str(v))}" for k, v in props.items() if v is not None)
    return f"::{level}{' ' + head if head else ''}::{_escape_data(message)}"


def to_github(outcomes: list[Outcome]) -> str:
    """One annotation per finding, on the user's file and line (a notebook finding names its cell)."""
    lines = []
    for o in outcomes:
        if o.report is None:
            lines.append(workflow_command("error", o.error or "no report", title="ftdoctor could not run",
                                          file=_workspace_path(o.script) if o.script else None))
            continue
        for st in o.report.stages:
            for f in st.findings:
                file, line, where = _place(f.location, o.report.script or o.script)
                message = where + f.detail + (f" (fix: {f.fix})" if f.fix else "")
                lines.append(workflow_command(_GITHUB_LEVEL[f.severity], message, file=file, line=line,
                                              title=f"{f.code} {f.title}"))
        for err in o.report.internal_errors:
            lines.append(workflow_command("error", err, title="ftdoctor internal error (not your pipeline)"))
    return "\n".join(lines)


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
    from .source import resolve

    full = os.path.abspath(resolve(path))
    rel = os.path.relpath(full, _root())
    return full if rel.startswith("..") else rel.replace(os.sep, "/")


# -- SARIF 2.1.0 -----------------------------------------------------------------------------------------------

_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def to_sarif(outcomes: list[Outcome]) -> str:
    """One run of the tool over every script checked: a rule per code seen, a result per finding (suppressed
    ones carry their suppression), an invocation per script."""
    from .findings import DOCS_URL, RULES
    from .catalog import rules as catalog

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
            r["suppressions"] = [{"kind": "inSource" if s.reason == "inline comment" else "external",
                                  "justification": f"ignored by {s.reason}"}]
            results.append(r)
    run = {"tool": {"driver": {"name": "ftdoctor", "version": _version(), "informationUri": DOCS_URL,
                               "rules": rule_list}},
           "originalUriBaseIds": {"%SRCROOT%": {"uri": _file_uri(_root()) + "/"}},
           "invocations": invocations, "results": results}
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2, default=_jsonable)


def _sarif_rule(code: str, rule: Any, example: Any) -> dict[str, Any]:
    if rule is None:  # a team's own check: its text lives in the script's process; the finding's title is known
        return {"id": code, "shortDescription": {"text": example.title},
                "defaultConfiguration": {"level": _SARIF_LEVEL.get(example.severity, "warning")}}
    out: dict[str, Any] = {"id": rule.code, "name": rule.name, "shortDescription": {"text": rule.title},
                           "fullDescription": {"text": " ".join(rule.why.split())},
                           "help": {"text": " ".join(rule.why.split()), "markdown": _help_markdown(rule)},
                           "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
                           "properties": {"tags": [rule.stage], "fix_safe": rule.fix_safe, "added": rule.added}}
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
    return {"ruleId": f.code, "ruleIndex": index[f.code], "level": _SARIF_LEVEL.get(f.severity, "warning"),
            "message": {"text": text}, "locations": [{"physicalLocation": physical}], "properties": props}


def _sarif_invocation(o: Outcome) -> dict[str, Any]:
    notes = []
    if o.report is None:
        notes.append({"level": "error", "message": {"text": o.error or "no report"}})
    else:
        notes += [{"level": "error", "message": {"text": "ftdoctor internal error: " + e}}
                  for e in o.report.internal_errors]
    inv: dict[str, Any] = {"executionSuccessful": o.error is None and not (o.report and o.report.internal_errors),
                           "exitCode": o.code}
    if o.script:
        inv["properties"] = {"script": _workspace_path(o.script)}
    if notes:
        inv["toolExecutionNotifications"] = notes
    return inv


def _uri(path: str) -> str:
    from urllib.parse import quote

    return _file_uri(path) if os.path.isabs(path) else quote(path.replace(os.sep, "/"))


def _file_uri(path: str) -> str:
    from pathlib import Path

    return Path(path).absolute().as_uri()


def _version() -> str:
    from . import __version__

    return __version__


# -- JUnit XML -------------------------------------------------------------------------------------------------

def to_junit(outcomes: list[Outcome]) -> str:
    """A testsuite per script, a testcase per stage: failed stages carry their findings as the failure text,
    skipped stages their reason."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="ftdoctor")
    totals = dict(tests=0, failures=0, errors=0, skipped=0)
    total_time = 0.0
    for o in outcomes:
        name = _workspace_path(o.script) if o.script else "ftdoctor"
        suite = ET.SubElement(root, "testsuite", name=name)
        classname = re.sub(r"\.(py|ipynb)$", "", name).replace("/", ".")
        counts = dict(tests=0, failures=0, errors=0, skipped=0)
        duration = 0.0
        if o.report is None:
            case = ET.SubElement(suite, "testcase", classname=classname, name="setup", time="0")
            ET.SubElement(case, "error", message=_first_line(o.error), type="ftdoctor").text = o.error
            counts["tests"] += 1
            counts["errors"] += 1
        else:
            duration = o.report.duration_s
            if o.report.task:
                props = ET.SubElement(suite, "properties")
                ET.SubElement(props, "property", name="task", value=o.report.task)
            for st in o.report.stages:
                case = ET.SubElement(suite, "testcase", classname=classname, name=st.stage,
                                     time=f"{st.duration_s:.3f}", file=name)
                counts["tests"] += 1
                if st.status == "fail":
                    errors = [f for f in st.findings if f.severity == "error"]
                    message = "; ".join(f"{f.code} {f.title}" for f in errors)
                    ET.SubElement(case, "failure", message=message, type="ftdoctor").text = format_stage(st)
                    counts["failures"] += 1
                elif st.status == "skip":
                    ET.SubElement(case, "skipped", message=st.reason or "skipped")
                    counts["skipped"] += 1
                elif st.findings:
                    ET.SubElement(case, "system-out").text = format_stage(st, heading=f"ftdoctor stage `{st.stage}`")
            for err in o.report.internal_errors:
                case = ET.SubElement(suite, "testcase", classname=classname, name="ftdoctor", time="0")
                ET.SubElement(case, "error", message="ftdoctor internal error (not your pipeline)",
                              type="ftdoctor").text = err
                counts["tests"] += 1
                counts["errors"] += 1
            if o.report.suppressed:
                out = ET.SubElement(suite, "system-out")
                out.text = "\n".join(f"suppressed ({s.reason}): {s.finding.code} {s.finding.title}"
                                     + (f" at {s.finding.location}" if s.finding.location else "")
                                     for s in o.report.suppressed)
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", f"{duration:.3f}")
        total_time += duration
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no report"


def format_stage(st: Any, heading: str | None = None) -> str:
    """A stage's findings as a person should read them: each finding, the user's line and the fix (the pytest
    failure text and the JUnit failure body)."""
    from .source import source_lines

    lines = [heading or f"ftdoctor stage `{st.stage}` failed"]
    for f in st.findings:
        lines.append("")
        lines.append(f"{f.code} [{f.severity}] {f.title}")
        lines.append(f"  {f.detail}")
        if f.location:
            lines.append(f"  at {f.location}")
            src = source_lines(f.location)
            if src is not None:
                start, code = src
                for i, text in enumerate(code.splitlines()):
                    lines.append(f"  {start + i:>5} | {text}")
        if f.fix:
            lines.append(f"  fix: {f.fix}")
    return "\n".join(lines)


# -- HTML (rich's export of the terminal report) ---------------------------------------------------------------

def write_html(outcomes: list[Outcome], path: str, show_traceback: bool = False, width: int = 110) -> None:
    """The terminal report, as rich records it, saved as an HTML page (with the decoded sample and batch table)."""
    from io import StringIO

    from rich.console import Console
    from rich.text import Text

    from .render import render

    console = Console(record=True, file=StringIO(), width=width, force_terminal=True, color_system="truecolor",
                      highlight=False)
    for o in outcomes:
        if o.report is not None:
            render(o.report, console=console, show_traceback=show_traceback)
        else:
            console.print(Text(f"ftdoctor could not walk {o.script}: {o.error}", style="bold red"))
        console.print()
    console.save_html(path)
