"""The objects a script holds, enumerated safely.

A script's namespace holds classes, modules, functions, lazy placeholders of transformers for a missing backend
(whose every attribute access raises ImportError), objects whose `__len__` or `__bool__` raise (a compiled model),
and proxies. Everything ftdoctor asks of them goes through here, so what the script holds can never crash it.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

_SKIPPED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def values(namespace: dict) -> list[Any]:
    """The script's objects (not its classes, modules or functions), each once, in the namespace's order."""
    out, seen = [], set()
    for name, value in list(namespace.items()):
        if name.startswith("__") or _is_skipped(value) or id(value) in seen:
            continue
        seen.add(id(value))
        out.append(value)
    return out


def items(namespace: dict) -> list[tuple[str, Any]]:
    out = []
    for name, value in list(namespace.items()):
        if not name.startswith("_") and not _is_skipped(value):
            out.append((name, value))
    return out


def _is_skipped(value: Any) -> bool:
    try:
        return isinstance(value, _SKIPPED)
    except Exception:
        return True


def is_a(value: Any, cls: Any) -> bool:
    try:
        return isinstance(value, cls)
    except Exception:
        return False


def attr(value: Any, name: str, default: Any = None) -> Any:
    """``getattr`` that answers ``default`` when asking raises (a placeholder for a missing backend)."""
    try:
        return getattr(value, name, default)
    except Exception:
        return default


def length(value: Any) -> int | None:
    if _is_skipped(value):
        return None
    try:
        return len(value)
    except Exception:
        return None


def _is_hf_dataset(value: Any) -> bool:
    try:
        return type(value).__module__.startswith("datasets.") and attr(value, "column_names") is not None
    except Exception:
        return False


def datasets(namespace: dict) -> Iterator[tuple[str, Any]]:
    """Every `datasets` dataset the script holds, with the name the script would use (`tokenized["train"]` for a
    split of a DatasetDict); streaming ones included."""
    for name, value in items(namespace):
        kind = type(value).__name__
        if kind in ("DatasetDict", "IterableDatasetDict"):
            try:
                splits = list(value.keys())
            except Exception:
                continue
            for split in splits:
                try:
                    ds = value[split]
                except Exception:
                    continue
                if _is_hf_dataset(ds):
                    yield f'{name}["{split}"]', ds
        elif _is_hf_dataset(value):
            yield name, value


def of_type(namespace: dict, cls: Any) -> list[Any]:
    return [v for v in values(namespace) if is_a(v, cls)]
