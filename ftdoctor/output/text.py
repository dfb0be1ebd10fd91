"""A stage's findings as plain text: the pytest failure text and the JUnit failure body."""

from __future__ import annotations
from typing import Any


def format_stage(st: Any, heading: str | None = None) -> str:
    """A stage's findings as a person should read them: each finding, the user's line and the fix (the pytest
    failure text and the JUnit failure body)."""
    from ftdoctor.core.source import source_lines

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
