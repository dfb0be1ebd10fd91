"""A stage's findings as plain text: the pytest failure text and the JUnit failure body."""

from __future__ import annotations

from typing import Any

from ftdoctor.core.untrusted import NAME, TITLE, defuse_lines, inline


def format_stage(st: Any, heading: str | None = None) -> str:
    """A stage's findings as a person should read them: each finding, the user's line and the fix (the pytest
    failure text and the JUnit failure body). Quoted text stays on its line, its control characters shown."""
    from ftdoctor.core.source import source_lines

    lines = [heading or f"ftdoctor stage `{inline(st.stage, NAME)}` failed"]
    for f in st.findings:
        lines.append("")
        lines.append(f"{inline(f.code, NAME)} [{inline(f.severity, NAME)}] {inline(f.title, TITLE)}")
        lines.append(f"  {inline(f.detail)}")
        if f.location:
            lines.append(f"  at {inline(f.location, NAME)}")
            src = source_lines(f.location)
            if src is not None:
                start, code = src
                for i, text in enumerate(code.splitlines()):
                    lines.append(f"  {start + i:>5} | {inline(text, None)}")
        if f.fix:
            lines.append(f"  fix: {inline(f.fix)}")
    return defuse_lines("\n".join(lines))
