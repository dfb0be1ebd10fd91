"""A hand-written PyTorch or Accelerate training loop: the model it called, the batch it ran, the optimizer it
stepped, and its loss, the model's own or recomputed with the loss function the loop called on the outputs."""

from __future__ import annotations

from typing import Any

from ftdoctor.core.registry import Skip, run_user
from ftdoctor.targets.base import Target


class LoopTarget(Target):
    kind = "loop"

    @property
    def record(self) -> Any:
        return self.pipeline.extra.get("loop")

    @property
    def has_custom_loss(self) -> bool:
        rec = self.record
        return rec is not None and rec.loss_source not in ("model", "none")

    @property
    def labels_reach_model(self) -> bool:
        from ftdoctor.facts.datasets import LABEL_KEYS

        keys = getattr(self.record, "model_keys", None) or []
        return not keys or any(k in LABEL_KEYS for k in keys)

    def fixed_batch(self) -> dict | None:
        """The batch the loop ran, when no loader and collator can make another one (or the loop's loss, or its
        model call, needs tensors its loader's batches do not carry: labels built in the loop body)."""
        rec = self.record
        own_tensors = any(str(k).startswith("__arg") for k in getattr(rec, "extra", {}) or {})
        if self.collator is None or own_tensors or self.labels_made_by_loop():
            return self.pipeline.extra.get("batch")
        return None

    def labels_made_by_loop(self) -> bool:
        """The model was called with labels its loader's batches do not carry (`labels = input_ids.masked_fill(
        ...)`; `model(**batch, labels=labels)`): what the model got, not what the collator made, is the batch."""
        if "_labels_made" not in self.__dict__:
            self._labels_made = self._labels_outside_loader()
        return self._labels_made

    def _labels_outside_loader(self) -> bool:
        from ftdoctor.facts.datasets import LABEL_KEYS
        from ftdoctor.targets.base import take_rows

        rec = self.record
        passed = [k for k in (getattr(rec, "model_keys", None) or []) if k in LABEL_KEYS]
        loader = self.train_loader()
        dataset = getattr(loader, "dataset", None)
        if not passed or self.collator is None or dataset is None:
            return False
        try:
            batch = self.collator(take_rows(dataset, 2))
            return not any(k in batch for k in passed)
        except Exception:  # the collate stage runs the collator again and reports what it raises
            return False

    def rows(self, dataset: Any, description: str, n: int) -> tuple[list[Any], list[str]]:
        """Rows as the loop uses them: for a loop that builds its own batches, only the columns its batch has."""
        rows, removed = super().rows(dataset, description, n)
        fixed = self.fixed_batch()
        if fixed is not None and rows and isinstance(rows[0], dict):
            from ftdoctor.facts.datasets import LABEL_KEYS, rows_from_batch

            inputs = [k for k in self._model_keys(fixed) if k not in LABEL_KEYS]
            if any(k not in rows[0] for k in inputs):
                # The loop feeds its model under other names than its rows' (`input_ids=b["ids"]`): the rows it
                # trains on are those of the batch it ran.
                made = rows_from_batch({k: fixed[k] for k in self._model_keys(fixed)})
                if made:
                    self._rows_of_batch = True
                    return made[:n], []
            keep = set(fixed) | self._feeding_columns(rows, set(fixed))
            removed = [k for k in rows[0] if k not in keep]
            rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
        return rows, removed

    def _feeding_columns(self, rows: list[dict], batch_keys: set) -> set:
        """Row columns the loop's collator turns into one of ``batch_keys`` under another name (transformers'
        collators put `label` and `label_ids` under `labels`): a column is one when collating the rows without it
        loses a batch key. When the collator cannot take the rows, the transformers collators' renaming."""
        candidates = [k for k in rows[0] if k not in batch_keys]
        if not candidates:
            return set()
        sample = rows[:2]
        try:
            full = set(self.collator(sample)) if self.collator is not None else None
            feeding = set()
            for k in candidates if full is not None else ():
                without = set(self.collator([{c: v for c, v in r.items() if c != k} for r in sample]))
                if (full - without) & batch_keys:
                    feeding.add(k)
            if full is not None:
                return feeding
        except Exception:
            pass
        return {k for k in candidates if k in ("label", "label_ids") and "labels" in batch_keys}

    def row_collator(self) -> Any:
        """Rows cut from the batch the loop ran (under the model's names) are not what the loop's collator takes:
        ftdoctor's padding collator batches them."""
        if self.__dict__.get("_rows_of_batch"):
            return self.padding_collator()
        return super().row_collator()

    def collate(self, rows: list[Any]) -> Any:
        if self.collator is None:
            raise Skip("the loop has no collator: its batches are built by its own code (the batch it ran is used)")
        return super().collate(rows)

    def run_loss(self, model: Any, batch: Any) -> tuple[Any, Any]:
        rec = self.record
        if rec is None or rec.loss_source in ("model", "none"):
            return run_user("the model's forward", _model_loss, model, batch, self._model_keys(batch))
        if rec.loss_source == "criterion":
            return run_user(
                "the model's forward and the loop's loss", _criterion_loss, model, batch, self._model_keys(batch), rec
            )
        where = f" ({rec.loss_site})" if rec.loss_site else ""
        raise Skip(
            f"the loop computes its loss in its own code{where}, which ftdoctor cannot run again; its own "
            "first step is checked instead"
        )

    def loss_code(self) -> list[Any]:
        rec = self.record
        fn = getattr(rec, "criterion", None)
        forward = (
            getattr(type(fn), "forward", None) if fn is not None and not callable(getattr(fn, "__code__", None)) else fn
        )
        return [forward] if forward is not None else []

    def distributed_wrapper(self) -> str:
        from ftdoctor.runtime.ranks import wrapper_of

        if self.pipeline.extra.get("wrapper"):
            return self.pipeline.extra["wrapper"]
        rec = self.record
        return wrapper_of(rec.model) if rec is not None and rec.model is not None else "none"

    def ddp_kwargs(self) -> dict:
        rec = self.record
        model = getattr(rec, "model", None)
        if type(model).__name__ == "DistributedDataParallel":
            return {
                "find_unused_parameters": bool(getattr(model, "find_unused_parameters", False)),
                "static_graph": bool(getattr(model, "static_graph", False)),
            }
        args = self.args  # the Trainer's arguments, for its callbacks
        out = {}
        for name, key in (
            ("ddp_find_unused_parameters", "find_unused_parameters"),
            ("ddp_static_graph", "static_graph"),
        ):
            if getattr(args, name, None) is not None:
                out[key] = bool(getattr(args, name))
        return out

    def train_loader(self) -> Any:
        rec = self.record
        loader = getattr(rec, "dataloader", None)
        return loader if loader is not None else self.pipeline.extra.get("train_dataloader")

    def _model_keys(self, batch: dict) -> list[str]:
        """The keys the loop passed to its model (a batch may carry more: the targets of its own loss)."""
        keys = list(getattr(self.record, "model_keys", None) or [])
        if keys:
            return [k for k in keys if k in batch]
        return [k for k in batch if not str(k).startswith("__arg")]


def _model_loss(model, batch, keys):
    from ftdoctor.facts.models import loss_and_outputs

    return loss_and_outputs(model(**{k: batch[k] for k in keys if k in batch}), labelled="labels" in keys)


def _criterion_loss(model, batch, keys, rec):
    from ftdoctor.capture.loop import make_arg

    out = model(**{k: batch[k] for k in keys if k in batch})
    args = [make_arg(r, out, batch) for r in rec.criterion_args]
    kwargs = {k: make_arg(r, out, batch) for k, r in rec.criterion_kwargs.items()}
    return rec.criterion(*args, **kwargs), out
