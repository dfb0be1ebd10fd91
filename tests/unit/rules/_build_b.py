"""Hand-built evidence for the one-rule tests of the model stages (forward, backward, metrics, overfit, memory), the
distributed stage, the hand-written loop checks and FTD900: tiny random-init models, plain tensors, stand-in
captures, and a call of one registered check with its arguments passed by name, the way the walk passes them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = 100


@pytest.fixture
def one_thread():
    """Tiny models on one intra-op thread: on a loaded machine every operation of a 16-row batch otherwise waits
    for a second thread (measured: 43 ms per cross-entropy forward and backward with 2 threads, 0.03 ms with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- one check, called as the walk calls it ---------------------------------------------------------------------------


def check_for(code: str | None, stage: str | None = None, named: str | None = None):
    """The registered check that reports ``code`` (at ``stage``, or the function ``named``, where several checks
    declare it; a check that reports nothing and only provides values by its ``named`` function alone)."""
    from ftdoctor.core.registry import all_checks, load_checks

    load_checks()
    found = [
        c
        for c in all_checks()
        if (code is None or code in c.codes)
        and (stage is None or c.stage == stage)
        and (named is None or c.func.__name__ == named)
    ]
    assert len(found) == 1, f"{code} at {stage or named}: {[c.name for c in found]}"
    return found[0]


@dataclass
class Called:
    """What one check gave: its findings, the values it provides to later checks, why it stopped short."""

    findings: list = field(default_factory=list)
    values: dict = field(default_factory=dict)
    skip_reason: str | None = None
    evidence: dict = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def one(self, code: str):
        """The single finding of ``code``."""
        found = [f for f in self.findings if f.code == code]
        assert len(found) == 1, f"expected one {code}, got {self.codes}"
        return found[0]


def call(code: str | None, stage: str | None = None, named: str | None = None, **values: Any) -> Called:
    """Call the check that reports ``code`` with ``values`` by parameter name (defaults where a value is not given;
    a required one missing fails the test). Each finding must be of a code the check declares, with the severity
    its rule fixes, as the walk demands."""
    from ftdoctor.core.diagnosis import declared_by
    from ftdoctor.core.findings import Finding
    from ftdoctor.core.registry import Provide
    from ftdoctor.core.rules import RULES
    from ftdoctor.engine.walk import Context

    chk = check_for(code, stage, named)
    ctx = Context(values)
    ctx.set("findings_so_far", values.get("findings_so_far", []))
    kwargs, missing = ctx.arguments_for(chk)
    assert kwargs is not None, f"{chk.name}: {missing}"
    out = chk.func(**kwargs)
    called = Called()
    if isinstance(out, Provide):
        called.values, called.skip_reason, called.evidence = out.values, out.skip_reason, out.evidence
        out = out.findings
    if isinstance(out, Finding):
        out = [out]
    for f in out or []:
        assert f.code in chk.codes or f.code in declared_by(f.evidence.get("diagnosed_by", "")), (
            f"{chk.name} reported {f.code}, which it does not declare ({chk.codes})"
        )
        assert f.severity == RULES[f.code].severity, f"{f.code} reported as {f.severity}"
        called.findings.append(f)
    return called


# -- pipelines around tiny in-process objects -------------------------------------------------------------------------


def capture(script: str | None = None, namespace: dict | None = None, **kw: Any):
    """A capture of a script in this folder (or ``script``): what the checks read for names, lines and user code."""
    from ftdoctor.capture import Capture

    script = script or os.path.join(HERE, "train.py")
    return Capture(
        script=script,
        outcome="training",
        namespace=dict(namespace or {}),
        user_dir=os.path.dirname(os.path.abspath(script)),
        **kw,
    )


def pipeline(model: Any, *, optimizer: Any = None, args: Any = None, task: str | None = None, **kw: Any):
    """A loop pipeline (no Trainer) of ``model``; ``args`` defaults to what `Pipeline.from_parts` derives."""
    from ftdoctor.engine.pipeline import Pipeline, detect_task

    if args is None:
        lr = max((g["lr"] for g in optimizer.param_groups), default=0.0) if optimizer is not None else 0.0
        args = SimpleNamespace(
            per_device_train_batch_size=4,
            per_device_eval_batch_size=4,
            learning_rate=lr,
            max_grad_norm=0.0,
            remove_unused_columns=False,
        )
    p = Pipeline(model=model, args=args, optimizer=optimizer, **kw)
    p.task = task if task is not None else detect_task(p)
    return p


def target(p: Any):
    """The loop target of pipeline ``p`` (the model's own loss, copies of the model to work on)."""
    from ftdoctor.targets.loop import LoopTarget

    return LoopTarget(p)


def values_for(
    model: Any,
    batch: dict | None = None,
    *,
    optimizer: Any = None,
    args: Any = None,
    task: str | None = None,
    findings_so_far: list | None = None,
    **kw: Any,
) -> dict:
    """What the walk offers the model stages' checks for ``model`` and ``batch``."""
    p = pipeline(model, optimizer=optimizer, args=args, task=task, **kw)
    out = {
        "model": model,
        "pipeline": p,
        "target": target(p),
        "args": p.args,
        "task": p.task,
        "findings_so_far": list(findings_so_far or []),
    }
    if batch is not None:
        out["batch"] = batch
    if optimizer is not None:
        out["optimizer"] = optimizer
    return out


def no_free_memory(monkeypatch: pytest.MonkeyPatch, free: int = 0) -> None:
    """This machine reports ``free`` bytes available (a measurement, replaced)."""
    from ftdoctor.runtime import devices

    monkeypatch.setattr(devices, "free_memory", lambda device=None: free)


# -- tiny models and batches ------------------------------------------------------------------------------------------


def bert(kind: str = "SequenceClassification", *, num_labels: int = 3, seed: int = 0, **config: Any):
    """A one-layer, 32-wide BERT with a ``kind`` head, random-initialised from ``seed``."""
    import transformers

    cfg = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    cfg.update(config)
    torch.manual_seed(seed)
    return getattr(transformers, f"BertFor{kind}")(transformers.BertConfig(**cfg))


def gpt2(seed: int = 0, **config: Any):
    """A one-layer, 32-wide GPT-2 language model."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    cfg.update(config)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**cfg))


def bart(seed: int = 0, **config: Any):
    """A one-layer, 16-wide BART (encoder-decoder) with BART's special ids: pad 1, decoder start 2."""
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = dict(
        vocab_size=VOCAB,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        pad_token_id=1,
        decoder_start_token_id=2,
    )
    cfg.update(config)
    torch.manual_seed(seed)
    return BartForConditionalGeneration(BartConfig(**cfg))


def token_batch(rows: int = 4, length: int = 10, *, labels: Any = "classes", num_labels: int = 3, seed: int = 0):
    """Token ids in the tiny vocabulary (ids 5 and up: 0-4 are left for special tokens), a full attention mask, and
    ``labels``: one class per row ("classes"), one per token ("tokens"), the ids themselves ("ids"), or None."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if labels == "classes":
        batch["labels"] = torch.arange(rows) % num_labels
    elif labels == "tokens":
        batch["labels"] = torch.randint(0, num_labels, (rows, length), generator=g)
    elif labels == "ids":
        batch["labels"] = ids.clone()
    return batch


def feature_rows(lengths: list[int], *, labels: list[int] | None = None, seed: int = 0) -> list[dict]:
    """Tokenized rows as a dataset holds them (lists of ids), of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i, n in enumerate(lengths):
        ids = torch.randint(5, VOCAB, (n,), generator=g).tolist()
        row = {"input_ids": ids, "attention_mask": [1] * n}
        if labels is not None:
            row["labels"] = labels[i]
        rows.append(row)
    return rows


def classifier(features: int = 16, classes: int = 2, *, norm: bool = False, seed: int = 0):
    """A linear classifier over float features (behind a fresh LayerNorm with ``norm``) that returns its loss and
    logits like a transformers model."""
    torch.manual_seed(seed)
    return LinearClassifier(features, classes, norm)


class LinearClassifier(torch.nn.Module):
    def __init__(self, features: int, classes: int, norm: bool = False):
        super().__init__()
        self.config = SimpleNamespace(num_labels=classes, problem_type=None)
        self.norm = torch.nn.LayerNorm(features) if norm else torch.nn.Identity()
        self.head = torch.nn.Linear(features, classes)

    def forward(self, x, labels=None):
        logits = self.head(self.norm(x))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def random_batch(rows: int = 16, features: int = 16, *, same_inputs: bool = False, seed: int = 0) -> dict:
    """Float inputs with random binary labels: a batch a working classifier memorises (as many features as rows),
    unless every row has the same inputs (then only the labels' frequencies can be learned)."""
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(rows, features, generator=g)
    if same_inputs:
        x = x[:1].expand(rows, features).clone()
    return {"x": x, "labels": torch.randint(0, 2, (rows,), generator=g)}


# -- several ranks ----------------------------------------------------------------------------------------------------


def rank_facts(*per_rank: dict, **common: Any) -> list[dict]:
    """What each rank recorded when training started (the shape of ftdoctor.runtime.ranks.collect): one dict of
    values per rank, ``common`` for all of them, over defaults of a DDP run that shards its data."""
    facts = []
    for rank, own in enumerate(per_rank):
        f = {
            "rank": rank,
            "world_size": len(per_rank),
            "pid": 1000 + rank,
            "outcome": "training",
            "process_group": True,
            "backend": "gloo",
            "wrapper": "ddp",
            "param_checksum": "0f3c5d",
            "sample_keys": [f"row-{rank}-{i}" for i in range(4)],
            "epoch_indices": None,
            "dataset_len": None,
            "sampler": "DistributedSampler",
            "ddp": {"kwargs": {}, "grad_checksum": "aa11", "without_grad": [], "error": None},
        }
        f.update(common)
        f.update(own)
        facts.append(f)
    return facts


def write_script(tmp_path, text: str, name: str = "train.py") -> str:
    import textwrap

    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


def line_of(path: str, text: str) -> int:
    with open(path, encoding="utf-8") as fh:
        return next(i for i, line in enumerate(fh, 1) if text in line)
