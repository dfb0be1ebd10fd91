"""collate: build real batches with the pipeline's own collator."""

from __future__ import annotations

from ftdoctor.checks._failures import explain
from ftdoctor.facts import datasets, tokenizers
from ftdoctor.facts.datasets import cut_row
from ftdoctor.sdk import Provide, Unavailable, UserCodeError, check, diagnose, finding, relay, rule

MAX_BATCH = 8  # rows per checked batch: enough to see padding and shapes, cheap on a CPU

rule(
    "FTD301",
    "no-padding-collator",
    "collate",
    "error",
    "The collator cannot pad rows of different lengths",
    """
     Dynamic padding is done by the collator. Without a processing class the Trainer uses
     `default_data_collator`, which only stacks, so the first batch whose rows differ in length fails with
     "expected sequence of length 23 at dim 1 (got 31)" or "Unable to create tensor".
     """,
    broken='trainer = Trainer(model, args, train_dataset=tokenized["train"])',
    fixed="""
     trainer = Trainer(model, args, train_dataset=tokenized["train"],
                       data_collator=DataCollatorWithPadding(tokenizer))
     """,
)
rule(
    "FTD302",
    "collator-error",
    "collate",
    "error",
    "The collator raised",
    """
     The pipeline's collator failed on real rows of the training set, so the first training step would fail
     the same way.
     """,
)
rule(
    "FTD304",
    "batch-without-labels",
    "collate",
    "error",
    "Batches carry no labels, so the model returns no loss",
    """
     Transformers models compute the loss only when `labels` are in the batch. Without them `Trainer` stops with
     "The model did not return a loss from the inputs". Language-modelling collators create the labels;
     classification datasets must carry them.
     """,
    broken="data_collator = DataCollatorWithPadding(tokenizer)  # causal LM: nothing makes labels",
    fixed="data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)",
)


def _added_start(tokenizer) -> int | None:
    """The token id the tokenizer puts in front of every text it encodes (BOS, [CLS]), if any."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        return None  # a processor or a stand-in: no text tokenizer whose start token to look for
    ids = tokenizer("a")["input_ids"]
    return int(ids[0]) if ids and ids[0] in (tokenizer.all_special_ids or []) else None


def _describe(batch) -> list[dict]:
    rows = []
    for k, v in batch.items():
        shape = (
            list(v.shape) if hasattr(v, "shape") else (f"list[{len(v)}]" if isinstance(v, list) else type(v).__name__)
        )
        rows.append(
            {"key": k, "shape": shape, "dtype": str(getattr(v, "dtype", type(v).__name__)).replace("torch.", "")}
        )
    return rows


def _diagnose(exc: BaseException, features, collator, findings_so_far, tokenizer, pipeline):
    """Map a collator failure to its root cause; return (finding or None, reason for the skipped batch)."""
    failure = explain(exc, "the collator", findings_so_far)
    if failure.kind == "predicted":
        return None, failure.reason
    text = str(exc)
    seen = {f.code for f in findings_so_far}
    name = getattr(collator, "__name__", type(collator).__name__)
    if "does not have a padding token" in text:
        if "FTD105" in seen:
            return None, "the collator cannot pad without a pad token (config FTD105)"
        tok = pipeline.name_of(tokenizer) or "tokenizer"
        return finding(
            "FTD105",
            f"`{name}` pads, but the tokenizer has no pad token: {text.splitlines()[0]}",
            f"Set `{tok}.pad_token = {tok}.eos_token` before building the collator.",
        ), "no pad token"
    if "FTD213" in seen and ("NoneType" in text or "Unable to create tensor" in text or "None" in text):
        return None, "rows without a label (decode FTD213)"
    if "too many dimensions 'str'" in text or ("FTD210" in seen and ("str" in text or "excessive nesting" in text)):
        return (
            (None, "text columns reach the collator (decode FTD210)")
            if "FTD210" in seen
            else (
                finding("FTD210", f"`{name}` received text values: {text}", "Remove text columns after tokenizing."),
                "text",
            )
        )
    lengths = {len(f["input_ids"]) for f in features if isinstance(f, dict) and "input_ids" in f}
    if (
        len(lengths) > 1
        and not hasattr(collator, "tokenizer")
        and any(
            s in text for s in ("expected sequence of length", "Unable to create tensor", "stack expects each tensor")
        )
    ):
        return _no_padding(name, lengths, pipeline), "the collator cannot pad"
    cap = getattr(pipeline, "capture", None)
    ev, cause = diagnose(
        exc,
        "collate",
        {"pipeline": pipeline, "collator": collator, "features": features, "tokenizer": tokenizer},
        findings_so_far,
        user_dir=getattr(cap, "user_dir", None) or None,
    )
    if cause is not None:
        return cause.finding, cause.reason or "the collator raised"
    rows = list(features[:2]) if isinstance(features, list) else []
    f = relay(
        "FTD302",
        ev,
        f"`{name}` raised {ev.first_line}",
        inputs={f"row {i}": r for i, r in enumerate(rows)},
        location=pipeline.location(collator, pipeline.trainer),
    )
    return f, "the collator raised"


def _no_padding(name, lengths, pipeline):
    tok = pipeline.name_of(pipeline.tokenizer) or "tokenizer"
    return finding(
        "FTD301",
        f"`{name}` only stacks rows, and the tokenized rows have {len(lengths)} different lengths "
        f"({min(lengths)}..{max(lengths)} tokens): the first batch fails.",
        f"Pad per batch: `data_collator=DataCollatorWithPadding({tok})` in `Trainer(...)` "
        f"(or pass `processing_class={tok}`, which makes it the default).",
        location=pipeline.location(pipeline.trainer),
        evidence={"min_length": min(lengths), "max_length": max(lengths)},
    )


def _varied(features, n):
    """``n`` rows that still show padding: the shortest and the longest of each token column (inputs, labels)
    first, then the first rows. A reduced batch of rows that happen to have one length pads nothing."""
    picked: list[int] = []
    dicts = [f for f in features if isinstance(f, dict)]
    if len(dicts) == len(features):
        for key in ("input_ids", "labels"):
            lengths = [
                (len(f[key]), i)
                for i, f in enumerate(features)
                if hasattr(f.get(key), "__len__") and not isinstance(f.get(key), str)
            ]
            if len({length for length, _ in lengths}) > 1:
                for _, i in (min(lengths), max(lengths)):
                    if i not in picked:
                        picked.append(i)
    for i in range(len(features)):
        if i not in picked:
            picked.append(i)
    return [features[i] for i in sorted(picked[:n])]


def _extremes(features):
    """The shortest and the longest rows: the pair that shows whether a collator pads."""
    with_ids = [f for f in features if isinstance(f, dict) and "input_ids" in f]
    if len(with_ids) < 2:
        return None
    by_len = sorted(with_ids, key=lambda f: len(f["input_ids"]))
    return [by_len[0], by_len[-1]] if len(by_len[0]["input_ids"]) != len(by_len[-1]["input_ids"]) else None


rule(
    "FTD331",
    "collator-leaves-labels-unpadded",
    "collate",
    "error",
    "The collator pads the inputs but not the per-token labels",
    """
     `DataCollatorWithPadding` and `DataCollatorForLanguageModeling` pad a batch with `tokenizer.pad`, which pads
     only the tokenizer's own inputs (`input_ids`, `attention_mask`, ...). Per-token `labels` of different lengths
     stay as they are and cannot become one tensor: the first batch that mixes lengths fails with "Unable to create
     tensor ... features (`labels` in this case) have excessive nesting". A collator made for per-token labels pads
     them with -100.
     """,
    broken="data_collator = DataCollatorWithPadding(tokenizer)  # NER labels, one per token",
    fixed="data_collator = DataCollatorForTokenClassification(tokenizer)  # pads labels with -100",
)
rule(
    "FTD332",
    "collator-rebuilds-labels",
    "collate",
    "error",
    "The collator replaces the labels the rows carry",
    """
     The rows carry `labels` that leave some real tokens out of the loss (-100 on the prompt of an instruction, for
     example), but the collator builds its own labels from `input_ids` (`DataCollatorForLanguageModeling` does, with
     `mlm=False` as with `mlm=True`): the masking is discarded and the masked tokens are trained after all, without
     any error.
     """,
    broken="data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # rows hold prompt-masked labels",
    fixed="data_collator = DataCollatorForSeq2Seq(tokenizer, padding=True)  # pads the given labels with -100",
)


def _sequence(value) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes, dict)) and getattr(value, "ndim", 1) != 0


def _tokenizer_pad_only(collator) -> bool:
    """Whether ``collator`` is a transformers collator that pads rows only through `tokenizer.pad` (which pads the
    tokenizer's inputs, never other keys); a collator with a label pad id pads the labels itself."""
    if collator is None or not hasattr(collator, "tokenizer") or hasattr(collator, "label_pad_token_id"):
        return False
    call = getattr(type(collator), "torch_call", None) or type(collator).__call__
    return getattr(call, "__module__", "").startswith("transformers.data.")


def _rebuilds_labels(collator) -> bool:
    """A transformers language-modelling collator: it writes `labels` from `input_ids`, whatever the rows hold."""
    return _tokenizer_pad_only(collator) and hasattr(collator, "mlm")


def _label_fix(task, tok, pipeline) -> str:
    if task == "token-classification":
        return f"`data_collator=DataCollatorForTokenClassification({tok})`: it pads `labels` with -100 too."
    if type(pipeline.trainer).__module__.startswith("trl."):
        return (
            "Leave out `data_collator=`: the trainer's own collator pads the inputs and builds the language-modelling "
            "labels."
        )
    return (
        f"`data_collator=DataCollatorForSeq2Seq({tok}, padding=True)`: it pads `labels` with -100 beside the "
        "inputs and keeps the masking the rows carry."
    )


@check("collate", codes=("FTD331",))
def collator_pads_labels(train_features, pipeline, target, task=None):
    """Contract before collating: per-token labels of different lengths need a collator that pads them."""
    collator = target.collator
    if target.fixed_batch() is not None or not _tokenizer_pad_only(collator):
        return None
    rows = [r for r in train_features or [] if isinstance(r, dict)]
    key = datasets.label_key(rows[0], target.label_names) if rows else None
    if key is None:
        return None
    lengths = sorted({len(r[key]) for r in rows if _sequence(r.get(key))})
    if len(lengths) < 2:
        return None
    name = type(collator).__name__
    tok = pipeline.name_of(getattr(collator, "tokenizer", None)) or "tokenizer"
    detail = (
        f"The rows' `{key}` are per-token lists of {lengths[0]} to {lengths[-1]} entries, and `{name}` pads only the "
        f"tokenizer's inputs: the first batch that mixes lengths fails (\"Unable to create tensor ... `{key}` ... "
        'excessive nesting").'
    )
    if _rebuilds_labels(collator):
        detail += f" Were they padded, `{name}` would still replace them with labels built from `input_ids`."
    return finding(
        "FTD331",
        detail,
        _label_fix(task, tok, pipeline),
        location=pipeline.location(collator, pipeline.trainer),
        evidence={"label_key": key, "min_length": lengths[0], "max_length": lengths[-1], "collator": name},
    )


@check("collate", provides=("batch", "eval_batch"), codes=("FTD301", "FTD302", "FTD105", "FTD210"))
def build_batches(
    train_features, pipeline, findings_so_far, target, args=None, tokenizer=None, eval_features=None, budget=None
):
    collator = target.collator
    values, findings = {}, []
    fixed = target.fixed_batch()
    if fixed is not None:  # a loop without a loader: the batch it ran is the batch
        return Provide(
            {"batch": dict(fixed), "eval_batch": Unavailable("the loop has no evaluation loader")},
            evidence={"batch": _describe(fixed), "source": "the batch the loop ran"},
        )
    for split, features, size in (
        ("batch", train_features, getattr(args, "per_device_train_batch_size", 8)),
        ("eval_batch", eval_features, getattr(args, "per_device_eval_batch_size", 8)),
    ):
        if not features:
            values[split] = Unavailable("the trainer has no eval_dataset" if split == "eval_batch" else "no rows")
            continue
        limit = budget.rows if budget is not None else MAX_BATCH
        n = max(1, min(size or limit, limit, len(features)))
        chosen = _varied(features, n) if n < min(size or MAX_BATCH, MAX_BATCH, len(features)) else features[:n]
        rows = [cut_row(r, budget.max_tokens) for r in chosen] if budget is not None else chosen
        try:
            pair = _extremes(features)
            if pair is not None:
                target.collate(pair)
            batch = target.collate(rows)
        except UserCodeError as err:
            f, reason = _diagnose(err.exc, features, collator, findings_so_far + findings, tokenizer, pipeline)
            if f is not None and split == "eval_batch" and any(x.code == f.code for x in findings):
                f = None
            if f is not None:
                findings.append(f)
            values[split] = Unavailable(f"no {split.replace('_', ' ')}: {reason}")
            continue
        if not hasattr(batch, "items"):
            findings.append(
                finding(
                    "FTD302",
                    f"The collator returned a {type(batch).__name__}, not a mapping of tensors.",
                    "Return a dict (or BatchEncoding) of tensors keyed by the model's argument names.",
                    location=pipeline.location(collator),
                )
            )
            values[split] = Unavailable("the collator returned no mapping")
            continue
        values[split] = dict(batch)
    if isinstance(values.get("batch"), dict):
        evidence = {"batch": _describe(values["batch"])}
        if budget is not None and budget.reduced:
            evidence["budget"] = budget.notes
        return Provide(values, findings, evidence=evidence)
    return Provide(values, findings, skip_reason=getattr(values.get("batch"), "reason", None))


@check("collate", codes=("FTD304",))
def batch_has_labels(batch, train_features, pipeline, target, task=None):
    """The model computes a loss only when labels are in the batch (unless the run computes its own)."""
    if datasets.label_key(batch, target.label_names) is not None or target.has_custom_loss:
        return None
    if datasets.label_key(train_features[0], target.label_names) is not None:
        name = getattr(target.collator, "__name__", type(target.collator).__name__)
        detail = f"The rows carry labels but `{name}` drops them: the batch has only {sorted(batch)}."
    elif task in ("causal-lm", "masked-lm"):
        detail = f"Nothing creates the language-modelling labels: the batch has only {sorted(batch)}."
    else:
        return None  # the dropped label column is reported by decode (FTD202)
    tok = pipeline.name_of(pipeline.tokenizer) or "tokenizer"
    # The language-modelling collator pads: without a pad token it fails as written.
    pad = "Use "
    if getattr(pipeline.tokenizer, "pad_token", 1) is None:
        spare = _spare_pad(pipeline.tokenizer, tokenizers.end_tokens(pipeline.tokenizer))
        pad = (
            f'Set `{tok}.pad_token = "{spare}"` (an unused special token, not EOS), then use '
            if spare
            else f"Set `{tok}.pad_token = {tok}.eos_token` (the collator then masks every EOS label: keep EOS out of "
            "the texts, or pad with a token of its own), then use "
        )
    fix = {
        "causal-lm": f"{pad}`data_collator=DataCollatorForLanguageModeling({tok}, mlm=False)`: it copies "
        "the inputs into `labels` and masks the padding with -100.",
        "masked-lm": f"{pad}`data_collator=DataCollatorForLanguageModeling({tok}, mlm_probability=0.15)`.",
    }.get(task, "Keep the label column in each row: the collator must return it as `labels`.")
    return finding(
        "FTD304",
        detail,
        fix,
        location=pipeline.location(target.collator, pipeline.trainer),
        evidence={"batch_keys": sorted(batch)},
    )


def _offset(row_ids, batch_ids) -> int | None:
    """Where a row's ids sit in its padded batch row (0 when padded on the right, the padding's length on the left)."""
    n, width = len(row_ids), len(batch_ids)
    for off in {0, width - n}:
        if 0 <= off <= width - n and batch_ids[off : off + n] == row_ids:
            return off
    return None


@check("collate", codes=("FTD332",))
def collator_keeps_labels(batch, train_features, pipeline, target):
    """Rows that mask real tokens out of their labels must reach the model with that masking: a collator that
    writes its own labels trains the masked tokens."""
    import torch

    rows = [r for r in (train_features or [])[:MAX_BATCH] if isinstance(r, dict)]
    if target.fixed_batch() is not None or not rows or "labels" not in batch:
        return None
    key = datasets.label_key(rows[0], target.label_names)
    if key is None or not all(_sequence(r.get(key)) and _sequence(r.get("input_ids")) for r in rows):
        return None
    try:
        got = target.collate(rows)
    except UserCodeError:  # build_batches reported it
        return None
    ids, labels = (got.get("input_ids"), got.get("labels")) if hasattr(got, "get") else (None, None)
    if not (torch.is_tensor(ids) and torch.is_tensor(labels)) or labels.shape != ids.shape or len(ids) != len(rows):
        return None
    masked = retrained = 0
    for i, row in enumerate(rows):
        row_ids, row_labels = [int(t) for t in row["input_ids"]], [int(t) for t in row[key]]
        mask = row.get("attention_mask")
        off = _offset(row_ids, ids[i].tolist())
        if off is None or len(row_labels) != len(row_ids):
            return None
        for p, label in enumerate(row_labels):
            if label == -100 and (mask is None or int(mask[p]) == 1):
                masked += 1
                retrained += int(labels[i, off + p]) != -100
    if not retrained:
        return None
    collator = target.collator
    name = getattr(collator, "__name__", type(collator).__name__)
    tok = pipeline.name_of(getattr(collator, "tokenizer", None) or pipeline.tokenizer) or "tokenizer"
    return finding(
        "FTD332",
        f"The rows' `{key}` leave {masked} real tokens out of the loss (-100), but `{name}` builds its own labels: "
        f"{retrained} of them are trained in the batch. The masking the rows carry is discarded.",
        f"`data_collator=DataCollatorForSeq2Seq({tok}, padding=True)` pads the given labels with -100 and keeps "
        "them (or `default_data_collator` when the rows already have one length).",
        location=pipeline.location(collator, pipeline.trainer),
        evidence={"masked_in_rows": masked, "trained_in_batch": retrained},
    )


rule(
    "FTD333",
    "mlm-labels-on-unmasked-tokens",
    "collate",
    "error",
    "Masked-LM labels on tokens that were not masked",
    """
     A masked language model learns from the positions it cannot see: the labels hold the original id where the
     input was masked and -100 everywhere else. Labels on the unmasked positions train the model to copy its input,
     which is trivial: the loss is low from the start and says little, and the model barely learns to fill masks.
     """,
    broken="labels = batch['input_ids'].clone()  # every position is a target",
    fixed="labels = torch.where(masked, batch['input_ids'], -100)  # only the masked positions",
)


def _batch_site(pipeline, target) -> str | None:
    """Where the batch is made: the collator, else the loop that built it (its call of the model)."""
    if target.fixed_batch() is None:
        return pipeline.location(target.collator, pipeline.trainer)
    site = pipeline.capture.train_site if pipeline.capture is not None else None
    return str(site) if site else pipeline.location(target.collator)


@check("collate", codes=("FTD333",))
def mlm_labels_at_masks(batch, pipeline, target, tokenizer=None, task=None):
    """Masked LM: a batch whose inputs hold mask tokens is trained at those positions, not at the ones it sees."""
    import torch

    mask_id = getattr(tokenizer, "mask_token_id", None)
    if task != "masked-lm" or mask_id is None or not {"input_ids", "labels"} <= set(batch):
        return None
    ids, labels = batch["input_ids"], batch["labels"]
    if not (torch.is_tensor(ids) and torch.is_tensor(labels)) or ids.shape != labels.shape:
        return None
    attention = batch.get("attention_mask")
    real = (
        attention.bool() if torch.is_tensor(attention) and attention.shape == ids.shape else torch.ones_like(ids).bool()
    )
    masked = ids == mask_id
    trained = real & (labels != -100)
    # Collators keep a tenth of the chosen positions unchanged: a few copies of the input among the targets are
    # by design; most of the targets being copies is not.
    copies = int((trained & ~masked & (labels == ids)).sum())
    if not masked.any() or copies <= int(trained.sum()) // 2:
        return None
    return finding(
        "FTD333",
        f"{copies} of the {int(trained.sum())} labelled positions of the batch are tokens the model sees unmasked "
        f"(label = input), beside {int(masked.sum())} masked ones: the model is trained to copy its input.",
        "Keep the original id as label only where the input was masked, -100 elsewhere: "
        "`labels = torch.where(inputs == tokenizer.mask_token_id, labels, -100)` (or let "
        f"`DataCollatorForLanguageModeling({pipeline.name_of(tokenizer) or 'tokenizer'})` mask and label); "
        + _see("masked-lm")
        + ".",
        location=_batch_site(pipeline, target),
        evidence={"copied_positions": copies, "masked_positions": int(masked.sum())},
    )


rule(
    "FTD305",
    "label-key-not-taken",
    "collate",
    "error",
    "The batch carries `label`, but the model takes `labels`",
    """
     Transformers models compute the loss from an argument named `labels`. A batch that carries `label` (or
     `label_ids`) straight into `model(**batch)` is swallowed by the forward's `**kwargs`: no loss is returned.
     The Trainer's collators rename `label` to `labels`; a hand-written loop or a custom collator must do it.
     """,
    broken='tokenized = tokenized.remove_columns(["sentence"])  # "label" stays "label"',
    fixed='tokenized = tokenized.remove_columns(["sentence"]).rename_column("label", "labels")',
)


@check("collate", codes=("FTD305",))
def batch_label_key_is_taken(batch, model, pipeline, target):
    """Compare the batch's label key with the forward's parameter names (the mechanism that drops it)."""
    import inspect

    if target.has_custom_loss:
        return None
    try:
        params = set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return None
    wrong = [k for k in ("label", "label_ids") if k in batch and k not in params]
    if not wrong or "labels" in batch or "labels" not in params:
        return None
    return finding(
        "FTD305",
        f"The batch has `{wrong[0]}` but `{type(model).__name__}.forward` takes `labels`: the model returns no loss.",
        f'Rename it: `dataset = dataset.rename_column("{wrong[0]}", "labels")` '
        f'(or `batch["labels"] = batch.pop("{wrong[0]}")` in the loop).',
        location=pipeline.location(pipeline.data_collator, pipeline.trainer),
        evidence={"batch_keys": sorted(batch)},
    )


# --- task contracts: the labels each task's loss expects in a batch ---------------------------------------------

rule(
    "FTD321",
    "clm-labels-preshifted",
    "collate",
    "error",
    "Causal LM labels are shifted by hand",
    """
     A causal language model shifts the labels itself inside the loss (position t predicts label t+1), so the
     labels must be a plain copy of `input_ids`. Shifting them in the data as well makes each position predict the
     token two places ahead: the loss stays high and generation is garbled.
     """,
    broken='result["labels"] = [ids[1:] + [-100] for ids in result["input_ids"]]',
    fixed="data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # labels = a copy of input_ids",
)
rule(
    "FTD322",
    "clm-pads-not-masked",
    "collate",
    "error",
    "Padding positions carry labels",
    """
     The loss ignores only -100. Labels copied from padded `input_ids` keep the pad id at the padding positions,
     so the model is trained to predict padding (for GPT-2, the end-of-text token pads: it learns to stop).
     """,
    broken='result["labels"] = result["input_ids"].copy()  # padded to max_length',
    fixed="data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # -100 on padding",
)
rule(
    "FTD323",
    "seq2seq-labels-padded-with-pad-id",
    "collate",
    "error",
    "Seq2seq labels are padded with the pad id",
    """
     The loss ignores only -100. Labels padded with the tokenizer's pad id count every padding position as a
     target: the model learns to generate padding, and the loss is dominated by it.
     """,
    broken="DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=tokenizer.pad_token_id)",
    fixed="DataCollatorForSeq2Seq(tokenizer, model=model)  # label_pad_token_id=-100",
)


def _see(task):
    return f"see `ftdoctor reference show {task}`"


@check("collate", codes=("FTD321", "FTD322"))
def causal_lm_labels(batch, pipeline, target, task=None):
    """Causal LM: labels equal the inputs (the model shifts them), with -100 on padding."""
    import torch

    if task != "causal-lm" or not {"input_ids", "labels"} <= set(batch):
        return None
    if not target.labels_reach_model:
        return None  # the loop's own loss takes them, as they are: no model shifts them again
    ids, labels = batch["input_ids"], batch["labels"]
    if not (torch.is_tensor(ids) and torch.is_tensor(labels)) or ids.shape != labels.shape or ids.shape[-1] < 2:
        return None
    mask = batch.get("attention_mask")
    real = mask.bool() if torch.is_tensor(mask) and mask.shape == ids.shape else torch.ones_like(ids, dtype=torch.bool)
    loc = pipeline.location(target.collator, pipeline.train_dataset)
    out = []
    scored = real & (labels != -100)
    if int(scored.sum()) >= 8:
        same = float((labels == ids)[scored].float().mean())
        shifted_scored = scored[:, :-1] & real[:, 1:]
        shifted = float((labels[:, :-1] == ids[:, 1:])[shifted_scored].float().mean()) if shifted_scored.any() else 0.0
        if shifted > 0.9 and same < 0.5:
            out.append(
                finding(
                    "FTD321",
                    f"The labels are `input_ids` shifted left by one ({shifted:.0%} of positions "
                    "match the next token), but the model shifts them again inside the loss: each "
                    "position learns the token two places ahead.",
                    "Make the labels a plain copy of `input_ids` (drop the hand shift), or let "
                    "`DataCollatorForLanguageModeling(tokenizer, mlm=False)` make them; " + _see("causal-lm") + ".",
                    location=loc,
                    evidence={"match_next_token": shifted, "match_same_token": same},
                )
            )
    pads = ~real
    labelled_pads = int((labels[pads] != -100).sum()) if pads.any() else 0
    if labelled_pads:
        out.append(
            finding(
                "FTD322",
                f"{labelled_pads} of {int(pads.sum())} padding positions (attention_mask 0) "
                "carry a label instead of -100: the model is trained to predict padding.",
                "Set the labels to -100 where `attention_mask` is 0, or let "
                "`DataCollatorForLanguageModeling(tokenizer, mlm=False)` build them; " + _see("causal-lm") + ".",
                location=loc,
                evidence={"labelled_padding": labelled_pads},
            )
        )
    return out


@check("collate", codes=("FTD323",))
def seq2seq_labels_padding(batch, pipeline, model, target, tokenizer=None, task=None):
    """Seq2seq: label padding is -100, never the pad id."""
    import torch

    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False) or "labels" not in batch:
        return None
    labels = batch["labels"]
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    if pad is None or not torch.is_tensor(labels) or labels.dim() != 2:
        return None
    padded = labels == pad
    if not padded.any():
        return None
    rows = int(padded.any(-1).sum())
    name = task if task in ("translation", "summarization") else "translation"
    return finding(
        "FTD323",
        f"{rows} of {labels.shape[0]} label rows hold the pad id {pad} ({int(padded.sum())} "
        "positions) where -100 belongs: the loss counts padding as a target, and the model learns to "
        "generate it.",
        "Pad the labels with -100: `DataCollatorForSeq2Seq(tokenizer, model=model)` (its "
        "`label_pad_token_id` is -100 by default; do not set it to the pad id), and if the labels were "
        "padded when tokenizing, replace the pad id by -100 there; " + _see(name) + ".",
        location=pipeline.location(target.collator, pipeline.train_dataset),
        evidence={"rows": rows, "pad_token_id": pad},
    )


# --- the supervised-token contract: which tokens a causal LM is trained on ------------------------------------

rule(
    "FTD324",
    "no-supervised-tokens",
    "collate",
    "error",
    "No token of the batch is trained",
    """
     A causal LM learns only from the positions whose label is not -100. When the masking (completion-only or
     assistant-only loss, a hand-written collator) hides every position, the loss is 0/0: NaN on the first
     step, or a loss of 0 that never moves, and nothing is learnt. The usual cause is a response template that
     is searched for as token ids: tokenized on its own it splits differently than inside a row, so it is found
     in no row and every label is masked.
     """,
    broken='template_ids = tokenizer.encode("\\nAnswer:", add_special_tokens=False)  # "?\\n" merges in context',
    fixed="SFTTrainer(..., train_dataset=prompt_completion_dataset)  # masks the prompt by its length",
)
rule(
    "FTD325",
    "eos-masked-as-padding",
    "collate",
    "error",
    "The end-of-text token is never trained",
    """
     When the pad token is the EOS token, a collator that masks the labels of every pad id also masks the real
     EOS at the end of each text. The model is never trained to emit it: it does not stop generating. Padding
     must be masked by position (`attention_mask`), or the pad token must differ from EOS.
     """,
    broken="tokenizer.pad_token = tokenizer.eos_token  # DataCollatorForLanguageModeling masks it as padding",
    fixed='tokenizer.pad_token = "<|finetune_right_pad_id|>"  # an unused special token, not EOS',
)
rule(
    "FTD326",
    "answers-truncated",
    "collate",
    "error",
    "Truncation cuts off most answers",
    """
     With completion-only or assistant-only loss only the answer is trained. Rows cut at `max_length` lose the
     end of their answer (and its EOS), or all of it: the model learns answers that stop mid-sentence and never
     end, from a few tokens per row.
     """,
    broken="SFTConfig(max_length=128, assistant_only_loss=True)  # the conversations run to 400 tokens",
    fixed="SFTConfig(max_length=512, assistant_only_loss=True)  # or drop the longer rows",
)
rule(
    "FTD327",
    "some-answers-truncated",
    "collate",
    "warning",
    "Truncation cuts off some answers",
    """
     Some rows are cut at `max_length` before their answer ends: those rows teach answers without an end.
     """,
)
rule(
    "FTD328",
    "answers-without-eos",
    "collate",
    "warning",
    "Trained answers do not end with an end token",
    """
     The trained part of each row stops without EOS (or the chat template's end-of-turn token): the model never
     learns to stop after an answer and runs on until `max_new_tokens`.
     """,
    broken="tokenizer(prompt + completion)",
    fixed="tokenizer(prompt + completion + tokenizer.eos_token)",
)
rule(
    "FTD329",
    "documents-packed-without-eos",
    "collate",
    "warning",
    "Packed documents run into each other",
    """
     Documents concatenated into fixed-length blocks need an end token between them; without one the model is
     trained to continue one document into the next and never learns where a text ends.
     """,
    broken="concatenated = sum(tokenized['input_ids'], [])",
    fixed="tokenizer([t + tokenizer.eos_token for t in batch['text']])  # then concatenate",
)
rule(
    "FTD330",
    "double-bos",
    "collate",
    "warning",
    "Rows start with two BOS tokens",
    """
     A chat template that writes the BOS token itself, rendered to text and tokenized again with the default
     `add_special_tokens=True`, gets a second BOS. The model is trained on a prefix it never sees at inference.
     """,
    broken="tokenizer(tokenizer.apply_chat_template(messages, tokenize=False))",
    fixed="tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)",
)

_PACK_ROWS = 3  # training rows matched against the script's documents
_PACK_DOCS = 256  # documents of a candidate dataset concatenated


def _packed_from(pipeline, ends):
    """When the training rows are fixed-length blocks cut from the concatenation of another dataset of the script
    (run_clm's group_texts): (that dataset's name, seams without an end token, seams) in the blocks; else None."""
    from ftdoctor.facts import namespace

    train = pipeline.train_dataset
    cap = pipeline.capture
    if cap is None or not datasets.is_hf_dataset(train) or "input_ids" not in (train.column_names or []):
        return None
    try:
        blocks = [list(r) for r in train.select(range(min(len(train), _PACK_ROWS))).with_format(None)["input_ids"]]
    except Exception:
        return None
    width = len(blocks[0]) if blocks else 0
    if len(blocks) < 2 or width < 2 or any(len(b) != width for b in blocks):
        return None
    stream = [t for b in blocks for t in b]
    for name, ds in namespace.datasets(cap.namespace or {}):
        if ds is train or datasets.is_streaming(ds) or "input_ids" not in (ds.column_names or []):
            continue
        try:
            docs = [list(r) for r in ds.select(range(min(len(ds), _PACK_DOCS))).with_format(None)["input_ids"]]
        except Exception:
            continue
        if len(docs) < 2 or all(len(d) == width for d in docs[:_PACK_ROWS]):
            continue  # the same blocks (another split or a copy), not the documents they were cut from
        docs = [d for d in docs if d]
        if not all(isinstance(t, int) for d in docs[:_PACK_ROWS] for t in d[:2]):
            continue  # not rows of token ids
        joined_stream, pairs = [], []
        for i, d in enumerate(docs):
            if len(joined_stream) >= len(stream):
                break
            if i:
                pairs.append((docs[i - 1], d))
            joined_stream.extend(d)
        if joined_stream[: len(stream)] != stream:
            continue
        seams = len(pairs)
        joined = sum(1 for a, b in pairs if a[-1] not in ends and b[0] not in ends)
        return (name, joined, seams) if joined else None
    return None


_VIEW_TEXT = 160  # characters of a masked span shown in the trained-token view before it is elided


def _supervised(batch, pre_shifted=False):
    """(input_ids, real positions, trained positions) of a causal-LM batch, as 2-D tensors; None when the batch
    says nothing about which positions are trained. Labels that only the run's own loss reads (``pre_shifted``)
    and that hold the next token at each position train the token after their position."""
    import torch

    ids = batch.get("input_ids")
    if not torch.is_tensor(ids) or ids.dim() != 2:
        return None
    mask = batch.get("attention_mask")
    real = mask.bool() if torch.is_tensor(mask) and mask.shape == ids.shape else torch.ones_like(ids, dtype=torch.bool)
    labels = batch.get("labels")
    if torch.is_tensor(labels) and labels.shape == ids.shape:
        trained = labels != -100
        if pre_shifted and ids.shape[-1] > 1:
            scored = trained[:, :-1] & real[:, 1:]
            if scored.any() and float((labels[:, :-1] == ids[:, 1:])[scored].float().mean()) > 0.9:
                trained = torch.zeros_like(trained)
                trained[:, 1:] = labels[:, :-1] != -100
    else:  # TRL's preference and completion batches carry the mask the loss uses instead of labels
        given = next(
            (
                batch[k]
                for k in ("completion_mask", "assistant_masks")
                if torch.is_tensor(batch.get(k)) and batch[k].shape == ids.shape
            ),
            None,
        )
        if given is None:
            return None
        trained = given.bool()
    return ids, real, trained & real


def _documents(batch, ids, real):
    """(row, positions) of each document: a row, or the documents packed into it where `position_ids` restart."""
    import torch

    pos = batch.get("position_ids")
    packed = torch.is_tensor(pos) and pos.shape == ids.shape
    docs = []
    for r in range(ids.shape[0]):
        where = real[r].nonzero().flatten().tolist()
        if not where:
            continue
        if not packed:
            docs.append((r, where))
            continue
        current = [where[0]]
        for p in where[1:]:
            if int(pos[r, p]) == 0:
                docs.append((r, current))
                current = []
            current.append(p)
        docs.append((r, current))
    return docs, packed


def _trained_view(tokenizer, ids, real, trained, docs):
    """One row with its trained tokens marked, as (text, trained) segments: the row that shows masking best."""
    if tokenizer is None or not hasattr(tokenizer, "decode"):
        return None
    pick = next(((r, p) for r, p in docs if trained[r, p].any() and not trained[r, p].all()), docs[0] if docs else None)
    if pick is None:
        return None
    r, positions = pick
    segments: list[list] = []
    run: list[int] = []
    state = None
    for p in positions + [None]:
        s = None if p is None else bool(trained[r, p])
        if run and s != state:
            text = tokenizer.decode([int(ids[r, q]) for q in run])
            if not state and len(text) > _VIEW_TEXT:
                text = text[: _VIEW_TEXT // 2] + " … " + text[-_VIEW_TEXT // 2 :]
            segments.append([text, state])
            run = []
        state = s
        if p is not None:
            run.append(p)
    return {"row": r, "tokens": len(positions), "trained": int(trained[r, positions].sum()), "segments": segments}


def _ended_before(ids, r, p, ends, tokenizer, look: int = 3) -> bool:
    """Whether an end token closes the text before position ``p`` (a template may write a newline after it:
    Qwen's <|im_end|> and a newline)."""
    for q in range(p - 1, max(-1, p - 1 - look), -1):
        token = int(ids[r, q])
        if token in ends:
            return True
        try:
            blank = not tokenizer.decode([token]).strip()
        except Exception:
            blank = False
        if not blank:
            return False
    return False


def _spare_pad(tokenizer, ends) -> str | None:
    """An unused special token of the tokenizer that could pad (Llama 3's <|finetune_right_pad_id|>)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    taken = {getattr(tokenizer, "bos_token_id", None), *ends}
    names = [(i, str(getattr(t, "content", t))) for i, t in added.items() if i not in taken]
    for word in ("pad", "reserved", "unused"):
        hit = next((n for i, n in names if word in n.lower()), None)
        if hit:
            return hit
    return None


def _collator_warnings(target, rows) -> list[str]:
    """What the collator itself warns about these rows (a template it could not find, say)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            target.collate(rows)
        except Exception:  # the batch was built once already; a second failure says nothing new
            return []
    seen: list[str] = []
    for w in caught:
        text = str(w.message).splitlines()[0][:200]
        if text not in seen:
            seen.append(text)
    return seen[:3]


def _uncut_batch(target, batch, train_features, budget):
    """The batch with its rows as the data has them: the contract reads only ids and labels, so rows the budget
    cut for the model stages (to their last tokens) are collated again whole; collating costs no model run."""
    if budget is None or budget.max_tokens is None or not train_features or target.fixed_batch() is not None:
        return batch
    try:
        whole = target.collate(train_features[:MAX_BATCH])
    except Exception:  # the batch the stage built is still there to judge
        return batch
    return dict(whole) if hasattr(whole, "items") else batch


@check("collate", codes=("FTD324", "FTD325", "FTD326", "FTD327", "FTD328", "FTD329", "FTD330"))
def supervised_tokens(
    batch, pipeline, target, model, train_features=None, tokenizer=None, task=None, args=None, budget=None
):
    """Causal LM: per row, which tokens are trained; none at all, the end token masked as padding, answers cut by
    truncation or never ended, documents packed without an end token, a doubled BOS. Also the trained-token view
    of one row (evidence)."""
    if task != "causal-lm":
        return None
    batch = _uncut_batch(target, batch, train_features, budget)
    got = _supervised(batch, pre_shifted=not target.labels_reach_model)
    if got is None:
        return None
    ids, real, trained = got
    docs, packed = _documents(batch, ids, real)
    if not docs:
        return None
    ends = tokenizers.end_tokens(tokenizer, model)
    bos = getattr(tokenizer, "bos_token_id", None)
    tok = pipeline.name_of(tokenizer) or "tokenizer"
    collator_loc = pipeline.location(target.collator, pipeline.trainer)
    data_loc = pipeline.location(pipeline.train_dataset, pipeline.trainer, target.collator)
    evidence = {}
    view = _trained_view(tokenizer, ids, real, trained, docs)
    if view is not None:
        evidence["trained_tokens"] = view
    per_doc = [int(trained[r, p].sum()) for r, p in docs]
    evidence["trained_per_row"] = per_doc[:64]
    out = []
    if sum(per_doc) == 0:
        said = _collator_warnings(target, train_features[: ids.shape[0]]) if train_features else []
        told = f' The collator warns: "{said[0]}".' if said else ""
        out.append(
            finding(
                "FTD324",
                f"Every label of the {ids.shape[0]}-row batch is -100: no token is trained, so the loss is "
                f"0/0 (NaN) or stuck at 0 and the model learns nothing.{told}",
                "Check the masking against the tokenized rows: a response template tokenized on its own can split "
                'differently inside a row ("?\\n" + "Answer" instead of "\\n" + "Answer"), so it is found '
                "nowhere. Search for the ids the template has in context, or give TRL a prompt/completion dataset "
                "(`completion_only_loss=True` masks the prompt by its length, no search).",
                location=collator_loc,
                evidence={**evidence, "collator_warnings": said},
            )
        )
        return Provide(evidence=evidence, findings=out)

    # The end token: masked wherever it closes trained text, and trained nowhere.
    closing_masked, ends_trained = 0, 0
    for r, positions in docs:
        for k, p in enumerate(positions):
            if int(ids[r, p]) not in ends:
                continue
            if trained[r, p]:
                ends_trained += 1
            elif k > 0 and trained[r, positions[k - 1]]:
                closing_masked += 1
    pad = getattr(tokenizer, "pad_token_id", None)
    if closing_masked and not ends_trained:
        why = (
            f"the pad token is the end token (id {pad}), and the collator sets the label of every pad id to "
            "-100, the real ones included"
            if pad in ends
            else "the labels mask it"
        )
        spare = _spare_pad(tokenizer, ends)
        use = (
            f'`{tok}.pad_token = "{spare}"` (an unused special token of this tokenizer)'
            if spare
            else f'`{tok}.add_special_tokens({{"pad_token": "<pad>"}})` with `model.resize_token_embeddings(len({tok}))`'
        )
        out.append(
            finding(
                "FTD325",
                f"The end token closes the trained text {closing_masked} times in this batch and its label "
                f"is -100 every time: {why}. The model never learns to stop generating.",
                f"Give the tokenizer a pad token that is not the end token: {use}; or mask padding by position "
                "(`labels[attention_mask == 0] = -100`) instead of by id.",
                location=pipeline.location(tokenizer, target.collator),
                evidence={"masked_end_tokens": closing_masked, "pad_token_id": pad},
            )
        )

    # Answers (rows whose prompt is masked): ended, or cut by truncation.
    width = ids.shape[1]
    prompted = [(r, p) for r, p in docs if not trained[r, p].all()]
    if ends and prompted and not packed and not any(f.code == "FTD325" for f in out):

        def ended(r, positions):
            tr = [p for p in positions if trained[r, p]]
            if not tr:
                return False
            last_run = []
            for p in reversed(positions):
                if p > tr[-1]:
                    continue
                if not trained[r, p]:
                    break
                last_run.append(p)
            return any(int(ids[r, p]) in ends for p in last_run)

        starts_with = _added_start(tokenizer)

        def start_cut(r, positions):
            # The prompt was cut to keep the answer whole: truncation from the left, or a row that lost the start
            # token the tokenizer puts in front of every text. Its answer survives, EOS or not.
            if getattr(tokenizer, "truncation_side", "right") == "left":
                return True
            return starts_with is not None and int(ids[r, positions[0]]) != starts_with

        at_cap = [(r, p) for r, p in prompted if len(p) == width]
        complete = [(r, p) for r, p in prompted if len(p) < width and trained[r, p].any()]
        cut = [(r, p) for r, p in at_cap if not ended(r, p) and not start_cut(r, p)]
        cap = next(
            (
                v
                for v in (getattr(args, "max_length", None), getattr(args, "max_seq_length", None))
                if isinstance(v, int)
            ),
            None,
        )
        if complete and not any(ended(r, p) for r, p in complete):
            out.append(
                finding(
                    "FTD328",
                    f"None of the {len(complete)} answers that fit ends with an end token (EOS or the chat "
                    "template's end of turn) among its trained tokens: the model never learns to stop after an answer.",
                    f"Append the end token to each answer (`prompt + completion + {tok}.eos_token`), or let the chat "
                    "template (or TRL) write it.",
                    location=data_loc,
                    evidence={"answers": len(complete)},
                )
            )
        elif cut:
            sizes = sorted(int(trained[r, p].sum()) for r, p in cut)
            code = "FTD326" if len(cut) * 2 >= len(prompted) else "FTD327"
            limit = f"`max_length={cap}`" if cap == width else f"{width} tokens"
            out.append(
                finding(
                    code,
                    f"{len(cut)} of {len(prompted)} rows are cut at {limit} before their answer ends: they keep "
                    f"{sizes[0]}–{sizes[-1]} trained tokens and no end token, so the model learns answers that stop "
                    "mid-sentence and never end.",
                    f"Raise `max_length` so the whole conversation fits (these rows need more than {width} tokens), "
                    "or drop the rows longer than it before training (or shorten their prompts).",
                    location=pipeline.location(args, pipeline.trainer),
                    evidence={"cut_rows": len(cut), "rows": len(prompted), "trained_tokens": sizes},
                )
            )

    # Documents packed into one row need an end token between them.
    joins = 0
    for r in range(ids.shape[0]):
        where = real[r].nonzero().flatten().tolist()
        starts = set()
        if packed:
            starts = {d[0] for row, d in docs if row == r and d[0] != where[0]}
        elif bos is not None and bos not in ends:
            starts = {p for p in where[1:] if int(ids[r, p]) == bos}
        for p in starts:
            if (
                int(ids[r, p]) not in ends
                and int(ids[r, p - 1]) != bos
                and not _ended_before(ids, r, p, ends, tokenizer)
            ):
                joins += 1
    packing = None
    if not joins and ends:
        packing = _packed_from(pipeline, ends)
    if packing is not None:
        source, joined, seams = packing
        out.append(
            finding(
                "FTD329",
                f"The training rows are `{source}`'s documents concatenated and cut into blocks, and {joined} of "
                f"the {seams} document seams in the first blocks have no end token between the documents: the "
                "model learns to run on from one text into the next, and never sees where a text ends.",
                f"Add `{tok}.eos_token` to the end of each document before concatenating (e.g. "
                f'`{tok}([t + {tok}.eos_token for t in batch["text"]])`).',
                location=pipeline.location(pipeline.train_dataset, pipeline.trainer),
                evidence={"joins": joined, "seams": seams, "documents": source},
            )
        )
    elif joins and ends:
        out.append(
            finding(
                "FTD329",
                f"{joins} documents in this batch begin right after the previous one's last token, with no "
                "end token between them: the model learns to run on from one text into the next.",
                f"Add `{tok}.eos_token` to the end of each document before concatenating (e.g. "
                f'`{tok}([t + {tok}.eos_token for t in batch["text"]])`).',
                location=data_loc,
                evidence={"joins": joins},
            )
        )

    # A template that writes BOS, tokenized again with special tokens.
    if bos is not None and bos not in ends:
        doubled = sum(1 for r, p in docs if len(p) > 1 and int(ids[r, p[0]]) == bos and int(ids[r, p[1]]) == bos)
        if doubled:
            out.append(
                finding(
                    "FTD330",
                    f"{doubled} of {len(docs)} rows start with two BOS tokens: the chat template writes one "
                    "and the tokenizer adds another.",
                    "Tokenize the rendered template with `add_special_tokens=False`, or let "
                    "`apply_chat_template(messages, tokenize=True)` tokenize it.",
                    location=data_loc,
                    evidence={"rows": doubled},
                )
            )
    return Provide(evidence=evidence, findings=out)


rule(
    "FTD341",
    "mlm-batches-without-masked-token",
    "collate",
    "error",
    "Masked-LM batches often have no masked token",
    """
     A masked-LM collator masks each token with probability `mlm_probability` (15%). A batch with few maskable
     tokens (one short example per batch) often gets none masked: every label is -100, the loss is 0/0 = NaN,
     and one NaN step turns every weight into NaN. Batch more tokens together, or make sure every batch (or
     example) has at least one masked token.
     """,
    broken="mini_batch = collator([tokenizer(text)])  # one sentence of a few tokens per batch",
    fixed="mini_batch = collator([tokenizer(t) for t in texts[i : i + 16]])  # or force one masked token per row",
)

_MASK_DRAWS = 200  # collations of the same rows; a rate of 1% shows as 2 or more empty batches


def _masking_collator(target, pipeline):
    """The collator that masks tokens at random: the run's own, or the one the loop's code calls itself."""
    from ftdoctor.facts import namespace

    own = target.collator
    if isinstance(getattr(own, "mlm_probability", None), float):
        return own, pipeline.name_of(own)
    if own is not None or pipeline.capture is None:
        return None, None
    for name, value in namespace.items(pipeline.capture.namespace or {}):
        if callable(value) and isinstance(getattr(value, "mlm_probability", None), float):
            if getattr(value, "mlm", True):
                return value, name
    return None, None


@check("collate", codes=("FTD341",))
def mlm_batches_have_masked_tokens(batch, pipeline, target, task=None):
    """Masked LM: collate the batch's rows again and again with the run's masking collator; count how often no
    token at all is masked (every label -100: a NaN loss)."""
    import torch

    if task != "masked-lm":
        return None
    ids, labels = batch.get("input_ids"), batch.get("labels")
    if not (torch.is_tensor(ids) and torch.is_tensor(labels) and ids.shape == labels.shape and ids.dim() == 2):
        return None
    collator, name = _masking_collator(target, pipeline)
    if collator is None:
        return None
    original = torch.where(labels != -100, labels, ids)  # the masked positions hold their token in the labels
    mask = batch.get("attention_mask")
    real = mask.bool() if torch.is_tensor(mask) and mask.shape == ids.shape else torch.ones_like(ids, dtype=torch.bool)
    rows = [{"input_ids": original[r][real[r]].tolist()} for r in range(ids.shape[0])]
    rate = float(collator.mlm_probability)
    if not 0.0 < rate < 1.0 or int(real.sum()) * rate > 20:
        return None  # twenty masked tokens expected: a batch without one has a chance below e^-20
    state = torch.random.get_rng_state()
    empty = 0
    try:
        torch.manual_seed(0)
        for _ in range(_MASK_DRAWS):
            out = collator(rows)
            got = out.get("labels") if hasattr(out, "get") else None
            if not torch.is_tensor(got):
                return None
            empty += int(not (got != -100).any())
    except Exception:  # the batch was built once already; the collate stage reports a collator that raises
        return None
    finally:
        torch.random.set_rng_state(state)
    if empty * 100 < _MASK_DRAWS:
        return None
    tokens = int(real.sum())
    who = f"`{name}`" if name else "The collator"
    return finding(
        "FTD341",
        f"{who} masks each token with probability {collator.mlm_probability}; this batch has "
        f"{ids.shape[0]} row(s) and {tokens} tokens, and collated {_MASK_DRAWS} times it masked no token at all in "
        f"{empty} ({empty / _MASK_DRAWS:.0%}): every label is then -100 and the loss of that step is NaN, which makes every "
        "weight NaN at the optimizer step.",
        "Put more tokens in each batch (several examples per batch, or longer ones), or make sure each batch has a "
        "masked token: subclass the collator so that a row with no masked position gets one (`labels[row, i] = "
        "input_ids[row, i]; input_ids[row, i] = tokenizer.mask_token_id`), or skip a step whose labels are all -100.",
        location=pipeline.location(collator) if name else None,
        evidence={"rows": int(ids.shape[0]), "tokens": tokens, "draws": _MASK_DRAWS, "empty": empty},
    )
