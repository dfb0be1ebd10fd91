"""The rows as the trainer will see them: raw text instead of token ids, columns the model never receives, labels
that are no class ids, token ids the model cannot take; the first sample decoded as evidence."""

from __future__ import annotations

import re
from collections import Counter

from ftdoctor.checks._failures import explain
from ftdoctor.core.diagnosis import FACTS, MESSAGE, VALUES
from ftdoctor.facts import datasets, models
from ftdoctor.sdk import (
    Cause,
    Provide,
    Site,
    Skip,
    Unavailable,
    UserCodeError,
    check,
    diagnose,
    diagnoser,
    finding,
    relay,
    rule,
    script_datasets,
    script_items,
    user_site_in_traceback,
)
from ftdoctor.targets.base import take_rows

SAMPLE_ROWS = 64

rule(
    "FTD201",
    "raw-text-dataset",
    "decode",
    "error",
    "The trainer receives raw text, not token ids",
    """
     The dataset given to the Trainer has text columns but no `input_ids`. The Trainer drops every column the
     model's forward does not take, so the model receives only the labels and fails with "You must specify
     exactly one of input_ids or inputs_embeds". Usually the tokenized dataset exists in the script but the raw
     one was passed.
     """,
    broken="""
     tokenized = raw_datasets.map(preprocess, batched=True)
     trainer = Trainer(model, args, train_dataset=raw_datasets["train"])
     """,
    fixed="""
     tokenized = raw_datasets.map(preprocess, batched=True)
     trainer = Trainer(model, args, train_dataset=tokenized["train"])
     """,
)
rule(
    "FTD202",
    "label-column-dropped",
    "decode",
    "error",
    "The label column never reaches the model",
    """
     The Trainer keeps only the columns the model's forward accepts, plus `label`/`label_ids` and the
     trainer's `label_names`. A label column under any other name is silently dropped: the model gets no
     `labels`, returns no loss, and training stops with "The model did not return a loss".
     """,
    broken='dataset = dataset.map(tokenize)  # labels live in the "sentiment" column',
    fixed='dataset = dataset.map(tokenize).rename_column("sentiment", "labels")',
)
rule(
    "FTD203",
    "labels-out-of-range",
    "decode",
    "error",
    "Labels outside the classes",
    """
     Some labels are negative or beyond the last class (a test split labelled -1, an off-by-one in a
     label mapping). Cross-entropy cannot use them: "Target -1 is out of bounds" on the CPU, a device-side
     assert on a GPU. Only -100 is ignored, and only by design.
     """,
    broken='trainer = Trainer(model, args, train_dataset=tokenized["test"])  # GLUE test labels are -1',
    fixed='trainer = Trainer(model, args, train_dataset=tokenized["train"])',
)
rule(
    "FTD204",
    "label-dtype",
    "decode",
    "error",
    "Labels of the wrong type for the loss",
    """
     Single-label classification needs integer class ids: float labels make transformers pick the multi-label
     (BCE) loss, which wants one float per class, and string labels cannot become a tensor at all.
     """,
    broken='dataset = dataset.map(lambda e: {"label": float(e["score"])})',
    fixed='dataset = dataset.map(lambda e: {"label": int(e["score"])})',
)
rule(
    "FTD205",
    "mask-length-mismatch",
    "decode",
    "error",
    "attention_mask and input_ids differ in length",
    """
     Each row's `attention_mask` must have exactly one entry per token. A mismatch means the mask was built
     separately (or truncated differently) and the model attends to the wrong positions or fails to collate.
     """,
    broken='enc["attention_mask"] = [[1] * 128 for _ in enc["input_ids"]]',
    fixed="enc = tokenizer(texts, truncation=True)  # ids and mask come from the same call",
)
rule(
    "FTD206",
    "sequence-exceeds-positions",
    "decode",
    "error",
    "Sequences longer than the model's position embeddings",
    """
     The model has a fixed number of position embeddings. A longer row indexes past them: "index out of range
     in self" on the CPU, a device-side assert on a GPU, often hours in when the first long row arrives.
     """,
    broken="tokenizer(batch['text'])  # no truncation",
    fixed="tokenizer(batch['text'], truncation=True, max_length=512)",
)
rule(
    "FTD207",
    "token-ids-beyond-embeddings",
    "decode",
    "error",
    "Token ids beyond the embedding matrix",
    """
     The dataset holds ids the model has no embedding for: it was tokenized with another tokenizer than the one
     that matches the model.
     """,
    broken='tokenized = raw.map(lambda b: other_tokenizer(b["text"]))',
    fixed='tokenized = raw.map(lambda b: tokenizer(b["text"]))  # the checkpoint\'s own tokenizer',
)
rule(
    "FTD208",
    "empty-samples",
    "decode",
    "warning",
    "Empty samples",
    """
     Rows with no tokens besides the special ones carry no signal and, for language modelling, no targets.
     """,
    broken='dataset = load_dataset("text", data_files="corpus.txt")  # blank lines become rows',
    fixed='dataset = dataset.filter(lambda e: len(e["text"].strip()) > 0)',
)
rule(
    "FTD209",
    "class-balance",
    "decode",
    "warning",
    "Labels of one class dominate",
    """
     When (nearly) every label is the same class, the model learns to predict that class and reaches a high
     accuracy while learning nothing. A single class in the training data is an error: nothing can be learned.
     """,
    broken='train = dataset.sort("label").select(range(1000))  # the first 1000 are all class 0',
    fixed="train = dataset.shuffle(seed=42).select(range(1000))",
)
rule(
    "FTD214",
    "trainer-drops-model-inputs",
    "decode",
    "error",
    "The Trainer drops the model's input columns",
    """
     `Trainer` keeps only the dataset columns named in the signature of `model.forward`. A model wrapped before it
     is handed over (`torch.compile(model)`, a module whose forward takes `*args, **kwargs`) hides those names,
     so every input column is dropped and the model receives only the labels: "You should supply an encoding
     ... that includes input_ids".
     """,
    broken="""
     model = torch.compile(model)
     trainer = Trainer(model, args, train_dataset=tokenized["train"])
     """,
    fixed="""
     args = TrainingArguments("out", torch_compile=True)  # the Trainer compiles it and still reads its signature
     trainer = Trainer(model, args, train_dataset=tokenized["train"])
     """,
)
rule(
    "FTD213",
    "labels-missing",
    "decode",
    "error",
    "Rows without a label",
    """
     Some rows carry no label (None): a merge or a mapping left them empty. The collator cannot make a tensor of
     None ("Could not infer dtype of NoneType"), so the first batch holding one fails, possibly hours in.
     """,
    broken='dataset = dataset.map(lambda e: {"label": label2id.get(e["category"])})  # unknown categories -> None',
    fixed='dataset = dataset.filter(lambda e: e["label"] is not None)',
)
rule(
    "FTD212",
    "empty-dataset",
    "decode",
    "error",
    "A dataset with no rows",
    """
     The training (or evaluation) dataset is empty: a filter that removed everything, a `select` of a range past
     its end, a split name that matched nothing. Training stops at once; an empty evaluation set scores nothing.
     """,
    broken='train = dataset["train"].filter(lambda e: len(e["text"]) > 10_000)  # nothing is that long',
    fixed='train = dataset["train"].filter(lambda e: len(e["text"]) > 0)',
)
rule(
    "FTD211",
    "single-class-labels",
    "decode",
    "error",
    "The training labels are all one class",
    """
     When every training label is the same class there is nothing to learn: the model predicts that class and
     the loss goes to zero. Usually a subset was taken from a dataset sorted by label.
     """,
    broken='train = dataset.sort("label").select(range(1000))  # the first 1000 are all class 0',
    fixed="train = dataset.shuffle(seed=42).select(range(1000))",
)
rule(
    "FTD210",
    "non-tensor-columns",
    "decode",
    "error",
    "Columns the collator cannot turn into tensors",
    """
     With `remove_unused_columns=False`, or a dataset that is not a `datasets.Dataset`, every key of a sample
     reaches the collator. Text columns cannot become tensors ("too many dimensions 'str'").
     """,
    broken='tokenized = raw.map(tokenize, batched=True)  # keeps "sentence"; remove_unused_columns=False',
    fixed='tokenized = raw.map(tokenize, batched=True, remove_columns=["sentence"])',
)


def _tokenized_stand_in(pipeline, raw_ds, main_input):
    """A dataset in the script with the model's inputs and as many rows as ``raw_ds``: what was meant to be passed."""
    cap = pipeline.capture
    if cap is None:
        return None, None
    n = datasets.safe_len(raw_ds)
    if n is None:
        return None, None
    for name, ds in script_datasets(cap.namespace):
        if (
            ds is not raw_ds
            and main_input in (ds.column_names or [])
            and datasets.safe_len(ds) == n
            and _same_split(raw_ds, ds)
        ):
            return name, ds
    return None, None


def _same_split(raw_ds, ds) -> bool:
    # The stand-in must hold the same rows: compare the columns both have on the first row.
    first = take_rows(raw_ds, 1)
    if not first or not isinstance(first[0], dict):
        return False
    shared = [c for c in first[0] if c in ds.column_names]
    if not shared:
        return True
    return all(first[0][c] == ds[0][c] for c in shared)


rule(
    "FTD218",
    "trainer-drops-column-read-later",
    "decode",
    "error",
    "The Trainer removes a column that the collator or the dataset's transform reads",
    """
     With `remove_unused_columns=True` (the default) the Trainer removes every column that the model's forward does
     not name before the rows reach the collator, and before a transform set with `with_transform`/`set_transform`
     runs. A collator that reads a helper column (`word_ids`, word-level tags) or a transform that reads the raw
     text then fails on the first batch with a `KeyError`.
     """,
    broken="""
     args = TrainingArguments("out")
     trainer = Trainer(model, args, train_dataset=ds, data_collator=collate_using_word_ids)
     """,
    fixed="""
     args = TrainingArguments("out", remove_unused_columns=False)  # the collator needs word_ids
     trainer = Trainer(model, args, train_dataset=ds, data_collator=collate_using_word_ids)
     """,
)


def _keys_read(fn) -> dict[str, tuple[str, int]]:
    """The string keys a user's function reads by subscript or `.pop` (either raises KeyError on a missing key),
    each with the file and line of its first read; {} for library code or code without source."""
    import ast
    import functools
    import inspect
    import textwrap

    while isinstance(fn, functools.partial):
        fn = fn.func
    if not inspect.isroutine(fn) and callable(fn):
        fn = type(fn).__call__
    fn = inspect.unwrap(fn) if callable(fn) else fn
    if str(getattr(fn, "__module__", "") or "").split(".")[0] in _LIBRARIES:
        return {}
    try:
        path = inspect.getsourcefile(fn) or ""
        lines, start = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return {}
    if "site-packages" in path or "dist-packages" in path:
        return {}
    keys: dict[str, tuple[str, int]] = {}
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "pop" and node.args:
            key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.setdefault(key.value, (path, start + node.lineno - 1))
    return dict(sorted(keys.items(), key=lambda kv: kv[1][1]))


_LIBRARIES = {"transformers", "datasets", "trl", "torch", "peft", "accelerate", "ftdoctor"}


def _transform_of(ds):
    fmt = getattr(ds, "format", None)
    return (fmt.get("format_kwargs") or {}).get("transform") if isinstance(fmt, dict) else None


@check("decode", codes=("FTD218",))
def columns_read_after_removal(train_dataset, pipeline, target, trainer=None):
    """Contract before reading rows: what the collator and the dataset's transform read must survive the Trainer's
    removal of unused columns."""
    dropped = target.dropped_columns(train_dataset)
    if not dropped:
        return None
    for what, fn in (("transform", _transform_of(train_dataset)), ("collator", target.collator)):
        if fn is None:
            continue
        keys = _keys_read(fn)
        read = [k for k in keys if k in dropped]
        if not read:
            continue
        name = getattr(fn, "__name__", type(fn).__name__)
        site = Site(*keys[read[0]])
        cols = ", ".join(f"`{k}`" for k in read)
        reader = f"the dataset's transform `{name}`" if what == "transform" else f"the collator `{name}`"
        return finding(
            "FTD218",
            f"{reader[0].upper() + reader[1:]} reads {cols}, but the Trainer removes "
            f"{'that column' if len(read) == 1 else 'those columns'} first: the model's forward does not name "
            f"{'it' if len(read) == 1 else 'them'} (`remove_unused_columns=True`). "
            + (
                f"The first batch fails with KeyError: {read[0]!r}."
                if what == "collator"
                else "Training stops before the first step (\"No columns in the dataset match the model's forward "
                f'method signature", or KeyError: {read[0]!r} in the transform).'
            ),
            "Pass `remove_unused_columns=False` in `TrainingArguments(...)` and leave in the dataset only what "
            f"{reader} and the model use.",
            location=str(site),
            evidence={"reads": read, "dropped": dropped, "reader": what},
        )
    return None


@check(
    "decode",
    provides=("train_features", "eval_features", "effective_train_dataset", "effective_eval_dataset"),
    codes=("FTD201", "FTD202", "FTD212", "FTD214", "FTD900"),
)
def read_samples(train_dataset, model, pipeline, target, trainer=None, eval_dataset=None, findings_so_far=()):
    """Rows as the collator will see them; raw text is reported, and a tokenized stand-in used if the script has one."""
    main_input = getattr(model, "main_input_name", "input_ids")
    findings, values = [], {}
    raw_notes, stand_ins = [], []
    for split, ds in (("train", train_dataset), ("eval", eval_dataset)):
        if ds is None:
            continue
        if datasets.safe_len(ds) == 0:
            what = "training" if split == "train" else "evaluation"
            findings.append(
                finding(
                    "FTD212",
                    f"The {what} dataset{_named(pipeline, ds)} has 0 rows: "
                    + (
                        'training stops at once ("num_samples should be a positive integer").'
                        if split == "train"
                        else "evaluation has nothing to score."
                    ),
                    "Check the split, filter or select that produced it (print `len(dataset)` after each step).",
                    location=pipeline.location(ds, trainer),
                )
            )
            values[f"{split}_features"] = values[f"effective_{split}_dataset"] = _unavailable(
                f"the {what} dataset is empty"
            )
            continue
        description = "training" if split == "train" else "evaluation"
        if datasets.is_streaming(ds):
            # A streaming dataset has no length and no index: the checks scan rows drawn from its start.
            sample = take_rows(ds, datasets.STREAM_SAMPLE)
            if sample and isinstance(sample[0], dict):
                ds = datasets.materialize(sample, getattr(ds, "features", None))
                values.setdefault("decode_streaming", {})[split] = len(sample)
        try:
            rows, removed = target.rows(ds, description, SAMPLE_ROWS)
        except UserCodeError as err:
            # A cause named before (FTD218: the transform reads a column the Trainer removes) makes it predicted.
            failure = explain(err.exc, f"reading the {description} rows", findings_so_far)
            if failure.kind == "predicted":
                values[f"{split}_features"] = values[f"effective_{split}_dataset"] = _unavailable(failure.reason)
                continue
            # Reading a row runs the dataset's own code (a transform); the Trainer reads it the same way.
            named = _unreadable(err, ds, description, pipeline, target, trainer)
            findings.append(named)
            values[f"{split}_features"] = values[f"effective_{split}_dataset"] = _unavailable(
                f"reading the {description} dataset raised (decode {named.code})"
            )
            continue
        if main_input in removed:
            # The data has the model's inputs; the trainer drops them, reading the signature of something that
            # wraps the model. Go on with the columns the model itself takes.
            if split == "train":
                findings.append(_inputs_dropped(removed, model, pipeline, trainer))
            rows = _model_columns(take_rows(ds, SAMPLE_ROWS), model, target)
        untokenized = (
            rows
            and isinstance(rows[0], dict)
            and main_input not in rows[0]
            and "inputs_embeds" not in rows[0]
            and not _token_columns(rows[0])
            and not _collator_tokenizes(target, rows, main_input)
        )
        own_step = target.own_input_step(list(rows[0])) if untokenized else None
        if own_step is not None:
            # The trainer makes the model's inputs from these rows in its own step (it generates completions from
            # the prompts, plain text or conversations): what reaches the model is not known before training.
            reason = f"`{own_step}` makes the model's inputs from the {split} rows during training"
            values[f"{split}_features"] = values[f"effective_{split}_dataset"] = _unavailable(reason)
            continue
        if untokenized and _text_columns(ds):
            text_cols = _text_columns(ds)
            name, stand_in = _tokenized_stand_in(pipeline, ds, main_input)
            raw_notes.append((split, pipeline.name_of(ds), text_cols, name))
            if stand_in is not None:
                stand_ins.append(f"{split}: {name}")
                rows, removed = target.rows(stand_in, description, SAMPLE_ROWS)
                ds = stand_in
            else:
                rows = None
        missing = _unavailable(f"the {split} dataset has no `{main_input}` (decode)")
        values[f"{split}_features"] = rows if rows else missing
        values[f"effective_{split}_dataset"] = ds if rows else missing
        if split == "train" and rows and isinstance(rows[0], dict):
            # A column the collator reads (FTD218) is its input, not a label column under the wrong name.
            read = {c for x in findings_so_far if x.code == "FTD218" for c in x.evidence.get("reads", ())}
            f = _dropped_label_column(ds, rows, [c for c in removed if c not in read], target, pipeline)
            if f is not None:
                findings.append(f)
    if raw_notes:
        parts, fixes = [], []
        for split, var, text_cols, name in raw_notes:
            arg = "train_dataset" if split == "train" else "eval_dataset"
            cols = ", ".join(f"`{c}`" for c in text_cols) or "no token ids"
            parts.append(f"`{arg}`{' (' + var + ')' if var else ''} has {cols} but no `{main_input}`")
            fixes.append(f"`{arg}={name}`" if name else None)
        if all(fixes):
            fix = "Pass the tokenized dataset: " + ", ".join(fixes) + "."
        else:
            fix = (
                'Tokenize first: `tokenized = dataset.map(lambda b: tokenizer(b["text"], truncation=True), '
                'batched=True)` and pass `train_dataset=tokenized["train"]`.'
            )
        detail = "; ".join(parts) + ". The Trainer drops the text columns, so the model gets no inputs."
        if stand_ins:
            detail += " The remaining stages were checked with " + ", ".join(stand_ins) + " instead."
        findings.insert(
            0,
            finding(
                "FTD201",
                detail,
                fix,
                location=pipeline.location(trainer),
                evidence={"text_columns": raw_notes[0][2], "stand_in": stand_ins or None},
            ),
        )
    if eval_dataset is None:
        values["eval_features"] = values["effective_eval_dataset"] = _unavailable("the trainer has no eval_dataset")
    streaming = values.pop("decode_streaming", None)
    evidence = {"streaming_rows_sampled": streaming} if streaming else {}
    return Provide(values, findings, evidence=evidence)


def _text_columns(ds) -> list[str]:
    """The columns of the dataset's first row that hold text: without any, rows lacking token ids are not raw text
    (a custom model's own inputs, or inputs the Trainer dropped: FTD214)."""
    first = take_rows(ds, 1)
    row = first[0] if first else None
    return [k for k, v in row.items() if isinstance(v, str)] if isinstance(row, dict) else []


def _unreadable(err, ds, description, pipeline, target, trainer):
    """FTD900 at the user's line for a dataset whose rows raise when read: its transform failed, or read a
    column the Trainer removed before it ran."""
    cap = pipeline.capture
    site = user_site_in_traceback(err.exc.__traceback__, cap.user_dir) if cap is not None else None
    exc = err.exc
    msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    missing = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
    columns = getattr(ds, "column_names", None) or []
    removes = bool(getattr(getattr(trainer, "args", None), "remove_unused_columns", False))
    ev, cause = diagnose(
        exc,
        "decode",
        {"pipeline": pipeline, "target": target, "trainer": trainer},
        (),
        user_dir=getattr(cap, "user_dir", None),
    )
    if cause is not None and cause.finding is not None:
        return cause.finding  # a diagnoser names the cause (a None answer position, a column of another length...)
    detail = f"Reading a row of the {description} dataset{_named(pipeline, ds)} raised {msg}."
    if not (removes and isinstance(missing, str) and missing in columns):
        # The last resort: the user's line that raised and its values; the Trainer reads the rows the same way.
        return relay("FTD900", ev, detail, location=str(site) if site is not None else pipeline.location(ds, trainer))
    detail += (
        f" The dataset has a `{missing}` column, but the Trainer removes every column "
        f"`{models.model_name(pipeline.model)}.forward` does not take before its transform runs."
    )
    fix = (
        "Pass `remove_unused_columns=False` to `TrainingArguments` (the transform then receives every column), "
        "or tokenize ahead with `dataset.map(...)`."
    )
    return finding(
        "FTD900",
        detail,
        fix,
        location=str(site) if site is not None else pipeline.location(ds, trainer),
        evidence={"exception": msg},
    )


def _unavailable(reason):
    return Unavailable(reason)


def _collator_tokenizes(target, rows, main_input) -> bool:
    """Whether the run's collator makes the model's inputs from these rows itself (a `collate_fn` that calls the
    tokenizer on the text): then text rows are what it expects."""
    if target.collator is None:
        return False
    try:
        batch = target.collate(rows[:2])
    except (UserCodeError, Skip):
        return False
    return hasattr(batch, "keys") and main_input in batch.keys()


def _token_columns(row: dict) -> list[str]:
    """Columns of token ids under other names than the model's input (a preference trainer's `prompt_ids`,
    `chosen_ids`): the trainer's own collator builds the model's inputs from them, so this is not raw text."""
    out = []
    for k, v in row.items():
        v = v.tolist() if hasattr(v, "tolist") else v
        if str(k).endswith("_ids") and isinstance(v, list) and v and all(isinstance(t, int) for t in v[:16]):
            out.append(k)
    return out


def _named(pipeline, ds) -> str:
    name = pipeline.name_of(ds)
    return f" (`{name}`)" if name else ""


def _inputs_dropped(removed, model, pipeline, trainer):
    wrapped = getattr(trainer, "model", None)
    wrapper = type(wrapped if wrapped is not None else model).__name__
    # A forward that takes **kwargs names no input: every dropped column but the labels is one the model needed.
    inputs = [c for c in removed if c in _forward_params(model)] or [c for c in removed if c not in datasets.LABEL_KEYS]
    return finding(
        "FTD214",
        f"The dataset has the model's inputs ({', '.join(f'`{c}`' for c in inputs)}), but the "
        f"Trainer drops them: it keeps only the columns named in the signature of `{wrapper}.forward`, "
        f"which does not name them. The model would receive only what is left ({_kept(removed)}).",
        "Give the Trainer the model itself: for torch.compile pass the plain model and "
        "`TrainingArguments(..., torch_compile=True)`; otherwise `remove_unused_columns=False` with a "
        "dataset that holds only the model's inputs and labels.",
        location=pipeline.location(trainer),
        evidence={"dropped": removed, "signature_of": wrapper},
    )


def _kept(removed) -> str:
    return "the label only" if removed else "nothing"


def _forward_params(model) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _model_columns(rows, model, target):
    """Rows reduced to what the (unwrapped) model's forward takes, and the labels."""
    names = _forward_params(model) | set(datasets.LABEL_KEYS) | set(target.label_names)
    return [{k: v for k, v in r.items() if k in names} for r in rows if isinstance(r, dict)]


def _dropped_label_column(ds, rows, removed, target, pipeline):
    if datasets.label_key(rows[0], target.label_names) is not None or not removed or not datasets.is_hf_dataset(ds):
        return None
    task = pipeline.task
    if not models.is_classification(task):
        return None
    for col in removed:
        if datasets.class_label(ds, col) is not None or _int_scalar_column(ds, col):
            expected = (target.label_names or ["labels"])[0]
            return finding(
                "FTD202",
                f"The `{col}` column holds the labels, but the Trainer drops it: "
                f"`{models.model_name(pipeline.model)}.forward` takes `{expected}`, not `{col}`. "
                "No labels reach the model and it returns no loss.",
                f'Rename it: `dataset = dataset.rename_column("{col}", "{expected}")`.',
                location=pipeline.location(pipeline.trainer),
                evidence={"column": col, "expected": expected},
            )
    return None


def _int_scalar_column(ds, col) -> bool:
    feat = ds.features.get(col)
    return getattr(feat, "dtype", "").startswith("int") and col not in ("idx", "id", "index")


@check("decode", codes=("FTD101", "FTD203", "FTD204", "FTD209", "FTD211", "FTD213"))
def labels_are_class_ids(effective_train_dataset, train_features, model, pipeline, target, trainer=None, task=None):
    if (
        not (models.is_classification(task) or task == "multiple-choice")
        or not train_features
        or not isinstance(train_features[0], dict)
    ):
        return None
    key = datasets.label_key(train_features[0], target.label_names)
    if key is None:
        return None
    ds = effective_train_dataset
    sample = train_features[0][key]
    # Every value with its count: a large dataset has few distinct labels, and what follows reads those.
    tally, n_values = (
        datasets.value_counts(ds, key)
        if datasets.is_hf_dataset(ds) and key in ds.column_names
        else datasets.value_counts(train_features, key)
    )
    loc = pipeline.location(ds, trainer)
    out = []
    missing = tally.pop(None, 0)
    if missing:
        out.append(
            finding(
                "FTD213",
                f"{missing} of {n_values} `{key}` values are None: those rows have no label, "
                'and the collator fails on the first batch that holds one ("Could not infer dtype of '
                'NoneType").',
                f'Drop them before training: `dataset = dataset.filter(lambda e: e["{key}"] is not None)`.',
                location=loc,
                evidence={"missing": missing},
            )
        )
    kinds = Counter()
    for v, n in tally.items():
        kinds[type(v).__name__] += n
    problem_type = getattr(model.config, "problem_type", None)
    if any(isinstance(v, str) for v in tally):
        feat_names = sorted(v for v in tally if isinstance(v, str))[:10]
        return finding(
            "FTD204",
            f"The `{key}` column holds strings ({feat_names}); the loss needs integer class ids.",
            f'Encode them: `dataset = dataset.class_encode_column("{key}")` (or map each name to its '
            "id with `label2id`).",
            location=loc,
            evidence={"example": sample},
        )
    ints = Counter({v: n for v, n in tally.items() if isinstance(v, int) and not isinstance(v, bool)})
    floats = [v for v in tally if isinstance(v, float)]  # the distinct ones, in the order they come
    n_labels = models.num_labels(model) or 0
    multi_hot = isinstance(sample, (list, tuple)) or getattr(sample, "ndim", 0) == 1
    if problem_type == "multi_label_classification" and multi_hot and ints and not floats:
        # BCEWithLogitsLoss takes the targets as they come: integer ones fail against the float logits.
        return finding(
            "FTD204",
            f"The model is set up for multi-label classification (BCEWithLogitsLoss), which needs float multi-hot "
            f'targets, but the `{key}` rows hold integers ({sample!r}): the loss fails with "result type Float '
            "can't be cast to the desired output type Long\".",
            f"Make the targets floats: `[float(v) for v in ...]` where the `{key}` rows are built (or "
            f'`dataset = dataset.cast_column("{key}", Sequence(Value("float32")))`).',
            location=loc,
            evidence={"example": sample},
        )
    if floats and problem_type != "multi_label_classification" and n_labels > 1 and task == "sequence-classification":
        if multi_hot and len(sample) == n_labels and set(floats) <= {0.0, 1.0}:
            return finding(
                "FTD204",
                f"The `{key}` rows are one-hot float vectors ({len(sample)} values, one 1.0): from float labels "
                "transformers infers multi-label classification and trains with BCEWithLogitsLoss, one independent "
                "yes/no per class, instead of cross-entropy over the classes.",
                f"Give the class id instead of the one-hot row (`{key} = row.index(1.0)`, or the original "
                "integer label column); keep one-hot floats only for real multi-label data, with "
                '`problem_type="multi_label_classification"`.',
                location=loc,
                evidence={"example": sample, "num_labels": n_labels},
            )
        return _float_labels(key, floats, n_labels, kinds, loc)
    if not ints:
        return None
    ignore = -100
    feat = datasets.class_label(ds, key) if datasets.is_hf_dataset(ds) else None
    classes = {v for v in ints if v >= 0}
    upper = feat.num_classes if feat is not None else None
    if task == "multiple-choice":
        # The label picks one of the row's choices: it must be below their number, whatever num_labels says.
        first = train_features[0].get("input_ids")
        upper, feat = (len(first) if isinstance(first, (list, tuple)) else None), None
    elif upper is None and n_labels > 1 and len(classes) <= n_labels:
        # As many classes as outputs, so the ids must be 0..n-1; more classes than outputs is config's FTD101.
        upper = n_labels
    bad = sorted({v for v in ints if v < 0 and v != ignore} | ({v for v in classes if v >= upper} if upper else set()))
    if (
        feat is None
        and task == "sequence-classification"
        and n_labels > 1
        and classes
        and min(classes) == 0
        and max(classes) >= n_labels
        and all(v >= 0 or v == ignore for v in ints)
        and (len(classes) > n_labels or len(classes) >= 0.5 * (max(classes) + 1))
    ):
        # Ids from 0 past the head's outputs, dense (or more distinct ones than outputs): the head is too small for
        # the classes. Ids shifted to start above 0, sparse ids and negative ones are a mapping's fault (FTD203).
        out.append(_too_few_outputs(key, classes, n_labels, model, pipeline))
        bad = []
    if bad:
        out.append(_out_of_range(key, ints, bad, classes, upper, feat is not None, pipeline, loc))
    counts = Counter({v: n for v, n in ints.items() if v != ignore})
    # One label per row: per-token label lists in a sequence classifier are a shape problem (forward), and their
    # flattened counts say nothing about class balance.
    per_row = not isinstance(sample, (list, tuple)) and getattr(sample, "ndim", 0) == 0
    if task == "sequence-classification" and counts and per_row:
        top, top_n = counts.most_common(1)[0]
        names = feat.names if feat is not None else None
        real = sum(counts.values())
        share = top_n / real
        label = names[top] if names and 0 <= top < len(names) else top
        if len(counts) == 1:
            out.append(
                finding(
                    "FTD211",
                    f"Every training label is {label!r}: there is nothing to learn.",
                    "Use a split that holds every class, e.g. `dataset.shuffle(seed=42)` before `select`.",
                    location=loc,
                    evidence={"counts": dict(counts)},
                )
            )
        elif share >= 0.9 and real >= 20:
            out.append(
                finding(
                    "FTD209",
                    f"{share:.0%} of training labels are {label!r}: a model predicting only "
                    "that class scores that accuracy while learning nothing.",
                    "Shuffle before selecting a subset, rebalance, or weight the loss; report F1 rather than accuracy.",
                    location=loc,
                    evidence={"counts": dict(counts)},
                )
            )
    return out


def _float_labels(key, floats, n_labels, kinds, loc):
    distinct = sorted(set(floats))
    if all(float(v).is_integer() for v in distinct):
        fix = f'Make them integers: `dataset = dataset.cast_column("{key}", Value("int64"))`.'
    elif len(distinct) <= n_labels:
        to_id = ", ".join(f"{v!r}: {i}" for i, v in enumerate(distinct))
        fix = (
            f"Map the {len(distinct)} values to class ids: `to_id = {{{to_id}}}` and "
            f'`dataset = dataset.map(lambda e: {{"{key}": to_id[e["{key}"]]}})`; for a continuous target '
            "(regression) load the model with `num_labels=1` instead."
        )
    else:
        fix = (
            f"For a continuous target (regression) load the model with `num_labels=1`; for {n_labels} classes "
            f"the labels must be integer ids 0..{n_labels - 1}."
        )
    return finding(
        "FTD204",
        f"The `{key}` values are floats ({floats[0]!r}, ...): with num_labels={n_labels} "
        "transformers then picks the multi-label BCE loss, which expects one float per class, "
        "and fails on the shapes.",
        fix,
        location=loc,
        evidence={"dtypes": dict(kinds), "distinct": distinct[:20]},
    )


def _too_few_outputs(key, classes, n_labels, model, pipeline):
    n = max(classes) + 1
    return finding(
        "FTD101",
        f"`{models.model_name(model)}` has num_labels={n_labels}, but the `{key}` values run 0..{max(classes)} "
        f"({len(classes)} distinct ids in the rows read): the loss will index past the {n_labels} logits.",
        f"Load the model with one output per class: `from_pretrained(checkpoint, num_labels={n})` (or the number "
        "of classes of the whole label set, if larger).",
        location=pipeline.location(model),
        evidence={"model_num_labels": n_labels, "largest_label": max(classes), "distinct": len(classes)},
    )


def _out_of_range(key, ints, bad, classes, upper, from_class_label, pipeline, loc):
    """``ints``: each integer label with its count."""
    count = sum(ints[v] for v in bad)
    if upper is None:
        where = "the valid class ids"
    elif from_class_label:
        where = f"the {upper} classes 0..{upper - 1}"
    else:
        where = f"the model's {upper} outputs 0..{upper - 1}"
    hint = (
        " A label of -1 marks an unlabelled split (GLUE test sets): train on the labelled split." if -1 in bad else ""
    )
    detail = f"{count} of {sum(ints.values())} `{key}` values are outside {where}: {bad[:10]}.{hint}"
    evidence = {"out_of_range": bad[:20], "count": count}
    if all(b < 0 for b in bad):
        fix = f'Drop or fix those rows: `dataset = dataset.filter(lambda e: e["{key}"] >= 0)`.'
    elif (
        upper is not None
        and len(classes) <= upper
        and min(classes) > 0
        and sorted(classes) == list(range(min(classes), max(classes) + 1))
    ):
        # Contiguous ids that start above 0: a mapping numbered from 1 (or a shift), not missing classes.
        lo = min(classes)
        detail += f" The labels run {lo}..{max(classes)}: the class ids are shifted by {lo}."
        name, mapping = _mapping_that_made(pipeline, classes)
        if mapping is not None:
            fixed = {k: v - lo for k, v in mapping.items()}
            fix = f"Number the classes from 0 in `{name}`: `{name} = {fixed}`."
            evidence["mapping"] = name
        else:
            fix = f'Shift them to start at 0: `dataset = dataset.map(lambda e: {{"{key}": e["{key}"] - {lo}}})`.'
    else:
        fix = f"Check the label mapping that produced {bad[:3]}: ids must be 0..{upper - 1 if upper else 'n-1'}."
    return finding("FTD203", detail, fix, location=loc, evidence=evidence)


def _mapping_that_made(pipeline, classes):
    """A name -> id dict in the script whose ids are exactly the labels found: the mapping to fix."""
    cap = pipeline.capture
    for var, value in script_items(cap.namespace) if cap is not None else ():
        if (
            type(value) is dict
            and value
            and all(isinstance(k, str) and type(v) is int for k, v in value.items())
            and set(value.values()) == classes
        ):
            return var, value
    return None, None


@check("decode", codes=("FTD205", "FTD206", "FTD207", "FTD208", "FTD210"))
def token_ids_fit_model(effective_train_dataset, train_features, model, pipeline, target, tokenizer=None, trainer=None):
    rows = train_features
    if not rows or not isinstance(rows[0], dict) or "input_ids" not in rows[0]:
        return None
    out = []
    ds = effective_train_dataset
    hf = datasets.is_hf_dataset(ds) and "input_ids" in ds.column_names
    loc = pipeline.location(ds, trainer)
    label_keys = set(datasets.LABEL_KEYS) | set(target.label_names)
    strings = sorted(
        {
            k
            for r in rows[:8]
            for k, v in r.items()
            if (isinstance(v, str) or (isinstance(v, list) and v and isinstance(v[0], str))) and k not in label_keys
        }
    )
    if strings:  # text labels are a label problem (FTD204), never a column to drop
        out.append(
            finding(
                "FTD210",
                f"Samples still carry text columns {strings}; the collator cannot make tensors of them.",
                f"Drop them when tokenizing: `.map(..., remove_columns={strings})`, or keep "
                "`remove_unused_columns=True` (the default).",
                location=loc,
                evidence={"columns": strings},
            )
        )
    mismatched = [
        i for i, r in enumerate(rows) if "attention_mask" in r and _len(r["attention_mask"]) != _len(r["input_ids"])
    ]
    if mismatched:
        i = mismatched[0]
        out.append(
            finding(
                "FTD205",
                f"{len(mismatched)} of {len(rows)} sampled rows have an attention_mask of another "
                f"length than input_ids (row {i}: {_len(rows[i]['attention_mask'])} vs "
                f"{_len(rows[i]['input_ids'])}).",
                "Build input_ids and attention_mask in the same tokenizer call: `tokenizer(texts, truncation=True)`.",
                location=loc,
            )
        )
    packed = "seq_lengths" in rows[0]
    if packed:  # packed rows: positions restart at every document, so each document must fit, not the row
        lengths = [
            max(datasets.flatten(r["seq_lengths"]) or [0])
            for r in (ds.select(range(min(len(ds), 20_000))).with_format(None) if hf else rows)
        ]
    else:
        lengths = datasets.sequence_lengths(ds) if hf else [_len(r["input_ids"]) for r in rows]
    positions = models.max_positions(model)
    longest = max(lengths) if lengths else 0
    if positions and longest > positions:
        too_long = sum(1 for n in lengths if n > positions)
        unit = "packed rows hold a document" if packed else "rows are"
        out.append(
            finding(
                "FTD206",
                f"{too_long} of {len(lengths)} {unit} longer than the model's {positions} "
                f"position embeddings (longest: {longest} tokens).",
                f"Truncate when tokenizing: `tokenizer(..., truncation=True, max_length={positions})`.",
                location=loc,
                evidence={"longest": longest, "max_positions": positions, "rows": too_long},
            )
        )
    rows_emb = models.embedding_rows(model)
    tok_len = len(tokenizer) if tokenizer is not None and hasattr(tokenizer, "__len__") else None
    if rows_emb and (tok_len is None or tok_len <= rows_emb):  # otherwise config already reported the cause
        # Read per token: the scan stops at SCAN_TOKENS (a vocabulary mismatch shows in nearly every row).
        scanned = ds if hf else rows
        beyond, largest = datasets.values_at_least(
            scanned, "input_ids", rows_emb, limit=datasets.rows_within(scanned, 20_000, datasets.SCAN_TOKENS)
        )
        if beyond:
            out.append(
                finding(
                    "FTD207",
                    f"{beyond} token ids are >= the {rows_emb} embedding rows (largest: "
                    f"{largest}): the data was tokenized with another vocabulary than the model's.",
                    "Tokenize with the checkpoint's own tokenizer: `AutoTokenizer.from_pretrained(checkpoint)`.",
                    location=loc,
                    evidence={"largest_id": largest, "embedding_rows": rows_emb},
                )
            )
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    empty = sum(1 for r in rows if not [t for t in _flat(r["input_ids"]) if t not in specials])
    if empty:
        out.append(
            finding(
                "FTD208",
                f"{empty} of {len(rows)} sampled rows hold no tokens besides special ones.",
                'Filter empty rows before tokenizing: `dataset.filter(lambda e: len(e["text"].strip()) > 0)`.',
                location=loc,
                evidence={"empty_rows": empty, "sampled": len(rows)},
            )
        )
    return out


def _len(x) -> int:
    return datasets.token_length(x)


def _flat(x):
    return datasets.flatten(x)


@check("decode")
def first_sample_evidence(ctx, train_features, pipeline, target, tokenizer=None):
    """The first training sample decoded, with its label name: the evidence a person checks by eye."""
    row = train_features[0] if train_features else None
    if not isinstance(row, dict):
        return None
    ev: dict = {"keys": sorted(row)}
    if tokenizer is not None and "input_ids" in row:
        ids = row["input_ids"]
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        try:
            if ids and isinstance(ids[0], (list, tuple)):  # one sequence per choice
                ev["text"] = " | ".join(tokenizer.decode(choice) for choice in ids)
            else:
                ev["text"] = tokenizer.decode(_flat(ids))
        except Exception:
            pass
    key = datasets.label_key(row, target.label_names)
    if key is not None:
        label = row[key]
        label = label.tolist() if hasattr(label, "tolist") else label
        ev["label"] = label if not isinstance(label, list) else label[:32]
        ds = ctx.get("effective_train_dataset")
        feat = datasets.class_label(ds, key) if datasets.is_hf_dataset(ds) and key in ds.column_names else None
        if feat is not None and isinstance(label, int) and 0 <= label < feat.num_classes:
            ev["label_name"] = feat.names[label]
    return Provide(evidence={"first_sample": ev})


@diagnoser(codes=("FTD206", "FTD207"))
def ids_beyond_an_embedding(evidence, model=None, pipeline=None):
    """An embedding lookup raised "index out of range": the ids it was given (read from the raising frame) reach
    past its rows. Position embeddings mean rows too long; the token embeddings, ids the model has no row for."""
    import torch

    if not evidence._frames:
        return None
    if _EXPANDED.search(evidence.message):
        return _positions_cut(evidence)
    if "index out of range in self" not in evidence.message:
        return None
    try:
        local = evidence._frames[-1].f_locals
        ids, weight = local.get("input"), local.get("weight")
    except Exception:
        return None
    if not (isinstance(ids, torch.Tensor) and isinstance(weight, torch.Tensor) and weight.dim() == 2 and ids.numel()):
        return None
    rows, top = int(weight.shape[0]), int(ids.max())
    if top < rows:
        return None
    module = evidence.frame_local("self", lambda v: isinstance(v, torch.nn.Embedding) and v.weight is weight)
    name = next((n for n, m in model.named_modules() if m is module), None) if model is not None else None
    owner = _resizable_owner(model, name)
    model_var = (pipeline.name_of(model) if pipeline is not None else None) or "model"
    if name is not None and "position" in name.split(".")[-1]:
        f = finding(
            "FTD206",
            f"`{name}` has {rows} positions, and a row of the batch needs position {top}: the inputs are longer "
            f"than the model reads ({evidence.first_line}).",
            f"Truncate to the model's length: `tokenizer(..., truncation=True, max_length={rows})`.",
            evidence={"positions": rows, "needed": top + 1, "module": name},
        )
        return Cause(f, MESSAGE + VALUES + FACTS)
    beyond = int((ids >= rows).sum())
    tokenizer = getattr(pipeline, "tokenizer", None)
    try:
        size = len(tokenizer) if tokenizer is not None else None
    except TypeError:
        size = None
    grown = size is not None and size > rows
    where = f"`{name}`" if name else "the embedding"
    f = finding(
        "FTD207",
        f"{beyond} ids of the batch are {rows} or more (the largest {top}), past the {rows} rows of {where}"
        + (f"; the tokenizer has {size} tokens, so tokens added to it have no embedding row" if grown else "")
        + f" ({evidence.first_line}).",
        (
            f"Give the added tokens rows: `{model_var}{'.' + owner if owner else ''}.resize_token_embeddings"
            "(len(tokenizer))` after adding them and before training."
            if grown
            else "Tokenize with the checkpoint's own tokenizer, or resize the embeddings to the ids the data uses."
        ),
        evidence={"embedding_rows": rows, "largest_id": top, "ids_beyond": beyond, "tokenizer_size": size},
    )
    return Cause(f, MESSAGE + VALUES + (FACTS if grown else 0))


_EXPANDED = re.compile(r"expanded size of the tensor \((\d+)\) must match the existing size \((\d+)\)")


def _positions_cut(evidence):
    """Position ids (a buffer as long as the position embeddings) expanded to rows longer than that: the rows
    exceed the positions the model has (the raising frame holds both)."""
    import torch

    try:
        local = evidence._frames[-1].f_locals
        ids, positions = local.get("input_ids"), local.get("position_ids")
    except Exception:
        return None
    if not (isinstance(ids, torch.Tensor) and isinstance(positions, torch.Tensor)) or ids.dim() < 1:
        return None
    length, limit = int(ids.shape[-1]), int(positions.shape[-1])
    if length <= limit:
        return None
    f = finding(
        "FTD206",
        f"The batch's rows have {length} tokens, and the model has {limit} positions ({evidence.first_line}).",
        f"Truncate to the model's length: `tokenizer(..., truncation=True, max_length={limit})`.",
        evidence={"positions": limit, "needed": length},
    )
    return Cause(f, MESSAGE + VALUES)


def _resizable_owner(model, name: str | None) -> str | None:
    """The submodule path (``bert``) whose ``resize_token_embeddings`` resizes the embedding ``name``; '' for the
    model itself, None when nothing on the way offers it."""
    if model is None or not name:
        return None
    parts = name.split(".")
    for cut in range(len(parts)):
        path = ".".join(parts[:cut])
        try:
            sub = model.get_submodule(path) if path else model
        except AttributeError:
            break
        if hasattr(sub, "resize_token_embeddings"):
            return path
    return None
