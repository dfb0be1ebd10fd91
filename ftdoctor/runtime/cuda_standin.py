"""The CUDA stand-in: a script written for a GPU walked on a machine without one.

Such a script is correct where it will train; run here it stops at its first GPU-only line — a device move
(`model.to("cuda")`, `.cuda()`, `device=torch.device("cuda")`: "Torch not compiled with CUDA enabled"),
bitsandbytes quantization or a device map on a GPU ("requires bitsandbytes"), `bf16=True` ("doesn't support
bf16/gpu") — and every stage after setup would be skipped for a reason that is not in the pipeline. When the
first run of `ftdoctor check` (its child process, never an in-process walk) ends that way, the parent runs the
script again with this stand-in, installed once the script imports torch and transformers: a move or an
allocation that names CUDA lands on the CPU, `torch.cuda`'s housekeeping calls (`synchronize`, `set_device`, the
memory counters) answer as an idle device would, `from_pretrained` leaves out bitsandbytes quantization and a GPU
device map (the model loads in full precision on the CPU), and bf16/fp16 run with `use_cpu=True`. In every run,
a bitsandbytes optimizer (`optim="paged_adamw_8bit"`) without bitsandbytes trains as `adamw_torch` (it fails
only once training starts). Nothing else changes: a CPU or other device, a dtype, a tensor given to `.to()` pass
through untouched, and `torch.cuda.is_available()` still says False, so a script that asks first takes its own
CPU path and runs once. What stood in, and where the script first asked, is reported (FTD017, info): the memory
and speed figures are then the CPU's.
"""

from __future__ import annotations

import functools
import os
import re
import sys
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
    r"Attempting to deserialize object on a CUDA device but torch\.cuda\.is_available\(\) is False|"
    # bitsandbytes quantization, which needs the package and an NVIDIA GPU
    r"quantization requires bitsandbytes|A GPU is needed for quantization|No GPU found\. A GPU is needed|"
    # mixed precision the TrainingArguments refuse without a GPU
    r"support bf16/gpu|(?:bf16|fp16|mixed precision)[^\n]*(?:requires?|only be used on|needs?) (?:a )?(?:CUDA|GPU)"
)

# Trainer optimizers (`optim=`) that bitsandbytes provides: built only when it is installed.
BNB_OPTIMIZERS = re.compile(r"bnb|_8bit$|^paged_|^lion_32bit$|^ademamix$")


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
        self.dropped: list[str] = []  # loading arguments only a GPU can honour, left out
        self.optimizer: tuple[str, str] | None = None  # a bitsandbytes optimizer, and what stands in for it
        self.cpu_precision = False  # bf16/fp16 asked for without a GPU: run on the CPU (the second run only)
        self._undo: list[tuple[Any, str, Any]] = []

    # -- what was redirected ----------------------------------------------------------------------------------------
    def _note(self) -> None:
        self.redirected += 1
        if self.first_site is None:
            self.first_site = self._user_site()

    def _user_site(self) -> tuple[str, int] | None:
        from ftdoctor.core.frames import deepest_user_frame

        frame = deepest_user_frame(sys._getframe(1), self.user_dir) if self.user_dir else None
        return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None

    def facts(self) -> dict[str, Any] | None:
        """What the report says (None when the script never asked for anything only a GPU has)."""
        if not (self.redirected or self.dropped or self.optimizer):
            return None
        site = self.first_site
        return {
            "redirected": self.redirected,
            "dropped": list(self.dropped),
            "optimizer": list(self.optimizer) if self.optimizer else None,
            "file": site[0] if site else None,
            "line": site[1] if site else None,
        }

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

    def install_loading(self, modeling_utils: Any) -> None:
        """`from_pretrained` without what only a GPU can honour: bitsandbytes quantization (4-bit, 8-bit) and a
        device map that places the model on a GPU; the model loads in full precision on the CPU."""
        standin = self
        owner = modeling_utils.PreTrainedModel
        func = owner.__dict__["from_pretrained"].__func__

        @functools.wraps(func)
        def from_pretrained(cls, *args, **kwargs):
            config = kwargs.get("quantization_config")
            if config is not None and _bitsandbytes(config):
                kwargs.pop("quantization_config")
                standin._drop(f"the model loaded without its {_bits(config)}-bit bitsandbytes `quantization_config`")
            for legacy in ("load_in_4bit", "load_in_8bit"):
                if kwargs.pop(legacy, False):
                    standin._drop(f"the model loaded without `{legacy}=True`")
            device_map = kwargs.get("device_map")
            if device_map is not None and _places_on_gpu(device_map):
                kwargs.pop("device_map")
                standin._drop(f"the model loaded on the CPU, not by `device_map={device_map!r}`")
            return func(cls, *args, **kwargs)

        self._set(owner, "from_pretrained", classmethod(from_pretrained))

    def install_arguments(self, training_args: Any) -> None:
        """TrainingArguments whose `optim` is a bitsandbytes optimizer train with `adamw_torch` instead."""
        standin = self
        owner = training_args.TrainingArguments
        post_init = owner.__dict__["__post_init__"]

        @functools.wraps(post_init)
        def __post_init__(self, *args, **kwargs):
            name = str(getattr(self.optim, "value", self.optim) or "")
            if BNB_OPTIMIZERS.search(name) and _bitsandbytes_missing():
                standin.optimizer = (name, "adamw_torch")
                standin._note()
                self.optim = "adamw_torch"
            if standin.cpu_precision and (getattr(self, "bf16", False) or getattr(self, "fp16", False)):
                if not getattr(self, "use_cpu", False):
                    # bf16/fp16 without a GPU: the TrainingArguments run them on the CPU only when told to
                    self.use_cpu = True
                    standin._drop(f"`{'bf16' if self.bf16 else 'fp16'}=True` run on the CPU (`use_cpu=True`)")
            return post_init(self, *args, **kwargs)

        self._set(owner, "__post_init__", __post_init__)

    def _drop(self, what: str) -> None:
        self.dropped.append(what)
        self._note()


def _field(config: Any, key: str) -> Any:
    """A field of a quantization config, given as the config object or as a dict."""
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def _bitsandbytes(config: Any) -> bool:
    method = _field(config, "quant_method")
    method = str(getattr(method, "value", method) or "")
    return method == "bitsandbytes" or bool(_field(config, "load_in_4bit")) or bool(_field(config, "load_in_8bit"))


def _bits(config: Any) -> int:
    return 4 if _field(config, "load_in_4bit") else 8


def _places_on_gpu(device_map: Any) -> bool:
    """A device map naming a GPU (an index, "cuda", {"": 0}); "auto", "cpu", "balanced" and the like are left."""
    if isinstance(device_map, dict):
        return any(is_cuda(v) for v in device_map.values())
    return is_cuda(device_map)


def _bitsandbytes_missing() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("bitsandbytes") is None
    except (ImportError, ValueError):
        return True


def install_when_imported(hooks: Any, user_dir: str | None, *, gpu_only_calls: bool = True) -> CudaStandIn:
    """Install the stand-in once the script imports torch and transformers, if torch finds no GPU there
    (``hooks``: a PostImportHooks). ``gpu_only_calls=False`` (the first run) installs only the optimizer part:
    a bitsandbytes optimizer without bitsandbytes fails only once training starts, after the capture."""
    standin = CudaStandIn(user_dir)

    def no_gpu() -> bool:
        import torch

        try:
            return not torch.cuda.is_available()
        except Exception:
            return True

    def patch(torch: Any) -> None:
        if no_gpu():
            standin.install(torch)

    def loading(module: Any) -> None:
        if no_gpu():
            standin.install_loading(module)

    def arguments(module: Any) -> None:
        standin.cpu_precision = gpu_only_calls and no_gpu()
        if _bitsandbytes_missing() or standin.cpu_precision:
            standin.install_arguments(module)

    if gpu_only_calls:
        hooks.when_imported("torch", patch)
        hooks.when_imported("transformers.modeling_utils", loading)
    hooks.when_imported("transformers.training_args", arguments)
    return standin
