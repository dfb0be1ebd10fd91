"""How the script ended before training: the exception it raised (its cause named here or by the modules beside this
one), a TensorFlow script, a torchrun script walked as one rank."""

from __future__ import annotations

import os
import re

from ftdoctor.checks.setup.api_drift import column_object, removed_argument, removed_attribute, removed_import
from ftdoctor.checks.setup.hub_and_files import hub_unreachable, missing_file
from ftdoctor.checks.setup.llm_libraries import chat_template, lora_targets_not_found, missing_llm_library
from ftdoctor.sdk import check, finding, relay, rule, user_site_in_traceback
from ftdoctor.sdk import diagnose as diagnose_frames

# All of setup's rules, those of the causes in the modules beside this one too: declared in one place, in the
# order `ftdoctor rules` lists them.
rule(
    "FTD001",
    "removed-argument",
    "setup",
    "error",
    "An argument a library removed, renamed or moved",
    """
     transformers, datasets, evaluate, TRL, PEFT and accelerate remove and rename arguments across releases, and
     TRL moved many from its trainers to their config classes; scripts, tutorials and the course still use the old
     names. Passing one raises `TypeError: ... got an unexpected keyword argument` at the line that builds the
     object, before anything trains. The replacement comes from a table read from the libraries' own deprecation
     code and migration guides (each entry names its source).
     """,
    broken="""
     args = TrainingArguments("out", evaluation_strategy="epoch")
     trainer = SFTTrainer(model, args=args, tokenizer=tokenizer, max_seq_length=512)
     """,
    fixed="""
     args = SFTConfig("out", eval_strategy="epoch", max_length=512)
     trainer = SFTTrainer(model, args=args, processing_class=tokenizer)
     """,
)
rule(
    "FTD002",
    "removed-import",
    "setup",
    "error",
    "A name a library removed: an import, a function, a method or an enum member",
    """
     The libraries drop names across releases: transformers 5 its own `AdamW` and the TensorFlow classes,
     datasets 3 `load_metric` (now `evaluate.load`), PEFT `prepare_model_for_int8_training`, accelerate
     `DistributedType.TPU`, the tokenizer's `as_target_tokenizer()`. The import or the attribute fails before
     anything trains; the fix names the successor the library itself named.
     """,
    broken="from datasets import load_metric",
    fixed="import evaluate  # evaluate.load(...)",
)
rule(
    "FTD003",
    "hub-unreachable",
    "setup",
    "error",
    "A model, dataset or metric could not be fetched from the hub",
    """
     The script loads something by hub name and the hub cannot be reached (no network, a firewall, offline
     mode), or the name does not exist. Without `HF_HUB_OFFLINE=1` each miss costs about 20 s of retries.
     """,
    broken='model = AutoModelForSequenceClassification.from_pretrained("bert-base-uncased")  # no network',
    fixed="""
     # once, where the network is reachable:  hf download bert-base-uncased
     # then run offline from the cache, or point at a local folder:
     model = AutoModelForSequenceClassification.from_pretrained("./models/bert-base-uncased")
     """,
)
rule(
    "FTD004",
    "missing-file",
    "setup",
    "error",
    "A file the script reads does not exist",
    """
     The script opens a path that is not there. Relative paths resolve against the working directory the
     script was started from, not the script's folder.
     """,
    broken='load_dataset("csv", data_files="data/train.csv")  # run from another directory',
    fixed='load_dataset("csv", data_files=str(Path(__file__).parent / "data/train.csv"))',
)
rule(
    "FTD005",
    "setup-exception",
    "setup",
    "error",
    "The script raised before training started",
    """
     Something in the script failed before `trainer.train()` was reached, so nothing could be checked past
     this point. The exception and the line that raised are shown.
     """,
)

rule(
    "FTD006",
    "tensorflow-script",
    "setup",
    "error",
    "A TensorFlow/Keras script: ftdoctor checks PyTorch pipelines",
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
     """,
)
rule(
    "FTD007",
    "loss-is-none",
    "setup",
    "error",
    "The loop called backward on a loss that is None",
    """
     A model returns `loss=None` when the batch has no `labels` (under that exact name), so `loss.backward()` fails
     with "'NoneType' object has no attribute 'backward'".
     """,
    broken='outputs = model(**batch); outputs.loss.backward()  # batch has "label"',
    fixed='batch["labels"] = batch.pop("label"); outputs = model(**batch); outputs.loss.backward()',
)

rule(
    "FTD010",
    "syntax-error",
    "setup",
    "error",
    "The script is not valid Python",
    """
     Python could not compile the script, so none of it ran. The line and the parser's message are shown.
     """,
    broken="args = TrainingArguments('out', learning_rate=2e-5",
    fixed="args = TrainingArguments('out', learning_rate=2e-5)",
)
rule(
    "FTD012",
    "ranks-out-of-step",
    "setup",
    "info",
    "The script stopped in a collective the ranks did not share",
    """
     On several ranks, the script stopped in a barrier, all-reduce or broadcast that timed out or lost its peer:
     the ranks were not in the same collective. The distributed stage shows where each rank was.
     """,
)
rule(
    "FTD008",
    "loop-failed-at-first-step",
    "setup",
    "info",
    "The loop failed at its first step; the stages show why",
    """
     A hand-written loop raised while drawing or running its first batch. Its model, loader and optimizer were
     captured all the same, so the later stages rebuild that batch and name the cause where it starts (decode,
     collate, forward). The exception itself is kept as evidence.
     """,
)
rule(
    "FTD009",
    "unknown-argument",
    "setup",
    "error",
    "An argument the class does not take",
    """
     A keyword argument that the class's constructor does not have, most often a typo of one it does have.
     It raises `TypeError: ... got an unexpected keyword argument` before anything trains.
     """,
    broken='TrainingArguments("out", learning_rat=2e-5)',
    fixed='TrainingArguments("out", learning_rate=2e-5)',
    fix_safe=True,
)

rule(
    "FTD011",
    "no-chat-template",
    "setup",
    "error",
    "Conversations to render, and the tokenizer has no chat template",
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
     """,
)
rule(
    "FTD015",
    "chat-template-without-generation-markers",
    "setup",
    "error",
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
     """,
)
rule(
    "FTD013",
    "lora-target-modules-not-found",
    "setup",
    "error",
    "LoRA targets modules the model does not have",
    """
     `LoraConfig(target_modules=...)` names the layers that get an adapter, by the last part of their module
     names, and those names differ between architectures (BERT's `query`/`value`, Llama's and Qwen's `q_proj` ...
     `down_proj`, GPT-2's `c_attn`). When none matches, `get_peft_model` raises "Target modules ... not found in
     the base model".
     """,
    broken='LoraConfig(target_modules=["query", "value"], task_type="CAUSAL_LM")  # a Llama model',
    fixed='LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")',
)
rule(
    "FTD014",
    "missing-llm-library",
    "setup",
    "error",
    "The script needs trl or peft, which is not installed",
    """
     TRL trainers and PEFT adapters come from their own packages, which `transformers` does not install. The
     script stops at its import, before anything is built.
     """,
    broken="from trl import SFTTrainer  # ModuleNotFoundError: No module named 'trl'",
    fixed="""
     # pip install 'trl>=1.0' 'peft>=0.15'   (the versions ftdoctor supports)
     from trl import SFTTrainer
     """,
)

rule(
    "FTD016",
    "walked-as-one-rank",
    "setup",
    "info",
    "A torchrun script was walked as one rank",
    """
     The script sets up a process group from torchrun's environment variables, and was run without torchrun.
     ftdoctor supplied the variables `torchrun --nproc_per_node 1` sets (rank 0 of 1), so every single-process
     stage ran. Whether the ranks agree (data sharding, synchronised gradients) needs several of them: the
     distributed stage runs with `--nproc 2`.
     """,
)


rule(
    "FTD018",
    "module-not-installed",
    "setup",
    "error",
    "A module the script imports is not installed",
    """
     The script imports a package that this Python cannot find: it is not installed in this environment (or,
     for `google.colab`, it exists only inside Google Colab). The script stops at that import, before anything
     is built. The package's pip name is not always its import name (`sklearn` is `scikit-learn`).
     """,
    broken="import sklearn  # ModuleNotFoundError: No module named 'sklearn'",
    fixed="# python -m pip install scikit-learn\nimport sklearn",
)
rule(
    "FTD017",
    "cuda-on-the-cpu",
    "setup",
    "info",
    "A script written for a GPU was walked with CPU stand-ins",
    """
     The script moves its model or tensors to CUDA (`.to("cuda")`, `.cuda()`, `device="cuda"`), loads it with
     bitsandbytes quantization (QLoRA's `BitsAndBytesConfig(load_in_4bit=True)`) or a device map on a GPU, or
     trains with a bitsandbytes optimizer (`optim="paged_adamw_8bit"`), and this machine has no GPU (or no
     bitsandbytes): run as it is, the script would stop there with "Torch not compiled with CUDA enabled" or
     "requires bitsandbytes", a fact about the machine, not the pipeline. ftdoctor ran it again with those moves
     on the CPU, the model loaded in full precision, and `adamw_torch` for the optimizer, so every stage checked
     the pipeline; what it measured about memory and speed is the CPU's. A script that asks
     `torch.cuda.is_available()` first takes its own CPU path and is not affected.
     """,
)


@check("setup", codes=("FTD017",))
def cuda_on_the_cpu(capture):
    facts = getattr(capture, "cuda_standin", None)
    if not facts:
        return None
    from ftdoctor.sdk import Site

    site = Site(facts["file"], facts["line"]) if facts.get("file") and facts.get("line") else None
    parts = []
    moves = facts["redirected"] - len(facts.get("dropped") or ()) - (1 if facts.get("optimizer") else 0)
    if moves > 0:
        parts.append(f"its moves and allocations on CUDA ({moves}) ran on the CPU")
    parts += list(facts.get("dropped") or ())
    if facts.get("optimizer"):
        was, now = facts["optimizer"]
        parts.append(f"`optim={was!r}` (a bitsandbytes optimizer) trained as `{now!r}`")
    unquantized = any("quantization" in d or "load_in_" in d for d in facts.get("dropped") or ())
    return finding(
        "FTD017",
        "The script is written for a GPU and this machine has none (or no bitsandbytes), so ftdoctor ran it "
        "with stand-ins: "
        + "; ".join(parts)
        + ". The stages below checked the pipeline; its memory and speed figures are the CPU's"
        + (", for the model in full precision" if unquantized else "")
        + ".",
        "Nothing to fix for the GPU machine. For its memory figures, pass `--gpu-memory 24GiB` (or a GPU name) "
        "or run ftdoctor there.",
        location=str(site) if site else None,
        evidence=dict(facts),
    )


@check("setup", codes=("FTD016",))
def walked_as_one_rank(capture):
    if not getattr(capture, "single_rank", None):
        return None
    script = os.path.basename(capture.script)
    return finding(
        "FTD016",
        "The script calls `init_process_group()` for torchrun; run without it, it was walked as "
        f"rank 0 of 1 (ftdoctor set {', '.join(sorted(capture.single_rank))} as "
        "`torchrun --nproc_per_node 1` would).",
        f"To check the ranks against each other: `ftdoctor check --nproc 2 {script}`.",
    )


@check("setup", codes=("FTD006",))
def tensorflow_script(capture):
    if capture.outcome != "tensorflow":
        return None
    return finding(
        "FTD006",
        "The script imports TensorFlow/Keras (or a TF* class from transformers), so it was not "
        "run: ftdoctor walks PyTorch pipelines, and transformers 5 no longer has TensorFlow models.",
        "Port the script to PyTorch: `AutoModelFor...` with `Trainer` (`ftdoctor reference show "
        "sequence-classification` prints one), then run `ftdoctor check` on it.",
        location=str(capture.train_site) if capture.train_site else None,
    )


@check(
    "setup",
    codes=(
        "FTD001",
        "FTD002",
        "FTD003",
        "FTD004",
        "FTD005",
        "FTD007",
        "FTD008",
        "FTD009",
        "FTD010",
        "FTD011",
        "FTD012",
        "FTD013",
        "FTD014",
        "FTD015",
        "FTD106",
        "FTD108",
        "FTD504",
        "FTD204",
        "FTD018",
        "FTD105",
    ),
)
def script_raised(capture):
    """Diagnose the exception that stopped the script before training."""
    if capture.outcome != "error" or capture.exception is None:
        return None
    exc = capture.exception
    if isinstance(exc, SyntaxError) and exc.filename and capture.is_user_file(exc.filename):
        from ftdoctor.sdk import Site

        return finding(
            "FTD010",
            f"{type(exc).__name__}: {exc.msg}" + (f" in `{exc.text.strip()}`" if exc.text else ""),
            "Fix the line shown: Python stops before running anything.",
            location=str(Site(exc.filename, exc.lineno or 1)),
            evidence={"offset": exc.offset},
        )
    site = user_site_in_traceback(capture.exc_tb, capture.user_dir)
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and re.search(
        r"Timed out waiting|Connection closed by peer|Connection reset by peer|gloo", str(exc)
    ):
        return finding(
            "FTD012",
            f"This rank stopped in a collective: {str(exc).splitlines()[0][:200]}",
            "See the distributed stage: it shows where each rank was.",
            location=str(site) if site else None,
            evidence={"exception": f"{type(exc).__name__}: {exc}"},
        )
    if capture.loop is not None and getattr(capture.loop, "batch", None) is not None:
        # The loop failed in its first step on a batch ftdoctor has: the stages below run it again and name
        # the cause where it starts.
        return finding(
            "FTD008",
            f"The loop's first step raised {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
            "See the stages below for the cause.",
            location=str(site) if site else None,
            evidence={"exception": f"{type(exc).__name__}: {exc}"},
        )
    if capture.loop is not None and _raised_in_data_loading(capture.exc_tb):
        # The walk rebuilds that batch with the loop's own loader pieces; decode/collate name the cause.
        return finding(
            "FTD008",
            f"The loop stopped while drawing its first batch: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            "See the decode and collate stages for the cause.",
            location=str(site) if site else None,
        )
    location = str(site) if site else None
    evidence = {"exception": f"{type(exc).__name__}: {exc}"}
    for diagnose_llm in (missing_llm_library, chat_template, lora_targets_not_found):
        found = diagnose_llm(exc, capture)
        if found is not None:
            found.location = found.location or location
            found.evidence = {**evidence, **found.evidence}
            return found
    found = _class_names_to_tensor(exc, capture)
    if found is not None:
        found.location = found.location or location
        found.evidence = {**evidence, **found.evidence}
        return found
    for diagnose in (
        _loss_is_none,
        removed_argument,
        removed_import,
        removed_attribute,
        column_object,
        _module_not_installed,
        _no_pad_token,
        _strategy_mismatch,
        _mixed_precision,
        _empty_optimizer,
        hub_unreachable,
        missing_file,
    ):
        found = diagnose(exc)
        if found is not None:
            found.location = found.location or location
            found.evidence = {**evidence, **found.evidence}
            if found.code == "FTD007" and capture.loop is not None:
                # The walk of the captured loop shows the cause at collate.
                return finding(
                    "FTD008",
                    f"The loop's first step failed: {found.detail}",
                    "See the collate and forward stages for the cause.",
                    location=found.location,
                    evidence=found.evidence,
                )
            return found
    ev, cause = diagnose_frames(exc, "setup", {"capture": capture}, [], user_dir=capture.user_dir or None)
    if cause is not None and cause.finding is not None:
        cause.finding.evidence = {**evidence, **cause.finding.evidence}
        return cause.finding
    return relay("FTD005", ev, location=location)


# Packages whose pip name is not their import name (the usual ones in fine-tuning scripts).
PIP_NAMES = {
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "skimage": "scikit-image",
    "Levenshtein": "python-Levenshtein",
    "dotenv": "python-dotenv",
    "google.protobuf": "protobuf",
    "rouge_score": "rouge-score",
    "fitz": "pymupdf",
    "attr": "attrs",
}


def _module_not_installed(exc):
    """ModuleNotFoundError for a top-level package nothing on the path provides (not a submodule a library
    dropped: the API drift diagnosers name those)."""
    import importlib.util
    import sys

    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    name = exc.name
    root = name.partition(".")[0]
    try:
        if importlib.util.find_spec(root) is not None and name == root:
            return None
    except (ImportError, ValueError):
        pass
    if root != name and root in sys.modules and root != "google":
        return None  # a submodule of an installed package: not a missing install
    if name.startswith("google.colab") or (root == "google" and "colab" in _failing_line(exc)):
        return finding(
            "FTD018",
            "The script imports `google.colab`, which exists only inside Google Colab: outside it the import "
            "fails before anything is built.",
            "Run ftdoctor inside Colab (install it there, then `!ftdoctor check notebook.ipynb`), or guard the "
            "Colab-only lines (`if 'google.colab' in sys.modules:`) and read the data from a local path.",
            evidence={"module": name},
        )
    pip = PIP_NAMES.get(name) or PIP_NAMES.get(root) or root
    return finding(
        "FTD018",
        f"The script imports `{name}`, which this Python cannot find: `{pip}` is not installed in this "
        f"environment ({type(exc).__name__}: {exc}).",
        f"Install it into the Python that runs the script: `{sys.executable} -m pip install {pip}`, then run "
        f"again (if `{root}` is a module of your own, put its file beside the script).",
        evidence={"module": name, "pip": pip},
    )


def _no_pad_token(exc):
    """Padding asked of a tokenizer without a pad token (GPT-2, Llama), in the script's own tokenizing."""
    if not isinstance(exc, ValueError) or "does not have a padding token" not in str(exc):
        return None
    return finding(
        "FTD105",
        "The script pads with a tokenizer that has no pad token (decoder-only checkpoints such as GPT-2 and Llama "
        'ship none): it raises "Asking to pad but the tokenizer does not have a padding token".',
        "Give the tokenizer a pad token before it pads: `tokenizer.pad_token = tokenizer.eos_token` (and "
        "`model.config.pad_token_id = tokenizer.pad_token_id` for a sequence classifier, which finds each row's "
        "last token by it); for causal-LM training prefer an unused special token, since a collator masks every "
        "pad id out of the labels and EOS would never be learned.",
    )


def _failing_line(exc) -> str:
    """The source line of the innermost frame of ``exc``'s traceback ('' when it cannot be read)."""
    import linecache

    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    return linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno) or ""


def _class_names_to_tensor(exc, capture):
    """`torch.tensor` over strings ("too many dimensions 'str'"): the user's line names a sequence of a few distinct
    words, class names that were never mapped to ids."""
    import ast

    if not isinstance(exc, ValueError) or "too many dimensions 'str'" not in str(exc):
        return None
    tb, frame = capture.exc_tb, None
    while tb is not None:
        if capture.is_user_file(tb.tb_frame.f_code.co_filename):
            frame, line = tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next
    if frame is None:
        return None
    import linecache

    text = linecache.getline(frame.f_code.co_filename, line).strip()
    try:
        names = [n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)]
    except SyntaxError:
        return None
    for name in names:
        values = _strings(frame.f_locals.get(name, frame.f_globals.get(name)))
        if values is None:
            continue
        distinct = sorted(set(values))
        # A handful of words repeated over many rows are class names, not free text.
        if len(distinct) > 50 or len(values) < 2 * len(distinct):
            continue
        mapping = ", ".join(f"{v!r}: {i}" for i, v in enumerate(distinct[:6])) + (", ..." if len(distinct) > 6 else "")
        return finding(
            "FTD204",
            f"`{name}` holds class names ({len(distinct)} distinct strings over {len(values)} rows: "
            f"{distinct[:6]}), and `torch.tensor` cannot make a tensor of strings (`{text[:120]}`).",
            f"Map the names to integer ids first: `label2id = {{{mapping}}}`, then "
            f"`torch.tensor([label2id[v] for v in {name}])`.",
            evidence={"variable": name, "classes": distinct[:20]},
        )
    return None


def _strings(value) -> list | None:
    """The values of a list, tuple, array or pandas Series when they are all strings."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or not hasattr(value, "__iter__"):
        return None
    try:
        values = list(value)[:100_000]
    except Exception:  # an object that iterates in its own way: not a sequence of labels
        return None
    return values if values and all(isinstance(v, str) for v in values) else None


def _raised_in_data_loading(tb) -> bool:
    while tb is not None:
        if "torch/utils/data" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def _loss_is_none(exc):
    if isinstance(exc, AttributeError) and "'NoneType' object has no attribute 'backward'" in str(exc):
        return finding(
            "FTD007",
            "`loss.backward()` was called on None: the model computed no loss, because the "
            "batch it received has no `labels`.",
            "Give the model `labels`: rename the label column "
            '(`dataset.rename_column("label", "labels")`) or the batch key (see collate).',
        )
    return None


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
        detail = f'It evaluates with eval_strategy="{ev}" but saves with save_strategy="{sv}".'
        fix = f'Save when it evaluates: `save_strategy="{ev}"` (the same as `eval_strategy`).'
    else:
        detail = text.splitlines()[0]
        fix = 'Set `save_strategy` to the same value as `eval_strategy` (for example both "epoch").'
    return finding(
        "FTD106",
        "With `load_best_model_at_end=True` a checkpoint must exist at every evaluation, so "
        "saving and evaluation must happen at the same steps. " + detail,
        fix,
        evidence={"strategies": found} if found else None,
    )


def _mixed_precision(exc):
    text = str(exc)
    if not isinstance(exc, ValueError) or not re.search(r"bf16|fp16|mixed precision|half precision", text, re.I):
        return None
    return finding(
        "FTD108",
        f"Mixed precision was asked for where it cannot run: {text.splitlines()[0]}",
        "Pass `bf16=True` only on a GPU that supports it (`torch.cuda.is_bf16_supported()`) and "
        "`fp16=True` only with CUDA; to check on this machine, make it conditional: "
        "`bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported()`.",
    )


def _empty_optimizer(exc):
    if isinstance(exc, ValueError) and "empty parameter list" in str(exc):
        return finding(
            "FTD504",
            "The optimizer was built from an empty parameter list.",
            "Build it from the model that trains: `torch.optim.AdamW(model.parameters(), lr=...)` "
            "(after any head replacement or freezing).",
        )
    return None
