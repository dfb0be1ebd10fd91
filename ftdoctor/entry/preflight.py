"""In-process pre-flight: the walk inside the training process, right before a long run, changing nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ftdoctor.core.report import Report

try:  # the callback is a TrainerCallback when transformers is importable (it always is where a Trainer runs)
    from transformers import TrainerCallback as _CallbackBase
except ImportError:  # pragma: no cover
    _CallbackBase = object


class PreflightError(RuntimeError):
    """The pre-flight found errors; the message is the report, ``.report`` the report object."""

    def __init__(self, report: Report):
        from ftdoctor.output.terminal import render_text

        super().__init__("ftdoctor pre-flight failed: training was not started.\n\n" + render_text(report))
        self.report = report


def preflight(
    trainer: Any = None,
    *,
    model: Any = None,
    dataloader: Any = None,
    optimizer: Any = None,
    lr_scheduler: Any = None,
    eval_dataloader: Any = None,
    tokenizer: Any = None,
    stages: Iterable[str] | None = None,
    raise_on_error: bool = True,
    **options: Any,
) -> Report:
    """Walk a Trainer, or a loop's model/dataloader/optimizer, and raise PreflightError if a stage fails.

    The model, optimizer, scheduler, dataloader position and every RNG state are left exactly as they were.
    """
    from ftdoctor.engine.pipeline import Pipeline

    if trainer is not None:
        pipeline = Pipeline.from_trainer(trainer)
    else:
        if model is None or dataloader is None:
            raise TypeError("preflight() needs a trainer, or model= and dataloader= (and optimizer=) of the loop")
        pipeline = Pipeline.from_parts(
            model,
            dataloader,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            tokenizer=tokenizer,
            eval_dataloader=eval_dataloader,
        )
    report = _walk_pipeline(pipeline, stages, options)
    _warn_internal(report)
    if raise_on_error and not report.ok:
        raise PreflightError(report)
    return report


def _walk_pipeline(pipeline: Any, stages: Iterable[str] | None, options: dict) -> Report:
    from ftdoctor.core.registry import default_check_dirs
    from ftdoctor.engine.pipeline import context_values
    from ftdoctor.engine.walk import walk

    if _ranks() > 1:
        return _preflight_on_ranks(pipeline, stages, options)
    values = context_values(pipeline)
    values.update(options)
    return walk(values, stages=stages, check_dirs=default_check_dirs())


def _ranks() -> int:
    try:
        import torch.distributed as dist

        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    except Exception:
        return 1


def _preflight_on_ranks(pipeline: Any, stages: Iterable[str] | None, options: dict) -> Report:
    """Under torchrun every rank calls the pre-flight at the same moment: each records its facts, rank 0 compares
    them and walks, and every rank gets rank 0's report (so all stop, or none)."""
    import torch.distributed as dist

    from ftdoctor.core.registry import default_check_dirs
    from ftdoctor.engine.pipeline import context_values
    from ftdoctor.engine.walk import preserved_state, walk
    from ftdoctor.runtime.ranks import collect
    from ftdoctor.targets import target_for

    target = target_for(pipeline)
    with preserved_state(), target.preserved():
        facts = collect(target, pipeline)
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, facts)
    shared: list = [None]
    if dist.get_rank() == 0:
        values = context_values(pipeline)
        values.update(options)
        values["rank_facts"] = everyone
        wanted = list(stages) if stages else None
        if wanted is None:
            from ftdoctor.core.stages import default_stages

            wanted = default_stages(dist.get_world_size())
        report = walk(values, stages=wanted, check_dirs=default_check_dirs())
        shared[0] = report.to_dict()
    dist.broadcast_object_list(shared, src=0)
    return report if dist.get_rank() == 0 else Report.from_dict(shared[0])


def _warn_internal(report: Report) -> None:
    """ftdoctor's own failures never stop the user's run: they are warned about."""
    import warnings

    from ftdoctor.core.report import CHECK_ERROR, INTERNAL_ERROR
    from ftdoctor.core.untrusted import inline

    for title, errors in ((CHECK_ERROR, report.check_errors), (INTERNAL_ERROR, report.internal_errors)):
        for err in errors:
            warnings.warn(f"{title}: {inline((err.splitlines() or [''])[0])}", RuntimeWarning, stacklevel=3)


class FtDoctorCallback(_CallbackBase):
    """Runs the walk in ``on_train_begin`` and stops the run (PreflightError) when a stage fails.

    ``Trainer(..., callbacks=[FtDoctorCallback()])`` walks what the callback receives (model, train dataloader,
    optimizer, scheduler); ``trainer.add_callback(FtDoctorCallback(trainer))`` walks the whole trainer,
    ``compute_metrics`` included.
    """

    def __init__(self, trainer: Any = None, stages: Iterable[str] | None = None, **options: Any):
        self.trainer = trainer
        self.stages = stages
        self.options = options
        self.report: Report | None = None

    def on_train_begin(
        self,
        args,
        state,
        control,
        model=None,
        optimizer=None,
        lr_scheduler=None,
        train_dataloader=None,
        eval_dataloader=None,
        processing_class=None,
        **kwargs,
    ):
        if self.trainer is not None:
            self.report = preflight(self.trainer, stages=self.stages, raise_on_error=False, **self.options)
        else:
            from ftdoctor.engine.pipeline import Pipeline

            pipeline = Pipeline.from_parts(
                model,
                train_dataloader,
                optimizer=optimizer,
                lr_scheduler=lr_scheduler,
                tokenizer=processing_class,
                args=args,
                eval_dataloader=eval_dataloader,
            )
            from ftdoctor.targets.trainer import wrapper_from_args

            # The Trainer calling this callback wraps the model for several ranks itself.
            pipeline.extra["wrapper"] = wrapper_from_args(args)
            self.report = _walk_pipeline(pipeline, self.stages, self.options)
            _warn_internal(self.report)
        if not self.report.ok:
            raise PreflightError(self.report)
        return control


def check(trainer: Any, stages: Iterable[str] | None = None, **options: Any) -> Report:
    """Walk a live ``Trainer`` in-process and return the report (``report.ok``, ``report.findings``)."""
    from ftdoctor.engine.pipeline import Pipeline, context_values
    from ftdoctor.engine.walk import walk

    pipeline = Pipeline.from_trainer(trainer)
    values = context_values(pipeline)
    values.update(options)
    from ftdoctor.core.registry import default_check_dirs

    return walk(values, script=None, stages=stages, check_dirs=default_check_dirs())
