"""API drift: arguments and imports that transformers 5 removed or renamed, and arguments a class never had (a typo
of one it has)."""

from __future__ import annotations

import difflib
import re

from ftdoctor.sdk import finding, read_source

# Arguments removed or renamed in transformers 5: (owner, old) -> the replacement to show.
_RENAMED = {
    ("TrainingArguments", "evaluation_strategy"): "eval_strategy={value}",
    ("TrainingArguments", "no_cuda"): "use_cpu={value}",
    ("TrainingArguments", "per_gpu_train_batch_size"): "per_device_train_batch_size={value}",
    ("TrainingArguments", "per_gpu_eval_batch_size"): "per_device_eval_batch_size={value}",
    ("TrainingArguments", "push_to_hub_token"): "hub_token={value}",
    ("TrainingArguments", "include_inputs_for_metrics"): 'include_for_metrics=["inputs"]',
    ("TrainingArguments", "group_by_length"): 'train_sampling_strategy="group_by_length"',
    ("Trainer", "tokenizer"): "processing_class={value}",
}
_DROPPED = {
    "overwrite_output_dir": "the Trainer writes into output_dir as it is; delete the argument",
    "logging_dir": "TensorBoard logs go under output_dir; set the TENSORBOARD_LOGGING_DIR environment variable "
    "for another folder, and delete the argument",
    "use_mps_device": "Apple MPS is used automatically when present; delete the argument",
    "fp16_backend": "delete the argument: mixed precision always uses torch.amp",
    "half_precision_backend": "delete the argument: mixed precision always uses torch.amp",
    "save_safetensors": "checkpoints are always safetensors; delete the argument",
    "use_legacy_prediction_loop": "the legacy loop is gone; delete the argument",
    "tpu_num_cores": "delete the argument",
    "use_ipex": "delete the argument",
    "jit_mode_eval": "delete the argument",
    "torchdynamo": "use torch_compile=True instead",
}
_REMOVED_IMPORTS = {
    "AdamW": "from torch.optim import AdamW",
    "AdamWeightDecay": "TensorFlow classes were removed: write the script with PyTorch (torch.optim.AdamW)",
    "TextDataset": 'build the dataset with datasets: load_dataset("text", data_files=...) and tokenize with .map()',
    "LineByLineTextDataset": 'build the dataset with datasets: load_dataset("text", data_files=...)',
    "is_torch_tpu_available": "from transformers.utils import is_torch_xla_available",
}


def removed_argument(exc):
    if not isinstance(exc, TypeError):
        return None
    m = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(exc))
    if not m:
        return None
    owner, arg = m.groups()
    owner_base = (
        "Trainer"
        if owner.endswith("Trainer")
        else ("TrainingArguments" if owner.endswith("TrainingArguments") else owner)
    )
    new = _RENAMED.get((owner_base, arg))
    if new is not None:
        new_code = new.format(value=_passed_value(exc, arg) or "...")
        return finding(
            "FTD001",
            f"`{owner}` no longer takes `{arg}=`: it was renamed in transformers 5.",
            f"Use `{new_code}` instead of `{arg}=...`.",
            evidence={"argument": arg, "owner": owner, "replacement": new_code.split("=")[0]},
        )
    if arg in _DROPPED:
        return finding(
            "FTD001",
            f"`{owner}` no longer takes `{arg}=`: it was removed in transformers 5.",
            f"Remove `{arg}=...`: {_DROPPED[arg]}.",
            evidence={"argument": arg, "owner": owner},
        )
    close = _close_parameter(owner, arg)
    if close:
        return finding(
            "FTD009",
            f"`{owner}` has no argument `{arg}`.",
            f"Did you mean `{close}=`?",
            evidence={"argument": arg, "owner": owner, "suggestion": close},
        )
    return None


def _passed_value(exc, arg: str) -> str | None:
    """The source text of ``arg=...`` at the user's line, so the fix can be copied as is."""
    import ast

    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    for filename, line in reversed(frames):
        try:
            source = read_source(filename)
            tree = ast.parse(source)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.lineno <= line <= (node.end_lineno or node.lineno):
                for kw in node.keywords:
                    if kw.arg == arg:
                        return ast.get_source_segment(source, kw.value)
    return None


def _close_parameter(owner: str, arg: str) -> str | None:
    import inspect

    import transformers

    cls = getattr(transformers, owner, None)
    if cls is None:
        return None
    params = list(inspect.signature(cls.__init__).parameters)
    match = difflib.get_close_matches(arg, params, n=1, cutoff=0.75)
    return match[0] if match else None


def removed_import(exc):
    if not isinstance(exc, ImportError):
        return None
    m = re.search(r"cannot import name '(\w+)' from '(transformers[\w.]*)'", str(exc))
    if not m:
        return None
    name, module = m.groups()
    fix = _REMOVED_IMPORTS.get(name)
    if fix is None:
        if name.startswith(("TF", "Flax")):
            fix = "transformers 5 removed its TensorFlow and Flax models: use the PyTorch class without the prefix"
        else:
            return None
    return finding(
        "FTD002",
        f"`{name}` is no longer exported by `{module}`.",
        fix if fix.startswith(("from", "import")) else fix[0].upper() + fix[1:] + ".",
        evidence={"name": name},
    )
