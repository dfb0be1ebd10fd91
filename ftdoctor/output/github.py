"""The report as GitHub Actions workflow commands (annotations at the user's lines)."""

from __future__ import annotations

from typing import Any

from ftdoctor.core.report import CHECK_ERROR, INTERNAL_ERROR
from ftdoctor.core.untrusted import BLOCK, NAME, TITLE, cut, visible
from ftdoctor.output.document import Outcome, _place, _workspace_path

_GITHUB_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(level: str, message: str, **props: Any) -> str:
    """`::level file=F,line=N,title=T::message`, escaped as the Actions runner expects; control characters in the
    text are shown as escapes (the log is a terminal too)."""
    head = ",".join(
        f"{k}={_escape_property(_shown(v, TITLE if k == 'title' else NAME))}" for k, v in props.items() if v is not None
    )
    return f"::{level}{' ' + head if head else ''}::{_escape_data(_shown(message, BLOCK))}"


def _shown(value: Any, limit: int) -> str:
    # Carriage returns stay for the runner's own escape (%0D); every other control character is shown.
    return "\r".join(visible(part, None) for part in cut(value, limit).split("\r"))


def to_github(outcomes: list[Outcome]) -> str:
    """One annotation per finding, on the user's file and line (a notebook finding names its cell)."""
    lines = []
    for o in outcomes:
        if o.report is None:
            lines.append(
                workflow_command(
                    "error",
                    o.error or "no report",
                    title="ftdoctor could not run",
                    file=_workspace_path(o.script) if o.script else None,
                )
            )
            continue
        for st in o.report.stages:
            for f in st.findings:
                file, line, where = _place(f.location, o.report.script or o.script)
                message = where + f.detail + (f" (fix: {f.fix})" if f.fix else "")
                lines.append(
                    workflow_command(
                        _GITHUB_LEVEL[f.severity], message, file=file, line=line, title=f"{f.code} {f.title}"
                    )
                )
        if o.error is not None:  # the walk stopped part way: the stages that finished are above
            lines.append(
                workflow_command(
                    "error",
                    o.error,
                    title="ftdoctor could not finish",
                    file=_workspace_path(o.report.script or o.script or ""),
                )
            )
        for err in o.report.check_errors:
            lines.append(workflow_command("error", err, title=CHECK_ERROR))
        for err in o.report.internal_errors:
            lines.append(workflow_command("error", err, title=INTERNAL_ERROR))
    return "\n".join(lines)
