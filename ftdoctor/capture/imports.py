"""Patch a module only once the script imports it (or at once, if it already is imported)."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any


class _LoaderWithHooks:
    """Wraps a module's loader: runs the module, then the hooks waiting for it."""

    def __init__(self, loader: Any, after: Callable[[Any], None]):
        self._loader = loader
        self._after = after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class PostImportHooks:
    """Run a function right after a module is imported (or now, if it already is).

    The script keeps its own import order: a script that sets `HF_HUB_OFFLINE` or `HF_HOME` before importing
    transformers must find them honoured, so ftdoctor patches torch and transformers only once the script imports
    them, not before it runs.
    """

    def __init__(self) -> None:
        self.pending: dict[str, list[Callable[[Any], None]]] = {}
        self._resolving: set[str] = set()
        self.installed = False
        self.errors: list[str] = []

    def when_imported(self, name: str, fn: Callable[[Any], None]) -> None:
        module = sys.modules.get(name)
        if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False) is False:
            fn(module)
            return
        self.pending.setdefault(name, []).append(fn)
        if not self.installed:
            sys.meta_path.insert(0, self)
            self.installed = True

    def find_spec(self, name: str, path: Any = None, target: Any = None):
        if name not in self.pending or name in self._resolving:
            return None  # (another PostImportHooks asking back while it resolves the same name)
        self._resolving.add(name)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._resolving.discard(name)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _LoaderWithHooks(spec.loader, lambda module: self._fire(name, module))
        return spec

    def _fire(self, name: str, module: Any) -> None:
        for fn in self.pending.pop(name, []):
            try:
                fn(module)
            except Exception:  # ftdoctor's own failure must not break the script's import
                self.errors.append(f"patching {name} failed:\n{traceback.format_exc()}")

    def remove(self) -> None:
        if self.installed:
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            self.installed = False
        self.pending.clear()
