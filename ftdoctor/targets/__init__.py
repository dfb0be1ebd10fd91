"""Targets: one adapter per kind of training pipeline, behind the protocol the checks use.

Checks never touch a training framework. They ask the target for the rows as the trainer will see them, a
collated batch, the loss of a batch, a working copy of the model, the optimizer the user's settings build, and
the predictions as `compute_metrics` receives them. Each kind of pipeline (the `Trainer` and its subclasses, a
hand-written or Accelerate loop; later TRL, PEFT, several ranks) answers these in its own module here.
"""

from __future__ import annotations

from typing import Any

from .base import Target, work_copy

__all__ = ["Target", "target_for", "work_copy"]


def target_for(pipeline: Any) -> Target:
    """The target of a captured pipeline: the Trainer's when there is one, else the loop's."""
    if pipeline.trainer is not None:
        from .trainer import TrainerTarget

        return TrainerTarget(pipeline)
    from .loop import LoopTarget

    return LoopTarget(pipeline)
