"""metrics: eval batch -> model -> preprocess_logits_for_metrics -> compute_metrics, as the Trainer's eval loop does.

When the data stages fail, compute_metrics is still checked on synthetic inputs of the model's real output shape.
"""

from __future__ import annotations

from ftdoctor.facts import datasets, models
from ftdoctor.sdk import Provide, Skip, UserCodeError, check, finding, rule, run_user, user_site_in_traceback

rule(
    "FTD601",
    "metrics-without-argmax",
    "metrics",
    "error",
    "compute_metrics passes logits where class ids are expected",
    """
     The Trainer hands `compute_metrics` the raw logits, one float per class. Accuracy, F1 and friends want one
     predicted class id per example, so the logits must be reduced with argmax first; otherwise evaluation fails
     at the end of the first epoch ("Predictions and/or references don't match the expected format", "Classification
     metrics can't handle a mix of multiclass and continuous-multioutput targets").
     """,
    broken="""
     def compute_metrics(eval_pred):
         predictions, labels = eval_pred
         return metric.compute(predictions=predictions, references=labels)
     """,
    fixed="""
     def compute_metrics(eval_pred):
         logits, labels = eval_pred
         predictions = np.argmax(logits, axis=-1)
         return metric.compute(predictions=predictions, references=labels)
     """,
)
rule(
    "FTD602",
    "compute-metrics-error",
    "metrics",
    "error",
    "compute_metrics raised",
    """
     The metric function failed on predictions of the model's real output shape. Evaluation, and with it the
     end of the first epoch (and `load_best_model_at_end`), would fail the same way.
     """,
)
rule(
    "FTD603",
    "best-metric-missing",
    "metrics",
    "error",
    "metric_for_best_model names a metric compute_metrics does not return",
    """
     `metric_for_best_model` is looked up (with an `eval_` prefix) in the evaluation results. When
     `compute_metrics` returns no such key, training fails with a KeyError at the first evaluation.
     """,
    broken='TrainingArguments("out", metric_for_best_model="f1", ...)  # compute_metrics returns {"accuracy": ...}',
    fixed='TrainingArguments("out", metric_for_best_model="accuracy", ...)',
)
rule(
    "FTD604",
    "tuple-predictions",
    "metrics",
    "error",
    "Predictions arrive as a tuple",
    """
     When the model returns more than logits (hidden states, past key values), the Trainer passes a tuple of
     arrays as predictions. `np.argmax` over the tuple fails or reduces the wrong thing.
     """,
    broken="predictions = np.argmax(eval_pred.predictions, axis=-1)",
    fixed="""
     logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
     predictions = np.argmax(logits, axis=-1)
     """,
)
rule(
    "FTD606",
    "metrics-not-a-dict",
    "metrics",
    "error",
    "compute_metrics must return a dict",
    """
     The Trainer logs and compares the metrics by name, so `compute_metrics` must return a dict of name to number.
     """,
    broken="return accuracy_score(labels, predictions)",
    fixed='return {"accuracy": accuracy_score(labels, predictions)}',
)


def _synthetic_batch(model, task):
    """A small batch in the model's vocabulary and the task's label shape."""
    import torch

    g = torch.Generator().manual_seed(0)
    rows = models.embedding_rows(model) or 100
    b, s = 4, 12
    ids = torch.randint(5, max(6, min(rows, 1000)), (b, s), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    n = models.num_labels(model) or 2  # labels the head can score, so the loss of the eval step runs
    if task == "sequence-classification":
        batch["labels"] = torch.arange(b) % n
    elif task == "token-classification":
        labels = torch.randint(0, n, (b, s), generator=g)
        labels[:, 0] = -100
        batch["labels"] = labels
    elif task in ("causal-lm", "masked-lm"):
        batch["labels"] = ids.clone()
    elif task in ("translation", "summarization"):
        batch["labels"] = torch.randint(5, max(6, min(rows, 1000)), (b, 8), generator=g)
    elif task == "question-answering":
        batch["start_positions"] = torch.tensor([1, 2, 3, 4])
        batch["end_positions"] = torch.tensor([2, 3, 4, 5])
    else:
        return None
    return batch


EVAL_ROWS = 32  # rows of the eval set run through the trainer's own evaluation: two batches or more, as a rule


@check("metrics", provides=("eval_prediction",))
def eval_predictions(
    model,
    pipeline,
    target,
    trainer=None,
    eval_batch=None,
    work_model=None,
    task=None,
    preprocess_logits_for_metrics=None,
    compute_metrics=None,
    effective_eval_dataset=None,
    args=None,
    budget=None,
):
    """What compute_metrics will receive: from the trainer's own evaluation of a few eval rows; from one eval step
    when there is no such path; from a synthetic batch of the model's shape when the data stages failed."""
    from transformers import EvalPrediction

    if compute_metrics is None:
        return Provide({}, skip_reason="the trainer has no compute_metrics")
    work = work_model if work_model is not None else target.work_model()
    if eval_batch is not None and effective_eval_dataset is not None:
        n = min(EVAL_ROWS, 2 * int(getattr(args, "per_device_eval_batch_size", 8) or 8))
        batch_size = None
        if budget is not None and budget.max_tokens is not None:
            # A model too large for this machine: the budget's rows per batch, two batches of them.
            batch_size = budget.rows
            n = min(n, 2 * batch_size)
        try:
            pred = target.eval_prediction(work, effective_eval_dataset, n, batch_size)
        except UserCodeError as err:
            pred = None
            if target.metrics_path_note():
                return Provide({}, skip_reason=f"the trainer's evaluation failed before compute_metrics: {err}")
        if pred is not None:
            return Provide(
                {"eval_prediction": pred},
                evidence={
                    "source": f"the trainer's evaluation of {n} eval rows",
                    "predictions_shape": _shapes(pred.predictions),
                    "labels_shape": _shapes(pred.label_ids),
                },
            )
    note = target.metrics_path_note()
    if note:
        return Provide(
            {}, skip_reason=f"{note}, and it could not run here; compute_metrics is not called on raw predictions"
        )
    source = "eval batch"
    batch = eval_batch
    if batch is None:
        batch, source = _synthetic_batch(model, task), "synthetic batch"
        if batch is None:
            return Provide({}, skip_reason="no eval batch, and the task is unknown so no synthetic batch can be built")
    try:
        preds, labels = target.predict(work, batch, preprocess_logits_for_metrics)
    except UserCodeError as err:
        if source == "eval batch":
            batch = _synthetic_batch(model, task)
            try:
                preds, labels = target.predict(work, batch, preprocess_logits_for_metrics)
                source = "synthetic batch"
            except UserCodeError:
                return Provide({}, skip_reason=f"the model cannot predict on an eval batch: {err}")
        else:
            return Provide({}, skip_reason=f"the model cannot predict on a synthetic batch: {err}")
    from ftdoctor.targets.base import to_numpy

    inputs = (
        to_numpy(batch.get("input_ids"))
        if "inputs" in (getattr(getattr(trainer, "args", None), "include_for_metrics", None) or [])
        else None
    )
    pred = (
        EvalPrediction(predictions=preds, label_ids=labels, inputs=inputs)
        if inputs is not None
        else EvalPrediction(predictions=preds, label_ids=labels)
    )
    shape = _shapes(preds)
    return Provide(
        {"eval_prediction": pred},
        evidence={"source": source, "predictions_shape": shape, "labels_shape": list(getattr(labels, "shape", []))},
    )


@check("metrics", provides=("metric_values",), codes=("FTD601", "FTD602", "FTD604", "FTD606", "FTD621"))
def compute_metrics_runs(compute_metrics, eval_prediction, pipeline, ctx, model=None, findings_so_far=()):
    import numpy as np
    from transformers import EvalPrediction

    if model is not None and models.head_kind(model)[0] == "base":
        # A model without a head outputs hidden states and takes no labels: nothing compute_metrics could score.
        said = " (forward FTD401)" if any(f.code == "FTD401" for f in findings_so_far) else ""
        return Provide(skip_reason=f"the model has no task head, so it makes no predictions to score{said}")
    cap = pipeline.capture
    try:
        result = run_user("compute_metrics", compute_metrics, eval_prediction)
    except UserCodeError as err:
        site = user_site_in_traceback(err.exc.__traceback__, cap.user_dir) if cap else None
        loc = str(site) if site else pipeline.location(compute_metrics)
        preds, labels = eval_prediction.predictions, eval_prediction.label_ids
        msg = f"{type(err.exc).__name__}: {str(err.exc).splitlines()[0] if str(err.exc) else ''}".rstrip(".")
        fname = getattr(compute_metrics, "__name__", "compute_metrics")
        if isinstance(preds, tuple):
            if _works(compute_metrics, EvalPrediction(predictions=preds[0], label_ids=labels)) or _works(
                compute_metrics, EvalPrediction(predictions=np.argmax(preds[0], axis=-1), label_ids=labels)
            ):
                cfg = getattr(model, "config", None)
                extras = [a for a in ("output_hidden_states", "output_attentions") if getattr(cfg, a, False)]
                why = f" (the model's config sets {', '.join(f'`{a}=True`' for a in extras)})" if extras else ""
                return finding(
                    "FTD604",
                    f"`{fname}` received a tuple of {len(preds)} arrays as predictions{why} and raised {msg}.",
                    "Take the logits first: `logits = predictions[0] if "
                    "isinstance(predictions, tuple) else predictions`, or return only the logits from "
                    "`preprocess_logits_for_metrics`" + (f", or drop `{extras[0]}=True`" if extras else "") + ".",
                    location=loc,
                    evidence={"shapes": _shapes(preds)},
                )
        if getattr(preds, "dtype", None) is not None and preds.dtype.kind == "f" and preds.ndim >= 2:
            reduced = np.argmax(preds, axis=-1)
            if _works(compute_metrics, EvalPrediction(predictions=reduced, label_ids=labels)):
                return finding(
                    "FTD601",
                    f"`{fname}` passes logits of shape {list(preds.shape)} to the metric, "
                    f"which raised {msg}. With `np.argmax(logits, axis=-1)` it works.",
                    f"Reduce the logits first: `predictions = np.argmax(logits, axis=-1)` inside `{fname}`.",
                    location=loc,
                    evidence={"predictions_shape": list(preds.shape), "exception": msg},
                )
        minus100 = _minus100_reaches_metric(compute_metrics, eval_prediction, pipeline, fname, msg, loc)
        if minus100 is not None:
            return minus100
        return finding(
            "FTD602",
            f"`{fname}` raised {msg} on predictions of shape {list(getattr(preds, 'shape', []))}.",
            "Fix the metric function for these shapes (--traceback shows where it failed).",
            location=loc,
            evidence={"exception": msg},
        )
    if not isinstance(result, dict):
        fname = getattr(compute_metrics, "__name__", "compute_metrics")
        return finding(
            "FTD606",
            f"`{fname}` returned a {type(result).__name__} ({result!r:.60}); the Trainer needs a "
            "dict of metric name to value.",
            'Return a dict: `return {"accuracy": value}` (name the key '
            "after the metric; `metric_for_best_model` refers to it).",
            location=_return_site(compute_metrics, pipeline),
            evidence={"type": type(result).__name__},
        )
    return Provide({"metric_values": result})


def _shapes(x):
    """Shapes of predictions that may be nested tuples (logits, (hidden states per layer))."""
    if isinstance(x, (tuple, list)):
        return [_shapes(v) for v in x]
    return list(getattr(x, "shape", []))


def _return_site(func, pipeline):
    """The line of the function's last `return` (where the non-dict value is made), else the function itself."""
    import ast
    import inspect
    import textwrap

    try:
        lines, start = inspect.getsourcelines(func)
        tree = ast.parse(textwrap.dedent("".join(lines)))
        returns = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Return) and n.value is not None]
        path = inspect.getsourcefile(func)
        if returns and path and (pipeline.capture is None or pipeline.capture.is_user_file(path)):
            from ftdoctor.sdk import Site

            return str(Site(path, start + max(returns) - 1))
    except (OSError, TypeError, SyntaxError):
        pass
    return pipeline.location(func)


def _works(func, eval_pred) -> bool:
    try:
        out = func(eval_pred)
    except Exception:
        return False
    return isinstance(out, dict)


@check("metrics", codes=("FTD603",))
def best_metric_is_returned(args, pipeline, metric_values=None, compute_metrics=None):
    name = getattr(args, "metric_for_best_model", None)
    if not name or name in ("loss", "eval_loss"):
        raise Skip("metric_for_best_model names no computed metric")
    key = name if name.startswith("eval_") else f"eval_{name}"
    if metric_values is None:
        if compute_metrics is not None:
            raise Skip("compute_metrics returned no values to look the best metric up in")
        return finding(
            "FTD603",
            f'`metric_for_best_model="{name}"` but the trainer has no compute_metrics, so '
            "evaluation only reports the loss.",
            "Pass `compute_metrics=...` returning "
            f'`{name.removeprefix("eval_")}`, or use `metric_for_best_model="loss"`.',
            location=pipeline.location(args),
        )
    returned = {f"eval_{k}" if not k.startswith("eval_") else k for k in metric_values}
    if key in returned:
        return None
    options = sorted(k.removeprefix("eval_") for k in returned)
    best = _closest(name.removeprefix("eval_"), options)
    return finding(
        "FTD603",
        f'`metric_for_best_model="{name}"` but compute_metrics returns {options}: the '
        f"first evaluation fails with KeyError: '{key}'.",
        f'Use `metric_for_best_model="{best}"`'
        + (f" (one of {options})" if len(options) > 1 else "")
        + f", or return `{name.removeprefix('eval_')}` from compute_metrics.",
        location=pipeline.location(args),
        evidence={"returned": options},
    )


def _closest(name: str, options: list[str]) -> str:
    """The returned key the user most likely meant: a key inside the name ("f1" in "f1_score"), else the most similar."""
    import difflib

    low = name.lower()
    contained = sorted((o for o in options if o.lower() in low or low in o.lower()), key=len, reverse=True)
    if contained:
        return contained[0]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.0)
    return close[0] if close else options[0]


# --- task contract: what compute_metrics must do with the -100 the loss ignores -----------------------------------

rule(
    "FTD621",
    "metrics-see-minus100",
    "metrics",
    "error",
    "compute_metrics handles labels without removing -100",
    """
     Labels carry -100 wherever the loss ignores a position (padding, special tokens, word continuations). It is
     no token id and no class: decoding it raises ("out of range integral type conversion attempted") and
     indexing label names with it fails or picks a wrong name. Replace it by the pad id before decoding, or drop
     those positions before scoring.
     """,
    broken="decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)",
    fixed="""
     labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
     decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
     """,
)
rule(
    "FTD622",
    "metrics-count-ignored-positions",
    "metrics",
    "warning",
    "compute_metrics scores positions labelled -100",
    """
     The Trainer pads labels (and logits) with -100 when it gathers the evaluation batches, and -100 also marks
     special tokens and word continuations. A metric computed over every position counts them: its value
     changes with the batch size and the padding, not with the model.
     """,
    broken="accuracy.compute(predictions=predictions.ravel(), references=labels.ravel())",
    fixed="""
     keep = labels != -100
     accuracy.compute(predictions=predictions[keep], references=labels[keep])
     """,
)


def _batches_all_one_length(ds, target) -> bool:
    """Every eval batch has the same length: all rows are (the collator pads to a fixed length, or the rows are
    fixed-length blocks), so the Trainer never pads one batch to another's length."""
    if getattr(target.collator, "padding", None) == "max_length":
        return True
    if not datasets.is_hf_dataset(ds) or "input_ids" not in (ds.column_names or []):
        return False
    lengths = set(datasets.sequence_lengths(ds, limit=20_000))
    return len(lengths) == 1


def _reference_for(pipeline):
    task = getattr(pipeline, "task", None)
    return f"see `ftdoctor reference show {task}`" if task else "see `ftdoctor reference list`"


def _minus100_reaches_metric(compute_metrics, eval_prediction, pipeline, fname, msg, loc):
    """compute_metrics raised, and works once -100 is gone from its inputs: -100 reached a decode or a lookup."""
    import numpy as np
    from transformers import EvalPrediction

    preds, labels = eval_prediction.predictions, eval_prediction.label_ids
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or not (labels == -100).any():
        return None
    tokenizer = pipeline.tokenizer
    pad = getattr(tokenizer, "pad_token_id", None)
    fill = pad if pad is not None else 0
    clean = np.where(labels != -100, labels, fill)
    if isinstance(preds, np.ndarray) and preds.dtype.kind in "iu":
        preds = np.where(preds != -100, preds, fill)
    if not _works(compute_metrics, EvalPrediction(predictions=preds, label_ids=clean)):
        return None
    if pipeline.task in ("translation", "summarization") or getattr(
        getattr(pipeline.model, "config", None), "is_encoder_decoder", False
    ):
        fix = (
            f"Replace -100 by the pad id before decoding, in `{fname}`: `labels = np.where(labels != -100, labels, "
            "tokenizer.pad_token_id)` (and the same for generated predictions, which the Trainer pads with -100 "
            "across batches); " + _reference_for(pipeline) + "."
        )
    else:
        fix = (
            f"Drop the positions labelled -100 before scoring, in `{fname}`: `[label_names[p] for p, l in "
            "zip(prediction, label) if l != -100]` (and the same for the labels); " + _reference_for(pipeline) + "."
        )
    n = int((labels == -100).sum())
    return finding(
        "FTD621",
        f"`{fname}` raised {msg}: the labels hold -100 at {n} positions (what the loss ignores) "
        "and it reached a decode or a label lookup. With -100 removed it works.",
        fix,
        location=loc,
        evidence={"minus100_positions": n, "exception": msg},
    )


@check("metrics", codes=("FTD621", "FTD622"))
def metrics_ignore_minus100(
    compute_metrics, eval_prediction, metric_values, pipeline, target, effective_eval_dataset=None
):
    """The metric must survive, and not change, when the labels are padded further with -100: the Trainer pads
    labels (and token-level logits) with -100 when it gathers eval batches of different lengths."""
    import numpy as np
    from transformers import EvalPrediction

    preds, labels = eval_prediction.predictions, eval_prediction.label_ids
    if (
        isinstance(preds, tuple)
        or not isinstance(labels, np.ndarray)
        or labels.ndim != 2
        or labels.dtype.kind not in "iu"
        or not isinstance(preds, np.ndarray)
    ):
        return None
    if _batches_all_one_length(effective_eval_dataset, target):
        return None  # fixed-length rows (text grouped into blocks) or padding to max_length: never padded further
    token_level = preds.shape[:2] == labels.shape
    extra = 4
    padded_labels = np.pad(labels, ((0, 0), (0, extra)), constant_values=-100)
    padded_preds = (
        np.pad(preds, ((0, 0), (0, extra)) + ((0, 0),) * (preds.ndim - 2), constant_values=-100)
        if token_level
        else preds
    )
    fname = getattr(compute_metrics, "__name__", "compute_metrics")
    try:
        again = compute_metrics(EvalPrediction(predictions=padded_preds, label_ids=padded_labels))
    except Exception as exc:
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(".")
        f = _minus100_reaches_metric(
            compute_metrics,
            EvalPrediction(predictions=padded_preds, label_ids=padded_labels),
            pipeline,
            fname,
            msg,
            pipeline.location(compute_metrics),
        )
        if f is not None:
            f.detail = (
                f"`{fname}` works on this eval batch but raised {msg} once its labels hold -100, as they do "
                "when the collator or the Trainer pads eval batches of different lengths. With -100 "
                "removed it works."
            )
        return f
    if not token_level or not isinstance(again, dict):
        return None
    changed = {
        k: (metric_values[k], again[k])
        for k in metric_values
        if k in again
        and isinstance(metric_values[k], (int, float))
        and isinstance(again[k], (int, float))
        and abs(float(metric_values[k]) - float(again[k])) > 1e-6
    }
    if not changed:
        return None
    key, (a, b) = next(iter(changed.items()))
    return finding(
        "FTD622",
        f"`{fname}` scores the positions labelled -100: padding the same eval batch with "
        f"{extra} more -100 columns, as the Trainer does when it gathers batches, moves `{key}` from "
        f"{a:.4g} to {b:.4g}.",
        f"Keep only the positions whose label is not -100 in `{fname}` (`keep = labels != -100`, then "
        "`predictions[keep]`, `labels[keep]`, or per sequence `[p for p, l in zip(prediction, label) if "
        "l != -100]`); " + _reference_for(pipeline) + ".",
        location=pipeline.location(compute_metrics),
        evidence={"changed": {k: list(v) for k, v in changed.items()}},
    )
