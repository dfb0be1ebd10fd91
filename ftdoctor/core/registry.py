"""The check API: built-in checks and third-party checks register the same way.

A check is a plain function decorated with ``@check(stage=...)``. The walk passes it what it needs by parameter
name (``model``, ``batch``, ``train_dataset``, ...); a parameter without a default that is not available makes the
check skip. A check returns a finding, a list of findings or None. A check that also produces something later
checks need returns ``Provide(value, findings)`` and declares ``provides="name"``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftdoctor.core.findings import Finding
from ftdoctor.core.stages import STAGES

ENTRY_POINT_GROUP = "ftdoctor.checks"


@dataclass
class Check:
    name: str
    stage: str
    func: Callable[..., Any]
    provides: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    order: int = 0
    default_fix: str = ""

    @property
    def params(self) -> list[inspect.Parameter]:
        return list(inspect.signature(self.func).parameters.values())


@dataclass
class Provide:
    """What a providing check returns: the values it made, keyed by name, its findings, and evidence for the
    stage's report (the one way a check publishes evidence)."""

    values: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    skip_reason: str | None = None  # set when the check could not do its work for a reason already reported
    evidence: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """Raised by a check that cannot judge this pipeline; the reason is shown if its whole stage skips."""


class Unavailable:
    """A value the walk cannot offer, with the reason a check that needs it is skipped."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unavailable({self.reason!r})"


class UserCodeError(Exception):
    """The user's code (collator, model forward, compute_metrics) raised while a check was running it."""

    def __init__(self, what: str, exc: BaseException):
        super().__init__(f"{what} raised {type(exc).__name__}: {exc}")
        self.what = what
        self.exc = exc


def run_user(what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the user's code; its exceptions become ``UserCodeError`` so they are never taken for ftdoctor bugs."""
    try:
        return func(*args, **kwargs)
    except UserCodeError:
        raise  # already attributed to the user's code that raised
    except Exception as exc:
        raise UserCodeError(what, exc) from exc


_CHECKS: dict[str, Check] = {}
_counter = 0


def check(
    stage: str,
    *,
    provides: str | tuple[str, ...] = (),
    codes: tuple[str, ...] = (),
    name: str | None = None,
    code: str | None = None,
    title: str | None = None,
    fix: str = "",
    severity: str = "error",
    why: str = "",
    broken: str = "",
    fixed: str = "",
):
    """Register ``func`` as a check of ``stage``. Checks of one stage run in the order they were registered.

    ``codes=`` declares the rules the check may report (the walk refuses any other code). With ``code=`` (and
    ``title=``, ``fix=``) the check declares its own rule, and may return a plain string: the detail of a finding
    with that code and fix.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    if code is not None:
        from ftdoctor.core.rules import rule

        rule(code, (name or code).lower(), stage, severity, title or code, why or title or code, broken, fixed)
        codes = (*codes, code)

    def deco(func):
        global _counter
        _counter += 1
        key = name or f"{func.__module__}.{func.__qualname__}"
        _CHECKS[key] = Check(
            key,
            stage,
            func,
            (provides,) if isinstance(provides, str) else tuple(provides),
            tuple(codes),
            _counter,
            default_fix=fix,
        )
        return func

    return deco


stage_check = check  # the public name: ftdoctor.stage_check


def checks_for(stage: str) -> list[Check]:
    return sorted((c for c in _CHECKS.values() if c.stage == stage), key=lambda c: c.order)


def all_checks() -> list[Check]:
    return sorted(_CHECKS.values(), key=lambda c: (STAGES.index(c.stage), c.order))


def check_origin(chk: Check) -> str | None:
    """The file of a check that a project or a plugin wrote; None for ftdoctor's own checks."""
    module = getattr(chk.func, "__module__", "") or ""
    if module == "ftdoctor" or module.startswith("ftdoctor."):
        return None
    code = getattr(chk.func, "__code__", None)
    return code.co_filename if code is not None else module or chk.name


_loaded = False
_local_loaded: set[str] = set()
LOCAL_DIR = "ftdoctor_checks"  # a project's own checks: every .py file in this folder


def load_local_checks(folders) -> list[str]:
    """Import a team's check modules (each ``*.py`` in the given folders, once); return load errors."""
    import importlib.util
    import os

    errors: list[str] = []
    for folder in folders:
        folder = os.path.abspath(folder)
        if not os.path.isdir(folder):
            continue
        for fname in sorted(os.listdir(folder)):
            path = os.path.join(folder, fname)
            if not fname.endswith(".py") or fname.startswith("_") or path in _local_loaded:
                continue
            _local_loaded.add(path)
            mod_name = f"ftdoctor_local_checks.{abs(hash(path)):x}.{fname[:-3]}"
            try:
                spec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except Exception as exc:
                errors.append(f"could not load checks from {path}: {type(exc).__name__}: {exc}")
    return errors


def load_checks() -> list[str]:
    """Import every module registered in the ``ftdoctor.checks`` entry point group; return load errors."""
    global _loaded
    errors: list[str] = []
    if _loaded:
        return errors
    _loaded = True
    from importlib.metadata import entry_points

    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    if not any(ep.value == "ftdoctor.checks" for ep in eps):
        # Running from a source tree that was never installed: the built-in checks are still ours to load.
        import importlib

        importlib.import_module("ftdoctor.checks")
    for ep in eps:
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not take the walk down
            errors.append(f"could not load checks from entry point {ep.name!r} ({ep.value}): {exc!r}")
    return errors


def default_check_dirs(*roots: str) -> list[str]:
    """A project's own checks live in ``ftdoctor_checks/`` beside the script or in the working directory."""
    from ftdoctor.core.registry import LOCAL_DIR

    out: list[str] = []
    for root in (*roots, os.getcwd()):
        path = os.path.join(os.path.abspath(root), LOCAL_DIR)
        if path not in out:
            out.append(path)
    return out
