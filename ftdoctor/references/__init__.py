"""Reference fine-tuning pipelines, one per task: the way the Hugging Face course writes them, on offline fixtures.

Each module here is a complete script (`python -m ftdoctor.references.causal_lm` or the file itself trains for
real, in seconds on a CPU) and the contract ftdoctor's task checks point at in their fixes. This module only
knows where the scripts are and how to run them; it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass

_HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Reference:
    task: str
    module: str
    model: str  # the model family and head
    collator: str
    metric: str
    metric_key: str  # key of the metric in the script's `metrics_before` / `metrics_after`
    higher_is_better: bool = True

    @property
    def path(self) -> str:
        return os.path.join(_HERE, f"{self.module}.py")

    def source(self) -> str:
        with open(self.path, encoding="utf-8") as fh:
            return fh.read()


REFERENCES = {
    r.task: r
    for r in (
        Reference(
            "sequence-classification",
            "sequence_classification",
            "BERT (ForSequenceClassification)",
            "DataCollatorWithPadding",
            "accuracy, F1 (scikit-learn)",
            "eval_f1",
        ),
        Reference(
            "token-classification",
            "token_classification",
            "BERT (ForTokenClassification)",
            "DataCollatorForTokenClassification",
            "entity F1 (seqeval)",
            "eval_f1",
        ),
        Reference(
            "masked-lm",
            "masked_lm",
            "DistilBERT (ForMaskedLM)",
            "DataCollatorForLanguageModeling",
            "perplexity",
            "perplexity",
            higher_is_better=False,
        ),
        Reference(
            "causal-lm",
            "causal_lm",
            "GPT-2 (LMHeadModel)",
            "default_data_collator (full blocks)",
            "perplexity",
            "perplexity",
            higher_is_better=False,
        ),
        Reference(
            "translation",
            "translation",
            "BART (ForConditionalGeneration)",
            "DataCollatorForSeq2Seq",
            "BLEU (sacrebleu)",
            "eval_bleu",
        ),
        Reference(
            "summarization",
            "summarization",
            "BART (ForConditionalGeneration)",
            "DataCollatorForSeq2Seq",
            "ROUGE-L (rouge-score)",
            "eval_rougeL",
        ),
        Reference(
            "question-answering",
            "question_answering",
            "BERT (ForQuestionAnswering)",
            "DefaultDataCollator",
            "exact match, F1 (SQuAD)",
            "f1",
        ),
        Reference(
            "multiple-choice",
            "multiple_choice",
            "BERT (ForMultipleChoice)",
            "DataCollatorForMultipleChoice",
            "accuracy",
            "eval_accuracy",
        ),
    )
}
TASKS = tuple(REFERENCES)


def get(task: str) -> Reference:
    if task not in REFERENCES:
        raise KeyError(f"no reference for {task!r}; tasks are: {' '.join(TASKS)}")
    return REFERENCES[task]


def show_command(task: str) -> str:
    """What a fix tells the user to run to see the reference for ``task``."""
    return f"ftdoctor reference show {task}"


@dataclass
class RunResult:
    task: str
    metric: str
    before: float
    after: float
    seconds: float
    higher_is_better: bool

    @property
    def improved(self) -> bool:
        return self.after > self.before if self.higher_is_better else self.after < self.before


def run(task: str, argv: list[str] | None = None, quiet: bool = True) -> RunResult:
    """Run the reference script of ``task`` as `python script.py` would, offline, in a scratch directory."""
    import runpy

    ref = get(task)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    threads = torch.get_num_threads()
    # The fixture models are tiny: one thread is fastest, and never spins waiting for a core another process holds.
    torch.set_num_threads(1)
    old_argv, old_cwd = sys.argv, os.getcwd()
    sink = io.StringIO()
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ftdoctor-reference-") as scratch:
            os.chdir(scratch)
            sys.argv = [ref.path, *(argv or [])]
            with contextlib.ExitStack() as stack:
                if quiet:
                    stack.enter_context(contextlib.redirect_stdout(sink))
                    stack.enter_context(contextlib.redirect_stderr(sink))
                namespace = runpy.run_path(ref.path, run_name="__main__")
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    return RunResult(
        task,
        ref.metric_key,
        float(namespace["metrics_before"][ref.metric_key]),
        float(namespace["metrics_after"][ref.metric_key]),
        seconds,
        ref.higher_is_better,
    )


def main_list() -> int:
    rows = [("task", "model", "collator", "metric")]
    rows += [(r.task, r.model, r.collator, r.metric) for r in REFERENCES.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def main_show(task: str) -> int:
    sys.stdout.write(get(task).source())
    return 0


def main_run(tasks: list[str], verbose: bool = False) -> int:
    failed = 0
    for task in tasks:
        ref = get(task)
        print(f"{task}: training {ref.model} on its fixture ...", flush=True)
        result = run(task, quiet=not verbose)
        arrow = "better" if result.improved else "NOT better"
        print(
            f"{task}: {result.metric} {result.before:.3f} before training -> {result.after:.3f} after "
            f"({arrow}; {result.seconds:.1f}s)",
            flush=True,
        )
        failed += not result.improved
    return 1 if failed else 0
