"""overfit: a few dozen steps on one batch, on a copy of the model, with the user's optimizer settings.

A pipeline that cannot memorise one batch cannot learn a dataset. When it fails at the user's learning rate, a
short sweep (a decade at a time) tells a rate that is too high (it diverges where a lower one learns) or too low
(the loss does not move where a higher one learns) from a pipeline that cannot learn at all (no rate moves it).

Every trial starts from the same seed, with dropout off, so the verdict does not depend on the script's random
state. A classification loss counts as learned only below what predicting the batch's label frequencies scores
without looking at the inputs. "Too low" also depends on the model: a model that was never trained (every
normalisation layer still at its initial weight 1) learns slowly from scratch at fine-tuning rates, which is
not a bug; it is called too low only when even a long run could not move its weights (see `hopeless`).
"""

from __future__ import annotations

import itertools
import math
import time

from ftdoctor.checks._failures import short_of_memory
from ftdoctor.core import progress
from ftdoctor.facts import models as data
from ftdoctor.runtime.copies import work_copy
from ftdoctor.sdk import Provide, UserCodeError, check, finding, rule

STEPS = 30
TARGET_RATIO = 0.5  # learned: the loss falls to half its first value (or classification reaches accuracy 1.0)
SLOW_DROP = 0.10  # not learned, but the loss fell by this share: the rate learns, only slower than the budget
STALL_STEPS, STALL_DROP = 10, 0.01  # after this many steps a loss that moved less than 1% is stalled: stop early
STEADY_DROP = 1e-5  # a fall over a trial this small is still well above float32 rounding of the same loss
BLOWUP = 10.0  # a loss above this multiple of the first one has diverged: stop early
ZERO_LOSS = 1e-6  # a first loss at or below this is at the floor of a loss bounded by 0 (float rounding included)
MAX_LR = 1.0
MIN_LR = 1e-7
MAX_TRIALS = 6  # the user's rate and at most five others (see _sweep)
COLLAPSE_STEP = 0.5  # a first step moving the weights by this share of their size is too high, whatever follows
CONTROL_RATES = (1e-3, 1e-4)  # AdamW's control trials after plain SGD learned nothing (FTD707)


def clock() -> float:
    """The stage's clock: its time limit is measured with this (and faked by the tests of a slow machine)."""
    return time.perf_counter()


rule(
    "FTD701",
    "cannot-overfit",
    "overfit",
    "error",
    "The pipeline cannot learn even one batch",
    """
     Trained for dozens of steps on a single batch, a working pipeline drives the loss down and memorises the
     labels. When it cannot, at any learning rate, something between the data and the loss is broken: labels
     not matching the inputs, inputs that are all alike (truncated to nothing), a frozen or detached model, a
     loss that does not depend on the parameters. For classification, falling only to the loss of always
     predicting the batch's label frequencies does not count: that needs no input at all.
     """,
)
rule(
    "FTD702",
    "learning-rate-too-high",
    "overfit",
    "error",
    "The learning rate is too high: the loss diverges",
    """
     At the configured learning rate the loss on one batch goes up, becomes NaN or never settles, while a lower
     rate learns it. A full run would diverge the same way.
     """,
    broken='TrainingArguments("out", learning_rate=1.0)',
    fixed='TrainingArguments("out", learning_rate=2e-5)',
)
rule(
    "FTD703",
    "learning-rate-too-low",
    "overfit",
    "warning",
    "The learning rate is too low to learn one batch",
    """
     At the configured learning rate the loss on one batch barely moves in dozens of steps, while a higher rate
     learns it. For a model that was never trained this is reported only when even 100,000 steps could not move
     its weights by a tenth of their size (a model learning from scratch is slow at fine-tuning rates, which is
     not a bug).
     """,
    broken='TrainingArguments("out", learning_rate=1e-8)',
    fixed='TrainingArguments("out", learning_rate=2e-5)',
)
rule(
    "FTD704",
    "learning-rate-slow",
    "overfit",
    "info",
    "The learning rate learns one batch slowly",
    """
     At the configured learning rate the loss on one batch falls, but does not reach half its first value within
     the step budget, while a higher rate gets there. Not a bug: a note for runs that seem slow to converge.
     """,
)
rule(
    "FTD707",
    "sgd-slow-adaptive-learns",
    "overfit",
    "info",
    "Plain SGD does not learn one batch in the step budget; an adaptive optimizer does",
    """
     The user's optimizer takes plain gradient steps (SGD, with or without momentum), and no rate tried learned one
     batch within the step budget. An SGD step is the gradient times the rate, so how far a few dozen steps go
     depends on the gradients' scale, which differs widely between a transformer's layers; that is not a broken
     pipeline. To tell the two apart the stage trains the same model, batch and loss once more with AdamW, which
     scales each weight's step by its own gradients, over the same parameters: when that learns the batch, the
     data, labels, model and loss work and only the optimizer is slow here. When it does not, the verdict stays
     FTD701.
     """,
    broken="optimizer = torch.optim.SGD(model.parameters(), lr=3e-3)  # moves slowly on a model from scratch",
    fixed="optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)  # or SGD with a longer run",
)
rule(
    "FTD705",
    "overfit-undecided",
    "overfit",
    "info",
    "No verdict on learning one batch: the stage's time ran out",
    """
     The overfit stage trains on one batch for a fixed time. When that time runs out before a trial could show
     whether the batch is learned (on a slow or busy machine, or for a large model), the stage gives no verdict
     rather than one that depends on the machine's speed: a trial cut short says nothing about the pipeline.
     `ftdoctor check --budget full` runs the trials without a time limit.
     """,
)


def _accuracy(outputs, batch, task):
    logits = outputs.get("logits") if hasattr(outputs, "get") else None
    labels = batch.get("labels")
    if logits is None or labels is None or not data.is_classification(task) or logits.dim() < 2:
        return None
    pred = logits.argmax(-1)
    if pred.shape != labels.shape:
        return None
    labels = labels.to(pred.device)  # the batch stays on the CPU; a model on its GPU answers there
    mask = labels != -100
    return float((pred[mask] == labels[mask]).float().mean()) if mask.any() else None


def prior_loss(batch, task) -> float | None:
    """Cross-entropy of always predicting the batch's label frequencies: reachable without looking at the inputs.

    Only for classification, where labels are class ids scored against every class."""
    import torch

    labels = batch.get("labels") if hasattr(batch, "get") else None
    if not data.is_classification(task) or not torch.is_tensor(labels) or labels.is_floating_point():
        return None
    labels = labels[labels != -100]
    if labels.numel() == 0 or int(labels.min()) < 0:
        return None
    p = torch.bincount(labels.flatten()).float()
    p = p[p > 0] / labels.numel()
    return float(-(p * p.log()).sum())


class Trial:
    """One run on one batch at one learning rate, and what it says about that rate."""

    def __init__(self, lr, losses, acc, prior, step_size=None, cut=False):
        self.lr, self.losses, self.acc, self.prior, self.step_size = lr, losses, acc, prior, step_size
        self.cut = cut  # stopped by the stage's time, not by what the loss did
        self.plain = False  # the optimizer took plain gradient steps (SGD): see FTD707

    @property
    def first(self):
        return self.losses[0]

    @property
    def last(self):
        return self.losses[-1]

    @property
    def learned(self) -> bool:
        return _learned(self.losses, self.acc, self.prior)

    @property
    def diverged(self) -> bool:
        return not self.learned and _diverged(self.losses)

    @property
    def drop(self) -> float:
        return (self.first - min(self.losses)) / self.first if self.first > 0 else 0.0

    @property
    def outcome(self) -> str:
        if self.learned:
            return "learned"
        if self.diverged:
            return "diverged"
        return "slow" if self.drop >= SLOW_DROP else "stalled"

    def evidence(self) -> dict:
        return {
            "lr": self.lr,
            "first_loss": self.first,
            "last_loss": self.last,
            "steps": len(self.losses),
            "accuracy": self.acc,
            "outcome": self.outcome,
            "learned": self.learned,
            "relative_step": self.step_size,
        }


def _learned(losses, acc, prior=None) -> bool:
    if len(losses) < 2 or not math.isfinite(losses[-1]):
        return False
    if acc is not None and acc >= 1.0:
        return True
    if prior is not None and losses[-1] >= 0.95 * prior:
        return False  # no better than ignoring the inputs
    return losses[-1] <= TARGET_RATIO * losses[0]


def _falls_steadily(losses) -> bool:
    """The loss fell at (nearly) every step and by more than rounding: gradient descent at work, if slowly. Every
    trial runs without dropout on the same batch, so a loss that does not depend on the trained weights stays put."""
    if len(losses) < 3 or not all(math.isfinite(x) for x in losses) or losses[0] <= 0:
        return False
    falls = sum(b < a for a, b in itertools.pairwise(losses))
    return falls >= 0.8 * (len(losses) - 1) and (losses[0] - min(losses)) > STEADY_DROP * losses[0]


def at_floor(first: float) -> bool:
    """A first loss at (or, by rounding, just below) zero: the verdicts compare the loss with its first value, which
    needs a positive start."""
    return math.isfinite(first) and first <= ZERO_LOSS


def _diverged(losses) -> bool:
    if not all(math.isfinite(x) for x in losses):
        return True
    return max(losses) > BLOWUP * losses[0] or losses[-1] > losses[0] * 1.05


def trial(target, batch, lr, args, task, steps=STEPS, seed=0, deadline=None, on_step=None, twin=None, adaptive=False):
    """Train a fresh copy (of the model, or of its ``twin``) on ``batch`` at ``lr``, stopping early once it
    learned, blew up or stalled (or the stage's time is up). ``adaptive``: AdamW over the parameters the run's
    optimizer holds, instead of that optimizer (the control of FTD707)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        work = target.work_model() if twin is None else work_copy(twin.model)
        work.eval()  # dropout off: one batch is memorised, not regularised
        opt, _ = target.build_optimizer(work)
        if adaptive:
            held = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
            opt = torch.optim.AdamW(held, lr=lr, weight_decay=0.0)
        else:
            set_rate(opt, lr)
        clip = getattr(args, "max_grad_norm", 0) or 0
        params = [p for p in work.parameters() if p.requires_grad]
        prior = prior_loss(batch, task)
        losses, acc, step_size, cut = [], None, None, False
        for step in range(steps):
            if on_step is not None:
                on_step(step, steps)
            loss, outputs = target.loss(work, batch)
            losses.append(float(loss.detach()))
            if at_floor(losses[0]):
                break  # nothing to fall from: see at_floor
            acc = _accuracy(outputs, batch, task)
            if _learned(losses, acc, prior) or (
                _diverged(losses) and (not math.isfinite(losses[-1]) or losses[-1] > BLOWUP * losses[0])
            ):
                break
            if step == STALL_STEPS and (losses[0] - min(losses)) < STALL_DROP * abs(losses[0]):
                break
            if deadline is not None and clock() > deadline and step >= 2:
                cut = True
                break
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            before = [p.detach().clone() for p in params[:64]] if step == 0 else None
            opt.step()
            opt.zero_grad(set_to_none=True)
            if before is not None:
                step_size = relative_step(before, params[:64])
    result = Trial(lr, losses, acc, prior, step_size, cut)
    result.plain = not adaptive and isinstance(getattr(opt, "optimizer", opt), torch.optim.SGD)
    return result


def initial_rates(opt) -> list[float]:
    """Each group's configured rate: a scheduler's warmup may have set the current one to 0 before any step."""
    return [float(g.get("initial_lr", g.get("lr", 0.0)) or 0.0) for g in opt.param_groups]


def set_rate(opt, lr: float) -> None:
    """Scale the groups to ``lr`` for the largest one, keeping the user's ratios between groups."""
    rates = initial_rates(opt)
    base = max(rates, default=0.0)
    for g, r in zip(opt.param_groups, rates):
        g["lr"] = lr * (r / base) if base else lr


def relative_step(before, params) -> float | None:
    """How far one optimizer step moved the weights, relative to their size (mean |delta| / mean |w|)."""
    moved = sum(float((p.detach() - b).abs().mean()) for b, p in zip(before, params))
    size = sum(float(b.abs().mean()) for b in before)
    return moved / size if size > 0 else None


# A run of at most this many optimizer steps can move each weight by at most (per-step move) x steps. Below a
# tenth of the weights' own size, the run cannot change the model in any way that matters.
LONG_RUN_STEPS = 100_000


def hopeless(step_size: float | None) -> bool:
    return step_size is not None and step_size * LONG_RUN_STEPS < 0.1


def _trainable_share(model) -> float | None:
    """The share of the model's weights (counted once each) that require grad; None for a model without any."""
    try:
        params = {id(p): p for p in model.parameters()}.values()
        total = sum(p.numel() for p in params)
        return sum(p.numel() for p in params if p.requires_grad) / total if total else None
    except Exception:
        return None


def never_trained(model) -> bool:
    """Every normalisation layer still has the weights it is initialised with (all 1, or all 0 for a layer that
    scales by 1 + weight, and a bias of 0): nothing has ever trained this model (a model built from a config, or
    saved right after that)."""
    import torch

    norms = [
        m
        for m in model.modules()
        if "norm" in type(m).__name__.lower()
        and isinstance(getattr(m, "weight", None), torch.Tensor)
        and m.weight.dim() == 1
    ]
    if not norms:
        return False
    for m in norms:
        # Initialised to a constant: 1, or 0 where the layer scales by (1 + weight) (Gemma's RMSNorm). Training
        # makes them differ.
        w = m.weight.detach().flatten()
        if w.numel() and (not bool((w == w[0]).all()) or float(w[0]) not in (0.0, 1.0)):
            return False
        bias = getattr(m, "bias", None)
        if isinstance(bias, torch.Tensor) and not bool((bias.detach() == 0).all()):
            return False
    return True


def _adapter_note(model) -> str:
    """For a PEFT model: the range adapters are usually trained at, beside the rate measured on this model."""
    config = data.peft_adapters(model)
    if config is None:
        return ""
    kind = str(getattr(next(iter(config.values())), "peft_type", "") or "").split(".")[-1] or "adapter"
    return (
        f" ({kind} adapters on full-size checkpoints usually train at 1e-4 to 3e-4; the rate above is the one "
        "that worked on this model and batch.)"
    )


def _collapsed(run: Trial) -> bool:
    """A stalled loss after a first step that moved the weights by half their size or more: the rate threw the
    model somewhere flat (saturated, dead units), it did not barely move it."""
    return run.outcome == "stalled" and run.step_size is not None and run.step_size >= COLLAPSE_STEP


def _sweep(user: Trial) -> list[float]:
    """Rates to try after the user's failed, nearest first: down when it diverged, up when it stalled, both when
    it fell slowly (too low, or too high to settle)."""
    u = user.lr
    if user.outcome == "diverged" or _collapsed(user):
        return [r for r in (u / 10**k for k in range(1, 6)) if r >= MIN_LR]
    if user.outcome == "stalled":
        start = max(u * 10, 1e-4)  # below 1e-4 nothing learns in a few dozen steps: skip the hopeless rungs
        return [r for r in (start * 10**k for k in range(4)) if r <= MAX_LR]
    return [r for r in (u * 10, u / 10, u / 100) if MIN_LR <= r <= MAX_LR]


rule(
    "FTD706",
    "overfit-random-frozen-base",
    "overfit",
    "info",
    "No verdict on learning one batch: most weights frozen, and the model never trained",
    """
     Adapters, prompt tuning and other parameter-efficient methods train a small share of the weights on top of
     a frozen model whose features do the work. When that frozen model has never been trained (built from a
     config, or a random-init stand-in of a checkpoint), its features are random: a few trainable weights over them
     may be unable to fit even one batch, whatever the pipeline. Not learning then says nothing about the pipeline,
     so the stage gives no verdict. With the pretrained checkpoint the same pipeline is judged as usual.
     """,
)

FROZEN_SHARE = 0.5  # most weights frozen: what computes the features is the frozen (here random) model


@check("overfit", codes=("FTD701", "FTD702", "FTD703", "FTD704", "FTD705", "FTD706", "FTD707", "FTD806"))
def overfit_one_batch(
    model,
    batch,
    step_evidence,
    pipeline,
    findings_so_far,
    target,
    trainer=None,
    optimizer=None,
    args=None,
    task=None,
    overfit_seed=0,
    budget=None,
    train_features=None,
):
    # A step that already fails (no gradient, NaN, nothing moves) makes every trial fail: reported once, there.
    roots = [f.code for f in findings_so_far if f.severity == "error" and f.code[:4] in ("FTD4", "FTD5")]
    if roots:
        return Provide({}, skip_reason=f"training cannot work as forward/backward showed ({', '.join(roots)})")
    seconds = getattr(budget, "overfit_seconds", None)
    copies = target.copies()
    short = short_of_memory(
        model,
        3 + copies,
        "A training trial (its gradients and two optimizer moments" + (", on a copy)" if copies else ")"),
        target.work_device,
    )
    # What a step costs, for cutting the trials to the stage's time: the nominal cost of the device's kind, never the
    # step time the backward stage measured here (a busy machine measures slow steps, and would cut the batch, or
    # call in the twin, where an idle one does not: the verdict would follow the machine's load).
    cost = _nominal_cost(budget, batch)
    twin = _twin(model, target, batch, cost, seconds, short is not None)
    if twin is not None:
        short = short_of_memory(twin.model, 4, f"A training trial on {twin.describe()}", target.work_device)
    if short is not None:
        return Provide({}, [short], skip_reason="not enough memory for a training trial (FTD806)")
    fresh = never_trained(model)  # read before any trial: a model worked on in place is trained by them
    user_lr = _user_lr(args, optimizer)
    deadline = clock() + seconds if seconds else None
    if twin is not None and cost.get("step_seconds"):
        # A step of the twin costs about its share of the model's parameters.
        cost = {"step_seconds": cost["step_seconds"] * twin.params / twin.of_params}
    batch, reduced = _affordable_batch(batch, train_features, target, cost, seconds, budget)
    runs: list[Trial] = []

    def shown(lr, trials):
        """Progress of trial number len(runs) + 1 of up to ``trials`` at ``lr``: its step, and the time left."""

        def on_step(step, steps):
            k = len(runs)
            left = deadline - clock() if deadline is not None else None
            progress.step(
                k * steps + step,
                trials * steps,
                f"trial {k + 1} of up to {trials} at lr={lr:g}, step {step + 1}/{steps}",
                left,
            )

        return on_step

    def run_at(lr, trials, adaptive=False):
        """One trial at ``lr`` on this batch (of up to ``trials``), as every trial of the stage runs."""
        return trial(
            target,
            batch,
            lr,
            args,
            task,
            seed=overfit_seed,
            deadline=deadline,
            on_step=shown(lr, trials),
            twin=twin,
            adaptive=adaptive,
        )

    try:
        user = run_at(user_lr, 1)
        runs.append(user)
        untried = 0
        if not user.learned and not at_floor(user.first):
            rates = _sweep(user)
            for k, lr in enumerate(rates):
                if deadline is not None and clock() > deadline:
                    untried = len(rates) - k
                    break
                runs.append(run_at(lr, 1 + len(rates)))
                if runs[-1].learned:
                    break
    except UserCodeError as err:
        return finding(
            "FTD701",
            f"Training on one batch raised {type(err.exc).__name__}: {err.exc}",
            "Fix the error; it would stop the real run too.",
            location=pipeline.location(trainer),
        )
    evidence = {"runs": [r.evidence() for r in runs], "prior_loss": user.prior, "never_trained": fresh}
    if reduced:
        evidence["batch_rows"] = reduced
    if twin is not None:
        evidence["twin"] = twin.evidence()
    if at_floor(user.first):
        return Provide(
            evidence=evidence,
            skip_reason=f"the loss on this batch starts at {user.first:.3g}, already at its floor: there is nothing "
            "to learn from it (a distillation loss to a teacher the model already matches, or a loss that may go "
            "negative), so falling from it says nothing",
        )
    if user.learned:
        return Provide(evidence=evidence)
    if user.cut:
        # The user's own rate was cut short by the stage's time: whether it learns is not known, whatever the
        # other rates did.
        return _undecided(evidence, user, untried, seconds, step_evidence, pipeline.location(args, optimizer, trainer))
    worked = next((r for r in runs[1:] if r.learned), None)
    where = pipeline.location(args) if optimizer is None else pipeline.location(optimizer)
    where = where or pipeline.location(optimizer, args, trainer)
    setting = "learning_rate" if optimizer is None else "lr"
    summary = f"loss {user.first:.3f} -> {user.last:.3f} in {len(user.losses)} steps"
    if worked is not None and worked.lr < user_lr:
        how = "diverges" if user.outcome == "diverged" else "does not settle"
        if _collapsed(user):
            how = (
                f"goes flat after one step that moves the weights by {user.step_size:.1f} times their size (the model "
                "collapses)"
            )
        return _with(
            evidence,
            finding(
                "FTD702",
                f"At {setting}={user_lr:g} the loss on one batch {how} ({summary}); at {worked.lr:g} it falls "
                f"to {worked.last:.3f} in {len(worked.losses)} steps.",
                f"Lower it: `{setting}={worked.lr:g}` learned one batch here." + _adapter_note(model),
                location=where,
                evidence=evidence,
            ),
        )
    if worked is not None:
        learned = f"at {worked.lr:g} it falls to {worked.last:.3f} in {len(worked.losses)} steps"
        if user.outcome == "stalled" and (not fresh or hopeless(user.step_size)):
            return _with(
                evidence,
                finding(
                    "FTD703",
                    f"At {setting}={user_lr:g} the loss on one batch barely moves ({summary}); {learned}."
                    + _step_note(user),
                    f"Raise it: `{setting}={worked.lr:g}` learned one batch here." + _adapter_note(model),
                    location=where,
                    evidence=evidence,
                ),
            )
        why = (
            (
                " The model has never been trained (its normalisation layers are at their initial weights): a model "
                "learning from scratch moves slowly at fine-tuning rates."
            )
            if fresh
            else ""
        )
        verb = "barely moves" if user.outcome == "stalled" else "falls slowly"
        return _with(
            evidence,
            finding(
                "FTD704",
                f"At {setting}={user_lr:g} the loss on one batch {verb} ({summary}); {learned}.{why}",
                f"Not a bug. For faster progress try `{setting}={worked.lr:g}`.",
                location=where,
                evidence=evidence,
            ),
        )
    # A model that was never trained learns slowly from scratch: a loss falling step after step at some rate is
    # learning, however little; a pipeline that cannot learn leaves it flat (or only reaches the label prior).
    progressing = [
        r
        for r in runs
        if (r.outcome == "slow" or (fresh and _falls_steadily(r.losses)))
        and (r.prior is None or r.last < 0.95 * r.prior)
    ]
    if progressing:
        best = max(progressing, key=lambda r: r.drop)
        fell = f"{best.drop:.0%}" if best.drop >= 0.01 else f"{best.drop:.1%}"
        never = (
            " The model has never been trained (its normalisation layers are at their initial weights): it learns "
            "slowly from scratch."
            if fresh
            else ""
        )
        return _with(
            evidence,
            finding(
                "FTD704",
                f"No rate tried learned one batch within {STEPS} steps, but the loss does fall (by {fell} at "
                f"{best.lr:g}): the pipeline learns, slowly.{never}",
                "Not a bug; a longer run will tell.",
                location=where,
                evidence=evidence,
            ),
        )
    if untried or any(r.cut for r in runs):
        # The stage's time ran out before every rate was tried to the end: "no rate learns" is not known.
        return _undecided(evidence, user, untried, seconds, step_evidence, where)
    share = _trainable_share(model)
    # The loss moved (it is not cut off from the trained weights: that stays FTD701) but stopped short of learning.
    if fresh and share is not None and share <= FROZEN_SHARE and max((_moved(r) for r in runs), default=0.0) >= 0.01:
        return _with(
            evidence,
            finding(
                "FTD706",
                f"No rate tried learned one batch, but only {share:.2%} of the weights train, over a frozen model "
                "that has never been trained (its normalisation layers are at their initial weights): its features "
                "are random, so not learning says nothing about the pipeline.",
                "Not a verdict. Check with the pretrained checkpoint the run will use.",
                location=where,
                evidence={**evidence, "trainable_share": share},
            ),
        )
    if all(r.plain for r in runs):
        # Plain gradient steps go as far as the gradients' scale allows: AdamW over the same parameters tells a
        # slow optimizer from a pipeline that cannot learn (FTD707).
        control = None
        for lr in CONTROL_RATES:
            if deadline is not None and clock() > deadline:
                break
            control = run_at(lr, len(runs) + 1, adaptive=True)
            evidence.setdefault("adaptive_control", []).append(control.evidence())
            if _learns(control) or control.cut:
                break
        if control is None or control.cut:
            return _undecided(evidence, user, 0, seconds, step_evidence, where)
        if _learns(control):
            kind = type(getattr(optimizer, "optimizer", optimizer)).__name__ if optimizer is not None else "SGD"
            return _with(
                evidence,
                finding(
                    "FTD707",
                    f"No rate tried with {kind} ({', '.join(f'{r.lr:g}' for r in runs)}) learned one batch in "
                    f"{STEPS} steps ({summary} at {user_lr:g}), but with AdamW at {control.lr:g} on the same "
                    f"model, batch, loss and parameters the loss falls ({control.first:.3f} -> {control.last:.3f} "
                    f"in {len(control.losses)} steps{_below_prior(control)}): the pipeline learns; plain gradient "
                    "steps are slow here.",
                    "Not a bug in the data or the model. Expect slow progress with SGD at this rate, or use "
                    "`torch.optim.AdamW`.",
                    location=where,
                    evidence=evidence,
                ),
            )
    tried = ", ".join(f"{r.lr:g}" for r in runs)
    floor = (
        (f"; {user.prior:.3f} is what predicting the batch's label frequencies scores without looking at the inputs")
        if user.prior is not None
        else ""
    )
    return _with(
        evidence,
        finding(
            "FTD701",
            f"No learning rate tried ({tried}) learned one batch ({summary} at {user_lr:g}{floor}).",
            "Check that the inputs differ between examples (truncation, padding) and that the labels belong to their "
            "inputs; that the parameters that matter are trainable and reach the loss (see backward); and that the "
            "loss is the task's.",
            location=pipeline.location(trainer),
            evidence=evidence,
        ),
    )


def _learns(run) -> bool:
    """The run learned the batch, or its loss fell by SLOW_DROP to below what the label prior scores: it reads the
    inputs, if slowly."""
    if run.learned:
        return True
    return run.outcome == "slow" and (run.prior is None or run.last < 0.95 * run.prior)


def _below_prior(run) -> str:
    return "" if run.prior is None or run.learned else f", below the label prior's {run.prior:.3f}"


def _moved(run) -> float:
    """How far the loss strayed from its first value, either way, as a share of it: a loss the trained weights
    reach moves (down, or up at a rate too high); one cut off from them stays put at every rate."""
    if not run.losses or not run.first:
        return 0.0
    finite = [x for x in run.losses if math.isfinite(x)]
    if len(finite) < len(run.losses):
        return 1.0
    return max(abs(x - run.first) for x in finite) / abs(run.first)


def _undecided(evidence, user, untried, seconds, step_evidence, where):
    """FTD705: the stage's time ran out before the trials could judge; what ran out, and what was seen."""
    cut = "the trial at the configured rate was cut short" if user.cut else "the trials were cut short"
    left = f" and {untried} other rate{'s' if untried > 1 else ''} went untried" if untried else ""
    step = (step_evidence or {}).get("step_seconds")
    pace = f"; one step of this batch takes {step:.2f} s here" if step else ""
    return _with(
        evidence,
        finding(
            "FTD705",
            f"The overfit stage's {seconds or 0:.0f} s ran out: {cut} after {len(user.losses)} steps (loss "
            f"{user.first:.3f} -> {user.last:.3f}){left}{pace}. A trial cut short tells nothing about the pipeline.",
            "For a verdict, run the stage without its time limit: `ftdoctor check --budget full`.",
            location=where,
            evidence={**evidence, "untried_rates": untried, "cut": True},
        ),
    )


def _nominal_cost(budget, batch) -> dict:
    """``{"step_seconds": s}``: one training step over ``batch`` at the budget's nominal speed ({} when unknown)."""
    import torch

    step_seconds = getattr(budget, "step_seconds", None)
    if not callable(step_seconds) or not hasattr(batch, "items"):
        return {}
    ids = batch.get("input_ids")
    if not torch.is_tensor(ids):
        ids = max(
            (v for v in batch.values() if torch.is_tensor(v) and v.dim() >= 2 and not v.is_floating_point()),
            key=lambda v: v.numel(),
            default=None,
        )
    seconds = step_seconds(int(ids.numel())) if ids is not None else None
    return {"step_seconds": seconds} if seconds else {}


def _affordable_batch(batch, features, target, step_evidence, seconds, budget=None):
    """The batch, or fewer of its rows, so that a few trials of STEPS steps fit the stage's time, at the cost of
    a step ``step_evidence`` gives (the budget's nominal one: see _nominal_cost)."""
    step = (step_evidence or {}).get("step_seconds")
    if not seconds or not step or step * STEPS * 2 <= seconds or not hasattr(batch, "items"):
        return batch, None
    import torch

    rows = next((v.shape[0] for v in batch.values() if torch.is_tensor(v) and v.dim() >= 1), None)
    if not rows or rows <= 1:
        return batch, None
    keep = max(1, min(rows - 1, int(rows * seconds / (step * STEPS * 2))))
    note = f"{keep} of {rows} rows (time)"
    fixed = target.fixed_batch()
    if features and fixed is None:
        from ftdoctor.facts.datasets import cut_row

        # Rows with something to predict first: a row whose labels are all -100 (a blank line of a corpus) has no
        # loss, and a batch of such rows a NaN one, which says nothing about the pipeline.
        ordered = sorted(features, key=lambda r: not _row_has_targets(r))
        try:
            rows_kept = [cut_row(r, getattr(budget, "max_tokens", None)) for r in ordered[:keep]]
            cut = target.collate(rows_kept)
            if _target_rows(cut) != []:
                return cut, note
        except UserCodeError:
            pass
    order = _target_rows(batch)
    order = list(range(rows)) if not order else order + [i for i in range(rows) if i not in order]
    index = torch.tensor(order[:keep])
    sliced = {
        k: (v.index_select(0, index.to(v.device)) if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == rows else v)
        for k, v in batch.items()
    }
    return sliced, note


def _row_has_targets(row) -> bool:
    labels = row.get("labels") if isinstance(row, dict) else None
    if labels is None or isinstance(labels, (int, float, str)):
        return True
    labels = labels.tolist() if hasattr(labels, "tolist") else labels
    return not isinstance(labels, list) or any(t != -100 for t in labels)


def _target_rows(batch) -> list[int] | None:
    """The rows of ``batch`` with at least one label that is not -100; None when its labels are not per token."""
    import torch

    labels = batch.get("labels") if hasattr(batch, "get") else None
    if not torch.is_tensor(labels) or labels.dim() < 2:
        return None
    return [i for i, has in enumerate((labels != -100).flatten(1).any(1).tolist()) if has]


def _step_note(user) -> str:
    if user.step_size is None:
        return ""
    return (
        f" One step moves the weights by {user.step_size:.1e} of their size; {LONG_RUN_STEPS:,} such steps "
        f"would move them by {user.step_size * LONG_RUN_STEPS:.1e}."
    )


def _with(evidence, f):
    twin = evidence.get("twin")
    if twin:
        # A verdict measured on the twin says so.
        f.detail += (
            f" (Measured on a {twin['layers']}-layer twin of the model: same class, head, vocabulary, "
            f"data and optimizer settings, its first {twin['layers']} of {twin['of_layers']} layers; "
            "`ftdoctor check --budget full` trains the model itself.)"
        )
    return Provide(findings=[f], evidence=evidence)


def sweep_too_long(step: float | None, seconds: float | None) -> bool:
    """Whether the whole sweep, every trial running all its steps at the ``step`` cost, would take longer
    than the stage's ``seconds``."""
    return bool(step and seconds and step * STEPS * MAX_TRIALS > seconds)


def _twin(model, target, batch, step_evidence, seconds, short: bool):
    """A shrunk twin (see ftdoctor.runtime.twin) when trials of the model itself cannot fit the stage: the whole sweep
    (every trial running all its steps) at its nominal step cost would take longer than the stage's time, or its trial
    does not fit in memory. Never in the full budget (no time limit), never for a model no twin can stand in for."""
    if not seconds:
        return None
    if not short and not sweep_too_long((step_evidence or {}).get("step_seconds"), seconds):
        return None
    import torch

    from ftdoctor.runtime import twin

    made = twin.build(model)
    if made is None:
        return None
    try:  # the twin must run the batch the way the model does, else the model itself is trained
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            target.loss(made.model, batch)
    except UserCodeError:
        return None
    twin.remember(model, made)
    return made


def _user_lr(args, optimizer) -> float:
    """The rate the run is configured with (a warmup scheduler may have set the optimizer's current one to 0)."""
    if optimizer is not None and optimizer.param_groups:
        return max(initial_rates(optimizer), default=0.0)
    return float(getattr(args, "learning_rate", 5e-5))
