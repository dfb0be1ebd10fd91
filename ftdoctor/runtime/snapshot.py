"""Copy-on-step restore of a model the walk works on in place (ftdoctor's own child process).

The walk trains the user's model itself, not a copy beside it. What an optimizer is about to change is saved just
before it changes, the first time only: the backward stage's step saves the few tensors it steps, an overfit trial
on the model every trainable weight, a stage that only runs the model saves nothing. Saved tensors stay in memory
while they take a small share of what the machine has free, and go to a file beyond that. `restore` puts back every
saved tensor that was stepped or changed since (its version counter moved, or its storage was replaced) and drops
the gradients.

A change no optimizer announced (a forward that edits its own weights through ``.data``) cannot be put back: it is
listed in ``unrestorable``; the same code does the same in the user's own run.
"""

from __future__ import annotations

import contextlib
import glob
import os
from typing import Any

SNAPSHOT_PREFIX = "ftdoctor-weights-"
# Saved tensors are kept in memory while they take at most this share of the memory free when they are saved (the
# walk's own peak, weights + gradients + optimizer moments, needs the rest); beyond it they go to a file.
IN_MEMORY_SHARE = 0.25


class WeightSnapshot:
    def __init__(self, model: Any) -> None:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self.params = {id(p): (n, p) for n, p in model.named_parameters() if p.requires_grad}
        self.saved: dict[int, Any] = {}  # id -> the value before the first step, on the CPU
        self.on_disk: dict[int, tuple[str, str]] = {}  # id -> (file, key)
        self.files: list[str] = []
        self.in_memory = 0
        self.unrestorable: set[str] = set()
        # Stepped since the last restore. Not every optimizer moves the version counter of what it writes (the fused
        # AdamW does not), so what an optimizer was about to step counts as changed.
        self.stepped: set[int] = set()
        self.versions = {i: _state(p) for i, (_, p) in self.params.items()}
        self._hook = register_optimizer_step_pre_hook(self._before_step)

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # A step given a closure (LBFGS) computes the gradients itself: everything it holds may move.
        closure = any(callable(a) for a in args or ()) or callable((kwargs or {}).get("closure"))
        todo = {}
        for group in getattr(optimizer, "param_groups", ()):
            for p in group.get("params", ()):
                i = id(p)
                if i not in self.params or (p.grad is None and not closure):
                    continue
                if i not in self.saved and i not in self.on_disk and i not in self.stepped:
                    todo[i] = p
                self.stepped.add(i)
        if todo:
            self._save(todo)

    def _save(self, todo: dict[int, Any]) -> None:
        from ftdoctor.runtime.devices import free_memory

        size = sum(p.numel() * p.element_size() for p in todo.values())
        free = free_memory()
        if free is None or self.in_memory + size <= IN_MEMORY_SHARE * free or not self._to_file(todo, size):
            for i, p in todo.items():
                self.saved[i] = p.detach().to("cpu", copy=True)
            self.in_memory += size

    def _to_file(self, todo: dict[int, Any], size: int) -> bool:
        import shutil
        import tempfile

        import torch

        folder = tempfile.gettempdir()
        remove_stale_snapshots(folder)
        try:
            if shutil.disk_usage(folder).free < 1.5 * size:
                return False
            fd, path = tempfile.mkstemp(prefix=f"{SNAPSHOT_PREFIX}{os.getpid()}-", suffix=".pt", dir=folder)
            os.close(fd)
        except OSError:
            return False
        self.files.append(path)
        try:
            torch.save({str(i): p.detach().cpu() for i, p in todo.items()}, path)
        except Exception:
            return False
        for i in todo:
            self.on_disk[i] = (path, str(i))
        return True

    def restore(self) -> None:
        """Every saved weight that changed back to its value before the first step; no gradients."""
        import torch

        loaded: dict[str, Any] = {}
        with torch.no_grad():
            for i, (name, p) in self.params.items():
                p.grad = None
                if i not in self.stepped and _state(p) == self.versions[i]:
                    continue
                source = self.saved.get(i)
                if source is None and i in self.on_disk:
                    path, key = self.on_disk[i]
                    if path not in loaded:
                        loaded[path] = torch.load(path, mmap=True, weights_only=True)
                    source = loaded[path][key]
                if source is None:
                    self.unrestorable.add(name)
                elif source.shape == p.shape:
                    p.copy_(source)
                else:  # the storage was replaced by one of another shape
                    p.data = source.to(p.device, copy=True)
                self.versions[i] = _state(p)
        self.stepped.clear()

    def discard(self) -> None:
        self._hook.remove()
        self.saved.clear()
        self.on_disk.clear()
        for path in self.files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.files.clear()


def _state(p: Any) -> tuple[int, int]:
    """What changes when a tensor is written to in place (its version counter) or given another storage."""
    return p._version, p.data_ptr()


def remove_stale_snapshots(folder: str) -> None:
    """Snapshot files left by a walk that was killed (its process is gone)."""
    for path in glob.glob(os.path.join(folder, SNAPSHOT_PREFIX + "*.pt")):
        pid = os.path.basename(path)[len(SNAPSHOT_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
