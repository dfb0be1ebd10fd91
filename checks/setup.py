"""setup: the script up to training. An exception raised before ``trainer.train()`` is diagnosed here."""

from __future__ import annotations

import difflib
import os
import re

from ftdoctor.sdk import check, finding, read_source, rule, user_site_in_traceback

from ftdoctor.checks._failures import relay_fix

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

rule("FTD011", "no-chat-template", "setup", "error", "Conversations to render, and the tokenizer has no chat template",
     """
     Conversational data (`messages` with roles and contents) is turned into tokens by the tokenizer's chat
     template. Base (pre-trained, not instruct) checkpoints often ship none, so `apply_chat_template`, and every
     trainer that renders conversations with it (TRL's SFT and DPO trainers), raises "Cannot use chat template
     functions because tokenizer.chat_template is not set".
     """,
     broken="""
     tokenizer = AutoTokenizer.from_pretrained("meta-llama/Meta-Llama-3-8B")  # base model: no template
     trainer = SFTTrainer(model, args, train_dataset=chat_dataset, processing_class=tokenizer)
     """,
     fixed="""
     tokenizer = AutoTokenizer.from_pretrained("meta-llama/Meta-Llama-3-8B-Instruct")  # has a chat template
     trainer = SFTTrainer(model, args, train_dataset=chat_dataset, processing_class=tokenizer)
     """)
rule("FTD015", "chat-template-without-generation-markers", "setup", "error",
     "Assistant-only loss with a chat template that does not mark the assistant's tokens",
     """
     Training on the assistant's turns only (`SFTConfig(assistant_only_loss=True)`,
     `apply_chat_template(..., return_assistant_tokens_mask=True)`) needs a chat template that wraps what the
     assistant writes in `{% generation %}` ... `{% endgeneration %}`. Without the markers every assistant mask is
     all zeros: TRL patches the templates of the models it knows and refuses the others ("The chat template is not
     training-compatible", "at least one example has no assistant tokens").
     """,
     broken="""
     tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}"
     SFTConfig("out", assistant_only_loss=True)
     """,
     fixed="""
     tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'assistant' %}assistant: "
                                "{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}\\n"
                                "{% else %}{{ m['role'] }}: {{ m['content'] }}\\n{% endif %}{% endfor %}")
     SFTConfig("out", assistant_only_loss=True)
     """)
rule("FTD013", "lora-target-modules-not-found", "setup", "error", "LoRA targets modules the model does not have",
     """
     `LoraConfig(target_modules=...)` names the layers that get an adapter, by the last part of their module
     names, and those names differ between architectures (BERT's `query`/`value`, Llama's and Qwen's `q_proj` ...
     `down_proj`, GPT-2's `c_attn`). When none matches, `get_peft_model` raises "Target modules ... not found in
     the base model".
     """,
     broken='LoraConfig(target_modules=["query", "value"], task_type="CAUSAL_LM")  # a Llama model',
     fixed='LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")')
rule("FTD014", "missing-llm-library", "setup", "error", "The script needs trl or peft, which is not installed",
     """
     TRL trainers and PEFT adapters come from their own packages, which `transformers` does not install. The
     script stops at its import, before anything is built.
     """,
     broken="from trl import SFTTrainer  # ModuleNotFoundError: No module named 'trl'",
     fixed="""
     # pip install trl peft   (or: pip install 'pytest-ftdoctor[llm]' for the versions ftdoctor supports)
     from trl import SFTTrainer
     """)

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


rule("FTD016", "walked-as-one-rank", "setup", "info", "A torchrun script was walked as one rank",
     """
     The script sets up a process group from torchrun's environment variables, and was run without torchrun.
     ftdoctor supplied the variables `torchrun --nproc_per_node 1` sets (rank 0 of 1), so every single-process
     stage ran. Whether the ranks agree (data sharding, synchronised gradients) needs several of them: the
     distributed stage runs with `--nproc 2`.
     """)


@check("setup", codes=("FTD016",))
def walked_as_one_rank(capture):
    if not getattr(capture, "single_rank", None):
        return None
    script = os.path.basename(capture.script)
    return finding("FTD016", "The script calls `init_process_group()` for torchrun; run without it, it was walked as "
                   f"rank 0 of 1 (ftdoctor set {', '.join(sorted(capture.single_rank))} as "
                   "`torchrun --nproc_per_node 1` would).",
                   f"To check the ranks against each other: `ftdoctor check --nproc 2 {script}`.")


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
                        "FTD011", "FTD012", "FTD013", "FTD014", "FTD015", "FTD106", "FTD108"))
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
    for diagnose_llm in (_missing_llm_library, _chat_template, _lora_targets_not_found):
        found = diagnose_llm(exc, capture)
        if found is not None:
            found.location = found.location or location
            found.evidence = {**evidence, **found.evidence}
            return found
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


# --- LLM libraries: TRL and PEFT -------------------------------------------------------------------------------

# The packages of the `llm` extra: a script that imports one of them cannot run without it.
_LLM_LIBRARIES = ("trl", "peft")


def _missing_llm_library(exc, capture):
    import sys

    if not isinstance(exc, ModuleNotFoundError):
        return None
    # `name` is the module the import system could not find, whatever the message says.
    root = (exc.name or "").partition(".")[0]
    if root not in _LLM_LIBRARIES or (exc.name or "") != root:
        return None
    others = [m for m in _LLM_LIBRARIES if m != root]
    return finding("FTD014", f"The script imports `{root}`, which this Python cannot import: it is not installed "
                   f"in this environment ({type(exc).__name__}: {exc}).",
                   f"Install the LLM fine-tuning libraries: `pip install {' '.join(_LLM_LIBRARIES)}` (or `pip install "
                   "'pytest-ftdoctor[llm]'` for the versions ftdoctor supports) into this Python "
                   f"(`{sys.executable} -m pip install ...`), then run again.",
                   evidence={"module": root, "also_needed": others})


def _attr(obj, name: str):
    """``obj.name``, or None: the objects of a failing script may raise anything when asked."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _frames(tb):
    """The frames of a traceback, outermost first."""
    out = []
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out


def _is_tokenizer(obj) -> bool:
    import sys

    tu = sys.modules.get("transformers.tokenization_utils_base")
    pu = sys.modules.get("transformers.processing_utils")
    kinds = tuple(k for k in (getattr(tu, "PreTrainedTokenizerBase", None), getattr(pu, "ProcessorMixin", None)) if k)
    return bool(kinds) and isinstance(obj, kinds)


def _is_conversation(value) -> bool:
    """A list of chat messages: mappings with a role and a content."""
    from collections.abc import Mapping

    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(m, Mapping) and "role" in m for m in value[:8])


def _conversation_columns(value) -> list[str] | None:
    """The columns of a row or dataset that hold conversations (None: it is neither, or holds none)."""
    from collections.abc import Mapping

    from ftdoctor.facts import datasets as data

    try:
        if data.is_hf_dataset(value) and not data.is_streaming(value):
            if not data.safe_len(value):
                return None
            value = value[0]
        if isinstance(value, Mapping) or type(value).__name__ == "LazyRow":
            cols = [str(k) for k in value.keys() if _is_conversation(value[k])]
            return cols or None
    except Exception:  # a script's dataset that cannot be read here: no evidence either way
        return None
    return None


def _chat_evidence(tb):
    """What the frames of a failure hold about chat templates: whether a library was reading one (a function of
    the chat template or its generation markers was running), the tokenizers (the one whose template was read
    first), the conversational columns, whether an assistant-only mask was asked for, and whether TRL was the
    caller."""
    reading, tokenizers, columns, conversation = False, [], [], False
    assistant_only, trl = False, False
    for frame in reversed(_frames(tb)):  # innermost first
        code = frame.f_code.co_name
        if "chat_template" in code or "generation_marker" in code:
            reading = True
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] == "trl":
            trl = True
        for name, value in list(frame.f_locals.items()):
            if _is_tokenizer(value):
                if not any(value is t for t in tokenizers):
                    tokenizers.append(value)
            elif _is_conversation(value):
                conversation = True
            elif name == "return_assistant_tokens_mask" and value is True:
                assistant_only = True
            elif _attr(value, "assistant_only_loss") is True:
                assistant_only = True
            else:
                cols = _conversation_columns(value)
                if cols:
                    columns.extend(c for c in cols if c not in columns)
    return reading, tokenizers, columns, conversation or bool(columns), assistant_only, trl


def _template_text(tokenizer) -> str | None:
    template = _attr(tokenizer, "chat_template")
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template if isinstance(template, str) and template.strip() else None


_GENERATION_MARK = re.compile(r"\{%-?\s*generation\s*-?%\}")


def _chat_template(exc, capture):
    """A conversation rendered with a tokenizer that has no chat template, or an assistant-only loss asked of a
    template that does not mark the assistant's tokens (FTD011, FTD015)."""
    reading, tokenizers, columns, conversational, assistant_only, trl = _chat_evidence(capture.exc_tb)
    if not reading or not tokenizers or not conversational:
        return None
    missing = [t for t in tokenizers if _template_text(t) is None]
    unmarked = [t for t in tokenizers if _template_text(t) is not None
                and not _GENERATION_MARK.search(_template_text(t))]
    where = f" (column{'s' if len(columns) > 1 else ''} {', '.join(f'`{c}`' for c in columns)})" if columns else ""
    if missing:
        tok = missing[0]
        name = _script_name(capture, tok) or "tokenizer"
        source = str(_attr(tok, "name_or_path") or "")
        loaded = f" loaded from `{source}`" if source else ""
        detail = (f"The data is conversational{where} and `{name}`{loaded} has no chat template "
                  f"(`{name}.chat_template` is None), so the conversations cannot be rendered into tokens: base "
                  f"(not instruct) checkpoints often ship without one. {type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
        copy_from = ("`model, tokenizer, _ = clone_chat_template(model, tokenizer, \"<instruct checkpoint>\")` (from "
                     "`trl`: it also adds the template's special tokens and resizes the embeddings)" if trl else
                     f"`{name}.chat_template = AutoTokenizer.from_pretrained(\"<instruct checkpoint>\").chat_template`")
        fix = (f"Load the tokenizer of the instruct/chat checkpoint, which carries the template "
               f"(`{name} = AutoTokenizer.from_pretrained(\"<instruct checkpoint>\")`); or give this one a template: "
               f"{copy_from}, or set `{name}.chat_template` to a Jinja template; or render the conversations into a "
               "`text` column yourself (`dataset.map(lambda ex: {\"text\": ...})`) and train on that."
               + (" With `assistant_only_loss=True` the template needs `{% generation %}` markers around the "
                  "assistant's turns." if assistant_only else ""))
        site = _attribute_site(capture, name, "chat_template") or capture.site_of(tok)
        return finding("FTD011", detail, fix, location=str(site) if site else None,
                       evidence={"tokenizer": source or None, "conversation_columns": columns,
                                 "assistant_only_loss": assistant_only})
    if assistant_only and unmarked:
        tok = unmarked[0]
        name = _script_name(capture, tok) or "tokenizer"
        detail = (f"An assistant-only loss was asked for on conversational data{where}, and the chat template of "
                  f"`{name}` has no `{{% generation %}}` markers: nothing tells which tokens the assistant wrote, so "
                  f"every assistant mask is all zeros. {type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
        fix = (f"Wrap the assistant's turns of `{name}.chat_template` in `{{% generation %}}` ... "
               "`{% endgeneration %}`, the end-of-turn token inside (`{% if message['role'] == 'assistant' %}"
               "{% generation %}{{ message['content'] }}<end of turn>{% endgeneration %}{% endif %}`)"
               + ("; TRL patches the templates of the models it knows (Llama 3, Qwen 2.5/3, Gemma, Phi-3 ...), so the "
                  "tokenizer of such a checkpoint also works" if trl else "")
               + "; or train on the whole conversation (`assistant_only_loss=False`).")
        site = _attribute_site(capture, name, "chat_template") or capture.site_of(tok)
        return finding("FTD015", detail, fix, location=str(site) if site else None,
                       evidence={"tokenizer": str(_attr(tok, "name_or_path") or "") or None,
                                 "conversation_columns": columns})
    return None


def _attribute_site(capture, name: str, attribute: str):
    """The last line of the script that sets ``name.attribute``."""
    import ast

    from ftdoctor.sdk import Site

    try:
        tree = ast.parse(read_source(capture.script))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    lines = [node.lineno for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(t, ast.Attribute) and t.attr == attribute and isinstance(t.value, ast.Name)
             and t.value.id == name]
    return Site(capture.script, max(lines)) if lines else None


def _script_name(capture, obj) -> str | None:
    """The script's name for ``obj``: at the failing line of the script, or in its module namespace."""
    from ftdoctor.core.frames import user_frame_in_traceback

    frame = user_frame_in_traceback(capture.exc_tb, capture.user_dir)
    spaces = ([frame.f_locals, frame.f_globals] if frame is not None else []) + [capture.namespace]
    for space in spaces:
        for name, value in list(space.items()):
            if value is obj and not name.startswith("_"):
                return name
    return None


def _lora_targets_not_found(exc, capture):
    """LoraConfig(target_modules=...) naming no module of the model: the model's real Linear layer names."""
    frames = _frames(capture.exc_tb)
    if not any(str(f.f_globals.get("__name__", "")).partition(".")[0] == "peft" for f in frames[-6:]):
        return None
    config, model = _peft_config_and_model(frames)
    if config is None or model is None:
        return None
    wanted = _attr(config, "target_modules")
    if not wanted:
        return None
    names, attention = _linear_layer_names(model)
    if not names:
        return None
    wanted_list = sorted(wanted) if isinstance(wanted, (set, frozenset)) else wanted
    wanted_set = {wanted} if isinstance(wanted, str) else set(wanted)
    if isinstance(wanted, str):
        try:
            matched = [n for n in _module_names(model) if re.fullmatch(wanted, n)]
        except re.error:
            matched = []
    else:
        matched = [n for n in _module_names(model) if n.rsplit(".", 1)[-1] in wanted_set or n in wanted_set]
    if matched:
        return None  # PEFT found some: its error is about something else
    suggest = attention or names
    model_name = type(model).__name__
    shown = repr(wanted) if isinstance(wanted, str) else "[" + ", ".join(f'"{w}"' for w in wanted_list) + "]"
    detail = (f"`target_modules={shown}` names no module of `{model_name}`: its Linear layers are called "
              f"{', '.join(f'`{n}`' for n in names)}, so the adapter has nowhere to go. {type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:200]}")
    listed = "[" + ", ".join(f'"{n}"' for n in suggest) + "]"
    fix = ("Use the model's own layer names: "
           + (f"the attention projections, `target_modules={listed}`" if attention else f"`target_modules={listed}`")
           + ", or every Linear layer but the output head, `target_modules=\"all-linear\"`.")
    return finding("FTD013", detail, fix, location=_target_modules_site(capture, wanted_set),
                   evidence={"target_modules": sorted(wanted_set), "linear_layers": names, "suggested": suggest,
                             "model": model_name})


def _peft_config_and_model(frames):
    """The adapter config and the base model it was applied to, from the frames of PEFT's failing call."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None, None
    config = model = None
    for frame in reversed(frames):  # innermost first: the model PEFT was injecting into
        for value in list(frame.f_locals.values()):
            candidates = list(value.values()) if isinstance(value, dict) else [value]
            for v in candidates:
                module = type(v).__module__ or ""
                if config is None and module.startswith("peft") and _attr(v, "target_modules") is not None:
                    config = v
                if model is None and isinstance(v, torch.nn.Module) and not module.startswith("peft"):
                    model = v
        if config is not None and model is not None:
            break
    return config, model


def _module_names(model) -> list[str]:
    try:
        return [n for n, _ in model.named_modules() if n]
    except Exception:
        return []


def _linear_layer_names(model) -> tuple[list[str], list[str]]:
    """The distinct last parts of the names of the model's Linear layers (GPT-2's Conv1D included), the output head
    left out, and those of them that only occur inside attention blocks."""
    import sys

    import torch

    kinds = [torch.nn.Linear]
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    if conv1d is not None:
        kinds.append(conv1d)
    try:
        head = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    except Exception:
        head = None
    names, inside, outside = [], set(), set()
    for full, module in model.named_modules():
        if not isinstance(module, tuple(kinds)) or module is head or not full:
            continue
        parent, _, leaf = full.rpartition(".")
        if leaf.isdigit():
            continue  # a Linear in a ModuleList: its name is an index, not a layer name
        if leaf not in names:
            names.append(leaf)
        (inside if re.search(r"attn|attention", parent, re.I) else outside).add(leaf)
    attention = [n for n in names if n in inside and n not in outside]
    return names, attention


def _target_modules_site(capture, wanted: set) -> str | None:
    """The script's `target_modules=` argument that names these modules: the literal equal to them, or the only
    `target_modules=` of the script when it is not a literal (a variable)."""
    import ast

    from ftdoctor.sdk import Site

    try:
        tree = ast.parse(read_source(capture.script))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    same, other = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg != "target_modules":
                    continue
                try:
                    value = ast.literal_eval(kw.value)
                    value = {value} if isinstance(value, str) else set(value)
                except (ValueError, SyntaxError, TypeError):
                    other.append((kw.value.lineno, None))
                    continue
                (same if value == wanted else other).append((kw.value.lineno, value))
    if same:
        return str(Site(capture.script, min(same)[0]))
    if len(other) == 1 and other[0][1] is None:
        return str(Site(capture.script, other[0][0]))
    return None
