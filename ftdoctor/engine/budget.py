"""How much of the user's work the walk does: decided once, from the model's size and the kind of device, and
shown in the report.

A pre-flight that costs more than the one-step trial it replaces will not be run. So in the default "fast" budget
the model stages run the real model on a batch small enough that one forward and backward take about half a
second on a typical device of its kind: all of the user's rows (up to 8) for a small model, fewer rows, and rows
cut to their last tokens, for a large one. The overfit stage has a time limit. "full" runs the user's batch as
configured.

The speed is a nominal one per kind of device, never measured: a budget decided from a measurement would change
with the machine's load, and the verdicts with it (a busy machine cut the rows of a 100k-parameter model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("fast", "full")
STEP_SECONDS = 0.5  # one forward + backward of the model stages, in the fast budget
OVERFIT_SECONDS = 30.0  # every overfit trial together, in the fast budget
MAX_ROWS = 8  # rows of a checked batch: enough to see padding, label mixes and shapes
MIN_TOKENS = 32  # a row is never cut shorter than this
# A training step costs about 6 floating-point operations per parameter and token; training reaches about a third
# of the peak a large matrix product shows on the same device.
FLOPS_PER_PARAM_TOKEN = 6
EFFICIENCY = 0.3

# Nominal float32 matrix-product speed per kind of device (what a 2-core CPU box of these sessions measures idle;
# an accelerator of the last generations).
NOMINAL_FLOPS = {"cpu": 2e11, "accelerator": 5e13}


@dataclass
class Budget:
    mode: str = "fast"
    rows: int = MAX_ROWS  # rows of the batch the model stages run
    max_tokens: int | None = None  # rows longer than this are cut to their last tokens (None: as they are)
    overfit_seconds: float | None = OVERFIT_SECONDS
    params: int = 0
    flops: float = 0.0  # the nominal matrix-product speed of the device's kind
    notes: list[str] = field(default_factory=list)  # what runs at reduced size, for the report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reduced(self) -> bool:
        return bool(self.notes)

    def step_seconds(self, tokens: int) -> float | None:
        """What one training step over ``tokens`` tokens of this model costs at the nominal speed of the device's
        kind: the same on every machine and under any load (None without a model size or a speed: no cost known)."""
        if not self.params or not self.flops or tokens <= 0:
            return None
        return FLOPS_PER_PARAM_TOKEN * self.params * tokens / (self.flops * EFFICIENCY)


def machine_flops(device: str = "cpu") -> float:
    """The nominal speed of ``device``'s kind (see NOMINAL_FLOPS): the same on every machine and under any load."""
    return NOMINAL_FLOPS["cpu" if str(device).split(":")[0] in ("cpu", "meta") else "accelerator"]


def decide(model: Any, args: Any, mode: str = "fast", device: str = "cpu") -> Budget:
    """The budget for this pipeline on its kind of device."""
    user_rows = int(getattr(args, "per_device_train_batch_size", MAX_ROWS) or MAX_ROWS)
    params = _count(model)
    if mode == "full":
        return Budget("full", rows=user_rows, max_tokens=None, overfit_seconds=None, params=params)
    rows = max(1, min(user_rows, MAX_ROWS))
    why = ""
    max_tokens, flops = None, 0.0
    if params:
        flops = machine_flops(device)
        tokens = STEP_SECONDS * flops * EFFICIENCY / (FLOPS_PER_PARAM_TOKEN * params)
        if tokens < rows * 512:
            # A large model for this machine: fewer rows, each cut to what one step can afford.
            fit_rows = max(1, min(rows, int(tokens // 256)))
            max_tokens = max(MIN_TOKENS, int(tokens // fit_rows))
            if fit_rows < rows:
                why = (
                    f" (a {params / 1e6:,.0f}M-parameter model)"
                    if params >= 1e6
                    else f" (a {params:,}-parameter model)"
                )
            rows = fit_rows
    notes = []
    if rows < user_rows:
        notes.append(f"{rows} of the configured {user_rows} rows per batch{why}")
    if max_tokens is not None:
        notes.append(f"rows longer than {max_tokens} tokens cut to their last {max_tokens}")
    return Budget(mode, rows, max_tokens, OVERFIT_SECONDS, params, flops, notes)


def _count(model: Any) -> int:
    try:
        return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    except Exception:
        return 0
