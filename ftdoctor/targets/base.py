"""The protocol every target implements, and what all of them share."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

from ftdoctor.core.registry import UserCodeError, run_user
from ftdoctor.runtime.copies import work_copy


class Target:
    """What checks may ask of a pipeline. Subclasses answer for one kind of training framework."""

    kind = "pipeline"

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline

    # -- the pieces -------------------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self.pipeline.model

    @property
    def args(self) -> Any:
        return self.pipeline.args

    @property
    def collator(self) -> Any:
        return self.pipeline.data_collator

    @property
    def label_names(self) -> list[str]:
        """Batch keys that carry labels, in the order the framework looks for them."""
        return []

    @property
    def has_custom_loss(self) -> bool:
        """The loss is computed by the user's code, not by the model from `labels`."""
        return False

    @property
    def labels_reach_model(self) -> bool:
        """Whether the batch's `labels` are an argument of the model (whose loss shifts a causal LM's labels
        itself), not only of the run's own loss."""
        return True

    @property
    def rank(self) -> int:
        return _dist_value("get_rank", "RANK", 0)

    @property
    def world_size(self) -> int:
        return _dist_value("get_world_size", "WORLD_SIZE", 1)

    # -- data ---------------------------------------------------------------------------------------------------
    def rows(self, dataset: Any, description: str, n: int) -> tuple[list[Any], list[str]]:
        """The first ``n`` rows of ``dataset`` as the collator will receive them, and the columns dropped on the
        way."""
        return run_user(f"reading the {description} dataset", take_rows, dataset, n), []

    def dropped_columns(self, dataset: Any) -> list[str]:
        """The columns of ``dataset`` the trainer removes before its rows reach the collator (none by default)."""
        return []

    def collate(self, rows: list[Any]) -> Any:
        # Collators may edit the rows they get (`feature.pop("word_ids")`, masking ids in place): they get copies,
        # so the rows stay as the dataset has them for the next stage.
        rows = [_row_copy(r) for r in rows]
        return run_user("the data collator", self.collator, rows)

    def own_input_step(self, columns: list[str]) -> str | None:
        """The framework's method that makes the model's inputs from rows with these ``columns`` itself (an online
        trainer that generates completions from the prompts), when it has one: rows without token ids are then
        what it expects."""
        return None

    def row_collator(self) -> Any:
        """A collator for rows of the training set: the run's own, or, for a loop that builds its batches in its
        own code, ftdoctor's padding one (for what ftdoctor builds itself, such as the memory stage's batches)."""
        if self.collator is not None:
            return self.collator
        return self.padding_collator()

    def padding_collator(self) -> Any:
        """ftdoctor's own collator: right-pads rows named as the model's arguments and stacks them."""
        from functools import partial

        from ftdoctor.facts.datasets import pad_rows

        pad = getattr(self.pipeline.tokenizer, "pad_token_id", None)
        return partial(pad_rows, pad_id=pad if isinstance(pad, int) else 0)

    def fixed_batch(self) -> dict | None:
        """The one batch the run has, when it has no collator to build others (a loop over a ready batch)."""
        return None

    # -- the model ------------------------------------------------------------------------------------------------
    # The stages run the model where the script put it: on its GPU when it is there (the fast budget is measured on
    # that device), falling back to the CPU only to replay a CUDA error, whose text says nothing of its cause.
    #
    # In ftdoctor's child process the user's objects die with the process, so the model is worked on in place
    # there: what an optimizer is about to change is saved first (snapshot.py, on the CPU) and put back before each
    # use and at the end of each stage. A copy beside the model would make the walk take more memory than the
    # user's own training step (the copy's weights on top of the gradients and optimizer moments the step needs).
    # Never in the user's own process (the in-process pre-flight): copies there, beside the model on its GPU when
    # that has room for a copy and one step of it, else on the CPU; the GPU memory they took is given back when
    # the walk ends, for the run that follows.
    in_place_allowed = False
    _in_place: bool | None = None  # decided at the first use
    _snapshot: Any = None  # the WeightSnapshot of the model worked on in place
    _handed_out = False  # the model itself went to a stage: from then on, whoever holds it may change it
    _work_device: Any = None
    device_error: str | None = None  # the CUDA error after which the GPU (and the weights on it) cannot be used

    def work_model(self) -> Any:
        """The model to run and train: the model itself with its weights restored (ftdoctor's own process), or a
        fresh copy of it on `work_device`."""
        self._refuse_a_failed_device(self.work_device)
        if self._use_in_place():
            self.restore()
            self._handed_out = True
            return self.model
        return work_copy(self.model, self.work_device)

    @property
    def work_device(self) -> Any:
        """Where the stages run the model (see above)."""
        if self._work_device is None:
            import torch

            from ftdoctor.facts.models import is_dispatched
            from ftdoctor.runtime.devices import is_accelerator, model_device, short_of_memory, trainable_bytes

            device = model_device(self.model)
            if is_accelerator(device) and not self._use_in_place():
                # The copy, its gradients and two optimizer moments, beside the model; a model dispatched over
                # several devices is copied whole to none of them.
                if (
                    is_dispatched(self.model)
                    or short_of_memory(4 * trainable_bytes(self.model), "a working copy", device) is not None
                ):
                    device = torch.device("cpu")
            self._work_device = device
        return self._work_device

    def _use_in_place(self) -> bool:
        if not self.in_place_allowed:
            return False
        if self._in_place is None:
            self._in_place = any(p.requires_grad for p in self.model.parameters())
            if self._in_place:
                from ftdoctor.runtime.snapshot import WeightSnapshot

                self._snapshot = WeightSnapshot(self.model)
        return self._in_place

    @property
    def worked_in_place(self) -> bool:
        return bool(self._in_place)

    def copies(self) -> int:
        """How many copies of the trainable weights a working model costs: 1, or 0 when worked on in place."""
        return 0 if self._use_in_place() else 1

    def restore(self) -> None:
        """Put the trainable weights back as the script left them (once the model has been handed out)."""
        if self._snapshot is not None and self._handed_out and self.device_error is None:
            self._snapshot.restore()

    def stage_done(self) -> None:
        """After each stage the model in place is the script's again: a stage may change it through the context,
        not only through work_model."""
        self.restore()

    def discard(self) -> None:
        if self._snapshot is not None:
            self._snapshot.discard()
            self._snapshot = None
        if self._work_device is not None and self.device_error is None:
            from ftdoctor.runtime.devices import release

            release(self._work_device)

    def loss(self, model: Any, batch: Any) -> tuple[Any, Any]:
        """(loss, outputs) of ``batch`` as the run computes it, on the model's device (see `_on_model_device`)."""
        return self._on_model_device(model, batch, self.run_loss)

    def run_loss(self, model: Any, batch: Any) -> tuple[Any, Any]:
        """`loss` on a batch already on the model's device: what a target overrides."""
        return run_user("the model's forward", model_loss, model, batch)

    def _on_model_device(self, model: Any, batch: Any, run: Any) -> Any:
        """``run(model, batch)`` with the batch moved to the model's device. A CUDA error there is replayed on the
        CPU (`_replayed_on_cpu`) and the CPU's error raised instead; after one, the GPU is not used again."""
        import torch

        from ftdoctor.runtime.devices import model_device, on_device

        device = model_device(model)
        self._refuse_a_failed_device(device)
        try:
            return run(model, on_device(batch, device))
        except UserCodeError as err:
            replayed = self._replayed_on_cpu(err, model, device, on_device(batch, torch.device("cpu")), run)
            if replayed is None:
                raise
            raise replayed from None

    def _refuse_a_failed_device(self, device: Any) -> None:
        from ftdoctor.core.registry import Skip
        from ftdoctor.runtime.devices import is_accelerator

        if self.device_error is not None and is_accelerator(device):
            raise Skip(f"the GPU cannot be used after `{self.device_error}` in an earlier stage")

    def _replayed_on_cpu(
        self, err: UserCodeError, model: Any, device: Any, batch: Any, run: Any
    ) -> UserCodeError | None:
        """For a CUDA error of ``model`` on its GPU ``device``: ``run`` again on the CPU, on a stand-in of the model
        (its class and configuration, two layers, fresh weights: the weights on the GPU cannot be read once a kernel
        has failed), and the CPU's error with a note of the GPU's. None when ``err`` is no CUDA error, or the CPU
        runs the batch (then the GPU's own error stands). Every later use of the GPU is refused."""
        from ftdoctor.runtime.devices import is_accelerator, is_cuda_error

        text = f"{type(err.exc).__name__}: {err.exc}"
        if not is_accelerator(device) or not is_cuda_error(text):
            return None
        self.device_error = text.strip().splitlines()[0][:300]
        from ftdoctor.runtime import twin

        stand_in = twin.stand_in(model)
        if stand_in is None:
            _note(
                err.exc,
                "ftdoctor could not replay it on the CPU (the model is not built from a config); run "
                "the check with CUDA_VISIBLE_DEVICES= to see the cause there.",
            )
            return None
        try:
            run(stand_in, batch)
        except UserCodeError as cpu_err:
            _note(
                cpu_err.exc,
                f"On {device} this batch raised `{self.device_error}`; replayed on the CPU (a "
                "2-layer stand-in of the model: its class and configuration, fresh weights) it "
                "raises the error above.",
            )
            cpu_err.device_error = self.device_error
            return cpu_err
        except Exception:
            pass
        _note(
            err.exc,
            "Replayed on the CPU the same batch runs: the fault is in a GPU kernel or the driver, not "
            "in the data. Run with CUDA_LAUNCH_BLOCKING=1 to see the failing kernel.",
        )
        return None

    def loss_code(self) -> list[Any]:
        """The functions of the run (besides the model's forward) that compute the loss."""
        return []

    def build_optimizer(self, work: Any) -> tuple[Any, set[str]]:
        """An optimizer for ``work`` configured like the run's, and the names of the parameters the run's own
        optimizer holds."""
        return retarget_optimizer(self.pipeline.optimizer, self.model, work)

    def predict(self, model: Any, batch: Any, preprocess: Any = None) -> tuple[Any, Any]:
        """(predictions, label_ids) of one eval batch, as numpy, the way `compute_metrics` receives them; on the
        model's device (see `_on_model_device`)."""
        from functools import partial

        return self._on_model_device(model, batch, partial(self.run_predict, preprocess=preprocess))

    def run_predict(self, model: Any, batch: Any, preprocess: Any = None) -> tuple[Any, Any]:
        """`predict` on a batch already on the model's device: what a target overrides."""
        return run_user("prediction", _plain_predict, model, batch, preprocess)

    def eval_prediction(self, model: Any, dataset: Any, n: int, batch_size: int | None = None) -> Any:
        """The EvalPrediction the run's own evaluation hands compute_metrics, or None when it has no such path."""
        return None

    def metrics_path_note(self) -> str | None:
        """Why compute_metrics cannot be exercised the way the run calls it (None when it can)."""
        return None

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        """Restore whatever framework state the walk touches."""
        yield

    # -- several ranks ----------------------------------------------------------------------------------------------
    def distributed_wrapper(self) -> str:
        """How the run wraps its model for several ranks: ddp, fsdp, deepspeed or none."""
        return "none"

    def ddp_kwargs(self) -> dict:
        """The DistributedDataParallel settings the run uses."""
        return {}

    def checkpointing_kwargs(self) -> dict | None:
        """Activation checkpointing the run turns on when it starts (None: off, or already on the model)."""
        return None

    def train_loader(self) -> Any:
        """The loader the run draws its training batches from, as this rank sees it (None: it has none)."""
        return None

    def rank_samples(self, batches: int) -> dict:
        """What this rank trains on: the rows of its first batches, and the dataset indices of its whole first
        epoch when the loader's sampler tells them."""
        from ftdoctor.runtime.ranks import batch_keys

        loader = run_user("building the training loader", self.train_loader)
        out: dict[str, Any] = {"sample_keys": [], "epoch_indices": None, "dataset_len": None, "sampler": None}
        if loader is None:
            fixed = self.fixed_batch()
            out["sample_keys"] = batch_keys(fixed) if fixed is not None else []
            out["_first_batch"] = fixed
            return out
        sampler = getattr(loader, "batch_sampler", None)
        inner = getattr(sampler, "batch_sampler", sampler)
        out["sampler"] = type(getattr(inner, "sampler", inner)).__name__
        out["dataset_len"] = _len(getattr(loader, "dataset", None))
        if sampler is not None and out["dataset_len"] is not None:
            indices = run_user("the training sampler", lambda: [i for b in sampler for i in b])
            out["epoch_indices"] = [int(i) for i in indices]
        keys, first = [], None
        for n, batch in enumerate(run_user("the training loader", iter, loader)):
            first = batch if first is None else first
            keys.extend(batch_keys(batch))
            if n + 1 >= batches:
                break
        out["sample_keys"] = keys
        out["_first_batch"] = dict(first) if hasattr(first, "items") else None
        return out


def _dist_value(getter: str, env: str, default: int) -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(getattr(dist, getter)())
    except Exception:
        pass
    try:
        return int(os.environ.get(env, default))
    except ValueError:
        return default


def _row_copy(row: Any) -> Any:
    if not isinstance(row, dict):
        return row
    return {k: list(v) if isinstance(v, list) else v for k, v in row.items()}


def _len(obj: Any) -> int | None:
    try:
        return len(obj)
    except Exception:
        return None


def take_rows(ds: Any, n: int) -> list[Any]:
    """The first ``n`` rows of a map-style or iterable (streaming) dataset."""
    from ftdoctor.facts import datasets as data

    if data.is_hf_dataset(ds):
        size = data.safe_len(ds)
        if size is not None:
            sub = ds.select(range(min(n, size)))
            return [sub[i] for i in range(len(sub))]
    size = data.safe_len(ds)
    if size is None or not hasattr(ds, "__getitem__"):
        return list(itertools.islice(iter(ds), n))
    return [ds[i] for i in range(min(n, size))]


def _note(exc: BaseException, text: str) -> None:
    with contextlib.suppress(Exception):
        exc.add_note(text)


def model_loss(model: Any, batch: Any) -> tuple[Any, Any]:
    from ftdoctor.facts.models import loss_and_outputs

    return loss_and_outputs(model(**batch), labelled="labels" in batch)


def to_numpy(x: Any) -> Any:
    import torch

    if x is None:
        return None
    if isinstance(x, (tuple, list)):
        return tuple(to_numpy(v) for v in x)
    if torch.is_tensor(x):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return x


def _plain_predict(model: Any, batch: Any, preprocess: Any) -> tuple[Any, Any]:
    import torch

    from ftdoctor.facts.models import loss_and_outputs

    model.eval()
    with torch.no_grad():
        _, out = loss_and_outputs(model(**batch), labelled="labels" in batch)
        logits = out.get("logits") if hasattr(out, "get") else None
        labels = batch.get("labels")
        if preprocess is not None and logits is not None:
            logits = preprocess(logits, labels)
    return to_numpy(logits), to_numpy(labels)


def _init_kwargs(optimizer: Any) -> dict:
    """The optimizer's defaults that its constructor accepts (defaults also hold derived keys)."""
    import inspect

    accepted = inspect.signature(type(optimizer).__init__).parameters
    return {k: v for k, v in optimizer.defaults.items() if k in accepted}


def optimizer_init_kwargs(optimizer: Any) -> dict:
    return _init_kwargs(optimizer) if optimizer is not None else {}


def retarget_optimizer(user_optimizer: Any, model: Any, work: Any) -> tuple[Any, set[str]]:
    """A new optimizer of the user's class and settings over ``work``'s parameters, matched by name."""
    names = {id(p): n for n, p in model.named_parameters()}
    # Accelerate's AcceleratedOptimizer (the Trainer's, once training began) wraps the torch optimizer.
    inner = getattr(user_optimizer, "optimizer", None)
    if inner is not None and hasattr(inner, "param_groups"):
        user_optimizer = inner
    if user_optimizer is None:
        return None, set()
    work_params = dict(work.named_parameters())
    groups, held = [], set()
    for g in user_optimizer.param_groups:
        ps = [work_params[names[id(p)]] for p in g["params"] if id(p) in names and names[id(p)] in work_params]
        held.update(names[id(p)] for p in g["params"] if id(p) in names)
        settings = {k: v for k, v in g.items() if k not in ("params", "initial_lr")}
        # A warmup scheduler sets the current rate to 0 before the first step; the run's rate is the initial one.
        settings["lr"] = g.get("initial_lr", g.get("lr"))
        groups.append({**settings, "params": ps})
    groups = [g for g in groups if g["params"]]
    opt = type(user_optimizer)(groups, **_init_kwargs(user_optimizer)) if groups else None
    return opt, held
