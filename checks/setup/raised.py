"""Diagnosers of exceptions the script raised before training, read from the frames: a trainer given an arguments
class that lacks the fields it reads, a batched `map` whose function returns columns of different lengths."""

from __future__ import annotations

import inspect
import re

from ftdoctor.core.diagnosis import FACTS, MESSAGE, VALUES
from ftdoctor.sdk import Cause, Site, diagnoser, finding, rule

rule(
    "FTD020",
    "trainer-arguments-class",
    "setup",
    "error",
    "The trainer was given an arguments class that lacks the fields it reads",
    """
     Specialised trainers read settings that only their own arguments class has: `Seq2SeqTrainer` reads
     `generation_config` from `Seq2SeqTrainingArguments`, TRL's `DPOTrainer` reads `beta` and `model_init_kwargs`
     from `DPOConfig`, `SFTTrainer` reads `SFTConfig`. Given a plain `TrainingArguments`, building the trainer
     fails with "'TrainingArguments' object has no attribute ...". The subclass takes the same keyword arguments.
     """,
    broken="""
     args = TrainingArguments(output_dir="out", learning_rate=5e-7)
     trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
     """,
    fixed="""
     args = DPOConfig(output_dir="out", learning_rate=5e-7)
     trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
     """,
)
rule(
    "FTD021",
    "map-columns-of-different-lengths",
    "setup",
    "error",
    "A batched map returned columns of different lengths",
    """
     A batched `Dataset.map` may return more or fewer rows than it was given (one per window with
     `return_overflowing_tokens=True`), but every column it returns, and every input column it keeps, must have
     that many values. A column built once per example beside windowed ones, or an input column not removed,
     fails with "ArrowInvalid: Column ... expected length N but got length M".
     """,
    broken="""
     out = tokenizer(q, ctx, return_overflowing_tokens=True, stride=32, max_length=96)
     out["extra"] = per_example_values  # one per example, not one per window
     """,
    fixed="""
     out = tokenizer(q, ctx, return_overflowing_tokens=True, stride=32, max_length=96)
     out["extra"] = [per_example_values[i] for i in out["overflow_to_sample_mapping"]]
     """,
)

_NO_ATTRIBUTE = re.compile(r"'(\w+)' object has no attribute '(\w+)'")


def _subclasses(cls):
    seen, todo = [], list(cls.__subclasses__())
    while todo and len(seen) < 500:
        c = todo.pop()
        if c not in seen:
            seen.append(c)
            todo.extend(c.__subclasses__())
    return seen


def _named_like(owner, stem: str, base) -> list:
    """Subclasses of ``base`` that the trainer's package exports under its name (``Seq2Seq`` ...Arguments,
    ``DPO`` ...Config): packages load their classes lazily, so one the script never imported is found here."""
    import sys

    if not stem:
        return []
    package = sys.modules.get(type(owner).__module__.split(".")[0])
    out = []
    try:
        names = [n for n in dir(package) if n.startswith(stem) and n.endswith(("Arguments", "Config"))]
    except Exception:
        return []
    for name in names[:20]:
        try:
            cls = getattr(package, name)
        except Exception:
            continue
        if isinstance(cls, type) and issubclass(cls, base) and cls is not base:
            out.append(cls)
    return out


def _has_field(cls, name: str) -> bool:
    return name in getattr(cls, "__dataclass_fields__", {}) or name in vars(cls)


def _args_owner(evidence, kind: str):
    """The arguments object of class ``kind`` that a library frame was reading, and the frame's ``self``."""
    for frame in reversed(evidence._frames):
        try:
            local = frame.f_locals
            owner = local.get("self")
            for value in (local.get("args"), getattr(owner, "args", None)):
                if value is not None and type(value).__name__ == kind:
                    return value, owner
        except Exception:
            continue
    return None, None


def _annotated(owner, candidates):
    """The candidate named by the owner's ``__init__`` annotation of ``args`` (a string or a class)."""
    try:
        ann = inspect.signature(type(owner).__init__).parameters["args"].annotation
    except (KeyError, TypeError, ValueError):
        return None
    text = ann if isinstance(ann, str) else repr(ann)
    return next((c for c in candidates if re.search(rf"\b{c.__name__}\b", text)), None)


@diagnoser(codes=("FTD020",), stages="setup")
def trainer_arguments_class(evidence):
    """A trainer read a field its arguments object lacks, and a subclass of that object's class has it: the
    trainer wants that subclass."""
    m = _NO_ATTRIBUTE.search(evidence.message)
    if not evidence.is_a("AttributeError") or m is None:
        return None
    kind, attr = m.groups()
    args, owner = _args_owner(evidence, kind)
    if args is None or owner is None:
        return None
    stem = type(owner).__name__.removesuffix("Trainer")
    candidates = [c for c in _subclasses(type(args)) + _named_like(owner, stem, type(args)) if _has_field(c, attr)]
    candidates = list(dict.fromkeys(candidates))
    if not candidates:
        return None
    want = (
        _annotated(owner, candidates)
        or next((c for c in candidates if stem and c.__name__.startswith(stem)), None)
        or (candidates[0] if len(candidates) == 1 else None)
    )
    if want is None:
        return None
    trainer = type(owner).__name__
    package = want.__module__.split(".")[0]
    var = next((n for n in evidence.values if evidence.local(n) is args), None)
    location = None
    if var and evidence.user is not None:
        from ftdoctor.core.source import assignment_line

        line = assignment_line(evidence.user.file, var)
        location = str(Site(evidence.user.file, line)) if line else None
    f = finding(
        "FTD020",
        f"`{trainer}` reads `args.{attr}`, which `{kind}` does not have: it takes `{want.__name__}`, "
        f"the subclass of `{kind}` with its own settings ({evidence.first_line}).",
        f"Build the arguments as `{want.__name__}(...)` (`from {package} import {want.__name__}`) with the same "
        f"keyword arguments" + (f", and pass that as `args={var}`" if var else "") + ".",
        location=location,
        evidence={"arguments_class": kind, "expected_class": want.__name__, "attribute": attr},
    )
    return Cause(f, MESSAGE + VALUES + FACTS)


_LENGTHS = re.compile(r"Column (\d+) named (.+?) expected length (\d+) but got length (\d+)")


@diagnoser(codes=("FTD021",), stages="setup")
def map_columns_of_different_lengths(evidence):
    """Writing a batched map's output failed because its columns differ in length: a kept input column, or a
    column of per-example values beside per-window ones."""
    m = _LENGTHS.search(evidence.message)
    if m is None or not evidence.in_library("datasets/"):
        return None
    column, expected, got = m.group(2), int(m.group(3)), int(m.group(4))
    function = evidence.frame_local("function", callable)
    dataset = evidence.frame_local("self", lambda v: isinstance(getattr(v, "column_names", None), list))
    if function is None:
        return None
    name = getattr(function, "__name__", "the function")
    inputs = list(getattr(dataset, "column_names", None) or [])
    removed = evidence.frame_local("remove_columns")
    removed = [removed] if isinstance(removed, str) else list(removed or [])
    place, source = _assignment_of(function, column)
    kept = [c for c in inputs if c not in removed and _assignment_of(function, c)[0] is None]
    if (kept and place is None) or column in kept:
        detail = (
            f"`{name}` changes the number of rows ({expected} and {got} values in one batch), but the input "
            f"column{'s' if len(kept) > 1 else ''} {', '.join(f'`{c}`' for c in kept[:6])} it keeps "
            f"{'have' if len(kept) > 1 else 'has'} one value per input row: a batched map that changes the number "
            f"of rows must drop the input columns ({evidence.first_line})."
        )
        fix = f"Remove them in the map: `.map({name}, batched=True, remove_columns=<dataset>.column_names)`."
        location = evidence.user.site if evidence.user is not None else None
    else:
        overflow = "return_overflowing_tokens" in source
        detail = (
            f"`{name}` returns {expected} rows in its first column but {got} values in `{column}`"
            + (
                ": with `return_overflowing_tokens=True` the tokenizer gives one row per window, and "
                f"`{column}` has one value per example"
                if overflow
                else ""
            )
            + f" ({evidence.first_line})."
        )
        fix = f"Give `{column}` one value per returned row: " + (
            '`[values[i] for i in sample_mapping]`, where `sample_mapping = out["overflow_to_sample_mapping"]` '
            "names each window's example."
            if overflow
            else "build it from the rows the function returns, not from the rows it was given."
        )
        location = place or (evidence.user.site if evidence.user is not None else None)
    f = finding(
        "FTD021",
        detail,
        fix,
        location=location,
        evidence={"column": column, "rows": expected, "values": got, "function": name},
    )
    return Cause(f, MESSAGE + FACTS + (VALUES if place else 0))


def _assignment_of(function, column: str) -> tuple[str | None, str]:
    """The line of ``function`` that assigns ``[column]`` (file:line), and the function's source."""
    try:
        lines, start = inspect.getsourcelines(function)
        path = inspect.getsourcefile(function)
    except (OSError, TypeError):
        return None, ""
    source = "".join(lines)
    pattern = re.compile(rf"\[\s*['\"]{re.escape(column)}['\"]\s*\]\s*=(?!=)")
    for i, line in enumerate(lines):
        if pattern.search(line) and path:
            return str(Site(path, start + i)), source
    return None, source
