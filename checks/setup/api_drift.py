"""API drift: an argument, import, method or enum member that transformers, datasets, evaluate, TRL, PEFT or
accelerate removed or renamed (read from the table the libraries' own records give, checks/_drift.py), and an
argument a class never had (a typo of one it has)."""

from __future__ import annotations

import difflib
import re

from ftdoctor.checks import _drift
from ftdoctor.sdk import finding

_UNEXPECTED = re.compile(r"(?:(\w+)\.)?(\w+)\(\) got an unexpected keyword argument '(\w+)'")
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)' from '([\w.]+)'")
_NO_MODULE_ATTRIBUTE = re.compile(r"module '([\w.]+)' has no attribute '(\w+)'")
_NO_OBJECT_ATTRIBUTE = re.compile(r"'(\w+)' object has no attribute '(\w+)'")
_NO_CLASS_ATTRIBUTE = re.compile(r"type object '(\w+)' has no attribute '(\w+)'")
# transformers 5 tokenizers' own __getattr__: "BertTokenizer has no attribute as_target_tokenizer".
_NO_ATTRIBUTE = re.compile(r"^(\w+) has no attribute '?(\w+)'?$")


def removed_argument(exc):
    """``X.__init__() got an unexpected keyword argument 'a'`` (or ``f() ...``) where the table has ``a`` removed
    from ``X`` or one of its bases; else a typo of an argument ``X`` has."""
    if not isinstance(exc, TypeError):
        return None
    m = _UNEXPECTED.search(str(exc))
    if not m:
        return None
    cls_name, function, arg = m.groups()
    if function == "__init__" and cls_name:
        owner, cls = cls_name, _called_class(exc, cls_name)
        owners = _drift.lineage(cls) or [cls_name]
    elif cls_name is None:
        owner, cls, owners = function, None, [function]
    else:
        # A method's argument (``Trainer.train(model_path=)``); an override's own signature is FTD406's.
        if _drift.signature_drift(exc) is not None:
            return None
        cls = _called_class(exc, cls_name)
        owner = f"{cls_name}.{function}"
        owners = [f"{c}.{function}" for c in _drift.lineage(cls) or [cls_name]]
        cls = None  # a typo is judged against constructors only
    drift = _drift.find("argument", arg, owners)
    if drift is not None:
        value = _passed_value(exc, arg) or "..."
        evidence = {
            "argument": arg,
            "owner": owner,
            "library": drift.library,
            "version": drift.version,
            "source": drift.source,
        }
        replacement = drift.replacement
        if replacement and "." in replacement and replacement.split(".")[0][:1].isupper():
            # Moved to another class (a trainer's argument to its config class).
            config, new = replacement.rsplit(".", 1)
            evidence["replacement"] = replacement
            return finding(
                "FTD001",
                f"`{owner}` no longer takes `{arg}=`: {drift.where} moved it to `{config}`.",
                f"Pass `{new}={value}` to `{config}(...)` (given as `args=`) instead of `{arg}=...` here.",
                evidence=evidence,
            )
        if replacement and replacement.isidentifier():
            evidence["replacement"] = replacement
            return finding(
                "FTD001",
                f"`{owner}` no longer takes `{arg}=`: it was renamed `{replacement}` ({drift.where}).",
                f"Use `{replacement}={value}` instead of `{arg}=...`.",
                evidence=evidence,
            )
        return finding(
            "FTD001",
            f"`{owner}` no longer takes `{arg}=`: it was removed in {drift.where}.",
            f"Remove `{arg}=...`: {_sentence(drift.note)}",
            evidence=evidence,
        )
    close = _close_parameter(cls or _drift.loaded_class(owner), arg)
    if close:
        return finding(
            "FTD009",
            f"`{owner}` has no argument `{arg}`.",
            f"Did you mean `{close}=`?",
            evidence={"argument": arg, "owner": owner, "suggestion": close},
        )
    return None


def _called_class(exc, name: str):
    """The class being built (or whose method is called): the callee of the call at the raising line, resolved in
    its frame, or the class of that name in a library the script imported."""
    for frame, call, _source in _drift.calls_at(exc):
        obj = _drift.resolve(frame, call.func)
        owner = obj if isinstance(obj, type) else getattr(obj, "__self__", None)
        owner = owner if isinstance(owner, type) or owner is None else type(owner)
        if owner is not None and name in _drift.lineage(owner):
            return owner
    return _drift.loaded_class(name)


def _passed_value(exc, arg: str) -> str | None:
    """The source text of ``arg=...`` at the user's line, so the fix can be copied as is."""
    import ast

    for _frame, call, source in _drift.calls_at(exc):
        for kw in call.keywords:
            if kw.arg == arg:
                return ast.get_source_segment(source, kw.value)
    return None


def _close_parameter(cls, arg: str) -> str | None:
    import inspect

    # Only a class of the libraries, or a subclass of one, is judged: a user's own class may take anything.
    if cls is None or not any(c.__module__.split(".")[0] in _drift.LIBRARIES for c in cls.__mro__):
        return None
    try:
        params = list(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return None
    match = difflib.get_close_matches(arg, params, n=1, cutoff=0.75)
    return match[0] if match else None


def removed_import(exc):
    """``cannot import name 'N' from 'pkg'`` or ``module 'pkg' has no attribute 'N'`` for a name the table has
    removed from one of the libraries."""
    text = str(exc)
    if isinstance(exc, ImportError):
        m = _CANNOT_IMPORT.search(text)
        if not m:
            return None
        name, module = m.groups()
    elif isinstance(exc, AttributeError):
        m = _NO_MODULE_ATTRIBUTE.search(text)
        if not m:
            return None
        module, name = m.groups()
    else:
        return None
    library = module.split(".")[0]
    if library not in _drift.LIBRARIES:
        return None  # the user's own module, or another package
    drift = _drift.find("import", name, [module, library], libraries=(library,))
    if drift is None and library == "transformers" and name.startswith(("TF", "Flax")):
        drift = _drift.find("import", "TF*", ["transformers"])
    if drift is None:
        return None
    return finding(
        "FTD002",
        f"`{name}` is no longer exported by `{module}`: it was removed in {drift.where}.",
        _import_fix(name, drift),
        evidence={"name": name, "library": drift.library, "version": drift.version, "source": drift.source}
        | ({"replacement": drift.replacement} if drift.replacement else {}),
    )


def _import_fix(name: str, drift) -> str:
    new = drift.replacement
    if not new:
        return f"Remove the import: {_sentence(drift.note)}"
    parts = new.split(".")
    if len(parts) == 1:
        return f"from {drift.owner} import {new}"
    if len(parts) == 2 and parts[1][:1].islower():
        # A function of another package (datasets' load_metric -> evaluate.load).
        return f"import {parts[0]}, and call `{new}(...)` where the script called `{name}(...)`."
    return f"from {'.'.join(parts[:-1])} import {parts[-1]}"


def removed_attribute(exc):
    """``'Cls' object has no attribute 'm'`` for a method the table has removed from ``Cls`` or a base, and an enum
    member removed from a library's enum (``DistributedType.TPU``)."""
    if not isinstance(exc, AttributeError):
        return None
    text = str(exc)
    m = _NO_OBJECT_ATTRIBUTE.search(text) or _NO_CLASS_ATTRIBUTE.search(text) or _NO_ATTRIBUTE.match(text)
    if m:
        cls_name, name = m.groups()
        obj = getattr(exc, "obj", None)
        cls = obj if isinstance(obj, type) else (type(obj) if obj is not None else _drift.loaded_class(cls_name))
        owners = _drift.lineage(cls) if cls is not None and cls.__name__ == cls_name else []
    elif re.fullmatch(r"[A-Za-z_]\w*", text):
        # Python 3.11's Enum raises AttributeError(member), with the enum as ``obj`` (or read from the user's line).
        name, owners = text, []
        obj = getattr(exc, "obj", None)
        if isinstance(obj, type):
            owners = _drift.lineage(obj)
        for frame, node in [] if owners else _drift.attributes_at(exc, text):
            owner = _drift.resolve(frame, node.value)
            if isinstance(owner, type):
                owners = _drift.lineage(owner)
                break
    else:
        return None
    if not owners or owners[0].split(".")[0] == "":
        return None
    drift = _drift.find("attribute", name, owners)
    if drift is None or drift.owner not in owners:
        return None  # the object is not one of the libraries' classes, or the name never belonged to them
    owner = owners[0]
    if drift.kind == "attribute":
        fix = (
            f"Use `{drift.owner}.{drift.replacement}` instead of `{drift.owner}.{name}`."
            if drift.replacement
            else f"Stop using `{drift.owner}.{name}`: {_sentence(drift.note)}"
        )
    elif drift.replacement:
        fix = f"Use `{drift.replacement}` instead of `.{name}()`: {_sentence(drift.note)}"
    else:
        fix = f"Stop calling `.{name}()`: {_sentence(drift.note)}"
    return finding(
        "FTD002",
        f"`{owner}` no longer has `{name}`: it was removed from `{drift.owner}` in {drift.where}.",
        fix,
        evidence={"name": name, "owner": drift.owner, "library": drift.library, "version": drift.version,
                  "source": drift.source}
        | ({"replacement": drift.replacement} if drift.replacement else {}),
    )  # fmt: skip


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[0].upper() + text[1:] if text else text
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def column_object(exc):
    """`dataset["col"].to(device)` (or `.tolist()`, `.numpy()`, ...) on datasets 4 or later, where indexing a
    dataset by a column name returns a lazy `datasets.Column` instead of the column's values (a list, or a
    tensor under `set_format("torch")`)."""
    if not isinstance(exc, AttributeError):
        return None
    m = _NO_OBJECT_ATTRIBUTE.search(str(exc))
    if m is None or m.group(1) != "Column":
        return None
    obj = getattr(exc, "obj", None)
    if obj is not None and type(obj).__module__.split(".")[0] != "datasets":
        return None
    return finding(
        "FTD002",
        f"`dataset[column]` is a lazy `datasets.Column` since datasets 4.0, not the column's values, and a Column has "
        f"no `.{m.group(2)}` ({type(exc).__name__}: {exc}).",
        'Take the values first: `dataset[column][:]` (a tensor under `set_format("torch")`, else a list), or index '
        "the rows before the column: `dataset[:][column]`.",
        evidence={"attribute": m.group(2), "since": "datasets 4.0.0"},
    )
