"""What a project chose to silence or re-grade, applied to the report the child sent (in the parent: the checks
and the child never know). Sources: codes ignored in [tool.ftdoctor] or with --ignore, a
`# ftdoctor: ignore[FTD209]` comment on the user's line, and per-code severities."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field

from ftdoctor.core.findings import Finding
from ftdoctor.core.report import Report, Suppressed, stage_status

CONFIG, COMMAND_LINE, INLINE = "config", "command line", "inline comment"
# `# ftdoctor: ignore` (every finding on the line) or `# ftdoctor: ignore[FTD209, FTD404]`.
_COMMENT = re.compile(r"#.*?\bftdoctor:\s*ignore(?:\[(?P<codes>[^\]]*)\]|(?![\w\[-]))", re.I)


@dataclass
class Policy:
    ignore: dict[str, str] = field(default_factory=dict)  # code -> where it was ignored (CONFIG, COMMAND_LINE)
    severity: dict[str, str] = field(default_factory=dict)  # code -> the severity the project gives it
    inline: bool = True  # honour `# ftdoctor: ignore` comments

    @classmethod
    def from_lists(cls, config_ignore=(), command_line_ignore=(), severity=None) -> Policy:
        ignore = dict.fromkeys(config_ignore, CONFIG)
        ignore.update(dict.fromkeys(command_line_ignore, COMMAND_LINE))
        return cls(ignore, dict(severity or {}))


def apply_policy(report: Report, policy: Policy) -> Report:
    """Remove the ignored findings into ``report.suppressed``, re-grade the rest, and recompute each stage's
    status (``ok`` and the summary follow from them)."""
    comments = _Comments()
    for st in report.stages:
        kept = []
        for f in st.findings:
            reason = policy.ignore.get(f.code) or (INLINE if policy.inline and comments.ignores(f) else None)
            if reason:
                report.suppressed.append(Suppressed(st.stage, f, reason))
                continue
            level = policy.severity.get(f.code)
            if level and level != f.severity:
                f.evidence.setdefault("severity_from_rule", f.severity)
                f.severity = level
            kept.append(f)
        if len(kept) != len(st.findings) or policy.severity:
            st.findings = kept
            if st.status != "skip":
                st.status = stage_status(kept)
    return report


class _Comments:
    """The `# ftdoctor: ignore` comments of the files findings point at (each file read once)."""

    def __init__(self):
        self._files: dict[str, tuple[dict[int, str], dict[int, int]]] = {}

    def ignores(self, f: Finding) -> bool:
        from ftdoctor.core.source import split_location

        where = split_location(f.location)
        if where is None:
            return False
        path, line = where
        comments, ends = self._read(path)
        for ln in (line, ends.get(line)):
            m = _COMMENT.search(comments.get(ln, "")) if ln else None
            if m is None:
                continue
            codes = m.group("codes")
            if codes is None or f.code.upper() in {c.upper() for c in re.split(r"[,\s]+", codes) if c}:
                return True
        return False

    def _read(self, path: str) -> tuple[dict[int, str], dict[int, int]]:
        if path not in self._files:
            self._files[path] = _scan(path)
        return self._files[path]


def _scan(path: str) -> tuple[dict[int, str], dict[int, int]]:
    """The comment on each line, and for a statement spread over lines the line it ends on (a comment after its
    closing parenthesis belongs to the line it starts on)."""
    from ftdoctor.core.source import read_source

    try:
        text = read_source(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return {}, {}
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string
    except (tokenize.TokenError, SyntaxError, IndentationError):
        comments = {i: line[line.index("#") :] for i, line in enumerate(text.splitlines(), 1) if "#" in line}
    ends: dict[int, int] = {}
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return comments, ends
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not hasattr(node, "body") and (node.end_lineno or 0) > node.lineno:
            ends[node.lineno] = max(ends.get(node.lineno, 0), node.end_lineno)
    return comments, ends
