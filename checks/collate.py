"""collate: build real batches with the pipeline's own collator."""

from __future__ import annotations

from ftdoctor import data
from ftdoctor.budget import cut_row
from ftdoctor.sdk import Provide, Unavailable, UserCodeError, check, finding, rule

MAX_BATCH = 8  # rows per checked batch: enough to see padding and shapes, cheap on a CPU

rule("FTD301", "no-padding-collator", "collate", "error", "The collator cannot pad rows of different lengths",
     """
     Dynamic padding is done by the collator. Without a processing class the Trainer uses
     `default_data_collator`, which only stacks, so the first batch whose rows differ in length fails with
     "expected sequence of length 23 at dim 1 (got 31)" or "Unable to create tensor".
     """,
     broken="trainer = Trainer(model, args, train_dataset=tokenized[\"train\"])",
     fixed="""
     trainer = Trainer(model, args, train_dataset=tokenized["train"],
                       data_collator=DataCollatorWithPadding(tokenizer))
     """)
rule("FTD302", "collator-error", "collate", "error", "The collator raised",
     """
     The pipeline's collator failed on real rows of the training set, so the first training step would fail
     the same way.
     """)
rule("FTD304", "batch-without-labels", "collate", "error", "Batches carry no labels, so the model returns no loss",
     """
     Transformers models compute the loss only when `labels` are in the batch. Without them `Trainer` stops with
     "The model did not return a loss from the inputs". Language-modelling collators create the labels;
     classification datasets must carry them.
     """,
     broken="data_collator = DataCollatorWithPadding(tokenizer)  # causal LM: nothing makes labels",
     fixed="data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)")


def _describe(batch) -> list[dict]:
    rows = []
    for k, v in batch.items():
        shape = list(v.shape) if hasattr(v, "shape") else (f"list[{len(v)}]" if isinstance(v, list) else type(v).__name__)
        rows.append({"key": k, "shape": shape, "dtype": str(getattr(v, "dtype", type(v).__name__)).replace("torch.", "")})
    return rows


def _diagnose(exc: BaseException, features, collator, findings_so_far, tokenizer, pipeline):
    """Map a collator failure to its root cause; return (finding or None, reason for the skipped batch)."""
    text = str(exc)
    seen = {f.code for f in findings_so_far}
    name = getattr(collator, "__name__", type(collator).__name__)
    if "does not have a padding token" in text:
        if "FTD105" in seen:
            return None, "the collator cannot pad without a pad token (config FTD105)"
        tok = pipeline.name_of(tokenizer) or "tokenizer"
        return finding("FTD105", f"`{name}` pads, but the tokenizer has no pad token: {text.splitlines()[0]}",
                       f"Set `{tok}.pad_token = {tok}.eos_token` before building the collator."), "no pad token"
    if "FTD213" in seen and ("NoneType" in text or "Unable to create tensor" in text or "None" in text):
        return None, "rows without a label (decode FTD213)"
    if "too many dimensions 'str'" in text or ("FTD210" in seen and ("str" in text or "excessive nesting" in text)):
        return (None, "text columns reach the collator (decode FTD210)") if "FTD210" in seen else \
            (finding("FTD210", f"`{name}` received text values: {text}", "Remove text columns after tokenizing."), "text")
    lengths = {len(f["input_ids"]) for f in features if isinstance(f, dict) and "input_ids" in f}
    if len(lengths) > 1 and not hasattr(collator, "tokenizer") and \
            any(s in text for s in ("expected sequence of length", "Unable to create tensor", "stack expects each tensor")):
        return _no_padding(name, lengths, pipeline), "the collator cannot pad"
    return (finding("FTD302", f"`{name}` raised {type(exc).__name__}: {text.splitlines()[0] if text else ''}",
                    "Fix the collator so it accepts rows of the training set (see the traceback with --traceback).",
                    location=pipeline.location(collator, pipeline.trainer),
                    evidence={"exception": f"{type(exc).__name__}: {text}"}), "the collator raised")


def _no_padding(name, lengths, pipeline):
    tok = pipeline.name_of(pipeline.tokenizer) or "tokenizer"
    return finding("FTD301", f"`{name}` only stacks rows, and the tokenized rows have {len(lengths)} different lengths "
                   f"({min(lengths)}..{max(lengths)} tokens): the first batch fails.",
                   f"Pad per batch: `data_collator=DataCollatorWithPadding({tok})` in `Trainer(...)` "
                   f"(or pass `processing_class={tok}`, which makes it the default).",
                   location=pipeline.location(pipeline.trainer), evidence={"min_length": min(lengths),
                                                                          "max_length": max(lengths)})


def _extremes(features):
    """The shortest and the longest rows: the pair that shows whether a collator pads."""
    with_ids = [f for f in features if isinstance(f, dict) and "input_ids" in f]
    if len(with_ids) < 2:
        return None
    by_len = sorted(with_ids, key=lambda f: len(f["input_ids"]))
    return [by_len[0], by_len[-1]] if len(by_len[0]["input_ids"]) != len(by_len[-1]["input_ids"]) else None


@check("collate", provides=("batch", "eval_batch"), codes=("FTD301", "FTD302", "FTD105", "FTD210"))
def build_batches(train_features, pipeline, findings_so_far, target, args=None, tokenizer=None,
                  eval_features=None, budget=None):
    collator = target.collator
    values, findings = {}, []
    fixed = target.fixed_batch()
    if fixed is not None:  # a loop without a loader: the batch it ran is the batch
        return Provide({"batch": dict(fixed), "eval_batch": Unavailable("the loop has no evaluation loader")},
                       evidence={"batch": _describe(fixed), "source": "the batch the loop ran"})
    for split, features, size in (("batch", train_features, getattr(args, "per_device_train_batch_size", 8)),
                                  ("eval_batch", eval_features, getattr(args, "per_device_eval_batch_size", 8))):
        if not features:
            values[split] = Unavailable("the trainer has no eval_dataset" if split == "eval_batch" else "no rows")
            continue
        limit = budget.rows if budget is not None else MAX_BATCH
        n = max(1, min(size or limit, limit, len(features)))
        rows = [cut_row(r, budget.max_tokens) for r in features[:n]] if budget is not None else features[:n]
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
            findings.append(finding("FTD302", f"The collator returned a {type(batch).__name__}, not a mapping of "
                                    "tensors.", "Return a dict (or BatchEncoding) of tensors keyed by the model's "
                                    "argument names.", location=pipeline.location(collator)))
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
    if data.label_key(batch, target.label_names) is not None or target.has_custom_loss:
        return None
    if data.label_key(train_features[0], target.label_names) is not None:
        detail = (f"The rows carry labels but `{type(target.collator).__name__}` drops them: the "
                  f"batch has only {sorted(batch)}.")
    elif task in ("causal-lm", "masked-lm"):
        detail = f"Nothing creates the language-modelling labels: the batch has only {sorted(batch)}."
    else:
        return None  # the dropped label column is reported by decode (FTD202)
    tok = pipeline.name_of(pipeline.tokenizer) or "tokenizer"
    # The language-modelling collator pads: without a pad token it fails as written.
    pad = (f"Set `{tok}.pad_token = {tok}.eos_token`, then use " if getattr(pipeline.tokenizer, "pad_token", 1) is None
           else "Use ")
    fix = {"causal-lm": f"{pad}`data_collator=DataCollatorForLanguageModeling({tok}, mlm=False)`: it copies "
                        "the inputs into `labels` and masks the padding with -100.",
           "masked-lm": f"{pad}`data_collator=DataCollatorForLanguageModeling({tok}, mlm_probability=0.15)`."}.get(
        task, "Keep the label column in each row: the collator must return it as `labels`.")
    return finding("FTD304", detail, fix, location=pipeline.location(target.collator, pipeline.trainer),
                   evidence={"batch_keys": sorted(batch)})


rule("FTD305", "label-key-not-taken", "collate", "error", "The batch carries `label`, but the model takes `labels`",
     """
     Transformers models compute the loss from an argument named `labels`. A batch that carries `label` (or
     `label_ids`) straight into `model(**batch)` is swallowed by the forward's `**kwargs`: no loss is returned.
     The Trainer's collators rename `label` to `labels`; a hand-written loop or a custom collator must do it.
     """,
     broken='tokenized = tokenized.remove_columns(["sentence"])  # "label" stays "label"',
     fixed='tokenized = tokenized.remove_columns(["sentence"]).rename_column("label", "labels")')


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
    return finding("FTD305", f"The batch has `{wrong[0]}` but `{type(model).__name__}.forward` takes `labels`: the "
                   "model returns no loss.", f"Rename it: `dataset = dataset.rename_column(\"{wrong[0]}\", \"labels\")` "
                   f"(or `batch[\"labels\"] = batch.pop(\"{wrong[0]}\")` in the loop).",
                   location=pipeline.location(pipeline.data_collator, pipeline.trainer),
                   evidence={"batch_keys": sorted(batch)})


# --- task contracts: the labels each task's loss expects in a batch ---------------------------------------------

rule("FTD321", "clm-labels-preshifted", "collate", "error", "Causal LM labels are shifted by hand",
     """
     A causal language model shifts the labels itself inside the loss (position t predicts label t+1), so the
     labels must be a plain copy of `input_ids`. Shifting them in the data as well makes each position predict the
     token two places ahead: the loss stays high and generation is garbled.
     """,
     broken='result["labels"] = [ids[1:] + [-100] for ids in result["input_ids"]]',
     fixed="data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # labels = a copy of input_ids")
rule("FTD322", "clm-pads-not-masked", "collate", "error", "Padding positions carry labels",
     """
     The loss ignores only -100. Labels copied from padded `input_ids` keep the pad id at the padding positions,
     so the model is trained to predict padding (for GPT-2, the end-of-text token pads: it learns to stop).
     """,
     broken='result["labels"] = result["input_ids"].copy()  # padded to max_length',
     fixed="data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)  # -100 on padding")
rule("FTD323", "seq2seq-labels-padded-with-pad-id", "collate", "error", "Seq2seq labels are padded with the pad id",
     """
     The loss ignores only -100. Labels padded with the tokenizer's pad id count every padding position as a
     target: the model learns to generate padding, and the loss is dominated by it.
     """,
     broken="DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=tokenizer.pad_token_id)",
     fixed="DataCollatorForSeq2Seq(tokenizer, model=model)  # label_pad_token_id=-100")


def _see(task):
    return f"see `ftdoctor reference show {task}`"


@check("collate", codes=("FTD321", "FTD322"))
def causal_lm_labels(batch, pipeline, target, task=None):
    """Causal LM: labels equal the inputs (the model shifts them), with -100 on padding."""
    import torch

    if task != "causal-lm" or not {"input_ids", "labels"} <= set(batch):
        return None
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
            out.append(finding("FTD321", f"The labels are `input_ids` shifted left by one ({shifted:.0%} of positions "
                               "match the next token), but the model shifts them again inside the loss: each "
                               "position learns the token two places ahead.",
                               "Make the labels a plain copy of `input_ids` (drop the hand shift), or let "
                               "`DataCollatorForLanguageModeling(tokenizer, mlm=False)` make them; "
                               + _see("causal-lm") + ".", location=loc,
                               evidence={"match_next_token": shifted, "match_same_token": same}))
    pads = ~real
    labelled_pads = int((labels[pads] != -100).sum()) if pads.any() else 0
    if labelled_pads:
        out.append(finding("FTD322", f"{labelled_pads} of {int(pads.sum())} padding positions (attention_mask 0) "
                           "carry a label instead of -100: the model is trained to predict padding.",
                           "Set the labels to -100 where `attention_mask` is 0, or let "
                           "`DataCollatorForLanguageModeling(tokenizer, mlm=False)` build them; "
                           + _see("causal-lm") + ".", location=loc,
                           evidence={"labelled_padding": labelled_pads}))
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
    return finding("FTD323", f"{rows} of {labels.shape[0]} label rows hold the pad id {pad} ({int(padded.sum())} "
                   "positions) where -100 belongs: the loss counts padding as a target, and the model learns to "
                   "generate it.",
                   "Pad the labels with -100: `DataCollatorForSeq2Seq(tokenizer, model=model)` (its "
                   "`label_pad_token_id` is -100 by default; do not set it to the pad id), and if the labels were "
                   "padded when tokenizing, replace the pad id by -100 there; " + _see(name) + ".",
                   location=pipeline.location(target.collator, pipeline.train_dataset),
                   evidence={"rows": rows, "pad_token_id": pad})
