"""The Hugging Face `Trainer` (and every subclass: `Seq2SeqTrainer`, TRL's trainers, the user's own).

The only module that knows the Trainer's internals: which columns it keeps, how it builds its optimizer, how its
evaluation step runs. Everything is called on the live trainer and restored afterwards.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

from ftdoctor.core.registry import UserCodeError, run_user
from ftdoctor.targets.base import Target, take_rows, to_numpy

_RESTORED_ATTRS = ("optimizer", "lr_scheduler", "_signature_columns", "model")


class TrainerTarget(Target):
    kind = "trainer"

    @property
    def trainer(self) -> Any:
        return self.pipeline.trainer

    @property
    def collator(self) -> Any:
        return self.trainer.data_collator

    @property
    def label_names(self) -> list[str]:
        return list(getattr(self.trainer, "label_names", None) or [])

    @property
    def has_custom_loss(self) -> bool:
        from transformers import Trainer

        return (
            type(self.trainer).compute_loss is not Trainer.compute_loss
            or getattr(self.trainer, "compute_loss_func", None) is not None
        )

    def rows(self, dataset: Any, description: str, n: int) -> tuple[list[Any], list[str]]:
        """The rows with only the columns the trainer keeps (`remove_unused_columns`)."""
        from ftdoctor.facts import datasets as data

        trainer = self.trainer
        keep_only = bool(getattr(trainer.args, "remove_unused_columns", False))
        if data.is_hf_dataset(dataset) and data.safe_len(dataset) is not None:
            what = f"reading the {description} dataset"
            sub = run_user(what, dataset.select, range(min(n, len(dataset))))
            # Reading a row runs the dataset's transform (`with_transform`, `set_transform`): the user's code.
            if not keep_only:
                return run_user(what, _all_rows, sub), []
            # The Trainer's own removal raises on data it finds nothing to keep in: the pipeline's error, not ftdoctor's.
            kept = run_user(
                f"removing the unused columns of the {description} dataset",
                trainer._remove_unused_columns,
                sub,
                description,
            )
            removed = [c for c in sub.column_names if c not in kept.column_names]
            return run_user(what, _all_rows, kept), removed
        rows = run_user(f"reading the {description} dataset", take_rows, dataset, n)
        if keep_only and rows and isinstance(rows[0], dict):
            trainer._set_signature_columns_if_needed()
            keep = set(trainer._signature_columns)
            removed = [k for k in rows[0] if k not in keep]
            return [{k: v for k, v in r.items() if k in keep} for r in rows], removed
        return rows, []

    def own_input_step(self, columns: list[str]) -> str | None:
        """A subclass's `_prepare_inputs` that never calls the Trainer's, or a `training_step` that neither calls the
        Trainer's nor its `compute_loss` and reads one of ``columns`` by name (TRL's GRPO, RLOO, online DPO and
        distillation trainers generate from the prompts there)."""
        from transformers import Trainer

        cls = type(self.trainer)
        for name in ("_prepare_inputs", "training_step"):
            method = getattr(cls, name, None)
            code = getattr(inspect.unwrap(method), "__code__", None) if method is not None else None
            if code is None or method is getattr(Trainer, name):
                continue
            names = set(code.co_names)
            # `super().NAME(...)` names both `super` and NAME: the override only wraps the Trainer's step.
            if {"super", name} <= names:
                continue
            if name == "training_step" and ("compute_loss" in names or not set(columns) & set(code.co_consts)):
                # A step of its own that still computes the loss on the batch, or never reads the rows' columns,
                # passes the rows on to the model as they are.
                continue
            owner = next((k for k in cls.__mro__ if name in vars(k)), cls)
            return f"{owner.__name__}.{name}"
        return None

    def dropped_columns(self, dataset: Any) -> list[str]:
        """The columns `remove_unused_columns` removes: those the model's forward and the label names do not name."""
        from ftdoctor.facts import datasets as data

        trainer = self.trainer
        if not getattr(trainer.args, "remove_unused_columns", False) or dataset is None:
            return []
        columns = data.columns_of(dataset) if data.is_hf_dataset(dataset) else []
        if not columns:
            return []
        trainer._set_signature_columns_if_needed()
        keep = set(trainer._signature_columns or ())
        return [c for c in columns if c not in keep]

    def run_loss(self, model: Any, batch: Any) -> tuple[Any, Any]:
        """The trainer's own compute_loss (a subclass's override or compute_loss_func included)."""
        from ftdoctor.facts.models import loss_and_outputs

        out = run_user("the model's forward", self.trainer.compute_loss, model, dict(batch), return_outputs=True)
        if isinstance(out, tuple) and len(out) == 2 and not (hasattr(out[1], "dim") and out[1].dim() == 0):
            loss, outputs = out
            return loss, loss_and_outputs(outputs, labelled=False)[1] if outputs is not None else None
        # An override that ignores return_outputs returns the loss alone (the Trainer only needs it in training).
        return loss_and_outputs(out)

    def loss_code(self) -> list[Any]:
        return [type(self.trainer).compute_loss, getattr(self.trainer, "compute_loss_func", None)]

    def build_optimizer(self, work: Any) -> tuple[Any, set[str]]:
        if self.pipeline.optimizer is not None:
            return super().build_optimizer(work)
        trainer = self.trainer
        saved = trainer.optimizer
        try:
            trainer.optimizer = None
            opt = trainer.create_optimizer(work)
        finally:
            trainer.optimizer = saved
        work_names = {id(p): n for n, p in work.named_parameters()}
        held = {work_names[id(p)] for g in opt.param_groups for p in g["params"] if id(p) in work_names}
        return opt, held

    def run_predict(self, model: Any, batch: Any, preprocess: Any = None) -> tuple[Any, Any]:
        """One step of the trainer's evaluation loop (its prediction_step, then preprocess_logits_for_metrics)."""
        return run_user("prediction", self._predict, model, batch, preprocess)

    def _predict(self, model, batch, preprocess):
        import torch

        trainer = self.trainer
        model.eval()
        with torch.no_grad(), self._predicting_with(model):
            _, logits, labels = trainer.prediction_step(model, dict(batch), prediction_loss_only=False)
            if preprocess is not None and logits is not None:
                logits = preprocess(logits, labels)
        return to_numpy(logits), to_numpy(labels)

    @contextlib.contextmanager
    def _predicting_with(self, model):
        """prediction_step moves inputs to args.device and Seq2SeqTrainer generates with ``trainer.model``; both
        would reach the user's (maybe GPU) model: point them at the walk's copy for the step."""
        trainer = self.trainer
        saved = trainer.model
        trainer.model = model
        trainer._prepare_inputs = lambda inputs: inputs  # the batch is already on the copy's device
        try:
            yield
        finally:
            trainer.model = saved
            del trainer._prepare_inputs

    def metrics_path_note(self) -> str | None:
        from transformers import Trainer

        own = [m for m in ("evaluate", "evaluation_loop") if getattr(type(self.trainer), m) is not getattr(Trainer, m)]
        if own:
            return (
                f"`{type(self.trainer).__name__}` has its own {' and '.join(own)}, which may post-process "
                "predictions before compute_metrics"
            )
        return None

    def eval_prediction(self, model: Any, dataset: Any, n: int, batch_size: int | None = None) -> Any:
        """What compute_metrics receives from the trainer's own evaluation (its evaluate(), any post-processing
        of a subclass included), run on the first ``n`` eval rows with the walk's copy of the model. None when
        the trainer never calls compute_metrics or the copy cannot run where the trainer sends its batches."""
        trainer = self.trainer
        args = trainer.args
        if trainer.compute_metrics is None or getattr(args, "prediction_loss_only", False):
            return None
        if str(getattr(args, "device", "cpu")) != str(next(model.parameters()).device):
            return None  # its eval loader would put batches where the copy is not
        if self.world_size > 1:
            return None  # its evaluation gathers across ranks, and only this rank walks
        subset = _first_rows(dataset, n)
        if subset is None:
            return None
        seen: dict[str, Any] = {}

        def spy(eval_pred, *a, **k):
            seen["prediction"] = eval_pred
            raise _Seen()

        accelerator = getattr(trainer, "accelerator", None)
        models_before = len(getattr(accelerator, "_models", []) or [])
        saved = {
            "compute_metrics": trainer.compute_metrics,
            "model": trainer.model,
            "callbacks": list(trainer.callback_handler.callbacks),
            "eval_batch": getattr(args, "per_device_eval_batch_size", None),
        }
        trainer.compute_metrics = spy
        trainer.model = model
        trainer.callback_handler.callbacks = []
        if batch_size and saved["eval_batch"]:
            args.per_device_eval_batch_size = batch_size  # the budget's batch, still two of them
        try:
            run_user("the trainer's evaluation loop", trainer.evaluate, eval_dataset=subset)
        except UserCodeError as err:
            if not isinstance(err.exc, _Seen):
                raise
        finally:
            trainer.compute_metrics = saved["compute_metrics"]
            trainer.model = saved["model"]
            trainer.callback_handler.callbacks = saved["callbacks"]
            if batch_size and saved["eval_batch"]:
                args.per_device_eval_batch_size = saved["eval_batch"]
            if accelerator is not None and hasattr(accelerator, "_models"):
                del accelerator._models[models_before:]
        return seen.get("prediction")

    def distributed_wrapper(self) -> str:
        return wrapper_from_args(self.trainer.args)

    def ddp_kwargs(self) -> dict:
        """What the Trainer's accelerator will pass to DistributedDataParallel."""
        handler = getattr(getattr(self.trainer, "accelerator", None), "ddp_handler", None)
        return handler.to_kwargs() if handler is not None else {}

    def checkpointing_kwargs(self) -> dict | None:
        args = self.trainer.args
        on = getattr(args, "gradient_checkpointing", False) or getattr(args, "activation_checkpointing", False)
        if not on:
            return None
        return dict(getattr(args, "gradient_checkpointing_kwargs", None) or {})

    def train_loader(self) -> Any:
        return self.trainer.get_train_dataloader()

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        trainer = self.trainer
        saved = {a: getattr(trainer, a) for a in _RESTORED_ATTRS if hasattr(trainer, a)}
        try:
            yield
        finally:
            for a, v in saved.items():
                setattr(trainer, a, v)


class _Seen(Exception):
    """Raised by the stand-in compute_metrics once it has what the real one would receive."""


def wrapper_from_args(args: Any) -> str:
    """How TrainingArguments (or a look-alike) wrap the model for several ranks: fsdp, deepspeed, ddp or none."""
    if getattr(args, "fsdp", None):
        return "fsdp"
    if getattr(args, "deepspeed", None):
        return "deepspeed"
    return "ddp" if int(getattr(args, "world_size", 1) or 1) > 1 else "none"


def _first_rows(dataset: Any, n: int) -> Any:
    from ftdoctor.facts import datasets as data

    if data.safe_len(dataset) is not None and hasattr(dataset, "select"):
        return dataset.select(range(min(n, len(dataset))))
    if hasattr(dataset, "take"):  # a streaming dataset
        return dataset.take(n)
    return None


def _all_rows(ds: Any) -> list[Any]:
    return [ds[i] for i in range(len(ds))]
