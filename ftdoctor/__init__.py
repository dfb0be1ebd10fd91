"""ftdoctor: walk a transformers fine-tuning pipeline stage by stage and report every failure with its fix."""

from __future__ import annotations

from .findings import Finding, finding, rule
from .registry import Provide, Skip, stage_check

__version__ = "0.1.0"

__all__ = ["check", "stage_check", "finding", "rule", "Finding", "Provide", "Skip", "__version__"]


def check(trainer, stages=None, **options):
    """Walk a live ``Trainer`` in-process; returns the report (``.ok``, ``.findings``, ``.to_json()``)."""
    from .api import check as _check

    return _check(trainer, stages=stages, **options)
