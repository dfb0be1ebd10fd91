"""The captured pipeline: one plain object with what the walk needs, and where each piece came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftdoctor.capture import Capture
from ftdoctor.core.registry import Unavailable
from ftdoctor.core.source import Site, assignment_line
from ftdoctor.facts import namespace

TASKS = (
    "sequence-classification",
    "token-classification",
    "masked-lm",
    "causal-lm",
    "translation",
    "summarization",
    "question-answering",
    "multiple-choice",
)


@dataclass
class Pipeline:
    model: Any = None
    tokenizer: Any = None
    args: Any = None
    trainer: Any = None
    train_dataset: Any = None
    eval_dataset: Any = None
    data_collator: Any = None
    compute_metrics: Any = None
    preprocess_logits_for_metrics: Any = None
    optimizer: Any = None
    lr_scheduler: Any = None
    capture: Capture | None = None
    task: str | None = None
    script: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_trainer(cls, trainer: Any, capture: Capture | None = None) -> Pipeline:
        eval_ds = trainer.eval_dataset
        if isinstance(eval_ds, dict):  # several eval sets: the first is checked
            eval_ds = next(iter(eval_ds.values()), None)
        from ftdoctor.capture.loop import unwrap

        tokenizer = trainer.processing_class if trainer.processing_class is not None else _script_tokenizer(capture)
        p = cls(
            model=unwrap(trainer.model),
            tokenizer=tokenizer,
            args=trainer.args,
            trainer=trainer,
            train_dataset=trainer.train_dataset,
            eval_dataset=eval_ds,
            data_collator=trainer.data_collator,
            compute_metrics=trainer.compute_metrics,
            preprocess_logits_for_metrics=trainer.preprocess_logits_for_metrics,
            optimizer=trainer.optimizer,
            lr_scheduler=trainer.lr_scheduler,
            capture=capture,
            script=capture.script if capture else None,
        )
        p.task = detect_task(p)
        return p

    @classmethod
    def from_loop(cls, capture: Capture) -> Pipeline:
        """A hand-written (or Accelerate) loop: the model it called, the loader it drew from, the optimizer it
        stepped (or built), and the scheduler and evaluation loader in its namespace."""
        from torch.optim.lr_scheduler import LRScheduler

        from ftdoctor.capture.loop import unwrap

        rec = capture.loop
        dl = rec.dataloader
        others = [v for v in namespace.values(capture.namespace) if _is_dataloader(v) and _base_loader(v) is not dl]
        sched = next(iter(namespace.of_type(capture.namespace, LRScheduler)), None)
        optimizer = rec.optimizer if rec.optimizer is not None else _script_optimizer(capture)
        p = cls.from_parts(
            unwrap(rec.model),
            dl,
            optimizer=optimizer,
            lr_scheduler=sched,
            tokenizer=_script_tokenizer(capture),
            eval_dataloader=others[0] if others else None,
            capture=capture,
            batch=rec.batch,
        )
        p.extra["loop"] = rec
        return p

    @classmethod
    def from_parts(
        cls,
        model: Any,
        dataloader: Any,
        *,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        tokenizer: Any = None,
        args: Any = None,
        eval_dataloader: Any = None,
        capture: Capture | None = None,
        batch: dict | None = None,
    ) -> Pipeline:
        """A pipeline from loose training objects: batch sizes and the learning rate come from the loaders and
        the optimizer when there are no TrainingArguments. Without a loader (a loop over one batch, a list, a
        generator, slices), the rows are those of the batch the loop ran."""
        from types import SimpleNamespace

        from ftdoctor.facts.datasets import rows_from_batch

        dl = _base_loader(dataloader)
        optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps it
        rows = rows_from_batch(batch) if dl is None and batch is not None else None
        if args is None:
            lr = max((g.get("lr", 0.0) for g in optimizer.param_groups), default=0.0) if optimizer else 0.0
            size = _batch_size(dl) if dl is not None else (len(rows) if rows else 8)
            eval_dl = eval_dataloader if eval_dataloader is not None else dl
            args = SimpleNamespace(
                per_device_train_batch_size=size,
                per_device_eval_batch_size=_batch_size(eval_dl) if eval_dl is not None else size,
                learning_rate=lr,
                max_grad_norm=0.0,
                remove_unused_columns=False,
            )
        source = _source_dataset(rows, capture) if rows else None
        p = cls(
            model=model,
            tokenizer=tokenizer,
            args=args,
            trainer=None,
            train_dataset=dl.dataset if dl is not None else (source if source is not None else rows),
            eval_dataset=_base_loader(eval_dataloader).dataset if eval_dataloader is not None else None,
            data_collator=dl.collate_fn if dl is not None else None,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            capture=capture,
            script=capture.script if capture else None,
        )
        p.extra["eval_dataloader"] = eval_dataloader
        p.extra["train_dataloader"] = dataloader
        if batch is not None:
            p.extra["batch"] = batch
        p.task = detect_task(p)
        return p

    # -- where things came from -------------------------------------------------------------------
    def site_of(self, obj: Any) -> Site | None:
        if obj is None:
            return None
        if self.capture is not None:
            site = self.capture.site_of(obj)
            if site is not None:
                return site
        code = getattr(obj, "__code__", None)
        if code is not None and self.capture is not None and self.capture.is_user_file(code.co_filename):
            return Site(code.co_filename, code.co_firstlineno)
        name = self.name_of(obj)
        if name and self.capture is not None:
            # A split (tokenized["train"]) was made where its DatasetDict was assigned.
            line = assignment_line(self.capture.script, name) or assignment_line(
                self.capture.script, name.split("[")[0]
            )
            if line:
                return Site(self.capture.script, line)
        return None

    def location(self, *objs: Any) -> str | None:
        """The first known location among ``objs`` (the trainer's call line as a last resort)."""
        for obj in objs:
            site = self.site_of(obj)
            if site is not None:
                return str(site)
        return None

    def name_of(self, obj: Any) -> str | None:
        if self.capture is None or obj is None:
            return None
        name = self.capture.name_of(obj)
        if name:
            return name
        # A split of a DatasetDict: name it the way the script would, tokenized["train"].
        return next((name for name, ds in namespace.datasets(self.capture.namespace) if ds is obj), None)


def _source_dataset(rows: list[dict], capture: Capture | None) -> Any:
    """The dataset of the script that a loop's batch was cut from: one whose rows hold the batch's first row
    (the same token ids). It tells the classes and the data behind a loop that builds batches by itself."""
    from ftdoctor.facts.datasets import safe_len

    if capture is None or not rows:
        return None
    key = next((k for k in ("input_ids", "pixel_values", "input_values") if k in rows[0]), None)
    if key is None:
        return None
    wanted = list(rows[0][key])
    for _, ds in namespace.datasets(capture.namespace):
        if key not in (ds.column_names or []) or not safe_len(ds):
            continue
        try:
            head = ds.select(range(min(len(ds), 256))).with_format(None)
            at = next((i for i, r in enumerate(head[key]) if list(r) == wanted), None)
            # Every other column both have must hold the batch's values too: a column the loop made itself
            # (labels it derived from its own keys) is not the dataset's, and the dataset is not the batch's source.
            if at is not None and all(
                _plain(head[at][col]) == _plain(value)
                for col, value in rows[0].items()
                if col != key and col in ds.column_names
            ):
                return ds
        except Exception:
            continue
    return None


def _plain(value: Any) -> Any:
    """A column's value as plain Python, without the -100 a collator pads labels of their own length with."""
    value = value.tolist() if hasattr(value, "tolist") else value
    if isinstance(value, list):
        value = list(value)
        while value and value[-1] == -100:
            value.pop()
    return value


def _script_optimizer(capture: Capture) -> Any:
    """The torch optimizer the script built (inside Accelerate's wrapper, if prepared)."""
    import torch

    for value in namespace.values(capture.namespace):
        value = namespace.attr(value, "optimizer", value)
        if namespace.is_a(value, torch.optim.Optimizer):
            return value
    return None


def _is_dataloader(obj: Any) -> bool:
    import torch

    return namespace.is_a(obj, torch.utils.data.DataLoader) or namespace.attr(obj, "base_dataloader") is not None


def _base_loader(dl: Any) -> Any:
    """Accelerate's prepared loaders wrap the DataLoader that is really iterated."""
    return getattr(dl, "base_dataloader", dl) if dl is not None else None


def _batch_size(dl: Any) -> int:
    dl = _base_loader(dl)
    size = getattr(dl, "batch_size", None) or getattr(getattr(dl, "batch_sampler", None), "batch_size", None)
    return int(size or 8)


def _script_tokenizer(capture: Capture | None) -> Any:
    """Without a processing_class, the tokenizer the script built last is the one its data was encoded with."""
    if capture is None:
        return None
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    toks = [o for o in capture._keep if isinstance(o, PreTrainedTokenizerBase)]
    return toks[-1] if toks else None


def detect_task(p: Pipeline) -> str | None:
    """The task, from the model class first, then the collator and the dataset columns."""
    model = p.model
    name = type(model).__name__ if model is not None else ""
    if name.endswith("ForSequenceClassification"):
        return "sequence-classification"
    if name.endswith("ForTokenClassification"):
        return "token-classification"
    if name.endswith("ForQuestionAnswering"):
        return "question-answering"
    if name.endswith("ForMultipleChoice"):
        return "multiple-choice"
    if name.endswith("ForMaskedLM"):
        return "masked-lm"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal-lm"
    cfg = getattr(model, "config", None)
    if name.endswith(("ForConditionalGeneration", "ForSeq2SeqLM")) or getattr(cfg, "is_encoder_decoder", False):
        cols = _source_columns(p)
        if cols & {"summary", "highlights", "abstract", "document", "article"}:
            return "summarization"
        task_params = getattr(cfg, "task_specific_params", None) or {}
        if cols & {"translation"} or any(k.startswith("translation") for k in task_params):
            return "translation"
        return "summarization" if "summarization" in task_params else "translation"
    return None


def _source_columns(p: Pipeline) -> set[str]:
    """Columns of the training data and of the script's datasets it was made from (same number of rows):
    tokenizing drops the text columns that tell summarization from translation."""
    ds = p.train_dataset
    cols = set(namespace.attr(ds, "column_names", None) or [])
    n = namespace.length(ds)
    if n is None or p.capture is None:
        return cols
    for _, split in namespace.datasets(p.capture.namespace):
        if namespace.length(split) == n:
            cols |= set(split.column_names or [])
    return cols


def context_values(pipeline: Pipeline | None, capture: Capture | None = None) -> dict[str, Any]:
    """What the walk offers checks by name; absent pieces carry the reason a check that needs them skips."""
    from ftdoctor.targets import target_for

    capture = capture or (pipeline.capture if pipeline else None)
    values: dict[str, Any] = {}
    if capture is not None:
        values["capture"] = capture
    if pipeline is None:
        reason = "the script stopped before training started (see setup)"
        for name in ("pipeline", "target", "model", "trainer", "args", "train_dataset"):
            values[name] = Unavailable(reason)
        return values
    values["pipeline"] = pipeline
    values["target"] = target_for(pipeline)
    values["task"] = pipeline.task
    for name in (
        "model",
        "tokenizer",
        "args",
        "trainer",
        "train_dataset",
        "eval_dataset",
        "data_collator",
        "compute_metrics",
        "preprocess_logits_for_metrics",
        "optimizer",
        "lr_scheduler",
    ):
        value = getattr(pipeline, name)
        values[name] = value if value is not None else Unavailable(f"the pipeline has no {name}")
    if "loop" in pipeline.extra:
        values["loop"] = pipeline.extra["loop"]
        values["trainer"] = Unavailable("a hand-written loop has no Trainer")
    else:
        values["loop"] = Unavailable("not a hand-written loop")
    return values
