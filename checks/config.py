"""config: static cross-checks of model, tokenizer, data and arguments; nothing is executed."""

from __future__ import annotations

from ftdoctor.facts import datasets, models
from ftdoctor.sdk import check, finding, rule

rule(
    "FTD101",
    "num-labels-mismatch",
    "config",
    "error",
    "The classifier has fewer outputs than the data has classes",
    """
     `from_pretrained` builds a classification head with `num_labels` outputs (2 unless told otherwise). When
     the label column has more classes, the loss indexes past the logits: on the CPU an `IndexError` or
     "Target 2 is out of bounds", on a GPU the opaque "device-side assert triggered".
     """,
    broken="model = AutoModelForSequenceClassification.from_pretrained(checkpoint)  # data has 3 classes",
    fixed="model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=3)",
)
rule(
    "FTD102",
    "label-names-mismatch",
    "config",
    "warning",
    "id2label does not match the dataset's class names",
    """
     The model's `id2label` names its outputs; when they differ from the dataset's `ClassLabel` names the
     predictions a saved model returns carry the wrong names, even though training works.
     """,
    broken="model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=3)",
    fixed="""
     names = dataset["train"].features["label"].names
     model = AutoModelForSequenceClassification.from_pretrained(
         checkpoint, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
     """,
)
rule(
    "FTD104",
    "num-labels-exceeds-classes",
    "config",
    "warning",
    "The classifier has more outputs than the data has classes",
    """
     The head has more outputs than the label column's `ClassLabel` has names. Training works, but the extra
     outputs never receive a target, and the saved model carries classes that do not exist.
     """,
    broken="model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=5)  # 3 classes",
    fixed="model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=3)",
)
rule(
    "FTD103",
    "vocab-exceeds-embeddings",
    "config",
    "error",
    "The tokenizer has more tokens than the model has embedding rows",
    """
     Tokens were added to the tokenizer (`add_tokens`, `add_special_tokens`) but the model's embedding matrix was
     not resized. Any text that produces those ids indexes past the embeddings: "index out of range in self" on
     the CPU, a device-side assert on a GPU.
     """,
    broken="""
     tokenizer.add_tokens(["<product>"])
     model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
     """,
    fixed="""
     tokenizer.add_tokens(["<product>"])
     model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
     model.resize_token_embeddings(len(tokenizer))
     """,
)
rule(
    "FTD105",
    "missing-pad-token",
    "config",
    "error",
    "The tokenizer has no pad token but the pipeline pads",
    """
     GPT-2 style tokenizers ship without a pad token. A padding collator then fails with "Asking to pad but the
     tokenizer does not have a padding token", and a decoder sequence classifier cannot find the last token of
     each row ("Cannot handle batch sizes > 1 if no padding token is defined").
     """,
    broken="""
     tokenizer = AutoTokenizer.from_pretrained("gpt2")
     collator = DataCollatorWithPadding(tokenizer)
     """,
    fixed="""
     tokenizer = AutoTokenizer.from_pretrained("gpt2")
     tokenizer.pad_token = tokenizer.eos_token
     model.config.pad_token_id = tokenizer.pad_token_id
     collator = DataCollatorWithPadding(tokenizer)
     """,
)
rule(
    "FTD106",
    "best-model-strategy-mismatch",
    "config",
    "error",
    "load_best_model_at_end needs saving at every evaluation",
    """
     `load_best_model_at_end=True` reloads the checkpoint with the best evaluation score, so a checkpoint must be
     saved at each evaluation: `save_strategy` must equal `eval_strategy` (and `save_steps` be a multiple of
     `eval_steps`). TrainingArguments refuses the combination at construction.
     """,
    broken='TrainingArguments("out", eval_strategy="epoch", save_strategy="steps", load_best_model_at_end=True)',
    fixed='TrainingArguments("out", eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)',
)
rule(
    "FTD108",
    "mixed-precision-unavailable",
    "config",
    "error",
    "Mixed precision asked for where it cannot run",
    """
     `bf16=True` needs a GPU with bfloat16 support and `fp16=True` a CUDA device; `fp16=True` on a model whose
     weights are already float16 fails at the first step with "Attempting to unscale FP16 gradients", because the
     gradient scaler needs float32 master weights.
     """,
    broken="""
     model = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.float16)
     args = TrainingArguments("out", fp16=True)
     """,
    fixed="""
     model = AutoModelForSequenceClassification.from_pretrained(checkpoint)  # float32 weights
     args = TrainingArguments("out", fp16=True)  # autocast computes in float16
     """,
)


@check("config", codes=("FTD101", "FTD102", "FTD104"))
def num_labels_match_data(model, train_dataset, pipeline, target, task=None):
    """The head's outputs against the classes in the label column."""
    if not models.is_classification(task):
        return None
    columns = datasets.columns_of(train_dataset)
    if not columns:
        return None
    col = datasets.label_key(columns, target.label_names)
    if col is None:
        return None
    n_model = models.num_labels(model)
    feat = datasets.class_label(train_dataset, col)
    if feat is not None:
        n_data, names, how = feat.num_classes, list(feat.names), f"its ClassLabel has {feat.num_classes} names"
    else:
        values = [v for v in datasets.column_values(train_dataset, col) if isinstance(v, int) and v >= 0]
        if not values:
            return None
        if n_model is not None and len(set(values)) <= n_model:
            return None  # as many classes as outputs, numbered from elsewhere than 0: decode reports the ids (FTD203)
        n_data, names, how = max(values) + 1, None, f"its largest label is {max(values)}"
    loc = pipeline.location(model)
    out = []
    if n_model is not None and n_model < n_data:
        kw = _model_kwargs(pipeline, model)
        id2label = f", id2label={dict(enumerate(names))}" if names else ""
        out.append(
            finding(
                "FTD101",
                f"`{models.model_name(model)}` has num_labels={n_model}, but the `{col}` column has {n_data} classes "
                f"({how}). The loss will index past the logits.",
                f"Pass `num_labels={n_data}` to `from_pretrained`{' (it is currently ' + repr(kw.get('num_labels')) + ')' if 'num_labels' in kw else ''}"
                f", e.g. `from_pretrained(checkpoint, num_labels={n_data}{id2label})`.",
                location=loc,
                evidence={"model_num_labels": n_model, "data_num_classes": n_data, "class_names": names},
            )
        )
    elif n_model is not None and n_model > n_data and feat is not None:
        out.append(
            finding(
                "FTD104",
                f"The model has num_labels={n_model} but the `{col}` ClassLabel has only {n_data} classes: "
                f"{n_model - n_data} outputs never receive a target.",
                f"Pass `num_labels={n_data}` to `from_pretrained`.",
                location=loc,
                evidence={"model_num_labels": n_model, "data_num_classes": n_data},
            )
        )
    elif names is not None:
        id2label = getattr(model.config, "id2label", None) or {}
        model_names = [id2label.get(i, id2label.get(str(i))) for i in range(n_data)]
        defaults = all(n is None or str(n) == f"LABEL_{i}" for i, n in enumerate(model_names))
        if not defaults and [str(n) for n in model_names] != [str(n) for n in names]:
            out.append(
                finding(
                    "FTD102",
                    f"id2label is {model_names}, the dataset's classes are {names}.",
                    f"Pass `id2label={dict(enumerate(names))}` and the matching `label2id` to `from_pretrained`.",
                    location=loc,
                    evidence={"id2label": model_names, "class_names": names},
                )
            )
    return out


def _model_kwargs(pipeline, model) -> dict:
    cap = pipeline.capture
    return cap.call_kwargs.get(id(model), {}) if cap is not None else {}


@check("config", codes=("FTD103",))
def vocabulary_fits_embeddings(model, tokenizer, pipeline):
    rows = models.embedding_rows(model)
    try:
        n_tok = len(tokenizer)
    except TypeError:
        return None
    if rows is None or n_tok <= rows:
        return None
    return finding(
        "FTD103",
        f"The tokenizer has {n_tok} tokens but `{models.model_name(model)}` has {rows} embedding "
        f"rows: ids {rows}..{n_tok - 1} index past the embedding matrix.",
        f"Call `{_core_name(pipeline, model)}.resize_token_embeddings(len(tokenizer))` after adding tokens and "
        "before training.",
        location=pipeline.location(model),
        evidence={"tokenizer_size": n_tok, "embedding_rows": rows},
    )


def _core_name(pipeline, model) -> str:
    """How the script reaches the transformers model that owns the embeddings: `model`, or `model.bert` inside
    a module of the user's own."""
    var = pipeline.name_of(model) or "model"
    core = models.pretrained_core(model)
    if core is model:
        return var
    try:
        path = next((name for name, sub in model.named_modules() if sub is core), None)
    except Exception:
        path = None
    return f"{var}.{path}" if path else var


@check("config", codes=("FTD105",))
def pad_token_when_padding(model, tokenizer, pipeline, data_collator=None, task=None, args=None):
    """A missing pad token only matters when something pads: the collator, or a decoder classifier's batch."""
    if not hasattr(tokenizer, "pad_token"):
        return None
    collator_pads = getattr(data_collator, "tokenizer", None) is tokenizer
    batch = getattr(args, "per_device_train_batch_size", 1) or 1
    model_needs_pad = (
        task == "sequence-classification"
        and batch > 1
        and _pools_last_token(model)
        and getattr(model.config, "pad_token_id", None) is None
    )
    tok = pipeline.name_of(tokenizer) or "tokenizer"
    if tokenizer.pad_token is None and (collator_pads or model_needs_pad):
        what = (
            f"`{type(data_collator).__name__}` pads with it"
            if collator_pads
            else f"`{models.model_name(model)}` needs it to find each row's last token at batch size {batch}"
        )
        return finding(
            "FTD105",
            f"`{type(tokenizer).__name__}` has no pad token and {what}.",
            f"Set `{tok}.pad_token = {tok}.eos_token` and `model.config.pad_token_id = {tok}.pad_token_id` "
            "before building the collator.",
            location=pipeline.location(tokenizer),
            evidence={"eos_token": getattr(tokenizer, "eos_token", None)},
        )
    if tokenizer.pad_token is not None and model_needs_pad:
        return finding(
            "FTD105",
            f"The tokenizer has a pad token but `model.config.pad_token_id` is None: "
            f"`{models.model_name(model)}` cannot find each row's last token in a padded batch.",
            f"Set `model.config.pad_token_id = {tok}.pad_token_id`.",
            location=pipeline.location(model),
        )
    return None


def _pools_last_token(model) -> bool:
    """Decoder classifiers find each row's last real token through config.pad_token_id; encoders never read it."""
    import inspect

    try:
        return "pad_token_id" in inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return False


@check("config", codes=("FTD108",))
def mixed_precision_fits_weights(model, args, pipeline):
    import torch

    if not getattr(args, "fp16", False):
        return None
    half = [n for n, p in model.named_parameters() if p.requires_grad and p.dtype == torch.float16]
    if not half:
        return None
    # On a CPU accelerate ignores fp16 (no autocast, no scaler), so this only fails where the job is meant to run.
    return finding(
        "FTD108",
        f"`fp16=True` with {len(half)} trainable float16 parameters (e.g. `{half[0]}`): on a "
        'GPU the gradient scaler needs float32 weights and the first step fails with "Attempting to '
        'unscale FP16 gradients". (On a CPU `fp16=True` is ignored, so a CPU run does not show it.)',
        "Load the model in float32 (drop `dtype=torch.float16` from `from_pretrained`) and keep "
        "`fp16=True`: autocast computes in float16 while the weights stay float32.",
        location=pipeline.location(model),
        evidence={"float16_parameters": len(half)},
    )


rule(
    "FTD109",
    "resume-without-checkpoint",
    "config",
    "error",
    "train() resumes from a checkpoint that does not exist",
    """
     `trainer.train(resume_from_checkpoint=True)` resumes from the last `checkpoint-*` folder in `output_dir`;
     with none there (a first run, another output_dir) it raises "No valid checkpoint found in output
     directory" at once. A path must point at an existing checkpoint folder.
     """,
    broken="trainer.train(resume_from_checkpoint=True)  # first run: output_dir holds no checkpoint",
    fixed="""
     from transformers.trainer_utils import get_last_checkpoint
     trainer.train(resume_from_checkpoint=get_last_checkpoint(args.output_dir))  # None on the first run
     """,
)


@check("config", codes=("FTD109",))
def resume_point_exists(capture, args, pipeline):
    """What `train(resume_from_checkpoint=...)` asks for must be there before the run starts."""
    import os

    resume = getattr(capture, "train_kwargs", {}).get("resume_from_checkpoint")
    if resume is None or resume is False:
        return None
    where = str(capture.train_site) if capture.train_site else None
    out_dir = getattr(args, "output_dir", None)
    if resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        found = get_last_checkpoint(out_dir) if out_dir and os.path.isdir(out_dir) else None
        if found is not None:
            return None
        return finding(
            "FTD109",
            f"`train(resume_from_checkpoint=True)` resumes from the last checkpoint in "
            f"output_dir `{out_dir}`, which holds none{'' if out_dir and os.path.isdir(out_dir) else ' (it does not exist)'}: "
            'the run stops at once with "No valid checkpoint found in output directory".',
            "Resume only when there is something to resume: `trainer.train(resume_from_checkpoint="
            "get_last_checkpoint(args.output_dir))` (from `transformers.trainer_utils`), which is None on "
            "a first run.",
            location=where,
            evidence={"output_dir": out_dir},
        )
    if isinstance(resume, (str, os.PathLike)) and not os.path.isdir(resume):
        return finding(
            "FTD109",
            f"`train(resume_from_checkpoint={str(resume)!r})` points at a folder that does not exist.",
            "Pass an existing `checkpoint-N` folder, or `get_last_checkpoint(args.output_dir)`.",
            location=where,
            evidence={"path": str(resume)},
        )
    return None
