"""The stages of a walk, in order, and what each builds on."""

from __future__ import annotations

STAGES = ("setup", "config", "decode", "collate", "forward", "backward", "metrics", "overfit", "memory", "distributed")


# The stages a plain run walks; `distributed` runs only when the script is launched on several ranks (--nproc).
DEFAULT_STAGES = STAGES[:-1]


def default_stages(nproc: int = 1) -> list[str]:
    """The stages a walk runs when none are asked for: the distributed stage too with more than one process."""
    return [*DEFAULT_STAGES, "distributed"] if nproc > 1 else list(DEFAULT_STAGES)


# What each stage builds on: asking for a stage runs these first (their findings are reported too).
DEPENDS = {
    "setup": (),
    "config": ("setup",),
    "decode": ("setup",),
    "collate": ("decode",),
    "forward": ("collate",),
    "backward": ("forward",),
    "metrics": ("collate", "forward"),
    "overfit": ("backward",),
    "memory": ("backward",),
    "distributed": ("setup",),
}


def with_dependencies(stages) -> list[str]:
    """The stages asked for and every stage they need, in walk order."""
    wanted: set[str] = set()
    todo = list(stages)
    while todo:
        stage = todo.pop()
        if stage in wanted:
            continue
        wanted.add(stage)
        todo.extend(DEPENDS.get(stage, ()))
    return [s for s in STAGES if s in wanted]
