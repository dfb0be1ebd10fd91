"""metrics: eval batch -> model -> preprocess_logits_for_metrics -> compute_metrics, as the Trainer's eval loop does.

When the data stages fail, compute_metrics is still checked on synthetic inputs of the model's real output shape.
"""

from __future__ import annotations

from ftdoctor.core.diagnosis import FACTS, MESSAGE, VALUES, describe
from ftdoctor.facts import datasets, models
from ftdoctor.sdk import (
    Cause,
    Provide,
    Skip,
    UserCodeError,
    check,
    diagnose,
    diagnoser,
    finding,
    parse_source,
    relay,
    rule,
    run_user,
    user_site_in_traceback,
)

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


def _evaluation_fails(err, pipeline, trainer, work, batch):
    """FTD900 at the user's line for a prediction step that raises; a compute_loss that returns the loss alone
    when the evaluation asks for its outputs is named as such."""
    cap = pipeline.capture
    site = user_site_in_traceback(err.exc.__traceback__, cap.user_dir) if cap is not None else None
    msg = f"{type(err.exc).__name__}: {str(err.exc).splitlines()[0] if str(err.exc) else ''}".rstrip(": ")
    detail = f"The trainer's evaluation step raised {msg} on an eval batch: evaluation fails the same way."
    fix = "Fix the cause shown; --traceback prints the whole trace."
    if trainer is not None and batch is not None:
        import torch

        try:
            with torch.no_grad():
                out = run_user("compute_loss", trainer.compute_loss, work, dict(batch), return_outputs=True)
        except UserCodeError:
            out = None
        if out is not None and not isinstance(out, (tuple, list)):
            detail = (
                f"`{type(trainer).__name__}.compute_loss` returns the loss alone when the evaluation asks for "
                f"`return_outputs=True`, and the evaluation step unpacks it: {msg}."
            )
            fix = "Return `(loss, outputs) if return_outputs else loss` from `compute_loss`."
            site = pipeline.site_of(type(trainer).compute_loss) or site
    return finding(
        "FTD900",
        detail,
        fix,
        location=str(site) if site is not None else pipeline.location(trainer),
        evidence={"exception": msg},
    )


EVAL_ROWS = 32  # rows of the eval set run through the trainer's own evaluation: two batches or more, as a rule


@check("metrics", provides=("eval_prediction",), codes=("FTD900",))
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
                # The trainer's own prediction step fails on real eval rows (and on made-up ones): the run's
                # evaluation fails the same way, before compute_metrics is ever called.
                return Provide({}, [_evaluation_fails(err, pipeline, trainer, work, eval_batch)], skip_reason=str(err))
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
        ev, cause = diagnose(
            err.exc,
            "metrics",
            {
                "pipeline": pipeline,
                "model": model,
                "compute_metrics": compute_metrics,
                "eval_prediction": eval_prediction,
            },
            ctx.values.get("findings_so_far", []),
            user_dir=getattr(cap, "user_dir", None) or None,
        )
        if cause is not None:
            return cause.finding if cause.finding is not None else Provide({}, skip_reason=cause.reason)
        return relay(
            "FTD602",
            ev,
            f"`{fname}` raised {msg} on predictions of shape {list(getattr(preds, 'shape', []))}",
            inputs={"predictions": preds, "label_ids": labels},
            location=loc,
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
def best_metric_is_returned(args, pipeline, metric_values=None, compute_metrics=None, eval_batch=None, target=None):
    name = getattr(args, "metric_for_best_model", None)
    if name in ("loss", "eval_loss"):
        return _eval_loss_without_labels(name, args, pipeline, eval_batch, target)
    if not name:
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


def _eval_loss_without_labels(name, args, pipeline, eval_batch, target):
    """Evaluation computes a loss only from batches that carry every label the trainer looks for: selecting on
    the loss needs them in the evaluation batches too."""
    names = list(getattr(target, "label_names", None) or ())
    if not isinstance(eval_batch, dict) or not names:
        raise Skip("metric_for_best_model is the loss, and no evaluation batch shows whether it is computed")
    missing = [n for n in names if n not in eval_batch]
    if not missing:
        return None
    return finding(
        "FTD603",
        f'`metric_for_best_model="{name}"`, but the evaluation batches carry no {", ".join(f"`{n}`" for n in missing)} '
        f"(they hold {sorted(eval_batch)}): the model computes no loss on them, evaluation reports no `eval_loss`, "
        "and the first evaluation fails with KeyError: 'eval_loss'.",
        f"Evaluate on features that carry {', '.join(f'`{n}`' for n in names)} (prepared like the training "
        "features), or select the best model on a metric `compute_metrics` returns "
        '(`metric_for_best_model="f1"`).',
        location=pipeline.location(pipeline.eval_dataset, args),
        evidence={"missing": missing, "eval_batch_keys": sorted(eval_batch)},
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
    "FTD607",
    "binary-average-on-multiclass",
    "metrics",
    "error",
    "A binary-averaged metric is given more than two classes",
    """
     F1, precision and recall default to `average="binary"`, which scores one positive class. With more than two
     classes scikit-learn (and the `evaluate` modules built on it) raise "Target is multiclass but
     average='binary'" at the first evaluation.
     """,
    broken="f1.compute(predictions=predictions, references=labels)  # 5 classes",
    fixed='f1.compute(predictions=predictions, references=labels, average="macro")',
)
rule(
    "FTD608",
    "metric-references-not-nested",
    "metrics",
    "error",
    "The metric takes a list of references per prediction",
    """
     BLEU, sacreBLEU, chrF and other text-generation metrics accept several references for each prediction, so
     their `references` are a list of lists of strings. One string per prediction fails the metric's input
     format ("Got a string but expected a list") at the first evaluation.
     """,
    broken="sacrebleu.compute(predictions=decoded_preds, references=decoded_labels)",
    fixed="sacrebleu.compute(predictions=decoded_preds, references=[[label] for label in decoded_labels])",
)
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
    raw = eval_prediction.predictions
    in_preds = int((raw == -100).sum()) if isinstance(raw, np.ndarray) and raw.dtype.kind in "iu" else 0
    if in_preds and not _works(compute_metrics, EvalPrediction(predictions=raw, label_ids=clean)):
        # Clean labels are not enough: the -100 that fails is in the predictions (generated ids the Trainer padded
        # with -100 when it joined evaluation batches of different lengths).
        held = (
            f"the predictions hold -100 at {in_preds} positions (the Trainer pads generated ids with -100 when it "
            "joins evaluation batches of different lengths)"
        )
    else:
        held = f"the labels hold -100 at {n} positions (what the loss ignores)"
    return finding(
        "FTD621",
        f"`{fname}` raised {msg}: {held} and it reached a decode or a label lookup. With -100 removed it works.",
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


# --- what the metric is given: teacher-forced tokens, capped generations, reference layouts, argmax of one column ---

rule(
    "FTD632",
    "seq2seq-metric-teacher-forced",
    "metrics",
    "warning",
    "A sequence-to-sequence metric scores teacher-forced predictions",
    """
     Without `predict_with_generate=True` the Trainer evaluates an encoder-decoder model by a forward pass with
     the labels as decoder inputs: every predicted token sees the true previous tokens. Decoding the argmax of
     those logits and scoring it with ROUGE or BLEU leaks the references, so the score is far above what
     `generate()` achieves and says little about the model.
     """,
    broken="Trainer(model, TrainingArguments(...), compute_metrics=rouge_of_argmax_logits)",
    fixed="Seq2SeqTrainer(model, Seq2SeqTrainingArguments(..., predict_with_generate=True), compute_metrics=...)",
)
rule(
    "FTD633",
    "generation-capped-below-targets",
    "metrics",
    "warning",
    "Generation stops before the references end",
    """
     With `predict_with_generate=True`, evaluation generates up to `generation_max_length`, or, when that is not
     set, the model's generation config (`max_length` is 20 by default). References longer than that cap are
     compared with predictions cut at the cap: ROUGE and BLEU drop, whatever the model learns.
     """,
    broken="Seq2SeqTrainingArguments(..., predict_with_generate=True)  # targets of up to 128 tokens",
    fixed="Seq2SeqTrainingArguments(..., predict_with_generate=True, generation_max_length=128)",
)
rule(
    "FTD634",
    "sacrebleu-reference-streams",
    "metrics",
    "error",
    "sacrebleu receives one reference list per sentence instead of reference streams",
    """
     `sacrebleu.corpus_bleu(hypotheses, references)` reads `references` as streams: each stream holds one
     reference for every hypothesis. Given one list per sentence (the layout of the `evaluate` wrapper), it
     pairs the hypotheses with the first stream only, a one-sentence list: the score covers the first sentence,
     silently.
     """,
    broken="sacrebleu.corpus_bleu(hyps, [[r] for r in refs])",
    fixed="sacrebleu.corpus_bleu(hyps, [refs])  # one stream of len(hyps) references",
)


def _generation_cap(trainer, model):
    """(tokens the evaluation's generate() can write, what sets it) for a Seq2SeqTrainer, as its evaluation
    resolves them: generation_max_length, else the model's generation config."""
    args = getattr(trainer, "args", None)
    given = getattr(args, "generation_max_length", None)
    if isinstance(given, int):
        return given, f"`generation_max_length={given}`"
    config = getattr(model, "generation_config", None)
    new = getattr(config, "max_new_tokens", None)
    if isinstance(new, int):
        return new + 1, f"the model's `generation_config.max_new_tokens={new}`"
    cap = getattr(config, "max_length", None)
    if isinstance(cap, int):
        return cap, f"the model's `generation_config.max_length={cap}` (no `generation_max_length` is set)"
    return None, None


def _evaluates_with_own_length(trainer, pipeline) -> bool:
    """Whether the evaluations that will score the generations are the script's own `evaluate()`/`predict()`
    calls after `train()` that set the generation length themselves (`max_length=`, `max_new_tokens=`,
    `**gen_kwargs`): the Trainer does not evaluate during training (its strategy is "no"), so the cap read
    from the arguments never applies. A script that cannot be read counts as not setting it."""
    import ast

    strategy = getattr(getattr(trainer, "args", None), "eval_strategy", None)
    if strategy is None:
        strategy = getattr(getattr(trainer, "args", None), "evaluation_strategy", None)
    if str(getattr(strategy, "value", strategy)).lower() != "no":
        return False
    cap = pipeline.capture
    tree = parse_source(cap.script) if cap is not None and cap.script else None
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("evaluate", "predict"):
                for kw in node.keywords:
                    if kw.arg is None or kw.arg in ("max_length", "max_new_tokens", "generation_config"):
                        return True
    return False


@check("metrics", codes=("FTD632", "FTD633"))
def seq2seq_metric_inputs(compute_metrics, metric_values, trainer, model, args, pipeline, eval_dataset=None):
    """An encoder-decoder's metric scores generated text: not the argmax of teacher-forced logits, and not
    generations cut below the references' length."""
    config = getattr(model, "config", None)
    if not getattr(config, "is_encoder_decoder", False) or not callable(getattr(model, "generate", None)):
        return None
    fname = getattr(compute_metrics, "__name__", "compute_metrics")
    if not getattr(args, "predict_with_generate", False):
        kind = type(trainer).__name__
        return finding(
            "FTD632",
            f"`{kind}` evaluates this encoder-decoder model by a forward pass with the labels as decoder inputs "
            f"(`predict_with_generate` is not set), and `{fname}` scores those teacher-forced predictions: each "
            "predicted token sees the reference's previous tokens, so the score overstates what generation gives.",
            "Use `Seq2SeqTrainer` with `Seq2SeqTrainingArguments(..., predict_with_generate=True, "
            f"generation_max_length=...)`, and decode the generated ids in `{fname}` (no argmax).",
            location=pipeline.location(args, trainer),
            evidence={"trainer": kind, "predict_with_generate": False},
        )
    if eval_dataset is None or "labels" not in (datasets.columns_of(eval_dataset) or []):
        return None
    cap, source = _generation_cap(trainer, model)
    if cap is None or _evaluates_with_own_length(trainer, pipeline):
        return None
    lengths = [n for n in datasets.sequence_lengths(eval_dataset, "labels", limit=2000) if n]
    longer = [n for n in lengths if n > cap]
    if not lengths or len(longer) * 10 < len(lengths):
        return None
    return finding(
        "FTD633",
        f"Evaluation generates at most {cap} tokens ({source}), but {len(longer)} of {len(lengths)} "
        f"evaluation references are longer (up to {max(longer)} tokens): those predictions are cut at {cap} "
        f"tokens before `{fname}` scores them.",
        f"Set `generation_max_length={max(lengths)}` (the references' length) in `Seq2SeqTrainingArguments`, "
        "or `model.generation_config.max_new_tokens`.",
        location=pipeline.location(args, trainer),
        evidence={"cap": cap, "longer": len(longer), "references": len(lengths), "longest": max(longer)},
    )


@check("metrics", codes=("FTD634",))
def sacrebleu_reference_streams(compute_metrics, eval_prediction, metric_values, pipeline):
    """Run compute_metrics again watching sacrebleu's corpus scores: each reference stream must hold one
    reference per hypothesis."""
    import sys

    if "sacrebleu" not in sys.modules:
        return None
    try:
        from sacrebleu.metrics.base import Metric
    except ImportError:
        return None
    seen = []
    original = Metric.corpus_score

    def watched(self, hypotheses, references, *args, **kwargs):
        seen.append((type(self).__name__, hypotheses, references))
        return original(self, hypotheses, references, *args, **kwargs)

    Metric.corpus_score = watched
    try:
        compute_metrics(eval_prediction)
    except Exception:  # compute_metrics_runs reports its failures
        return None
    finally:
        Metric.corpus_score = original
    for name, hyps, refs in seen:
        if isinstance(hyps, str) or not isinstance(refs, (list, tuple)) or len(hyps) < 2:
            continue
        sizes = [len(s) for s in refs if isinstance(s, (list, tuple))]
        if len(sizes) != len(refs) or all(n == len(hyps) for n in sizes):
            continue
        fname = getattr(compute_metrics, "__name__", "compute_metrics")
        return finding(
            "FTD634",
            f"`{fname}` gives sacrebleu's corpus {name} {len(hyps)} hypotheses and {len(refs)} reference "
            f"streams of {min(sizes)}–{max(sizes)} references each: sacrebleu reads a stream as one reference per "
            "hypothesis, so these are read as alternative references of the first sentences and the rest are "
            "not scored.",
            "Pass the references as streams: `sacrebleu.corpus_bleu(hyps, [refs])` with `refs` one reference per "
            "hypothesis (several references per sentence: `list(zip(*refs_per_sentence))`).",
            location=pipeline.location(compute_metrics),
            evidence={"hypotheses": len(hyps), "streams": len(refs), "stream_lengths": sizes[:8]},
        )
    return None


@diagnoser(codes=("FTD607",))
def binary_average_on_multiclass(evidence, model=None):
    """scikit-learn refused average='binary' for labels of more than two classes."""
    if "average='binary'" not in evidence.message or "multiclass" not in evidence.message:
        return None
    support = MESSAGE
    classes = _classes_in_frame(evidence)
    if classes > 2:
        support += VALUES
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if isinstance(num_labels, int) and num_labels > 2:
        support += FACTS
    seen = max(classes, num_labels if isinstance(num_labels, int) else 0)
    line = evidence.user.source if evidence.user is not None else ""
    call = _with_argument(line, 'average="macro"')
    f = finding(
        "FTD607",
        "The metric scores one positive class (`average='binary'`, its default) but the labels have "
        + (f"{seen} classes" if seen > 2 else "more than two classes")
        + (f": `{line}` raised {evidence.first_line}" if line else f": {evidence.first_line}"),
        "Average over the classes: "
        + (f"`{call}`" if call else 'pass `average="macro"`')
        + ' (or "micro"/"weighted"; "macro" weighs every class alike).',
        evidence={"classes": seen} if seen > 2 else {},
    )
    return Cause(f, support)


def _classes_in_frame(evidence) -> int:
    """The most distinct integer values that one array or list of the user's frame holds (labels, predictions)."""
    import numpy as np

    best = 0
    for name in evidence.locals_where(lambda v: isinstance(v, (np.ndarray, list)) and 0 < len(v) <= 1_000_000):
        try:
            arr = np.asarray(evidence.local(name))
            if arr.dtype.kind in "iu":
                best = max(best, len(np.unique(arr)))
        except Exception:
            continue
    return best


def _with_argument(line: str, argument: str) -> str | None:
    """``line`` with ``argument`` added to the arguments of its last call (the one whose ``)`` comes last)."""
    at = (line or "").rfind(")")
    if at <= 0 or "(" not in line[:at]:
        return None
    head = line[:at].rstrip()
    return f"{head}{'' if head.endswith('(') else ', '}{argument}{line[at:]}"


@diagnoser(codes=("FTD608",))
def references_not_nested(evidence):
    """A metric whose references are lists (one list of references per prediction) was given one string each."""
    import re

    if "Got a string but expected a list" not in evidence.message:
        return None
    metric = evidence.frame_local("self", lambda v: hasattr(v, "features") and hasattr(v, "compute"))
    features = getattr(metric, "features", None) or {}
    nested = [k for k, v in dict(features).items() if type(v).__name__ in ("List", "Sequence", "LargeList")]
    line = evidence.user.source if evidence.user is not None else ""
    for arg in nested:
        m = re.search(rf"\b{arg}\s*=\s*([A-Za-z_]\w*)\b", line)
        var = m.group(1) if m else None
        summary = evidence.values.get(var or "", {})
        if summary.get("items") != ["str"]:
            continue
        name = getattr(metric, "name", None) or type(metric).__name__
        f = finding(
            "FTD608",
            f"`{name}` takes a list of references for each prediction, but `{arg}={var}` is one string per "
            f"prediction ({describe(summary)}): {evidence.first_line}",
            f"Give each prediction a list of its references: `{arg}=[[r] for r in {var}]` in `{line}`.",
            evidence={"argument": arg, "expected": str(features[arg])},
        )
        return Cause(f, MESSAGE + VALUES + FACTS)
    return None
