"""Targets: one adapter per kind of training pipeline, behind the protocol the checks use.

Checks never touch a training framework. They ask the target for the rows as the trainer will see them, a
collated batch, the loss of a batch, a working copy of the model, the optimizer the user's settings build, and
the predictions as `compute_metrics` receives them. Each kind of pipeline (the `Trainer` and its subclasses, a
hand-written or Accelerate loop) answers these in its own module here; TRL trainers are Trainer subclasses
and PEFT models are models, so both go through those two.

What every target shares lives in base.py: where the model runs (on its GPU when the script put it there, a CUDA
error replayed on the CPU), the batch moved to it, the working model (in place with the copy-on-step snapshot of
runtime/snapshot.py in ftdoctor's own process, a copy in the user's). A target overrides `run_loss` and `run_predict`,
which receive a batch already on the model's device; checks call `loss` and `predict`.
"""

from __future__ import annotations

from typing import Any

from ftdoctor.runtime.copies import work_copy
from ftdoctor.targets.base import Target

__all__ = ["Target", "target_for", "work_copy"]


def target_for(pipeline: Any) -> Target:
    """The target of a captured pipeline: the Trainer's when there is one, else the loop's."""
    if pipeline.trainer is not None:
        from ftdoctor.targets.trainer import TrainerTarget

        return TrainerTarget(pipeline)
    from ftdoctor.targets.loop import LoopTarget

    return LoopTarget(pipeline)
