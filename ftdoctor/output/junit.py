"""The report as JUnit XML: a testsuite per script, a testcase per stage."""

from __future__ import annotations

import re

from ftdoctor.core.report import CHECK_ERROR, INTERNAL_ERROR
from ftdoctor.core.untrusted import BLOCK, cut, visible
from ftdoctor.output.document import Outcome, _workspace_path
from ftdoctor.output.text import format_stage


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
            ET.SubElement(case, "error", message=_first_line(o.error), type="ftdoctor").text = cut(o.error, BLOCK)
            counts["tests"] += 1
            counts["errors"] += 1
        else:
            duration = o.report.duration_s
            if o.report.task:
                props = ET.SubElement(suite, "properties")
                ET.SubElement(props, "property", name="task", value=o.report.task)
            for st in o.report.stages:
                case = ET.SubElement(
                    suite, "testcase", classname=classname, name=st.stage, time=f"{st.duration_s:.3f}", file=name
                )
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
            stopped = [(o.error, "ftdoctor could not finish")] if o.error is not None else []
            for err, title in (
                stopped
                + [(e, CHECK_ERROR) for e in o.report.check_errors]
                + [(e, INTERNAL_ERROR) for e in o.report.internal_errors]
            ):
                case = ET.SubElement(suite, "testcase", classname=classname, name="ftdoctor", time="0")
                ET.SubElement(case, "error", message=title, type="ftdoctor").text = cut(err, BLOCK)
                counts["tests"] += 1
                counts["errors"] += 1
            if o.report.suppressed:
                out = ET.SubElement(suite, "system-out")
                out.text = "\n".join(
                    f"suppressed ({s.reason}): {s.finding.code} {s.finding.title}"
                    + (f" at {s.finding.location}" if s.finding.location else "")
                    for s in o.report.suppressed
                )
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", f"{duration:.3f}")
        total_time += duration
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    _inert(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _inert(root) -> None:
    """Every text and attribute of the tree made valid XML 1.0, control characters shown as escapes (a character
    reference such as &#27; is not allowed either: one such character and a CI drops the whole file)."""
    for el in root.iter():
        for key, value in el.attrib.items():
            el.set(key, visible(value, BLOCK))
        if el.text:
            el.text = visible(el.text, None)
        if el.tail:
            el.tail = visible(el.tail, None)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no report"
