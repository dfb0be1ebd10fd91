"""setup: the script up to training. An exception raised before ``trainer.train()`` is diagnosed here."""

from __future__ import annotations

import difflib
import os
import re

from ftdoctor.sdk import check, finding, read_source, rule, user_site_in_traceback

from ._failures import relay_fix

rule("FTD001", "removed-argument", "setup", "error", "An argument removed or renamed in transformers 5",
     """
     transformers 5 removed arguments that v4 scripts, tutorials and the course still use. Passing one raises
     `TypeError: ... got an unexpected keyword argument` at the line that builds the object, before anything
     trains. Most have a direct replacement.
     """,
     broken="""
     args = TrainingArguments("out", evaluation_strategy="epoch")
     trainer = Trainer(model, args, tokenizer=tokenizer)
     """,
     fixed="""
     args = TrainingArguments("out", eval_strategy="epoch")
     trainer = Trainer(model, args, processing_class=tokenizer)
     """)
rule("FTD002", "removed-import", "setup", "error", "An import removed from transformers",
     """
     transformers 5 no longer exports some names (its own `AdamW`, the TensorFlow classes, the old
     `TextDataset` helpers). The import fails at the top of the script.
     """,
     broken="from transformers import AdamW",
     fixed="from torch.optim import AdamW")
rule("FTD003", "hub-unreachable", "setup", "error", "A model, dataset or metric could not be fetched from the hub",
     """
     The script loads something by hub name and the hub cannot be reached (no network, a firewall, offline
     mode), or the name does not exist. Without `HF_HUB_OFFLINE=1` each miss costs about 20 s of retries.
     """,
     broken='model = AutoModelForSequenceClassification.from_pretrained("bert-base-uncased")  # no network',
     fixed="""
     # once, where the network is reachable:  hf download bert-base-uncased
     # then run offline from the cache, or point at a local folder:
     model = AutoModelForSequenceClassification.from_pretrained("./models/bert-base-uncased")
     """)
rule("FTD004", "missing-file", "setup", "error", "A file the script reads does not exist",
     """
     The script opens a path that is not there. Relative paths resolve against the working directory the
     script was started from, not the script's folder.
     """,
     broken='load_dataset("csv", data_files="data/train.csv")  # run from another directory',
     fixed='load_dataset("csv", data_files=str(Path(__file__).parent / "data/train.csv"))')
rule("FTD005", "setup-exception", "setup", "error", "The script raised before training started",
     """
     Something in the script failed before `trainer.train()` was reached, so nothing could be checked past
     this point. The exception and the line that raised are shown.
     """)

rule("FTD006", "tensorflow-script", "setup", "error", "A TensorFlow/Keras script: ftdoctor checks PyTorch pipelines",
     """
     transformers 5 removed its TensorFlow and Flax models (`TFAutoModel...`), and ftdoctor walks PyTorch
     pipelines (Trainer, plain PyTorch loops, Accelerate). A Keras script is not run: running it would train it.
     """,
     broken="""
     from transformers import TFAutoModelForSequenceClassification
     model.compile(optimizer="adam"); model.fit(tf_train_dataset)
     """,
     fixed="""
     from transformers import AutoModelForSequenceClassification, Trainer
     trainer = Trainer(model, args, train_dataset=tokenized["train"]); trainer.train()
     """)
rule("FTD007", "loss-is-none", "setup", "error", "The loop called backward on a loss that is None",
     """
     A model returns `loss=None` when the batch has no `labels` (under that exact name), so `loss.backward()` fails
     with "'NoneType' object has no attribute 'backward'".
     """,
     broken='outputs = model(**batch); outputs.loss.backward()  # batch has "label"',
     fixed='batch["labels"] = batch.pop("label"); outputs = model(**batch); outputs.loss.backward()')

rule("FTD010", "syntax-error", "setup", "error", "The script is not valid Python",
     """
     Python could not compile the script, so none of it ran. The line and the parser's message are shown.
     """,
     broken="args = TrainingArguments('out', learning_rate=2e-5",
     fixed="args = TrainingArguments('out', learning_rate=2e-5)")
rule("FTD012", "ranks-out-of-step", "setup", "info", "The script stopped in a collective the ranks did not share",
     """
     On several ranks, the script stopped in a barrier, all-reduce or broadcast that timed out or lost its peer:
     the ranks were not in the same collective. The distributed stage shows where each rank was.
     """)
rule("FTD008", "loop-failed-at-first-step", "setup", "info", "The loop failed at its first step; the stages show why",
     """
     A hand-written loop raised while drawing or running its first batch. Its model, loader and optimizer were
     captured all the same, so the later stages rebuild that batch and name the cause where it starts (decode,
     collate, forward). The exception itself is kept as evidence.
     """)
rule("FTD009", "unknown-argument", "setup", "error", "An argument the class does not take",
     """
     A keyword argument that the class's constructor does not have, most often a typo of one it does have.
     It raises `TypeError: ... got an unexpected keyword argument` before anything trains.
     """,
     broken='TrainingArguments("out", learning_rat=2e-5)',
     fixed='TrainingArguments("out", learning_rate=2e-5)',
     fix_safe=True)

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
    "TextDataset": "build the dataset with datasets: load_dataset(\"text\", data_files=...) and tokenize with .map()",
    "LineByLineTextDataset": "build the dataset with datasets: load_dataset(\"text\", data_files=...)",
    "is_torch_tpu_available": "from transformers.utils import is_torch_xla_available",
}
_HUB_PATTERNS = ("couldn't connect to", "couldn't reach", "doesn't exist on the hugging face hub",
                 "we couldn't connect", "offline mode is enabled", "cannot find the requested files in the disk cache",
                 "is not a local folder and is not a valid model identifier",
                 "failed to resolve", "max retries exceeded", "name or service not known",
                 "temporary failure in name resolution", "connection error")


@check("setup", codes=("FTD006",))
def tensorflow_script(capture):
    if capture.outcome != "tensorflow":
        return None
    return finding("FTD006", "The script imports TensorFlow/Keras (or a TF* class from transformers), so it was not "
                   "run: ftdoctor walks PyTorch pipelines, and transformers 5 no longer has TensorFlow models.",
                   "Port the script to PyTorch: `AutoModelFor...` with `Trainer` (`ftdoctor reference show "
                   "sequence-classification` prints one), then run `ftdoctor check` on it.",
                   location=str(capture.train_site) if capture.train_site else None)


@check("setup", codes=("FTD001", "FTD002", "FTD003", "FTD004", "FTD005", "FTD007", "FTD008", "FTD009", "FTD010",
                        "FTD012", "FTD106", "FTD108"))
def script_raised(capture):
    """Diagnose the exception that stopped the script before training."""
    if capture.outcome != "error" or capture.exception is None:
        return None
    exc = capture.exception
    if isinstance(exc, SyntaxError) and exc.filename and capture.is_user_file(exc.filename):
        from ftdoctor.sdk import Site

        return finding("FTD010", f"{type(exc).__name__}: {exc.msg}" + (f" in `{exc.text.strip()}`" if exc.text else ""),
                       "Fix the line shown: Python stops before running anything.",
                       location=str(Site(exc.filename, exc.lineno or 1)), evidence={"offset": exc.offset})
    site = user_site_in_traceback(capture.exc_tb, capture.user_dir)
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and re.search(
            r"Timed out waiting|Connection closed by peer|Connection reset by peer|gloo", str(exc)):
        return finding("FTD012", f"This rank stopped in a collective: {str(exc).splitlines()[0][:200]}",
                       "See the distributed stage: it shows where each rank was.",
                       location=str(site) if site else None, evidence={"exception": f"{type(exc).__name__}: {exc}"})
    if capture.loop is not None and getattr(capture.loop, "batch", None) is not None:
        # The loop failed in its first step on a batch ftdoctor has: the stages below run it again and name
        # the cause where it starts.
        return finding("FTD008", f"The loop's first step raised {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''}", "See the stages below for the cause.",
                       location=str(site) if site else None,
                       evidence={"exception": f"{type(exc).__name__}: {exc}"})
    if capture.loop is not None and _raised_in_data_loading(capture.exc_tb):
        # The walk rebuilds that batch with the loop's own loader pieces; decode/collate name the cause.
        return finding("FTD008", f"The loop stopped while drawing its first batch: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200]}", "See the decode and collate stages for the cause.",
                       location=str(site) if site else None)
    location = str(site) if site else None
    evidence = {"exception": f"{type(exc).__name__}: {exc}"}
    for diagnose in (_loss_is_none, _removed_argument, _removed_import, _strategy_mismatch, _mixed_precision, _empty_optimizer,
                     _hub_unreachable, _missing_file):
        found = diagnose(exc)
        if found is not None:
            found.location = found.location or location
            found.evidence = {**evidence, **found.evidence}
            if found.code == "FTD007" and capture.loop is not None:
                # The walk of the captured loop shows the cause at collate.
                return finding("FTD008", f"The loop's first step failed: {found.detail}", "See the collate and "
                               "forward stages for the cause.", location=found.location, evidence=found.evidence)
            return found
    return finding("FTD005", f"{type(exc).__name__}: {exc}",
                   relay_fix(str(exc), "Fix the line shown; run with --traceback to see the whole traceback."),
                   location=location, evidence=evidence)


def _raised_in_data_loading(tb) -> bool:
    while tb is not None:
        if "torch/utils/data" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def _loss_is_none(exc):
    if isinstance(exc, AttributeError) and "'NoneType' object has no attribute 'backward'" in str(exc):
        return finding("FTD007", "`loss.backward()` was called on None: the model computed no loss, because the "
                       "batch it received has no `labels`.", "Give the model `labels`: rename the label column "
                       "(`dataset.rename_column(\"label\", \"labels\")`) or the batch key (see collate).")
    return None


def _removed_argument(exc):
    if not isinstance(exc, TypeError):
        return None
    m = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(exc))
    if not m:
        return None
    owner, arg = m.groups()
    owner_base = "Trainer" if owner.endswith("Trainer") else ("TrainingArguments" if owner.endswith("TrainingArguments") else owner)
    new = _RENAMED.get((owner_base, arg))
    if new is not None:
        new_code = new.format(value=_passed_value(exc, arg) or "...")
        return finding("FTD001", f"`{owner}` no longer takes `{arg}=`: it was renamed in transformers 5.",
                       f"Use `{new_code}` instead of `{arg}=...`.", evidence={"argument": arg, "owner": owner,
                                                                              "replacement": new_code.split("=")[0]})
    if arg in _DROPPED:
        return finding("FTD001", f"`{owner}` no longer takes `{arg}=`: it was removed in transformers 5.",
                       f"Remove `{arg}=...`: {_DROPPED[arg]}.", evidence={"argument": arg, "owner": owner})
    close = _close_parameter(owner, arg)
    if close:
        return finding("FTD009", f"`{owner}` has no argument `{arg}`.", f"Did you mean `{close}=`?",
                       evidence={"argument": arg, "owner": owner, "suggestion": close})
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


def _removed_import(exc):
    if not isinstance(exc, ImportError):
        return None
    m = re.search(r"cannot import name '(\w+)' from '(transformers[\w.]*)'", str(exc))
    if not m:
        return None
    name, module = m.groups()
    fix = _REMOVED_IMPORTS.get(name)
    if fix is None:
        if name.startswith("TF") or name.startswith("Flax"):
            fix = "transformers 5 removed its TensorFlow and Flax models: use the PyTorch class without the prefix"
        else:
            return None
    return finding("FTD002", f"`{name}` is no longer exported by `{module}`.",
                   fix if fix.startswith(("from", "import")) else fix[0].upper() + fix[1:] + ".",
                   evidence={"name": name})


def _strategy_mismatch(exc):
    text = str(exc)
    if not isinstance(exc, ValueError) or "load_best_model_at_end requires" not in text:
        return None
    found = dict(re.findall(r"(Evaluation|Save) strategy: (?:\w+\.)?(\w+)", text))
    if "saving steps" in text:
        detail = "`save_steps` is not a multiple of `eval_steps`, so some evaluations have no checkpoint to reload."
        fix = "Make `save_steps` a multiple of `eval_steps` (for example the same value)."
    elif found:
        ev, sv = found.get("Evaluation", "?").lower(), found.get("Save", "?").lower()
        detail = f"It evaluates with eval_strategy=\"{ev}\" but saves with save_strategy=\"{sv}\"."
        fix = f"Save when it evaluates: `save_strategy=\"{ev}\"` (the same as `eval_strategy`)."
    else:
        detail = text.splitlines()[0]
        fix = "Set `save_strategy` to the same value as `eval_strategy` (for example both \"epoch\")."
    return finding("FTD106", "With `load_best_model_at_end=True` a checkpoint must exist at every evaluation, so "
                   "saving and evaluation must happen at the same steps. " + detail, fix,
                   evidence={"strategies": found} if found else None)


def _mixed_precision(exc):
    text = str(exc)
    if not isinstance(exc, ValueError) or not re.search(r"bf16|fp16|mixed precision|half precision", text, re.I):
        return None
    return finding("FTD108", f"Mixed precision was asked for where it cannot run: {text.splitlines()[0]}",
                   "Pass `bf16=True` only on a GPU that supports it (`torch.cuda.is_bf16_supported()`) and "
                   "`fp16=True` only with CUDA; to check on this machine, make it conditional: "
                   "`bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported()`.")


def _empty_optimizer(exc):
    if isinstance(exc, ValueError) and "empty parameter list" in str(exc):
        return finding("FTD504", "The optimizer was built from an empty parameter list.",
                       "Build it from the model that trains: `torch.optim.AdamW(model.parameters(), lr=...)` "
                       "(after any head replacement or freezing).")
    return None


def _hub_unreachable(exc):
    text = str(exc).lower()
    names = {type(e).__name__ for e in _chain(exc)}
    if not (any(p in text for p in _HUB_PATTERNS) or names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled",
                                                               "ConnectionError", "RepositoryNotFoundError"}):
        return None
    what, kind = _requested_name(exc)
    if what is None:
        m = re.search(r"(?:load the files of|reach|module script at|identifier|for)\s+'?([\w./-]+)'?", str(exc))
        what = m.group(1) if m else None
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")
               if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")]
    shown = f"`{what}`" if what else "the requested repository"
    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if offline:
        detail = (f"{shown} is not in the local cache and offline mode is on ({'=1, '.join(offline)}=1), so it "
                  f"cannot be downloaded. {detail}")
    name = what or "NAME"
    if kind == "metric":
        fix = (f"Metrics of `evaluate` are scripts: copy it once where the network is reachable (`hf download "
               f"evaluate-metric/{name} --repo-type space --local-dir metrics/{name}`) and load it by path: "
               f"`evaluate.load(\"metrics/{name}\")`.")
    else:
        download = f"hf download {name}" + (" --repo-type dataset" if kind == "dataset" else "")
        fix = (f"Download {shown} once where the network is reachable (`{download}`, with the same HF_HOME) and "
               "run with `HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1` (`ftdoctor check "
               "--offline`), or pass a local folder path instead of the hub name.")
    return finding("FTD003", detail, fix, evidence={"name": what, "kind": kind, "offline": offline})


# Parameters that name what a loader fetches: from_pretrained, hf_hub_download, load_dataset, evaluate.load.
_NAME_PARAMS = ("pretrained_model_name_or_path", "repo_id", "path")
_LOADERS = {"transformers": "model", "huggingface_hub": "model", "datasets": "dataset", "evaluate": "metric"}


def _requested_name(exc) -> tuple[str | None, str]:
    """The name the failing loader was asked for, read from the outermost loader frame of the traceback,
    and what it is (model, dataset or metric) from the library that was loading it."""
    tb = exc.__traceback__
    while tb is not None:
        frame, code = tb.tb_frame, tb.tb_frame.f_code
        library = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if library in _LOADERS:
            params = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
            for param in _NAME_PARAMS:
                value = frame.f_locals.get(param)
                if param in params and isinstance(value, (str, os.PathLike)):
                    return os.fspath(value), _LOADERS[library]
        tb = tb.tb_next
    return None, "model"


def _missing_file(exc):
    if not isinstance(exc, FileNotFoundError):
        return None
    path = exc.filename or (re.findall(r"'([^']+)'", str(exc)) or [""])[-1]
    return finding("FTD004", f"No such file: {path!r} (working directory: {os.getcwd()}).",
                   "Check the path; relative paths resolve against the directory you run from. Build it from "
                   "the script's folder: `Path(__file__).parent / ...`.", evidence={"path": path})


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
