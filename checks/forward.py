"""forward: one forward pass on the CPU, on a copy of the model, with the real batch."""

from __future__ import annotations

import math
import re

from ftdoctor.checks import _drift
from ftdoctor.checks._failures import explain_text, short_of_memory
from ftdoctor.core.diagnosis import FACTS, MESSAGE
from ftdoctor.facts import models as data
from ftdoctor.sdk import (
    Cause,
    Provide,
    Site,
    Unavailable,
    UserCodeError,
    check,
    diagnose,
    diagnoser,
    finding,
    relay,
    rule,
)

rule(
    "FTD401",
    "no-loss",
    "forward",
    "error",
    "The model returns no loss",
    """
     `Trainer` trains on the `loss` the model returns, and the model computes it only from `labels` in the batch.
     """,
    broken='batch = {"input_ids": ..., "attention_mask": ...}  # no labels',
    fixed='batch = {"input_ids": ..., "attention_mask": ..., "labels": ...}',
)
rule(
    "FTD402",
    "logits-labels-shape",
    "forward",
    "error",
    "Labels do not fit the shape of the logits",
    """
     The loss compares logits and labels position by position. Per-token labels on a sequence classifier (or one
     label per sequence on a token classifier) fail with "Expected input batch_size (A) to match target
     batch_size (B)".
     """,
    broken="model = AutoModelForSequenceClassification.from_pretrained(ckpt)  # NER labels, one per token",
    fixed="model = AutoModelForTokenClassification.from_pretrained(ckpt, num_labels=len(label_names))",
)
rule(
    "FTD403",
    "non-finite-loss",
    "forward",
    "error",
    "The loss is NaN or infinite before any training",
    """
     A NaN or infinite loss on the first batch comes from the data (NaN/inf inputs or labels), an
     attention mask of all zeros, or weights already broken when loaded.
     """,
)
rule(
    "FTD404",
    "loss-far-from-chance",
    "forward",
    "warning",
    "The first loss is far from chance level",
    """
     A freshly initialised classification head predicts close to uniformly, so the first loss should be near
     ln(number of classes). Far above it, the labels, the loss or the head do not match (for example labels
     scaled or shifted, or a head loaded from another task).
     """,
)
# The example's method, named apart: the checks never call it themselves (the target does; see test_layout).
_LOSS_METHOD = "compute_loss"
rule(
    "FTD406",
    "override-signature",
    "forward",
    "error",
    "A Trainer method override lacks a parameter the library now passes",
    f"""
     Libraries add parameters to the methods a subclass overrides, and then pass them: since transformers 4.46
     the Trainer calls `{_LOSS_METHOD}` with `num_items_in_batch=`. An override written with the old signature
     raises `TypeError: {_LOSS_METHOD}() got an unexpected keyword argument` at the first training step. The
     parameters come from the table of the libraries' changes read from their own source (see FTD001).
     """,
    broken=f"""
     class WeightedTrainer(Trainer):
         def {_LOSS_METHOD}(self, model, inputs, return_outputs=False):
     """,
    fixed=f"""
     class WeightedTrainer(Trainer):
         def {_LOSS_METHOD}(self, model, inputs, return_outputs=False, num_items_in_batch=None):
     """,
)
rule(
    "FTD405",
    "forward-error",
    "forward",
    "error",
    "The forward pass raised",
    """
     The model failed on a real batch of the training set; training would fail the same way at step one.
     """,
)


def forward_failure(exc, where, findings_so_far, pipeline, model, batch):
    """(finding or None, reason) for an exception of the forward pass: the diagnosers name its cause (a cause
    already reported becomes a skip reason), else FTD405 relays it with the user's line or the batch it got."""
    if any(f.code == "FTD406" for f in findings_so_far) and _drift.signature_drift(exc) is not None:
        first = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return None, f"{where} fails as predicted by FTD406: {first}"
    ev, cause = diagnose(
        exc,
        "forward",
        {"pipeline": pipeline, "model": model, "batch": batch},
        findings_so_far,
        user_dir=_user_dir(pipeline),
    )
    if cause is not None:
        return cause.finding, cause.reason or ev.text
    return relay(
        "FTD405",
        ev,
        inputs=dict(batch) if hasattr(batch, "items") else None,
        location=pipeline.location(model),
    ), ev.text


def _user_dir(pipeline):
    cap = getattr(pipeline, "capture", None)
    return getattr(cap, "user_dir", None) or None


@diagnoser(codes=("FTD402",), stages="forward")
def logits_labels_shape(evidence, pipeline, model, batch):
    """The loss compared logits and labels of different batch sizes: the labels' nesting does not fit the head."""
    if explain_text(evidence.text, "the forward pass", []).kind != "shape":
        return None
    return Cause(_shape_mismatch(evidence.text, pipeline, model, batch), MESSAGE + FACTS, reason=evidence.text)


_BCE_SIZES = re.compile(
    r"Target size \(torch\.Size\(\[([\d, ]*)\]\)\) must be the same as input size \(torch\.Size\(\[([\d, ]*)\]\)\)"
)


@diagnoser(codes=("FTD402",), stages=("forward", "backward", "overfit", "memory"))
def bce_target_shape(evidence, pipeline, model):
    """binary_cross_entropy_with_logits (BCEWithLogitsLoss, or the multi-label loss the head picks) was given
    targets of another shape than the logits: class ids for a multi-label loss, or a column too many."""
    m = _BCE_SIZES.search(evidence.text)
    if m is None:
        return None
    target = [int(x) for x in m.group(1).replace(" ", "").split(",") if x]
    logits = [int(x) for x in m.group(2).replace(" ", "").split(",") if x]
    if len(target) == 1 and len(logits) == 2 and target[0] == logits[0]:
        fix = (
            f"The targets are one class id per row ({target}) and the logits have {logits[1]} columns: "
            "binary cross-entropy scores every column against a target of its own. For one class per row use "
            "`CrossEntropyLoss` on the class ids (or the model's own loss); for several labels per row give "
            f"multi-hot float labels of shape [{logits[0]}, {logits[1]}]; for a binary task scored by "
            "`BCEWithLogitsLoss`, `num_labels=1` and `logits.squeeze(-1)`."
        )
    elif len(target) == len(logits) == 2 and target[0] == logits[0]:
        fix = (
            f"The labels have {target[1]} columns and the head {logits[1]} outputs: set `num_labels={target[1]}` "
            "(one output per label)."
        )
    elif len(target) == 2 and target[1] == 1 and logits == target[:1]:
        fix = "The targets have a column the logits lack: `labels.squeeze(-1)` (or `logits.unsqueeze(-1)`)."
    else:
        fix = "Give the binary cross-entropy float targets of the logits' shape, one per output."
    rec = getattr(getattr(pipeline, "capture", None), "loop", None)
    site = getattr(rec, "loss_site", None)
    where = str(site) if site is not None else (evidence.user.site if evidence.user else pipeline.location(model))
    f = finding(
        "FTD402",
        f"Binary cross-entropy got targets of shape {target} for logits of shape {logits}: {evidence.first_line}",
        fix,
        location=where,
        evidence={"labels_shape": target, "logits_shape": logits},
    )
    return Cause(f, MESSAGE + FACTS, reason=evidence.text)


@diagnoser(codes=("FTD401",), stages="forward")
def no_loss_without_labels(evidence, pipeline):
    """The model was asked for a loss and returned none: the batch has no labels."""
    if explain_text(evidence.text, "the forward pass", []).kind != "no-labels":
        return None
    f = finding(
        "FTD401", evidence.first_line, "Put `labels` in the batch.", location=pipeline.location(pipeline.trainer)
    )
    return Cause(f, MESSAGE, reason=evidence.text)


def _shape_mismatch(text, pipeline, model, batch):
    labels = batch.get("labels") if hasattr(batch, "get") else None
    shape = list(getattr(labels, "shape", []))
    name = data.model_name(model)
    if len(shape) == 2 and name.endswith("ForSequenceClassification"):
        fix = f"The labels are per token ({shape}): use `AutoModelForTokenClassification` instead of `{name}`."
    elif len(shape) == 1 and name.endswith("ForTokenClassification"):
        fix = (
            f"The labels are one per sequence ({shape}): use `AutoModelForSequenceClassification` instead of `{name}`."
        )
    else:
        fix = "Make the labels match the model's output: one per sequence for classification, one per token for NER."
    return finding(
        "FTD402", text.splitlines()[0], fix, location=pipeline.location(model), evidence={"labels_shape": shape}
    )


def _override_finding(drift, fn, cls=None):
    code = getattr(fn, "__code__", None)
    signature = _drift.library_signature(cls, drift.name) or drift.replacement
    return finding(
        "FTD406",
        f"`{drift.name}` is overridden without `{drift.argument}`, which {drift.library} passes to it since "
        f"{drift.version}: the first training step raises `TypeError: {drift.name}() got an unexpected keyword "
        f"argument '{drift.argument}'`.",
        f"Give the override the library's signature: `{signature}:` (or add `**kwargs`).",
        location=str(Site(code.co_filename, code.co_firstlineno)) if code is not None else None,
        evidence={
            "method": drift.name,
            "argument": drift.argument,
            "library": drift.library,
            "version": drift.version,
            "source": drift.source,
        },
    )


@check("forward", codes=("FTD406",))
def override_signature(pipeline):
    """A subclass of a library's trainer that overrides a method with a signature older than the one the library
    calls."""
    trainer = getattr(pipeline, "trainer", None)
    if trainer is None:
        return None
    cls = type(trainer)
    return [_override_finding(drift, fn, cls) for drift, fn in _drift.overrides_missing(cls)]


def labels_fit_the_head(batch, model, pipeline, target):
    """Contract before the forward: the labels' shape is the one the head's loss takes (one per row for a sequence
    classifier, one per input position for token classifiers and language models), and there is a head at all."""
    import torch

    labels, ids = batch.get("labels"), batch.get("input_ids")
    if not torch.is_tensor(labels) or target.has_custom_loss:
        return None
    head, name = data.head_kind(model)
    loc = pipeline.location(model)
    per_row = "AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=...)"
    if head == "base":
        return finding(
            "FTD401",
            f"`{name}` is a base model without a head: it takes no `labels` and computes no loss, so the batch's "
            f"labels {list(labels.shape)} are never used and training has nothing to backpropagate.",
            f"Load the model with the head of the task: `{per_row if labels.dim() == 1 else _per_token(batch)}`.",
            location=loc,
            evidence={"model": name, "labels_shape": list(labels.shape)},
        )
    if not torch.is_tensor(ids) or ids.dim() != 2 or labels.dim() not in (1, 2):
        return None
    shape, width = list(labels.shape), ids.shape[1]
    problem = getattr(getattr(model, "config", None), "problem_type", None)
    if head == "sequence" and labels.dim() == 2 and problem != "multi_label_classification":
        if shape[1] == width and width != data.num_labels(model):
            return finding(
                "FTD402",
                f"The labels are one per token ({shape}, as long as `input_ids`), but `{name}` scores one label per "
                f'row: the loss fails with "Expected input batch_size ({shape[0]}) to match target batch_size '
                f'({shape[0] * shape[1]})".',
                f"Load the head the labels are for: `{_per_token(batch, target)}`.",
                location=loc,
                evidence={"labels_shape": shape, "model": name},
            )
        return None
    if head != "token":
        return None
    if labels.dim() == 1:
        return finding(
            "FTD402",
            f"The labels are one per row ({shape}), but `{name}` scores every token: its loss needs one label per "
            f'position and fails with "Expected input batch_size ({shape[0] * width}) to match target batch_size '
            f'({shape[0]})".',
            f"For one class per text load `{per_row}`.",
            location=loc,
            evidence={"labels_shape": shape, "model": name},
        )
    if shape[1] != width:
        return finding(
            "FTD402",
            f"The labels ({shape}) are not as long as the inputs ({list(ids.shape)}): `{name}` predicts one token per "
            "input position, so a target sequence of its own length cannot be aligned to it.",
            "For a separate target sequence use an encoder-decoder (`AutoModelForSeq2SeqLM` with a seq2seq "
            "checkpoint); with a decoder-only model put prompt and target in one sequence and set the prompt's "
            "labels to -100.",
            location=loc,
            evidence={"labels_shape": shape, "input_shape": list(ids.shape), "model": name},
        )
    return None


def _per_token(batch, target=None) -> str:
    """The head for labels with one entry per token: a language model when the collator builds them from the
    inputs (masked or causal), a token classifier otherwise."""
    collator = getattr(target, "collator", None)
    mlm = getattr(collator, "mlm", None)
    if mlm is True:
        return "AutoModelForMaskedLM.from_pretrained(checkpoint)"
    if mlm is False:
        return "AutoModelForCausalLM.from_pretrained(checkpoint)"
    return "AutoModelForTokenClassification.from_pretrained(checkpoint, num_labels=...)"


@check("forward", provides=("work_model", "initial_loss", "outputs"), codes=("FTD401", "FTD402", "FTD405", "FTD806"))
def forward_pass(model, batch, pipeline, findings_so_far, target):
    import torch

    short = short_of_memory(model, target.copies(), "A working copy of the model", target.work_device)
    if short is not None:
        # The walk marks every value this check provides as unavailable, with the reason.
        return Provide(findings=[short], skip_reason="not enough memory for a working copy (FTD806)")

    if any(f.code == "FTD324" for f in findings_so_far):
        # No position is trained: the loss is 0/0, and every later step follows from that one cause.
        return Provide(skip_reason="no token of the batch is trained (collate FTD324)")
    # The contract first: a batch the head cannot take is named before the model runs, and its crash is predicted.
    contract = labels_fit_the_head(batch, model, pipeline, target)
    found = [contract] if contract is not None else []
    seen = [*findings_so_far, *found]
    work = target.work_model()
    work.eval()  # dropout off: the loss at initialisation is compared with chance level
    try:
        with torch.no_grad():
            loss, outputs = target.loss(work, batch)
    except UserCodeError as err:
        f, reason = forward_failure(err.exc, "the forward pass", seen, pipeline, model, batch)
        return Provide(
            {"work_model": work, "initial_loss": Unavailable(reason), "outputs": Unavailable(reason)},
            found + ([f] if f else []),
            skip_reason=reason,
        )
    if loss is None:
        known = [c for c in ("FTD202", "FTD304", "FTD305", "FTD401") if c in {x.code for x in seen}]
        if known:
            reason = f"the model returns no loss, as {', '.join(known)} predicted"
            return Provide(
                {"work_model": work, "initial_loss": Unavailable(reason), "outputs": outputs},
                found,
                skip_reason=reason,
            )
        f = finding(
            "FTD401",
            f"`{data.model_name(model)}` returned no loss for a batch with keys {sorted(batch)}.",
            "Put `labels` in the batch (see collate).",
            location=pipeline.location(pipeline.trainer),
        )
        return Provide(
            {"work_model": work, "initial_loss": Unavailable("the model returns no loss"), "outputs": outputs}, [f]
        )
    logits = outputs.get("logits") if hasattr(outputs, "get") else None
    # A loss of one value per example (reduction="none") is judged by its mean here; backward says that
    # backpropagating it needs a scalar (FTD505).
    value = float(loss.detach().float().mean()) if getattr(loss, "ndim", 0) else float(loss.detach())
    ev = {"loss": value, "logits_shape": list(logits.shape) if logits is not None else None}
    if getattr(loss, "ndim", 0):
        ev["loss_shape"] = list(loss.shape)
    return Provide({"work_model": work, "initial_loss": value, "outputs": outputs}, found, evidence=ev)


@check("forward", codes=("FTD403", "FTD404"))
def loss_at_initialisation(initial_loss, outputs, model, pipeline, batch, target, task=None):
    if not math.isfinite(initial_loss):
        return _non_finite_loss(initial_loss, outputs, model, pipeline, batch, target)
    if task == "sequence-classification" and getattr(model.config, "problem_type", None) in (
        None,
        "single_label_classification",
    ):
        n = data.num_labels(model) or 0
        if n > 1:
            chance = math.log(n)
            if initial_loss > 3 * chance + 1.0:
                return finding(
                    "FTD404",
                    f"The first loss is {initial_loss:.2f}; a fresh {n}-class head starts near ln({n}) = {chance:.2f}.",
                    "Check that the labels are class ids 0..num_labels-1 and "
                    "the head was freshly initialised for this task.",
                    location=pipeline.location(model),
                    evidence={"loss": initial_loss, "chance": chance},
                )
    return None


def _non_finite_loss(initial_loss, outputs, model, pipeline, batch, target):
    """Say where the first NaN/inf comes from: the data, empty masks, the weights, or an operation in user code."""
    import torch

    bad_inputs = [
        k for k, v in batch.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    empty_masks = int((batch["attention_mask"].sum(-1) == 0).sum()) if "attention_mask" in batch else 0
    bad_weights = [n for n, p in model.named_parameters() if p.is_floating_point() and not torch.isfinite(p).all()]
    origin = None if bad_inputs or bad_weights else first_non_finite(target, batch, pipeline)
    location = pipeline.location(model)
    if bad_inputs:
        cause, fix = f"non-finite values in {bad_inputs}", "Filter or fill rows with NaN/inf values before training."
    elif bad_weights:
        cause = f"{len(bad_weights)} weights are already NaN/inf (e.g. {bad_weights[0]})"
        fix = "Reload the checkpoint; check `all(torch.isfinite(p).all() for p in model.parameters())` after loading."
    elif empty_masks:
        cause, fix = f"{empty_masks} rows with an all-zero attention_mask", "Drop empty rows before tokenizing."
    elif origin is not None:
        op, site, what, code = origin
        cause = f"`{op}` at {site} returns {what}" + (f": `{code}`" if code else "")
        fix = _origin_fix(op, what)
        location = str(site)
    else:
        cause = "non-finite activations"
        fix = "Check the loss computation and the inputs for values that overflow."
    return finding(
        "FTD403",
        f"The first loss is {initial_loss}: {cause}.",
        fix,
        location=location,
        evidence={
            "loss": initial_loss,
            "bad_inputs": bad_inputs,
            "empty_masks": empty_masks,
            "origin": list(map(str, origin)) if origin else None,
        },
    )


def _origin_fix(op: str, what: str) -> str:
    if "empty" in what:
        return (
            "A mean over an empty selection is 0/0 = NaN (a class or token kind missing from the batch): skip "
            "empty selections, or sum and divide by `count.clamp(min=1)`."
        )
    if op in ("div", "true_divide", "__truediv__", "__rtruediv__", "divide"):
        return "A division by a count that can be 0: divide by `count.clamp(min=1)` or skip the empty case."
    if op in ("log", "log2", "log10", "__pow__", "pow", "sqrt", "rsqrt"):
        return (
            f"`{op}` of 0 or of a negative number: compute in log space (`torch.log_softmax`, "
            "`F.cross_entropy`) or clamp the argument (`x.clamp(min=1e-12)`)."
        )
    return "Guard the operation against zero denominators, log(0) and overflow."


def first_non_finite(target, batch, pipeline):
    """Re-run the loss and watch every torch operation; return (op, user site, what, source line) of the first
    one whose inputs are finite and whose result is not: where the NaN is born."""
    import linecache
    import sys

    import torch
    from torch.overrides import TorchFunctionMode

    from ftdoctor.sdk import Site, deepest_user_frame

    cap = pipeline.capture
    user_dir = cap.user_dir if cap is not None else None

    def tensors(x):
        if torch.is_tensor(x):
            yield x
        elif isinstance(x, (tuple, list)):
            for v in x:
                yield from tensors(v)
        elif isinstance(x, dict):
            for v in x.values():
                yield from tensors(v)

    def non_finite(x):
        return any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in tensors(x))

    class Watch(TorchFunctionMode):
        hit = None

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if self.hit is None and non_finite(out) and not non_finite((args, kwargs or {})):
                frame = deepest_user_frame(sys._getframe(1), user_dir) if user_dir else None
                if frame is not None:
                    name = getattr(func, "__name__", str(func))
                    empty = any(t.numel() == 0 for t in tensors(args))
                    what = "NaN on an empty tensor" if empty else "NaN/inf"
                    code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                    self.hit = (name, Site(frame.f_code.co_filename, frame.f_lineno), what, code)
            return out

    work = target.work_model()
    work.eval()
    watch = Watch()
    try:
        with torch.no_grad(), watch:
            target.loss(work, batch)
    except UserCodeError:
        pass
    return watch.hit


# --- task contract: seq2seq decoder inputs -------------------------------------------------------------------------

rule(
    "FTD421",
    "decoder-inputs-not-from-labels",
    "forward",
    "error",
    "decoder_input_ids are not the labels shifted right",
    """
     An encoder-decoder model is trained by teacher forcing: the decoder reads the target shifted right by one
     (a start token first) and predicts each next token. Decoder inputs equal to the labels let it read the
     very token it must predict: the loss falls to zero and the model generates nothing useful.
     """,
    broken='model_inputs["decoder_input_ids"] = model_inputs["labels"]',
    fixed="data_collator = DataCollatorForSeq2Seq(tokenizer, model=model)  # derives decoder_input_ids from labels",
)


@check("forward", codes=("FTD421",))
def decoder_inputs_from_labels(batch, model, pipeline, task=None):
    """Seq2seq: decoder_input_ids, when the batch carries them, are the labels shifted right by one."""
    import torch

    cfg = getattr(model, "config", None)
    if not getattr(cfg, "is_encoder_decoder", False) or not {"labels", "decoder_input_ids"} <= set(batch):
        return None
    labels, dec = batch["labels"], batch["decoder_input_ids"]
    pad, start = getattr(cfg, "pad_token_id", None), getattr(cfg, "decoder_start_token_id", None)
    if not torch.is_tensor(labels) or labels.shape != dec.shape or labels.dim() != 2 or pad is None:
        return None
    target = labels.masked_fill(labels == -100, pad)
    expected = torch.cat([torch.full_like(target[:, :1], start if start is not None else pad), target[:, :-1]], 1)
    # Compare where the decoder reads a real target token (the start position and after each real label).
    judged = torch.cat([torch.ones_like(target[:, :1], dtype=torch.bool), (labels != -100)[:, :-1]], 1) & (
        target != pad
    )
    if not judged.any() or bool((dec == expected)[judged].all()):
        return None
    same = float((dec == target)[judged].float().mean())
    cause = (
        "they equal the labels: at each position the decoder reads the token it must predict"
        if same > 0.9
        else "they are not the labels shifted right by one"
    )
    name = task if task in ("translation", "summarization") else "translation"
    return finding(
        "FTD421",
        f"The batch's `decoder_input_ids` do not come from its labels: {cause}. Teacher forcing "
        "needs the decoder to read the target shifted right, starting with the decoder start token.",
        "Drop `decoder_input_ids` from the data and let `DataCollatorForSeq2Seq(tokenizer, model=model)` "
        "derive them (`model.prepare_decoder_input_ids_from_labels`), or leave them out and the model "
        "shifts the labels itself; " + f"see `ftdoctor reference show {name}`.",
        location=pipeline.location(pipeline.train_dataset, pipeline.trainer),
        evidence={"equal_to_labels": same},
    )
