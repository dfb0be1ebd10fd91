"""ftdoctor: walk a transformers fine-tuning pipeline stage by stage and report every failure with its fix."""

from __future__ import annotations

from ftdoctor.core.findings import Finding, finding
from ftdoctor.core.registry import Provide, Skip, stage_check
from ftdoctor.core.rules import VERSION as __version__
from ftdoctor.core.rules import rule

__all__ = [
    "Finding",
    "FtDoctorCallback",
    "PreflightError",
    "Provide",
    "Skip",
    "__version__",
    "check",
    "finding",
    "preflight",
    "render_text",
    "rule",
    "stage_check",
]


def __getattr__(name):
    # The pre-flight pieces import transformers: load them only when asked for.
    if name in ("preflight", "FtDoctorCallback", "PreflightError"):
        from ftdoctor.entry import preflight as inprocess

        return getattr(inprocess, name)
    if name == "render_text":  # the readable report as text: `assert report.ok, ftdoctor.render_text(report)`
        from ftdoctor.output.terminal import render_text

        return render_text
    raise AttributeError(f"module 'ftdoctor' has no attribute {name!r}")


def check(trainer, stages=None, **options):
    """Walk a live ``Trainer`` in-process; returns the report (``.ok``, ``.findings``, ``.to_json()``)."""
    from ftdoctor.entry.preflight import check as _check

    return _check(trainer, stages=stages, **options)
