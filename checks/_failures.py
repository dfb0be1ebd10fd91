"""Reading an exception the user's pipeline raised on a real batch: which root cause it points at, and whether
an earlier stage already reported that cause. Shared by the stages that run the model; each turns the answer
into findings of its own rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ftdoctor.core.diagnosis import REPORTED, Cause
from ftdoctor.sdk import diagnoser, finding, rule

# Known failures of the forward pass and the root cause each points at: (pattern, codes of the root cause).
ROOTS = [
    (r"exactly one of input_ids or inputs_embeds|have to specify either input_ids", ("FTD201",)),
    (r"index out of range in self", ("FTD103", "FTD206", "FTD207")),
    # Absolute position embeddings added to longer inputs (DistilBERT): "size of tensor a (217) must match ... (128)".
    (r"size of tensor a \(\d+\) must match the size of tensor b \(\d+\)", ("FTD206",)),
    (r"Target -?\d+ is out of bounds|out of bounds", ("FTD101", "FTD203")),
    (r"no padding token is defined", ("FTD105",)),
    (r"did not return a loss", ("FTD304", "FTD202", "FTD401")),
    (r"unexpected keyword argument 'labels'", ("FTD401",)),
    (r"Expected input batch_size", ("FTD402",)),
    # A collator's tensors from rows whose per-token values differ in length (tokenizers' BatchEncoding, torch), or
    # from label values that are no numbers.
    (r"Unable to create tensor|excessive nesting|expected sequence of length", ("FTD331", "FTD204")),
    # The padding collator given rows without token ids: raw text (its columns dropped), or inputs the Trainer dropped.
    (r"includes input_ids, but you provided", ("FTD201", "FTD214")),
    # The Trainer finds no column the forward names: the ones a transform reads (FTD218), or the forward hides its
    # inputs behind **kwargs (FTD214).
    (r"No columns in the dataset match the model's forward method signature", ("FTD218", "FTD214")),
    # A collator or a dataset transform reading a column the Trainer removed as unused.
    (r"^KeyError: '", ("FTD218",)),
    (r"must be the same as input size|expected scalar type Long|can't be cast to the desired output type", ("FTD204",)),
]


@dataclass
class Failure:
    """What an exception of the user's code says."""

    text: str  # "TypeName: message"
    kind: str  # predicted (an earlier finding explains it) | shape | no-labels | unknown
    reason: str  # one line, for a skipped stage
    predicted_by: list[str] = field(default_factory=list)
    roots: tuple[str, ...] = ()

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0][:400] if self.text else ""


def explain(exc: BaseException, where: str, findings_so_far) -> Failure:
    return explain_text(f"{type(exc).__name__}: {exc}", where, findings_so_far)


def explain_text(text: str, where: str, findings_so_far) -> Failure:
    seen = {f.code for f in findings_so_far}
    for pattern, roots in ROOTS:
        if re.search(pattern, text):
            already = [c for c in roots if c in seen]
            if already:
                return Failure(
                    text,
                    "predicted",
                    f"{where} fails as predicted by {', '.join(already)}: {text.splitlines()[0][:160]}",
                    already,
                    roots,
                )
            if "FTD402" in roots:
                return Failure(text, "shape", text.splitlines()[0], roots=roots)
            if "FTD304" in roots:
                return Failure(text, "no-labels", text.splitlines()[0], roots=roots)
            return Failure(text, "unknown", text.splitlines()[0], roots=roots)
    return Failure(text, "unknown", text.splitlines()[0] if text else "")


_WHERE = {
    "collate": "the collator",
    "forward": "the forward pass",
    "backward": "the backward pass",
    "metrics": "compute_metrics",
    "overfit": "the overfit steps",
}


@diagnoser(codes=())
def reported_earlier(evidence, findings_so_far, stage):
    """A crash that a known root cause explains, when an earlier finding already names that cause: no new
    finding, the stage gives the earlier one as its reason (the crash was predicted)."""
    failure = explain_text(evidence.text, _WHERE.get(stage, f"the {stage} stage"), findings_so_far)
    if failure.kind != "predicted":
        return None
    return Cause(None, REPORTED, reason=failure.reason, predicted_by=failure.predicted_by)


def root_codes(text: str) -> list[str]:
    """The root-cause codes that a readable error points at (for a CUDA error replayed on the CPU)."""
    for pattern, roots in ROOTS:
        if re.search(pattern, text):
            return [c for c in roots if c not in ("FTD402", "FTD304", "FTD202", "FTD401", "FTD218")]
    return []


rule(
    "FTD806",
    "walk-short-of-memory",
    "memory",
    "warning",
    "A stage was not run: this machine lacks the memory",
    """
     The forward, backward, overfit and memory stages work on a copy of the trainable weights (with gradients
     and optimizer state for the ones that train). When this machine cannot hold that beside your own model,
     the stage is not run and says so, and the stages before it keep their findings: a report instead of a
     process killed for memory. It says nothing about your pipeline; the stages that ran still stand.
     """,
)


def short_of_memory(model, times: int, what: str, device=None):
    """A FTD806 finding when ``what`` (``times`` the trainable weights' bytes) does not fit in the memory this
    machine (or the accelerator ``device`` the stage works on) has free, else None."""
    from ftdoctor.runtime.devices import short_of_memory as short
    from ftdoctor.runtime.devices import trainable_bytes

    reason = short(times * trainable_bytes(model), what, device) if times else None
    if reason is None:
        return None
    return finding(
        "FTD806",
        reason[0].upper() + reason[1:] + ".",
        "Run the check where more memory is free (close other jobs, or a larger machine); the stages "
        "that ran stand as reported.",
        evidence={"needed_copies_of_trainable_weights": times},
    )
