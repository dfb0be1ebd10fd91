"""What a model holds that the checks judge by: its head, its sizes, adapters, quantisation and dispatch."""

from __future__ import annotations

from typing import Any


def peft_adapters(model: Any) -> dict | None:
    """The adapter configs of a PEFT model (name -> config), None for a model without adapters."""
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict) and configs and all(hasattr(c, "peft_type") for c in configs.values()):
        return configs
    return None


def is_quantized(model: Any) -> bool:
    """Weights loaded in 8 or 4 bits (bitsandbytes and kin), as transformers marks them, here or in a PEFT base."""
    for m in (model, getattr(model, "get_base_model", lambda: None)()):
        if m is not None and (
            getattr(m, "is_quantized", False)
            or getattr(m, "is_loaded_in_4bit", False)
            or getattr(m, "is_loaded_in_8bit", False)
            or getattr(getattr(m, "config", None), "quantization_config", None) is not None
        ):
            return True
    return False


def is_dispatched(model: Any) -> bool:
    """Weights spread over several devices by accelerate (`device_map="auto"` and kin)."""
    return len(set((getattr(model, "hf_device_map", None) or {}).values())) > 1


def pretrained_core(model: Any) -> Any:
    """``model`` when it is a transformers model; else the first transformers model inside it (a user's own
    ``nn.Module`` around ``BertModel.from_pretrained(...)``), whose embeddings and positions the inputs meet; else
    ``model``."""
    if getattr(model, "config", None) is not None and callable(getattr(model, "get_input_embeddings", None)):
        return model
    modules = getattr(model, "modules", None)
    if not callable(modules):
        return model
    try:
        for sub in modules():
            if sub is not model and getattr(sub, "config", None) is not None and hasattr(sub, "get_input_embeddings"):
                return sub
    except Exception:
        return model
    return model


def max_positions(model: Any) -> int | None:
    cfg = getattr(pretrained_core(model), "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def embedding_rows(model: Any) -> int | None:
    try:
        emb = pretrained_core(model).get_input_embeddings()
    except Exception:
        return None
    return getattr(emb, "num_embeddings", None)


def num_labels(model: Any) -> int | None:
    return getattr(getattr(model, "config", None), "num_labels", None)


def is_classification(task: str | None) -> bool:
    return task in ("sequence-classification", "token-classification")


def model_name(model: Any) -> str:
    return type(model).__name__


def loss_and_outputs(out: Any, labelled: bool = True) -> tuple[Any, Any]:
    """(loss, outputs) of whatever a forward or a loss function returned: a ModelOutput or dict, a tuple
    (``return_dict=False``: the loss first when labels were given), or a bare tensor (a 0-d one is a loss).
    The outputs come back as a mapping when they held any logits, so checks read ``outputs.get("logits")``."""
    import torch

    if hasattr(out, "get") and hasattr(out, "keys"):
        return out.get("loss"), out
    if torch.is_tensor(out):
        return (out, None) if out.dim() == 0 else (None, {"logits": out})
    if isinstance(out, (tuple, list)) and out:
        first = out[0]
        if torch.is_tensor(first) and first.dim() == 0 and (labelled or len(out) > 1):
            rest = out[1:]
            return first, ({"loss": first, "logits": rest[0]} if rest and torch.is_tensor(rest[0]) else None)
        if torch.is_tensor(first):
            return None, {"logits": first}
    return getattr(out, "loss", None), out


def head_kind(model: Any) -> tuple[str | None, str]:
    """(what the model's head scores, its class name): "sequence" (one label per row), "token" (one per input
    position: token classifiers and language models), "base" (a transformers model without a head), or None."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = type(inner).__name__
    cfg = getattr(inner, "config", None)
    if not type(inner).__module__.startswith("transformers.") or getattr(cfg, "is_encoder_decoder", False):
        return None, name
    if name.endswith("ForSequenceClassification"):
        return "sequence", name
    if name.endswith(("ForTokenClassification", "ForMaskedLM", "ForCausalLM", "LMHeadModel")):
        return "token", name
    if name.endswith("Model") and "For" not in name and "labels" not in _forward_parameters(inner):
        return "base", name
    return None, name


def _forward_parameters(model: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()
