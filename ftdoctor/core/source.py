"""Places in the user's source: a file and line, shown relative to where ftdoctor was started, and the statement
at that line (a call spread over several lines is shown whole)."""

from __future__ import annotations

import ast
import json
import linecache
import os
import re
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


# -- notebooks: their code cells run as one script; places are shown as "file.ipynb#cellN:line" ---------------

# Cell magics whose body is not Python: the whole cell is left out.
_FOREIGN_CELLS = (
    "%%bash",
    "%%sh",
    "%%script",
    "%%writefile",
    "%%html",
    "%%javascript",
    "%%latex",
    "%%markdown",
    "%%svg",
    "%%perl",
    "%%ruby",
    "%%capture --no-display",
)
_NOTEBOOKS: dict[str, tuple[str, list[tuple[int, int, int]]]] = {}


def is_notebook(path: str) -> bool:
    return str(path).endswith(".ipynb")


def notebook_source(path: str) -> tuple[str, list[tuple[int, int, int]]]:
    """The notebook's code cells as one Python source, and for each cell (number, first line, line count).

    Shell (`!cmd`) and magic (`%magic`) lines become `pass`, so every other line keeps its place."""
    path = os.path.abspath(path)
    if path in _NOTEBOOKS:
        return _NOTEBOOKS[path]
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    lines: list[str] = []
    cells: list[tuple[int, int, int]] = []
    number = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        number += 1
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        cell_lines = text.split("\n")
        foreign = bool(cell_lines) and cell_lines[0].strip().startswith(_FOREIGN_CELLS)
        start = len(lines) + 1
        for line in cell_lines:
            stripped = line.lstrip()
            if foreign or stripped.startswith(("!", "%")):
                line = line[: len(line) - len(stripped)] + "pass"
            lines.append(line)
        cells.append((number, start, len(cell_lines)))
    _NOTEBOOKS[path] = ("\n".join(lines) + "\n", cells)
    return _NOTEBOOKS[path]


def read_source(path: str) -> str:
    """The Python source of a script, or of a notebook's code cells."""
    if is_notebook(path):
        return notebook_source(path)[0]
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _cell_place(path: str, line: int) -> tuple[int, int] | None:
    try:
        _, cells = notebook_source(path)
    except (OSError, ValueError):
        return None
    for number, start, count in cells:
        if start <= line < start + count:
            return number, line - start + 1
    return None


@dataclass
class Site:
    """Where something happened in the user's code (in a notebook: the cell and the line in it)."""

    file: str
    line: int

    def __str__(self) -> str:
        if is_notebook(self.file):
            place = _cell_place(self.file, self.line)
            if place is not None:
                return f"{display_path(self.file)}#cell{place[0]}:{place[1]}"
        return f"{display_path(self.file)}:{self.line}"


def parse_source(path: str) -> ast.AST | None:
    """The syntax tree of the file (or notebook) at ``path``; None when it cannot be read or parsed."""
    try:
        return ast.parse(read_source(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def assignment_line(path: str, name: str) -> int | None:
    """The last line of ``path`` that assigns ``name`` at any depth (the value a script ends up using)."""
    tree = parse_source(path)
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
    """(absolute path, line in its Python source) of "file:line" or "notebook.ipynb#cellN:line"."""
    if not location or ":" not in location:
        return None
    path, _, line_s = location.rpartition(":")
    try:
        line = int(line_s)
    except ValueError:
        return None
    m = re.fullmatch(r"(.*\.ipynb)#cell(\d+)", path)
    if m:
        path = resolve(m.group(1))
        try:
            _, cells = notebook_source(path)
        except (OSError, ValueError):
            return None
        start = next((st for number, st, _ in cells if number == int(m.group(2))), None)
        return (path, start + line - 1) if start is not None else None
    return resolve(path), line


def source_lines(location: str | None, context: int = 0, max_lines: int = 14) -> tuple[int, str] | None:
    """The whole statement at ``file:line`` (a call spread over lines is shown complete)."""
    where = split_location(location)
    if where is None:
        return None
    path, line = where
    start, end = line, line
    tree = parse_source(path)
    if tree is not None:
        best = None
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno):
                if (
                    not isinstance(
                        node,
                        (
                            ast.FunctionDef,
                            ast.AsyncFunctionDef,
                            ast.ClassDef,
                            ast.If,
                            ast.For,
                            ast.While,
                            ast.With,
                            ast.Try,
                        ),
                    )
                    or node.lineno == line
                ):
                    if best is None or node.lineno >= best.lineno:
                        best = node
        if best is not None and not isinstance(best, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start, end = best.lineno, best.end_lineno or best.lineno
    start = max(1, start - context)
    end = min(end + context, start + max_lines - 1)
    try:
        if is_notebook(path):
            source = notebook_source(path)[0].splitlines(True)
            lines = source[start - 1 : end]
            place = _cell_place(path, start)
            start = place[1] if place is not None else start
        else:
            lines = [linecache.getline(path, i) for i in range(start, end + 1)]
    except (OSError, ValueError):  # a location whose file name cannot be a path (a NUL in it): nothing to show
        return None
    text = "".join(lines).rstrip("\n")
    return (start, text) if text else None
