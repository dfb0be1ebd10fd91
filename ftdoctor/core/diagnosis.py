"""Differential diagnosis of an exception the user's pipeline raised.

The exception's frames are read once into an ``Evidence`` (the user's frame: file, line, function, source line and
a summary of the values it held; the library frame that raised; the message). Diagnosers, one per cause and
registered like checks with ``@diagnoser(codes=...)``, each propose a ``Cause`` from that evidence and the
pipeline's facts; ``diagnose`` keeps the best-supported one. When none fits, ``relay`` words the last-resort
finding from the evidence: the user's failing line and the values involved.
"""

from __future__ import annotations

import inspect
import linecache
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ftdoctor.core.findings import Finding, finding
from ftdoctor.core.frames import is_user_file
from ftdoctor.core.untrusted import inline

MAX_LOCALS = 30  # values of the user's frame summarised
MAX_KEYS = 12  # keys of a mapping, columns of a dataset
MAX_SCAN = 10_000  # elements of a list scanned for their types and for None
MAX_FRAMES = 80

# Support that a cause gets from each kind of evidence that agrees with it; ``diagnose`` keeps the highest sum.
MESSAGE = 1  # the exception's type and message
VALUES = 1  # the values in the user's frame
FACTS = 1  # what the pipeline holds (its arguments, datasets, model)
REPORTED = 4  # an earlier finding already names the cause: the crash was predicted


@dataclass
class FrameInfo:
    """One frame of the traceback: where it ran."""

    file: str
    line: int
    function: str
    source: str = ""

    @property
    def site(self) -> str:
        from ftdoctor.core.source import Site

        return str(Site(self.file, self.line))

    @property
    def module_path(self) -> str:
        """The library file's path from its package down (``transformers/trainer.py``), for reading."""
        path = self.file.replace("\\", "/")
        for marker in ("site-packages/", "dist-packages/", "/lib/python"):
            if marker in path:
                tail = path.split(marker, 1)[1]
                return tail.split("/", 1)[1] if marker == "/lib/python" and "/" in tail else tail
        return os.path.basename(path)


@dataclass
class Evidence:
    """What an exception shows: its type and message, the user's frame and the values it held, the library
    frame that raised, and the stage that ran it. Built once per exception; summaries only, never the objects."""

    exc_type: str
    message: str
    stage: str = ""
    user: FrameInfo | None = None
    library: FrameInfo | None = None
    called: FrameInfo | None = None  # the library frame the user's line called (the outermost below it)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    library_values: dict[str, dict[str, Any]] = field(default_factory=dict)  # the raising frame's arguments
    frames: list[FrameInfo] = field(default_factory=list)
    exc_types: tuple[str, ...] = ()  # the exception's class and its bases, by name
    _locals: dict[str, Any] = field(default_factory=dict, repr=False)  # the user frame's values, for diagnosers
    _frames: list[Any] = field(default_factory=list, repr=False)  # the traceback's frames, innermost last

    @property
    def text(self) -> str:
        return f"{self.exc_type}: {self.message}" if self.message else self.exc_type

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0][:400]

    def is_a(self, *names: str) -> bool:
        """Whether the exception is of one of the classes named (its own class or a base)."""
        return any(n in self.exc_types for n in names)

    def local(self, name: str, default: Any = None) -> Any:
        """A value the user's frame held (the object itself: diagnosers may look closer, and must not change it)."""
        return self._locals.get(name, default)

    def locals_where(self, predicate: Callable[[Any], bool]) -> list[str]:
        """The names of the user frame's values for which ``predicate`` holds (a predicate that raises: no)."""
        out = []
        for name, value in self._locals.items():
            try:
                if predicate(value):
                    out.append(name)
            except Exception:
                continue
        return out

    def frame_local(self, name: str, predicate: Callable[[Any], bool] | None = None) -> Any:
        """The value of ``name`` in the innermost frame of the traceback that has one (and for which ``predicate``
        holds): what a library function was working on when it raised. None when no frame has it."""
        for frame in reversed(self._frames):
            try:
                if name not in frame.f_locals:
                    continue
                value = frame.f_locals[name]
                if predicate is None or predicate(value):
                    return value
            except Exception:
                continue
        return None

    def in_library(self, *parts: str) -> bool:
        """Whether a frame of the traceback runs in a library file whose path contains one of ``parts``."""
        return any(p in f.file.replace("\\", "/") for f in self.frames for p in parts)

    def values_text(self, names: list[str] | None = None, limit: int = 6) -> str:
        """The summaries of the user frame's values (``names`` first, or those the source line mentions)."""
        if names is None:
            names = [n for n in self.values if self.user and _mentions(self.user.source, n)]
            if not names and self.user is not None and self.user.function != "<module>":
                names = list(self.values)  # a function's arguments and locals; a script's globals would be noise
        return ", ".join(f"`{n}` = {describe(self.values[n])}" for n in names[:limit] if n in self.values)


def _mentions(source: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", source or "") is not None


def _source_line(path: str, line: int) -> str:
    try:
        from ftdoctor.core.source import is_notebook, read_source

        if is_notebook(path):
            lines = read_source(path).splitlines()
            return lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return linecache.getline(path, line).strip()
    except Exception:
        return ""


def _statement(info: FrameInfo) -> str:
    """The whole statement at the user's line (a call spread over several lines) on one line; of a compound
    statement (``with``, ``for``, ``if``) only its header."""
    import ast

    try:
        from ftdoctor.core.source import read_source

        source = read_source(info.file)
        tree = ast.parse(source)
    except Exception:
        return ""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and node.lineno <= info.line <= (node.end_lineno or node.lineno):
            if best is None or node.lineno >= best.lineno:
                best = node
    if best is None:
        return ""
    body = getattr(best, "body", None)
    end = body[0].lineno - 1 if isinstance(body, list) and body and body[0].lineno > best.lineno else best.end_lineno
    if body and info.line > (end or best.lineno):
        return ""  # the line is in the body: a statement of its own was not found
    lines = source.splitlines()[best.lineno - 1 : (end or best.lineno)]
    text = " ".join(part.strip() for part in lines if part.strip())
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))[:400]


def _is_library_file(path: str) -> bool:
    """A file of an installed package or of Python itself (when the user's folder is not known)."""
    path = (path or "").replace("\\", "/")
    if not path or path.startswith("<"):
        return True
    if "site-packages/" in path or "dist-packages/" in path:
        return True
    stdlib = os.path.dirname(os.__file__).replace("\\", "/")
    if path.startswith(stdlib + "/"):
        return True
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__))).replace("\\", "/")
    return path.startswith(here + "/")  # ftdoctor itself


def summarize(value: Any) -> dict[str, Any]:
    """A bounded summary of one value (type, shape, dtype, length, keys, element types, how many are None) that
    never raises and never holds the value."""
    out: dict[str, Any] = {"type": type(value).__name__}
    try:
        if value is None or isinstance(value, (bool, int, float, complex)):
            out["value"] = inline(repr(value), 60)
            return out
        if isinstance(value, (str, bytes)):
            out["len"] = len(value)
            out["value"] = inline(repr(value[:60]), 80)
            return out
        shape = getattr(value, "shape", None)
        if shape is not None and not callable(shape):
            try:
                out["shape"] = [int(s) for s in shape]
            except Exception:
                pass
        dtype = getattr(value, "dtype", None)
        if dtype is not None and not callable(dtype):
            out["dtype"] = str(dtype).replace("torch.", "")
        columns = getattr(value, "column_names", None)
        if isinstance(columns, list):
            out["columns"] = [inline(str(c), 60) for c in columns[:MAX_KEYS]]
        if isinstance(value, Mapping) or (type(value).__name__ in ("BatchEncoding", "BatchFeature", "UserDict")):
            keys = list(value.keys())
            out["len"] = len(keys)
            out["keys"] = [inline(str(k), 60) for k in keys[:MAX_KEYS]]
        elif isinstance(value, (list, tuple)):
            out["len"] = len(value)
            head = value[:MAX_SCAN]
            kinds: list[str] = []
            for v in head:
                name = type(v).__name__
                if name not in kinds:
                    kinds.append(name)
                if len(kinds) > 3:
                    break
            out["items"] = kinds
            nones = sum(1 for v in head if v is None)
            if nones:
                out["none"] = nones
                out["first_none"] = next(i for i, v in enumerate(head) if v is None)
            lengths = {len(v) for v in head[:200] if isinstance(v, (list, tuple, str))}
            if lengths:
                out["item_lengths"] = [min(lengths), max(lengths)]
        elif "shape" not in out and type(value).__module__.split(".")[0] in ("builtins", "collections"):
            try:
                out["len"] = len(value)
            except TypeError:
                pass
    except Exception:  # a value whose attributes raise is summarised by its type alone
        pass
    return out


def describe(summary: dict[str, Any]) -> str:
    """A summary as the report shows it: ``list[16] of int, NoneType (3 None, the first at 5)``."""
    kind = summary.get("type", "?")
    if "value" in summary:
        return summary["value"] if kind in ("NoneType", "bool", "int", "float") else f"{kind} {summary['value']}"
    parts = [kind]
    if "shape" in summary:
        parts[0] = f"{kind}{summary['shape']}"
    elif "len" in summary:
        parts[0] = f"{kind}[{summary['len']}]"
    if "dtype" in summary:
        parts.append(summary["dtype"])
    if summary.get("keys"):
        more = "…" if summary.get("len", 0) > len(summary["keys"]) else ""
        parts.append("keys " + ", ".join(summary["keys"]) + more)
    if summary.get("columns"):
        parts.append("columns " + ", ".join(summary["columns"]))
    if summary.get("items"):
        parts.append("of " + ", ".join(summary["items"]))
    if summary.get("none"):
        parts.append(f"({summary['none']} None, the first at {summary['first_none']})")
    return " ".join(parts)


def _summarize_locals(frame, source: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The user frame's values, those its failing line names first (a global the line reads included)."""
    summaries: dict[str, dict[str, Any]] = {}
    raw: dict[str, Any] = {}
    try:
        local = dict(frame.f_locals)
        named = list(dict.fromkeys(re.findall(r"(?<![\w.])[A-Za-z_]\w*", source or "")))
        items = [(n, local[n]) for n in named if n in local]
        items += [(n, frame.f_globals[n]) for n in named if n not in local and n in frame.f_globals]
        items += [(n, v) for n, v in local.items() if n not in named]
    except Exception:
        return summaries, raw
    for name, value in items:
        if len(summaries) >= MAX_LOCALS:
            break
        if name.startswith("__") or inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value):
            continue
        summaries[name] = summarize(value)
        raw[name] = value
    return summaries, raw


def _qualname(code) -> str:
    """``Class.method`` where Python knows it (3.11+), without the ``outer.<locals>.`` of a nested function."""
    return getattr(code, "co_qualname", code.co_name).rsplit("<locals>.", 1)[-1]


def _exception_types(exc: BaseException) -> tuple[str, ...]:
    names = []
    for cls in type(exc).__mro__:
        names.append(cls.__name__)
    return tuple(names)


def innermost(exc: BaseException) -> BaseException:
    """The exception the user's code raised, unwrapped from ftdoctor's ``UserCodeError``."""
    seen = 0
    while type(exc).__name__ == "UserCodeError" and getattr(exc, "exc", None) is not None and seen < 5:
        exc = exc.exc
        seen += 1
    return exc


def read_evidence(exc: BaseException, stage: str = "", user_dir: str | None = None) -> Evidence:
    """The evidence of ``exc``: its message, the innermost frame of the user's code (in ``user_dir``, else the
    innermost frame outside installed packages) with its values summarised, and the frame that raised."""
    exc = innermost(exc)
    try:
        message = str(exc)
    except Exception:
        message = ""
    ev = Evidence(type(exc).__name__, message[:4000], stage, exc_types=_exception_types(exc))
    tb = exc.__traceback__
    user_frame = None
    while tb is not None and len(ev.frames) < MAX_FRAMES:
        code = tb.tb_frame.f_code
        info = FrameInfo(code.co_filename, tb.tb_lineno, _qualname(code))
        ev.frames.append(info)
        mine = is_user_file(code.co_filename, user_dir) if user_dir else not _is_library_file(code.co_filename)
        if mine:
            ev.user, user_frame = info, tb.tb_frame
        ev._frames.append(tb.tb_frame)
        tb = tb.tb_next
    if ev.frames and ev.frames[-1] is not ev.user:
        ev.library = ev.frames[-1]
        if ev.user is not None:
            ev.called = ev.frames[ev.frames.index(ev.user) + 1]
    if ev.user is not None:
        ev.user.source = _statement(ev.user) or _source_line(ev.user.file, ev.user.line)
        ev.values, ev._locals = _summarize_locals(user_frame, ev.user.source)
    if ev.library is not None:
        ev.library.source = _source_line(ev.library.file, ev.library.line)
        ev.library_values = _arguments_of(ev._frames[-1])
    return ev


def _arguments_of(frame) -> dict[str, dict[str, Any]]:
    """The arguments the raising library function was called with (not its other locals), summarised."""
    try:
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        local = frame.f_locals
        return {n: summarize(local[n]) for n in names if n != "self" and local.get(n) is not None and n in local}
    except Exception:
        return {}


# -- the registry -------------------------------------------------------------------------------------------------


@dataclass
class Cause:
    """A cause a diagnoser proposes: the finding that names it (None when an earlier finding already does, then
    ``predicted_by`` names that finding), how much of the evidence supports it, and the reason a stage that
    cannot go on gives."""

    finding: Finding | None
    support: int = MESSAGE
    reason: str = ""
    predicted_by: list[str] = field(default_factory=list)
    diagnoser: str = ""


@dataclass
class Diagnoser:
    name: str
    func: Callable[..., Any]
    codes: tuple[str, ...]
    stages: tuple[str, ...] | None
    order: int

    @property
    def params(self) -> list[inspect.Parameter]:
        return list(inspect.signature(self.func).parameters.values())


_DIAGNOSERS: dict[str, Diagnoser] = {}


def diagnoser(*, codes: tuple[str, ...] = (), stages: tuple[str, ...] | str | None = None, name: str | None = None):
    """Register ``func`` as the diagnoser of one cause. It receives by parameter name ``evidence`` (an
    ``Evidence``), ``exc``, ``stage``, ``findings_so_far`` and any fact the stage passes (``pipeline``, ``model``,
    ``batch``, ``args``, ``capture`` ...); a parameter without a default that the stage does not have makes it
    stay silent. It returns a ``Cause`` (or a ``Finding``, supported by the message alone) of the codes it
    declares, or None."""
    if isinstance(stages, str):
        stages = (stages,)

    def deco(func):
        key = name or f"{func.__module__}.{func.__qualname__}"
        _DIAGNOSERS[key] = Diagnoser(key, func, tuple(codes), stages, len(_DIAGNOSERS))
        return func

    return deco


def diagnosers_for(stage: str) -> list[Diagnoser]:
    return sorted((d for d in _DIAGNOSERS.values() if d.stages is None or stage in d.stages), key=lambda d: d.order)


def declared_by(name: str) -> tuple[str, ...]:
    """The codes the diagnoser ``name`` declares (the walk accepts them from any check that diagnosed)."""
    d = _DIAGNOSERS.get(name)
    return d.codes if d is not None else ()


def _arguments(d: Diagnoser, given: dict[str, Any]) -> dict[str, Any] | None:
    kwargs: dict[str, Any] = {}
    for p in d.params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = given.get(p.name)
        if value is not None and type(value).__name__ != "Unavailable":
            kwargs[p.name] = value
        elif p.default is not inspect.Parameter.empty:
            kwargs[p.name] = p.default
        else:
            return None
    return kwargs


def propose(
    exc: BaseException,
    stage: str,
    facts: Mapping[str, Any] | None = None,
    findings_so_far=(),
    *,
    evidence: Evidence | None = None,
    user_dir: str | None = None,
) -> tuple[Evidence, list[Cause]]:
    """Every cause the registered diagnosers propose for ``exc``, best-supported first (ties: registration
    order). A diagnoser that raises is silent: diagnosis never adds a crash to the user's."""
    facts = dict(facts or {})
    if user_dir is None:
        user_dir = _user_dir(facts)
    ev = evidence if evidence is not None else read_evidence(exc, stage, user_dir)
    given = {
        **facts,
        "evidence": ev,
        "exc": innermost(exc),
        "stage": stage,
        "findings_so_far": list(findings_so_far),
    }
    causes: list[Cause] = []
    seen = {getattr(f, "code", None) for f in findings_so_far}
    for d in diagnosers_for(stage):
        kwargs = _arguments(d, given)
        if kwargs is None:
            continue
        try:
            out = d.func(**kwargs)
        except Exception as err:  # a diagnoser's own bug: said where ftdoctor's tests see it, never to the user
            if os.environ.get("FTDOCTOR_STRICT_CONTRACTS") == "1":
                raise RuntimeError(f"diagnoser {d.name} crashed: {err!r}") from err
            continue
        if out is None:
            continue
        cause = out if isinstance(out, Cause) else Cause(out)
        if cause.finding is not None and cause.finding.code not in d.codes:
            if os.environ.get("FTDOCTOR_STRICT_CONTRACTS") == "1":
                raise RuntimeError(f"diagnoser {d.name} reported {cause.finding.code}, not one of {d.codes}")
            continue
        cause.diagnoser = d.name
        if cause.finding is not None and cause.finding.code in seen:
            # The cause is already reported (an earlier stage saw it in the data): the crash was predicted.
            code = cause.finding.code
            cause = Cause(
                None, cause.support + REPORTED, f"fails as predicted by {code}: {ev.first_line[:160]}", [code], d.name
            )
        if cause.finding is not None:
            cause.finding.evidence.setdefault("diagnosed_by", d.name)
            if cause.finding.location is None and ev.user is not None:
                cause.finding.location = ev.user.site
        causes.append(cause)
    order = {id(c): i for i, c in enumerate(causes)}
    causes.sort(key=lambda c: (-c.support, order[id(c)]))
    return ev, causes


def diagnose(
    exc: BaseException,
    stage: str,
    facts: Mapping[str, Any] | None = None,
    findings_so_far=(),
    *,
    evidence: Evidence | None = None,
    user_dir: str | None = None,
) -> tuple[Evidence, Cause | None]:
    """The best-supported cause of ``exc`` (None when no diagnoser recognises it), with the evidence read."""
    ev, causes = propose(exc, stage, facts, findings_so_far, evidence=evidence, user_dir=user_dir)
    return ev, (causes[0] if causes else None)


def _user_dir(facts: Mapping[str, Any]) -> str | None:
    for key in ("capture", "pipeline"):
        obj = facts.get(key)
        cap = getattr(obj, "capture", obj) if key == "pipeline" else obj
        d = getattr(cap, "user_dir", None)
        if isinstance(d, str) and d:
            return d
    return None


# -- the last resort ----------------------------------------------------------------------------------------------

# Phrases with which libraries state the remedy in their own error messages.
_REMEDY = re.compile(
    r"(?:^|(?<=[.!:;]\s))((?:[Yy]ou (?:should|need to|must|can|may want to)|[Pp]lease|[Tt]ry|"
    r"[Cc]onsider|[Mm]ake sure|[Ee]nsure|[Ss]et|[Uu]se|[Pp]ass|[Ii]nstall|[Rr]un|[Cc]heck)\b[^\n]*)"
)


def stated_remedy(text: str) -> str | None:
    """The remedy an exception's own message states ("You should ...", "Please ...", "Try ..."), if it has one:
    the best fix a relay of the error can offer."""
    m = _REMEDY.search(text or "")
    if m is None:
        return None
    remedy = m.group(1).strip()[:300]
    return remedy[0].upper() + remedy[1:] if len(remedy) > 12 else None


def where_text(ev: Evidence) -> str:
    """``at train.py:41 in add_token_positions(): `x = torch.tensor(v)`, where `v` = list[16] of int``, or ''."""
    if ev.user is None:
        return ""
    out = f"at {ev.user.site} in {ev.user.function}()"
    if ev.user.source:
        out += f": `{inline(ev.user.source, 200)}`"
    values = ev.values_text()
    if values:
        out += f", where {values}"
    return out


def relay(
    code: str,
    ev: Evidence,
    lead: str | None = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    location: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> Finding:
    """The last-resort finding: the error, the user's line that led to it and the values there (or, when no
    line of the user's code ran, the ``inputs`` the stage gave the library), and a fix that points at that line
    or states the message's own remedy. ``location`` is used only where no line of the user's code ran."""
    lead = (lead or ev.first_line).rstrip(". ")
    where = where_text(ev)
    shown_inputs = ""
    if not where and inputs:
        shown_inputs = ", ".join(
            f"`{inline(str(k), 60)}` = {describe(summarize(v))}" for k, v in list(inputs.items())[:8]
        )
    detail = lead
    if where:
        detail += f" — {where}."
    elif shown_inputs:
        detail += f" — on {shown_inputs}."
    else:
        detail += "."
    if ev.library is not None:
        detail += f" Raised in {ev.library.module_path}:{ev.library.line} ({ev.library.function}"
        args = ", ".join(f"`{n}` = {describe(s)}" for n, s in list(ev.library_values.items())[:6])
        detail += f", given {args})." if args else ")."
    remedy = stated_remedy(ev.message)
    callee = ev.called or ev.library
    callee = f"`{callee.function}()`" if callee is not None else "the library"
    if remedy:
        fix = f"{remedy} (from the error message)"
        fix += f"; the line to change is {ev.user.site}." if ev.user is not None else "."
    elif ev.user is not None:
        fix = (
            f"Change what {ev.user.site} (`{inline(ev.user.source or ev.user.function, 160)}`) hands to {callee}: "
            "one of the values shown is not what it accepts; --traceback shows every frame."
        )
    elif shown_inputs:
        fix = f"{callee} rejected what it was given from these inputs (no line of your code ran in between): make "
        fix += "them what it accepts; --traceback shows every frame."
    else:
        fix = f"{callee} raised on what the script built for it; --traceback shows every frame."
    extra: dict[str, Any] = {"exception": ev.text}
    if ev.user is not None:
        extra["user_frame"] = {"site": ev.user.site, "function": ev.user.function, "source": ev.user.source}
        extra["values"] = {n: describe(s) for n, s in ev.values.items()}
    elif inputs:
        extra["inputs"] = {str(k): describe(summarize(v)) for k, v in list(inputs.items())[:MAX_LOCALS]}
    if ev.library is not None:
        extra["library_frame"] = f"{ev.library.module_path}:{ev.library.line} ({ev.library.function})"
        extra["library_values"] = {n: describe(s) for n, s in ev.library_values.items()}
    extra.update(evidence or {})
    return finding(code, detail, fix, location=ev.user.site if ev.user is not None else location, evidence=extra)


__all__ = [
    "FACTS",
    "MESSAGE",
    "REPORTED",
    "VALUES",
    "Cause",
    "Diagnoser",
    "Evidence",
    "FrameInfo",
    "describe",
    "diagnose",
    "diagnoser",
    "propose",
    "read_evidence",
    "relay",
    "stated_remedy",
    "summarize",
]
