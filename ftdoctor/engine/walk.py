"""The stage walk: run every registered check in stage order, passing each what it asks for by name."""

from __future__ import annotations

import contextlib
import inspect
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ftdoctor.core import progress as progress_mod
from ftdoctor.core.diagnosis import declared_by
from ftdoctor.core.findings import Finding
from ftdoctor.core.registry import (
    Check,
    Provide,
    Skip,
    Unavailable,
    UserCodeError,
    check_origin,
    checks_for,
    load_checks,
    load_local_checks,
    run_user,
)
from ftdoctor.core.report import Report, StageResult, environment
from ftdoctor.core.rules import RULES
from ftdoctor.core.stages import DEFAULT_STAGES, STAGES, with_dependencies

__all__ = ["Context", "Unavailable", "UserCodeError", "run_user", "walk"]


class UndeclaredFinding(Exception):
    """A check reported a code it did not declare, or changed the severity its rule fixes: a bug in the check."""


class Context:
    """The values checks can ask for by name; a missing one carries the reason."""

    def __init__(self, values: dict[str, Any]):
        self.values: dict[str, Any] = {}
        self.reasons: dict[str, str] = {}
        for k, v in values.items():
            self.set(k, v)

    def set(self, name: str, value: Any) -> None:
        if isinstance(value, Unavailable):
            self.values.pop(name, None)
            self.reasons[name] = value.reason
        else:
            self.values[name] = value
            self.reasons.pop(name, None)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.values

    def arguments_for(self, chk: Check) -> tuple[dict[str, Any] | None, str | None]:
        kwargs: dict[str, Any] = {}
        for p in chk.params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name == "ctx":
                kwargs["ctx"] = self
            elif p.name in self.values:
                kwargs[p.name] = self.values[p.name]
            elif p.default is not inspect.Parameter.empty:
                kwargs[p.name] = p.default
            else:
                return None, self.reasons.get(p.name, f"`{p.name}` is not available for this pipeline")
        return kwargs, None


STRICT_ENV = "FTDOCTOR_STRICT_CONTRACTS"  # set by ftdoctor's own test suite: a broken check contract fails the run


def strict_contracts() -> bool:
    """Whether a check that reports an undeclared code stops the walk (ftdoctor's tests) or is noted (users)."""
    import os

    return os.environ.get(STRICT_ENV) == "1"


def _as_findings(result: Any, chk: Check) -> tuple[list[Finding], list[str]]:
    """The check's findings, each with the severity its rule fixes, and how the check broke its contract (a code
    it did not declare, another severity than its rule's). Such findings are kept: the report stands."""
    if result is None or result is True:
        return [], []
    if isinstance(result, (Finding, str)):
        result = [result]
    out: list[Finding] = []
    broken: list[str] = []
    for f in result:
        if isinstance(f, str):  # a check with its own rule may return just the detail
            from ftdoctor.core.findings import finding

            f = finding(chk.codes[-1], f, chk.default_fix)
        if f is None:
            continue
        rule = RULES.get(f.code)
        if f.code not in chk.codes and f.code not in declared_by(f.evidence.get("diagnosed_by", "")):
            broken.append(
                f"it reported {f.code}, which it does not declare (declared: "
                f"{', '.join(chk.codes) or 'none'})" + ("" if rule else "; no rule has that code")
            )
        if rule is not None and f.severity != rule.severity:
            broken.append(f"it reported {f.code} as {f.severity}; its rule says {rule.severity}")
            f.severity = rule.severity
        out.append(f)
    return out, broken


def _diagnosed(exc: UserCodeError, stage: str, ctx: Context, chk: Check) -> tuple[Finding | None, str]:
    """A check let the user's exception through: the diagnosers name its cause (None and the reason when an
    earlier finding already does), else FTD900 relays it with the user's line and the values there."""
    from ftdoctor.core.diagnosis import diagnose, relay

    ev, cause = diagnose(exc, stage, ctx.values, ctx.values.get("findings_so_far", []))
    if cause is not None and cause.finding is None:
        return None, cause.reason or str(exc)
    if cause is not None:
        return cause.finding, cause.reason or str(exc)
    f = relay("FTD900", ev, f"While {stage} ran, {exc}")
    f.evidence.update({"check": chk.name, "traceback": "".join(traceback.format_exception(exc.exc))})
    return f, str(exc)


def run_stage(
    stage: str,
    ctx: Context,
    result: StageResult,
    internal_errors: list[str],
    checks: list[Check] | None = None,
    check_errors: list[str] | None = None,
) -> None:
    """Run the checks of ``stage``. A built-in check that fails is ftdoctor's internal error; a project's or a
    plugin's check that fails goes to ``check_errors``, named with its file."""
    skipped: list[str] = []
    ran = 0
    main_skipped = None  # the stage's main work (a check that provides values) could not be done
    for chk in checks if checks is not None else checks_for(stage):
        kwargs, reason = ctx.arguments_for(chk)
        if kwargs is None:
            skipped.append(reason or "")
            for name in chk.provides:
                ctx.set(name, Unavailable(reason or f"{chk.name} could not run"))
            if chk.provides:  # the stage's main work could not be done
                main_skipped = main_skipped or reason
            continue
        try:
            out = chk.func(**kwargs)
        except Skip as exc:
            skipped.append(str(exc))
            for name in chk.provides:
                ctx.set(name, Unavailable(str(exc)))
            continue
        except UserCodeError as exc:
            # A check that lets the user's exception through did not diagnose it: the walk reports it plainly.

            relay, reason = _diagnosed(exc, stage, ctx, chk)
            if relay is not None:
                result.findings.append(relay)
                ctx.values["findings_so_far"].append(relay)
            else:
                skipped.append(reason)
            for name in chk.provides:
                ctx.set(name, Unavailable(reason))
            ran += 1
            continue
        except Exception as exc:  # a bug in ftdoctor or in a third-party check: never blamed on the user's pipeline
            where = check_origin(chk)
            text = f"check {chk.name} ({stage}) crashed: {type(exc).__name__}: {exc}\n" + traceback.format_exc()
            if where is None or check_errors is None:
                internal_errors.append(text)
                reason = f"ftdoctor's check {chk.name} crashed (an ftdoctor bug, not yours)"
            else:
                check_errors.append(f"{where}: {text}")
                reason = f"the check {chk.name} ({where}) crashed"
            result.crashed.append(chk.name)
            for name in chk.provides:
                ctx.set(name, Unavailable(reason))
            skipped.append(reason)
            continue
        ran += 1
        if isinstance(out, Provide):
            if out.skip_reason and not out.findings:
                ran -= 1
                skipped.append(out.skip_reason)
                if chk.provides:
                    main_skipped = main_skipped or out.skip_reason
            for name in chk.provides:
                value = out.values.get(name)
                ctx.set(
                    name,
                    value if value is not None else Unavailable(out.skip_reason or f"{stage} could not build `{name}`"),
                )
            for name, value in out.values.items():
                if name not in chk.provides:
                    ctx.set(name, value)
            result.evidence.update(out.evidence)
            out = out.findings
        new, broken = _as_findings(out, chk)
        if broken:
            if strict_contracts():
                raise UndeclaredFinding("; ".join(broken))
            # In a user's run the findings stand (with their rule's severity): a check's broken contract is the
            # check's bug (ftdoctor's, or the file of a project's own check), not a reason to drop the report.
            where = check_origin(chk)
            if where is None or check_errors is None:
                internal_errors.extend(f"check {chk.name} ({stage}) broke its contract: {x}" for x in broken)
            else:
                check_errors.extend(f"{where}: check {chk.name} ({stage}) broke its contract: {x}" for x in broken)
        result.findings.extend(new)
        ctx.values["findings_so_far"].extend(new)
    if ran == 0 or (main_skipped and not result.findings):
        result.status = "skip"
        result.reason = main_skipped or next((r for r in skipped if r), "no check applies to this pipeline")
    elif any(f.severity == "error" for f in result.findings):
        result.status = "fail"
    elif any(f.severity == "warning" for f in result.findings):
        result.status = "warn"
    else:
        result.status = "pass"


def walk(
    values: dict[str, Any],
    *,
    script: str | None = None,
    stages: Iterable[str] | None = None,
    progress: Callable[[str], Any] | None = None,
    check_dirs: Iterable[str] = (),
    checks: list[Check] | None = None,
    stage_done: Callable[[Report], Any] | None = None,
) -> Report:
    """Run the stages over ``values`` (see pipeline.context_values) and return the report. ``checks`` replaces
    the registered checks (the engine's own tests); ``stage_done`` receives the report so far after each stage
    (the child saves it, so a walk stopped by its timeout still reports the stages that finished)."""
    start = time.perf_counter()
    report = Report(script=script, task=values.get("task"))
    if checks is None:
        # A plugin or a project check that does not import is its own file's fault, not ftdoctor's.
        report.check_errors.extend(load_checks())
        report.check_errors.extend(load_local_checks(check_dirs))
    asked = set(stages) if stages else set(DEFAULT_STAGES)
    unknown = asked - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s): {', '.join(sorted(unknown))}; stages are {', '.join(STAGES)}")
    wanted = set(with_dependencies(asked)) if checks is None else asked
    target = values.get("target")
    keep = target.preserved() if hasattr(target, "preserved") else contextlib.nullcontext()
    if values.get("disposable") and target is not None:
        target.in_place_allowed = True  # ftdoctor's own process: the model may be worked on in place
    with preserved_state(), keep, _discarding(target):
        _decide_budget(values)  # inside: it measures this machine, and measuring must not move the RNGs
        ctx = Context(values)
        ctx.set("findings_so_far", [])
        for stage in STAGES:
            if stage not in wanted:
                continue
            result = StageResult(stage)
            report.stages.append(result)
            if progress is not None:
                progress(stage)
            progress_mod.begin(stage)
            t0 = time.perf_counter()
            run_stage(
                stage,
                ctx,
                result,
                report.internal_errors,
                None if checks is None else [c for c in checks if c.stage == stage],
                report.check_errors if checks is None else None,
            )
            result.duration_s = time.perf_counter() - t0
            _release(ctx, [s for s in STAGES[STAGES.index(stage) + 1 :] if s in wanted], checks)
            if hasattr(target, "stage_done"):
                target.stage_done()
            if stage_done is not None:
                stage_done(report)
    report.context = ctx.values
    from ftdoctor.engine.budget import Budget

    budget = values.get("budget")
    if isinstance(budget, Budget):
        # in_place: the model itself was worked on (ftdoctor's own process), its weights restored after each stage.
        report.budget = {
            "mode": budget.mode,
            "rows": budget.rows,
            "max_tokens": budget.max_tokens,
            "overfit_seconds": budget.overfit_seconds,
            "reduced": list(budget.notes),
            "in_place": bool(getattr(target, "worked_in_place", False)),
            "device": str(getattr(target, "work_device", "cpu")),
        }
    report.environment = environment()
    report.duration_s = time.perf_counter() - start
    return report


@contextlib.contextmanager
def _discarding(target: Any):
    try:
        yield
    finally:
        if hasattr(target, "discard"):
            target.discard()


# Values as large as the model (a working copy, its optimizer): dropped once no later check asks for them, so a
# large model's walk does not hold a second copy through the stages that make copies of their own.
HEAVY = ("work_model", "work_optimizer", "outputs")


def _release(ctx: Context, later: list[str], checks: list[Check] | None) -> None:
    wanted = {
        p.name
        for stage in later
        for chk in (checks_for(stage) if checks is None else [c for c in checks if c.stage == stage])
        for p in chk.params
    }
    for name in HEAVY:
        if name in ctx.values and name not in wanted:
            ctx.set(name, Unavailable(f"`{name}` was released after the last stage that uses it"))


def _decide_budget(values: dict[str, Any]) -> None:
    """The budget option ("fast", "full") becomes the walk's Budget for this pipeline on its kind of device; an
    ``overfit_seconds`` option sets the overfit stage's time (None: no limit)."""
    from ftdoctor.engine.budget import Budget, decide

    if not isinstance(values.get("budget"), Budget):
        mode = values.get("budget") if isinstance(values.get("budget"), str) else "fast"
        model = values.get("model")
        if model is None or isinstance(model, Unavailable):
            values["budget"] = Budget(mode)
        else:
            device = getattr(values.get("target"), "work_device", None)
            values["budget"] = decide(model, values.get("args"), mode, str(device) if device is not None else "cpu")
    if "overfit_seconds" in values:
        values["budget"].overfit_seconds = values["overfit_seconds"]


class preserved_state:
    """Restore every random number generator and the grad mode (the target restores its framework's state)."""

    def __enter__(self):
        import random

        import numpy as np
        import torch

        self.py = random.getstate()
        self.np = np.random.get_state()
        self.torch = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )
        self.grad = torch.is_grad_enabled()
        return self

    def __exit__(self, *exc):
        import random

        import numpy as np
        import torch

        random.setstate(self.py)
        np.random.set_state(self.np)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        torch.set_grad_enabled(self.grad)
        return False
