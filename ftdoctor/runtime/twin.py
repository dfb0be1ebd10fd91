"""A shrunk twin of the user's model, for the stages that train it for many steps (overfit, the rate sweep).

On a model too large for the machine, dozens of training steps of the real model cost more than the run the
pre-flight replaces, or more memory than the machine has. Whether one batch can be learned, and at which rate,
depends on the data, the labels, the collator, the loss and the optimizer settings, not on how deep the network
is. So those stages may run on a twin: the same model class (so the same head, loss, vocabulary, embeddings,
attention implementation and dtype) built from the user's config with fewer layers, its weights taken from the
user's model wherever the names and shapes match (embeddings, head, final norm, the first layers). Everything
else the stage uses is the user's: batch, optimizer class and settings (matched by parameter name), loss code.

A PEFT model's twin is the same adapter (its config, its weights for the layers kept) on the shrunk base. A model
the twin cannot be made for (not built from a `transformers` config, several adapters, quantised or dispatched
weights, a head or a forward the script replaced) is never shrunk: the stage runs the real model.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from dataclasses import dataclass
from typing import Any

from ftdoctor.facts.models import is_dispatched, is_quantized, peft_adapters

LAYERS = 2  # layers the twin keeps: enough for one layer's output to feed another
# Config fields that count layers, besides num_hidden_layers (which most configs map their own name onto).
_LAYER_FIELDS = (
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "encoder_layers",
    "decoder_layers",
    "num_decoder_layers",
    "n_layers",
)


# The twin a stage built for a model, for a later stage of the same walk (the memory stage runs the longest rows
# through it): alive as long as the model is.
_MADE: weakref.WeakKeyDictionary[Any, Twin] = weakref.WeakKeyDictionary()


def made_for(model: Any) -> Twin | None:
    """The twin an earlier stage built for ``model`` and saw run its batch (`remember`), or None."""
    try:
        return _MADE.get(model)
    except TypeError:
        return None


def remember(model: Any, twin: Twin) -> None:
    with contextlib.suppress(TypeError):
        _MADE[model] = twin


@dataclass
class Twin:
    model: Any
    layers: int
    of_layers: int
    params: int
    of_params: int
    copied: int  # tensors taken from the user's model

    def describe(self) -> str:
        return (
            f"a {self.layers}-layer twin of the model ({self.params / 1e6:.0f}M of its {self.of_params / 1e6:.0f}M "
            f"parameters: same class, head, vocabulary and settings; embeddings, head and first {self.layers} of "
            f"{self.of_layers} layers from its weights)"
        )

    def evidence(self) -> dict:
        return {
            "layers": self.layers,
            "of_layers": self.of_layers,
            "params": self.params,
            "of_params": self.of_params,
            "tensors_from_model": self.copied,
        }


def _adapter(model: Any) -> tuple[Any, str, Any] | None:
    """(base model, adapter name, adapter config) of a PEFT model with one adapter; None for other models."""
    configs = peft_adapters(model)
    if configs is None or not callable(getattr(model, "get_base_model", None)):
        return None
    name, config = next(iter(configs.items()))
    return model.get_base_model(), name, config


def why_not(model: Any, layers: int | None = None) -> str | None:
    """Why no twin can stand in for ``model`` (None: one can)."""
    peft = _adapter(model)
    if peft is not None:
        if len(model.peft_config) != 1:
            return "several adapters"
        if getattr(peft[2], "inference_mode", False):
            return "adapters that do not train"
        return _why_not_base(peft[0], layers)
    if getattr(model, "peft_config", None):
        return "adapters"
    return _why_not_base(model, layers)


def _why_not_base(model: Any, layers: int | None) -> str | None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict") or not hasattr(model, "named_parameters"):
        return "not built from a transformers config"
    if is_quantized(model):
        return "quantised weights"
    if is_dispatched(model):
        return "weights dispatched over devices"
    if any(_replaced_forward(m) for m in model.modules()):
        return "a forward replaced by the script"
    n = _layers(config)
    if n is None or n <= (LAYERS if layers is None else layers):
        return "no layer count above the twin's"
    return None


def _replaced_forward(module: Any) -> bool:
    """The module's forward was set on the instance to something other than its class's own forward (a library's
    wrapper around the class's forward, such as mixed-precision casting, does not count)."""
    fn = vars(module).get("forward")
    if fn is None:
        return False
    own = getattr(type(module), "forward", None)
    for _ in range(8):
        fn = getattr(fn, "__func__", fn)
        if fn is own:
            return False
        fn = getattr(fn, "__wrapped__", None)
        if fn is None:
            return True
    return True


def _carry_forwards(base: Any, twin: Any) -> None:
    """A library's wrapper set on the user's modules' forward (TRL's fused LM head, mixed-precision casting) is
    set on the twin's counterparts too, rebound to them: the trainer's loss may need what it returns."""
    from ftdoctor.runtime.copies import remapper

    counterparts = dict(twin.named_modules())
    memo = {id(m): counterparts[n] for n, m in base.named_modules() if n in counterparts}
    mapped = remapper(memo)
    for name, module in base.named_modules():
        fn = vars(module).get("forward")
        if fn is not None and name in counterparts:
            vars(counterparts[name])["forward"] = mapped(fn)


def _layers(config: Any) -> int | None:
    n = getattr(config, "num_hidden_layers", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def _shrunk_config(config: Any, layers: int) -> Any:
    cfg = copy.deepcopy(config)
    n = _layers(config)
    for name in _LAYER_FIELDS:
        value = getattr(cfg, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > layers:
            try:
                setattr(cfg, name, layers)
            except Exception:
                pass
    # Per-layer lists (attention kinds, window sizes, ...) keep their first entries.
    for name, value in list(vars(cfg).items()):
        if isinstance(value, (list, tuple)) and len(value) == n and not name.startswith("_"):
            setattr(cfg, name, type(value)(value[:layers]))
    return cfg


def _same_model_less_layers(own: dict, twin: dict, layers: int) -> bool:
    """Every tensor of the twin is the user's, same name and shape, and every tensor of the user's model the twin
    lacks sits in a dropped layer (a numbered part of its name at ``layers`` or above). A head or module the
    script put on the model in place of the config's (another size, another name) fails this: no twin then."""
    for name, tensor in twin.items():
        source = own.get(name)
        if source is None or tuple(source.shape) != tuple(tensor.shape):
            return False
    for name in own.keys() - twin.keys():
        if not any(part.isdigit() and int(part) >= layers for part in name.split(".")):
            return False
    return True


def stand_in(model: Any, layers: int | None = None) -> Any:
    """A model of ``model``'s class and configuration with ``layers`` layers and fresh weights, on the CPU in
    float32: what a CUDA error is replayed on once the GPU, and the weights on it, can no longer be read (an index
    beyond the embeddings or the classes fails the same way with any weights). A PEFT model's stand-in is its base
    model. None for a model not built from a transformers config."""
    import torch

    layers = LAYERS if layers is None else layers
    peft = _adapter(model)
    base = peft[0] if peft is not None else model
    config = getattr(base, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    try:
        made = _shrunk_model(base, layers, init=True)
        made.to(device="cpu", dtype=torch.float32)
        _carry_forwards(base, made)
    except Exception:
        return None
    made.train(model.training)
    return made


def _shrunk_model(base: Any, layers: int, init: bool) -> Any:
    """``base``'s class built from its config with ``layers`` layers, on a random stream of its own (the run's does
    not move); its weights drawn when ``init``, else left as allocated, for the caller to overwrite (a third of the
    build time of a 124M model's twin)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with contextlib.nullcontext() if init else _no_init():
            return type(base)(_shrunk_config(base.config, layers))


def _no_init():
    """transformers' switch that builds a model without drawing its initial weights."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


def build(model: Any, layers: int | None = None) -> Twin | None:
    """The twin of ``model`` with ``layers`` layers (default LAYERS), or None when none can be made (see
    `why_not`)."""
    layers = LAYERS if layers is None else layers
    if why_not(model, layers) is not None:
        return None
    import torch

    params = list(model.parameters())
    if not params:
        return None
    dtype, device = params[0].dtype, params[0].device
    peft = _adapter(model)
    base = peft[0] if peft is not None else model
    try:
        twin = _shrunk_model(base, layers, init=False)  # every weight and buffer is taken from the user's below
        twin.to(device=device, dtype=dtype)
        twin_base = twin
        if peft is not None:
            # The same adapter on the shrunk base: its names are the user's model's, layer for layer.
            from peft import get_peft_model

            with torch.random.fork_rng(devices=[]):
                twin = get_peft_model(twin, copy.deepcopy(peft[2]), adapter_name=peft[1])
    except Exception:
        return None
    _carry_forwards(base, twin_base)
    own = dict(model.state_dict())
    if not _same_model_less_layers(own, twin.state_dict(), layers):
        return None
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    copied = 0
    # Buffers a state dict leaves out (rotary frequencies, position ids) too: the user's values, not the init's.
    own_buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, tensor in twin.state_dict().items():
            source = own.get(name)
            if source is not None and source.shape == tensor.shape:
                tensor.copy_(source)
                copied += 1
        for name, tensor in twin.named_buffers():
            source = own_buffers.get(name)
            if source is not None and source.shape == tensor.shape and name not in own:
                tensor.copy_(source)
    if hasattr(twin, "tie_weights"):
        try:
            twin.tie_weights()
        except Exception:
            pass
    for name, p in twin.named_parameters():
        p.requires_grad_(flags.get(name, True))
    twin.train(model.training)
    count = lambda m: sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())  # noqa: E731
    return Twin(twin, layers, _layers(base.config) or layers, count(twin), count(model), copied)
