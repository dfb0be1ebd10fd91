"""API drift as the libraries record it: the table that benchmarks/api_drift/build.py reads from the changelogs,
migration guides and deprecation code of transformers, datasets, evaluate, TRL, PEFT and accelerate
(api_drift_table.json beside this module), and what it says about an exception or a user's override. Shared by the
stages that meet drift: setup (the script raised) and forward (a Trainer subclass's override)."""

from __future__ import annotations

import ast
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ftdoctor.sdk import read_source

LIBRARIES = ("transformers", "datasets", "evaluate", "trl", "peft", "accelerate")
TABLE = Path(__file__).with_name("api_drift_table.json")


@dataclass(frozen=True)
class Drift:
    """One removed or renamed argument, import, method, enum member, or a method that gained a parameter."""

    library: str
    kind: str  # argument | import | method | attribute | signature
    owner: str  # the class, function or module it belonged to
    name: str
    replacement: str | None
    note: str
    version: str
    source: str
    argument: str | None = None  # signature: the parameter the library now passes

    @property
    def where(self) -> str:
        return f"{self.library} {self.version}"


@functools.cache
def table() -> tuple[Drift, ...]:
    """The entries, read once, the first time an exception needs them (``--help`` and ``explain`` never do)."""
    data = json.loads(TABLE.read_text(encoding="utf-8"))
    return tuple(Drift(**entry) for entry in data["entries"])


@functools.cache
def _by_name() -> dict[tuple[str, str], tuple[Drift, ...]]:
    index: dict[tuple[str, str], list[Drift]] = {}
    for d in table():
        kind = "attribute" if d.kind == "method" else d.kind
        index.setdefault((kind, d.name), []).append(d)
    return {k: tuple(v) for k, v in index.items()}


def find(kind: str, name: str, owners: list[str], libraries: tuple[str, ...] = LIBRARIES) -> Drift | None:
    """The entry of this kind for ``name`` whose owner is the first of ``owners`` that has one (a class and its
    bases, most derived first), else one whose owner the first name ends with (``MySFTConfig`` of ``SFTConfig``)."""
    entries = [d for d in _by_name().get((kind, name), ()) if d.library in libraries]
    mine = [d for owner in owners for d in entries if d.owner == owner]
    if mine:
        # A base class's entry that names the replacement beats a subclass's that only says it is gone.
        return next((d for d in mine if d.replacement), mine[0])
    if owners:
        for d in sorted(entries, key=lambda d: -len(d.owner)):
            if owners[0].endswith(d.owner) and owners[0] != d.owner:
                return d
    return None


def signature_drifts(method: str) -> tuple[Drift, ...]:
    return tuple(d for d in table() if d.kind == "signature" and d.name == method)


def loaded_class(name: str):
    """The class called ``name`` in one of the libraries the script has already imported (nothing is imported
    here)."""
    for library in LIBRARIES:
        module = sys.modules.get(library)
        if module is None:
            continue
        try:
            obj = getattr(module, name, None)
        except Exception:  # a lazy module that fails to import the name
            obj = None
        if isinstance(obj, type):
            return obj
    return None


def lineage(cls) -> list[str]:
    """The names of a class and its bases, most derived first."""
    return [c.__name__ for c in getattr(cls, "__mro__", ())] or []


def frames(exc) -> list:
    out, tb = [], exc.__traceback__
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def calls_at(exc) -> list[tuple[object, ast.Call, str]]:
    """(frame, call node, source) for each call on the lines the traceback passes through, innermost first."""
    out = []
    for tb in reversed(frames(exc)):
        filename, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        try:
            source = read_source(filename)
            tree = ast.parse(source)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError, TypeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.lineno <= line <= (node.end_lineno or node.lineno):
                out.append((tb.tb_frame, node, source))
    return out


def attributes_at(exc, attr: str) -> list[tuple[object, ast.Attribute]]:
    """(frame, node) for each ``something.attr`` on the lines the traceback passes through, innermost first."""
    out = []
    for tb in reversed(frames(exc)):
        try:
            tree = ast.parse(read_source(tb.tb_frame.f_code.co_filename))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError, TypeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == attr:
                if node.lineno <= tb.tb_lineno <= (node.end_lineno or node.lineno):
                    out.append((tb.tb_frame, node))
    return out


def resolve(frame, node: ast.AST):
    """The object a plain name or a dotted chain of names denotes in a frame, without evaluating anything else."""
    if isinstance(node, ast.Name):
        for scope in (frame.f_locals, frame.f_globals, frame.f_builtins):
            if node.id in scope:
                return scope[node.id]
        return None
    if isinstance(node, ast.Attribute):
        base = resolve(frame, node.value)
        if base is None:
            return None
        try:
            return getattr(base, node.attr, None)
        except Exception:
            return None
    return None


def overrides_missing(cls) -> list[tuple[Drift, object]]:
    """(drift, function) for each method a subclass of a library class overrides with a signature that cannot take
    a parameter the library now passes to it (``compute_loss`` without ``num_items_in_batch``)."""
    import inspect

    out = []
    names = set(lineage(cls))
    for d in (d for d in table() if d.kind == "signature" and d.owner in names):
        for klass in getattr(cls, "__mro__", ()):
            if d.name not in vars(klass):
                continue
            if klass.__module__.split(".")[0] in LIBRARIES:
                break  # the library's own method
            fn = vars(klass)[d.name]
            try:
                params = inspect.signature(fn).parameters
            except (TypeError, ValueError):
                break
            if d.argument not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                out.append((d, fn))
            break
    return out


def library_signature(cls, method: str) -> str | None:
    """``def method(self, a, b=None)``: the signature of the library's own method a class overrides, without
    annotations, to copy into the override."""
    import inspect

    for klass in getattr(cls, "__mro__", ()):
        if method in vars(klass) and klass.__module__.split(".")[0] in LIBRARIES:
            try:
                params = inspect.signature(vars(klass)[method]).parameters.values()
            except (TypeError, ValueError):
                return None
            shown = [p.replace(annotation=p.empty) for p in params]
            return f"def {method}({', '.join(str(p) for p in shown)})"
    return None


def signature_drift(exc) -> Drift | None:
    """The signature entry an exception's ``m() got an unexpected keyword argument 'p'`` matches."""
    import re

    if not isinstance(exc, TypeError):
        return None
    m = re.search(r"(\w+)\(\) got an unexpected keyword argument '(\w+)'", str(exc))
    if not m:
        return None
    return next((d for d in signature_drifts(m.group(1)) if d.argument == m.group(2)), None)
