"""overfit: a few dozen steps on one batch, on a copy of the model, with the user's optimizer settings.

A pipeline that cannot memorise one batch cannot learn a dataset. When it fails at the user's learning rate, a
short sweep tells a learning rate that is off from a pipeline that cannot learn at all.
"""

from __future__ import annotations

import math

from ftdoctor import data
from ftdoctor.findings import finding, rule
from ftdoctor.registry import check
from ftdoctor.walk import UserCodeError, run_user

STEPS = 30
TARGET_RATIO = 0.5  # the loss must fall to half its first value (or classification reach accuracy 1.0)

rule("FTD701", "cannot-overfit", "overfit", "error", "The pipeline cannot learn even one batch",
     """
     Trained for dozens of steps on a single batch, a working pipeline drives the loss down and memorises the
     labels. When it cannot, at any learning rate, something between the data and the loss is broken: labels
     not matching the inputs, a frozen or detached model, a loss that does not depend on the parameters.
     """)
rule("FTD702", "learning-rate-too-high", "overfit", "error", "The learning rate is too high: the loss diverges",
     """
     At the configured learning rate the loss on one batch goes up or becomes NaN, while a lower rate learns
     it. A full run would diverge the same way.
     """,
     broken='TrainingArguments("out", learning_rate=1.0)',
     fixed='TrainingArguments("out", learning_rate=2e-5)')
rule("FTD703", "learning-rate-too-low", "overfit", "warning", "The learning rate is too low to learn one batch",
     """
     At the configured learning rate the loss on one batch barely moves in dozens of steps, while a higher rate
     learns it. With a pretrained checkpoint 2e-5 to 5e-5 is typical; a model trained from scratch needs more.
     """,
     broken='TrainingArguments("out", learning_rate=1e-8)',
     fixed='TrainingArguments("out", learning_rate=2e-5)')


def _accuracy(outputs, batch, task):
    logits = outputs.get("logits") if hasattr(outputs, "get") else None
    labels = batch.get("labels")
    if logits is None or labels is None or not data.is_classification(task) or logits.dim() < 2:
        return None
    pred = logits.argmax(-1)
    if pred.shape != labels.shape:
        return None
    mask = labels != -100
    return float((pred[mask] == labels[mask]).float().mean()) if mask.any() else None


def trial(model, batch, lr, trainer, optimizer, args, task, steps=STEPS):
    """Train a fresh copy on ``batch`` at ``lr``; return (losses, final accuracy, learned)."""
    import torch

    from .backward import build_optimizer
    from .forward import compute_loss, copy_model

    work = copy_model(model)
    work.eval()  # dropout off: one batch is memorised, not regularised
    opt, _ = build_optimizer(trainer, model, work, optimizer)
    base = max((g["lr"] for g in opt.param_groups), default=lr) or lr
    for g in opt.param_groups:
        g["lr"] = lr * (g["lr"] / base if base else 1.0)
    clip = getattr(args, "max_grad_norm", 0) or 0
    params = [p for p in work.parameters() if p.requires_grad]
    losses, acc = [], None
    for _ in range(steps):
        loss, outputs = compute_loss(trainer, work, batch)
        losses.append(float(loss.detach()))
        acc = _accuracy(outputs, batch, task)
        if not math.isfinite(losses[-1]) or _learned(losses, acc):
            break
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return losses, acc, _learned(losses, acc)


def _learned(losses, acc) -> bool:
    if acc is not None and acc >= 1.0 and len(losses) > 1:
        return True
    return len(losses) > 1 and math.isfinite(losses[-1]) and losses[-1] <= TARGET_RATIO * losses[0]


def _diverged(losses) -> bool:
    return not math.isfinite(losses[-1]) or losses[-1] > losses[0] * 1.05


@check("overfit", codes=("FTD701", "FTD702", "FTD703"))
def overfit_one_batch(ctx, model, batch, step_evidence, pipeline, trainer=None, optimizer=None, args=None, task=None):
    user_lr = _user_lr(args, optimizer)
    runs = []
    try:
        losses, acc, ok = run_user("training on one batch", trial, model, batch, user_lr, trainer, optimizer, args, task)
        runs.append({"lr": user_lr, "first_loss": losses[0], "last_loss": losses[-1], "steps": len(losses),
                     "accuracy": acc, "learned": ok})
        if not ok:
            direction = 0.1 if _diverged(losses) else 10.0
            lr = user_lr
            for _ in range(3):
                lr = lr * direction
                if lr > 1.0:
                    break
                l2, a2, ok2 = run_user("training on one batch", trial, model, batch, lr, trainer, optimizer, args, task)
                runs.append({"lr": lr, "first_loss": l2[0], "last_loss": l2[-1], "steps": len(l2), "accuracy": a2,
                             "learned": ok2})
                if ok2:
                    break
    except UserCodeError as err:
        return finding("FTD701", f"Training on one batch raised {type(err.exc).__name__}: {err.exc}",
                       "Fix the error; it would stop the real run too.", location=pipeline.location(trainer))
    ctx.set("overfit_evidence", {"runs": runs})
    first = runs[0]
    if first["learned"]:
        return None
    worked = next((r for r in runs[1:] if r["learned"]), None)
    where = pipeline.location(args) if optimizer is None else pipeline.location(optimizer)
    setting = "learning_rate" if optimizer is None else "lr"
    summary = f"loss {first['first_loss']:.3f} -> {first['last_loss']:.3f} in {first['steps']} steps"
    if worked is not None and worked["lr"] < user_lr:
        return finding("FTD702", f"At {setting}={user_lr:g} the loss on one batch diverges ({summary}); at "
                       f"{worked['lr']:g} it falls to {worked['last_loss']:.3f}.", f"Lower it: `{setting}={worked['lr']:g}`.",
                       location=where, evidence={"runs": runs})
    if worked is not None:
        return finding("FTD703", f"At {setting}={user_lr:g} the loss on one batch barely moves ({summary}); at "
                       f"{worked['lr']:g} it falls to {worked['last_loss']:.3f} in {worked['steps']} steps.",
                       f"Raise it: `{setting}={worked['lr']:g}` learned one batch here (a pretrained checkpoint usually "
                       "wants 2e-5 to 5e-5; a small or randomly initialised model more).", location=where,
                       evidence={"runs": runs})
    tried = ", ".join(f"{r['lr']:g}" for r in runs)
    return finding("FTD701", f"No learning rate tried ({tried}) brought the loss on one batch down to half "
                   f"({summary} at {user_lr:g}).", "Check that the labels belong to their inputs, that the "
                   "parameters that matter are trainable and reach the loss (see backward), and that the loss is "
                   "the task's.", location=pipeline.location(trainer), evidence={"runs": runs})


def _user_lr(args, optimizer) -> float:
    if optimizer is not None and optimizer.param_groups:
        return float(max(g.get("lr", 0) for g in optimizer.param_groups))
    return float(getattr(args, "learning_rate", 5e-5))
