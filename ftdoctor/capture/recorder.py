"""Where the script built its trainer, arguments, model and tokenizer (the lines findings point at), and the
class-level patches that ftdoctor takes away again before it walks."""

from __future__ import annotations

import sys
from typing import Any

from ftdoctor.core.frames import deepest_user_frame
from ftdoctor.core.source import Site


class Recorder:
    """Class-level patches that note where the script built its trainer, arguments, model and tokenizer."""

    def __init__(self, cap: Any):
        self.cap = cap
        self._undo: list[tuple[Any, str, Any]] = []

    def record(self, obj: Any, kwargs: dict[str, Any] | None = None) -> None:
        if id(obj) in self.cap.sites:
            return  # keep the outermost (first recorded) site: from_pretrained, not the __init__ inside it
        frame = deepest_user_frame(sys._getframe(2), self.cap.user_dir)
        if frame is None:
            return
        self.cap.sites[id(obj)] = Site(frame.f_code.co_filename, frame.f_lineno)
        if kwargs is not None:
            self.cap.call_kwargs[id(obj)] = dict(kwargs)
        self.cap._keep.append(obj)

    def patch_init(self, cls: type, method: str = "__init__") -> None:
        orig = cls.__dict__[method]
        recorder = self

        def init(self, *args, **kwargs):
            recorder.record(self, kwargs)
            return orig(self, *args, **kwargs)

        init.__wrapped__ = orig  # type: ignore[attr-defined]
        self._set(cls, method, init)

    def patch_from_pretrained(self, cls: type) -> None:
        orig = cls.__dict__["from_pretrained"]
        func = orig.__func__
        recorder = self

        def from_pretrained(klass, *args, **kwargs):
            obj = func(klass, *args, **kwargs)
            _as_if_online(obj, kwargs)
            recorder.cap.sites.pop(id(obj), None)
            recorder.record(obj, kwargs)
            return obj

        self._set(cls, "from_pretrained", classmethod(from_pretrained))

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self._undo.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    def undo(self) -> None:
        for owner, name, value in reversed(self._undo):
            setattr(owner, name, value)
        self._undo.clear()


def _as_if_online(obj: Any, kwargs: dict) -> None:
    """A tokenizer loaded while ftdoctor (not the user) forced HF_HUB_OFFLINE records `local_files_only=True` in
    its init kwargs; `datasets` hashes those into the fingerprint of every `.map` that uses the tokenizer, so the
    user's cached map would be recomputed (and cached twice). Record what the user's own run records."""
    import os

    from ftdoctor.core.env import FORCED_OFFLINE

    if "HF_HUB_OFFLINE" not in os.environ.get(FORCED_OFFLINE, "").split(",") or "local_files_only" in kwargs:
        return
    init = getattr(obj, "init_kwargs", None)
    if isinstance(init, dict) and init.get("local_files_only") is True:
        init["local_files_only"] = False
