"""A hand-written PyTorch or Accelerate training loop: the model it called, the loader it drew from, the
optimizer it stepped. The loss is the model's own unless the loop computes it itself."""

from __future__ import annotations

from typing import Any

from .base import Target


class LoopTarget(Target):
    kind = "loop"

    @property
    def label_names(self) -> list[str]:
        return []

    @property
    def has_custom_loss(self) -> bool:
        loop = self.pipeline.extra.get("loop")
        return bool(getattr(loop, "custom_loss", False))
