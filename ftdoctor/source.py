"""Places in the user's source: a file and line, shown relative to where ftdoctor was started, and the statement
at that line (a call spread over several lines is shown whole)."""

from __future__ import annotations

import ast
import linecache
import os
from dataclasses import dataclass

# Paths are shown relative to the directory ftdoctor was started in, even after the script changed directory.
_ORIGIN = os.getcwd()


def set_origin(cwd: str) -> None:
    global _ORIGIN
    _ORIGIN = os.path.abspath(cwd)


def display_path(path: str) -> str:
    try:
        rel = os.path.relpath(os.path.abspath(path), _ORIGIN)
    except ValueError:
        return path
    return os.path.abspath(path) if rel.startswith("..") else rel


def resolve(path: str) -> str:
    """The absolute path of a location's file (locations are relative to the origin directory)."""
    return path if os.path.isabs(path) else os.path.join(_ORIGIN, path)


@dataclass
class Site:
    """Where something happened in the user's code."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{display_path(self.file)}:{self.line}"


def _parse(path: str) -> ast.AST | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return ast.parse(fh.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def assignment_line(path: str, name: str) -> int | None:
    """The last line of ``path`` that assigns ``name`` at any depth (the value a script ends up using)."""
    tree = _parse(path)
    if tree is None:
        return None
    found = None
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Name) and sub.id == name:
                    found = max(found or 0, node.lineno)
    return found


def split_location(location: str | None) -> tuple[str, int] | None:
    if not location or ":" not in location:
        return None
    path, _, line_s = location.rpartition(":")
    try:
        return resolve(path), int(line_s)
    except ValueError:
        return None


def source_lines(location: str | None, context: int = 0, max_lines: int = 14) -> tuple[int, str] | None:
    """The whole statement at ``file:line`` (a call spread over lines is shown complete)."""
    where = split_location(location)
    if where is None:
        return None
    path, line = where
    start, end = line, line
    tree = _parse(path)
    if tree is not None:
        best = None
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For,
                                         ast.While, ast.With, ast.Try)) or node.lineno == line:
                    if best is None or node.lineno >= best.lineno:
                        best = node
        if best is not None and not isinstance(best, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start, end = best.lineno, best.end_lineno or best.lineno
    start = max(1, start - context)
    end = min(end + context, start + max_lines - 1)
    lines = [linecache.getline(path, i) for i in range(start, end + 1)]
    text = "".join(lines).rstrip("\n")
    return (start, text) if text else None
