"""The CUDA stand-in: a script written for a GPU (`model.to("cuda")`, `.cuda()`, `device=torch.device("cuda")`)
walked on a machine without one.

Such a script is correct where it will train; run here it would stop at its first device move with "Torch not
compiled with CUDA enabled" or "Found no NVIDIA driver", and every stage after setup would be skipped for a
reason that is not in the pipeline. When torch finds no GPU, `ftdoctor check` (its child process, never an
in-process walk) reruns the script with this stand-in, installed once the script imports torch, when its first run stopped at
such a line (a script that never asks for CUDA never runs with it): a move or an allocation that names CUDA
lands on the CPU instead, and `torch.cuda`'s housekeeping calls (`synchronize`, `set_device`, the memory
counters) answer as an idle device would. Nothing else changes: a CPU or other device, a dtype, a tensor given
to `.to()` pass through untouched, and `torch.cuda.is_available()` still says False, so a script that asks
first takes its own CPU path. What was redirected, and where the script first asked for CUDA, is reported
(FTD017, info): the memory and speed figures are then the CPU's.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import sysconfig
from typing import Any

# torch's factories that take a `device=` argument.
FACTORIES = (
    "tensor",
    "as_tensor",
    "zeros",
    "ones",
    "empty",
    "full",
    "arange",
    "range",
    "linspace",
    "logspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "randperm",
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "tril_indices",
    "triu_indices",
)

# torch.cuda's calls that only look after the device: what they answer on an idle GPU of the stand-in.
HOUSEKEEPING = {
    "synchronize": None,
    "set_device": None,
    "empty_cache": None,
    "reset_peak_memory_stats": None,
    "reset_max_memory_allocated": None,
    "reset_accumulated_memory_stats": None,
    "ipc_collect": None,
    "memory_allocated": 0,
    "max_memory_allocated": 0,
    "memory_reserved": 0,
    "max_memory_reserved": 0,
    "current_device": 0,
}


# What torch raises when a script asks for CUDA on a machine without it.
NO_CUDA = re.compile(
    r"Torch not compiled with CUDA enabled|Found no NVIDIA driver|No CUDA GPUs are available|"
    r"no CUDA-capable device is detected|CUDA driver initialization failed|"
    r"Attempting to deserialize object on a CUDA device but torch\.cuda\.is_available\(\) is False"
)


def asked_for_missing_cuda(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it chains) is torch saying there is no CUDA here."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if NO_CUDA.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_cuda(device: Any) -> bool:
    """Whether ``device`` (a torch.device, a string, or an index, which `.to()` and `.cuda()` read as a GPU)
    names CUDA."""
    import torch

    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.strip().split(":", 1)[0].lower() == "cuda"
    return isinstance(device, int) and not isinstance(device, bool)


class CudaStandIn:
    """The patches, what they redirected and where the script first asked; `restore` takes them away."""

    def __init__(self, user_dir: str | None = None) -> None:
        self.user_dir = os.path.abspath(user_dir) if user_dir else None
        self.redirected = 0
        self.first_site: tuple[str, int] | None = None
        self._undo: list[tuple[Any, str, Any]] = []

    # -- what was redirected ----------------------------------------------------------------------------------------
    def _note(self) -> None:
        self.redirected += 1
        if self.first_site is None:
            self.first_site = self._user_site()

    def _user_site(self) -> tuple[str, int] | None:
        frame = sys._getframe(1)
        libraries = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        while frame is not None:
            name = os.path.abspath(frame.f_code.co_filename)
            inside = self.user_dir is not None and name.startswith(self.user_dir + os.sep)
            library = name.startswith(here + os.sep) or any(name.startswith(p + os.sep) for p in libraries)
            if inside or (self.user_dir is None and not library and not name.startswith("<")):
                return name, frame.f_lineno
            frame = frame.f_back
        return None

    def facts(self) -> dict[str, Any] | None:
        """What the report says (None when the script never asked for CUDA)."""
        if not self.redirected:
            return None
        site = self.first_site
        return {"redirected": self.redirected, "file": site[0] if site else None, "line": site[1] if site else None}

    # -- the patches ------------------------------------------------------------------------------------------------
    def _set(self, owner: Any, name: str, value: Any) -> None:
        self._undo.append((owner, name, owner.__dict__.get(name, getattr(owner, name, None))))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, value in reversed(self._undo):
            setattr(owner, name, value)
        self._undo.clear()

    def _cpu(self, device: Any) -> Any:
        if is_cuda(device):
            self._note()
            return "cpu"
        return device

    def _to_args(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        import torch

        if args and isinstance(args[0], (torch.device, str, int)) and not isinstance(args[0], bool):
            args = (self._cpu(args[0]), *args[1:])
        if "device" in kwargs:
            kwargs = {**kwargs, "device": self._cpu(kwargs["device"])}
        return args, kwargs

    def install(self, torch: Any) -> None:
        standin = self

        def moving(orig):
            @functools.wraps(orig)
            def to(self, *args, **kwargs):
                args, kwargs = standin._to_args(args, kwargs)
                return orig(self, *args, **kwargs)

            return to

        def to_cpu(self, device=None, *args, **kwargs):
            standin._note()
            return self.to("cpu")

        def factory(orig):
            @functools.wraps(orig)
            def make(*args, **kwargs):
                if "device" in kwargs:
                    kwargs["device"] = standin._cpu(kwargs["device"])
                return orig(*args, **kwargs)

            return make

        self._set(torch.Tensor, "to", moving(torch.Tensor.to))
        self._set(torch.nn.Module, "to", moving(torch.nn.Module.to))
        self._set(torch.Tensor, "cuda", to_cpu)
        self._set(torch.nn.Module, "cuda", to_cpu)
        try:
            # torch's device context (`with torch.device("meta")`, used by from_pretrained) recognises its
            # constructors by identity, in a set built once: build it from the originals before they are wrapped.
            from torch.utils._device import _device_constructors

            _device_constructors()
        except Exception:
            pass
        for name in FACTORIES:
            if callable(getattr(torch, name, None)):
                self._set(torch, name, factory(getattr(torch, name)))
        for name, answer in HOUSEKEEPING.items():
            if callable(getattr(torch.cuda, name, None)):
                self._set(torch.cuda, name, lambda *a, _answer=answer, **k: _answer)


def install_when_imported(hooks: Any, user_dir: str | None) -> CudaStandIn:
    """Install the stand-in once the script imports torch, if torch finds no GPU there (``hooks``: the
    capture's PostImportHooks)."""
    standin = CudaStandIn(user_dir)

    def patch(torch: Any) -> None:
        try:
            if torch.cuda.is_available():
                return
        except Exception:
            pass
        standin.install(torch)

    hooks.when_imported("torch", patch)
    return standin
