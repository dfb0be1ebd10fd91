"""Hand-built evidence for the one-rule tests: tiny random-init models, fixed-vocabulary tokenizers, a real pipeline
and target around a tiny Trainer (or a loop), a script run the way the capture runs it, and the call of one
registered check, found by its rule code."""

from __future__ import annotations

import runpy
import sys
from typing import Any

from ftdoctor.core.diagnosis import declared_by
from ftdoctor.core.findings import Finding, finding
from ftdoctor.core.registry import Check, Provide, Unavailable, all_checks, load_checks
from ftdoctor.core.rules import RULES

# -- the check under test --------------------------------------------------------------------------------------


def check_of(code: str, stage: str | None = None) -> Check:
    """The registered check that reports ``code`` (in ``stage`` where several stages report it)."""
    load_checks()
    found = [c for c in all_checks() if code in c.codes and (stage is None or c.stage == stage)]
    assert found, f"no registered check reports {code}" + (f" at {stage}" if stage else "")
    assert len(found) == 1, f"{code} is reported by {[c.name for c in found]}: name the stage"
    return found[0]


def call(code: str, stage: str | None = None, /, **values: Any) -> Any:
    """Call the check of ``code`` as the walk does: each parameter it names from ``values``, its default otherwise.
    A parameter it needs that the test did not give is the test's mistake, not a skip."""
    chk = check_of(code, stage)
    kwargs = {}
    for p in chk.params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in values and not isinstance(values[p.name], Unavailable):
            kwargs[p.name] = values[p.name]
        elif p.default is p.empty:
            raise AssertionError(f"{chk.name} needs `{p.name}`, which the test did not build")
    return chk.func(**kwargs)


def findings(code: str, stage: str | None = None, /, **values: Any) -> list[Finding]:
    """The findings of the check of ``code``, each checked against what the walk enforces (a declared code, the
    severity and title its rule fixes)."""
    chk = check_of(code, stage)
    out = call(code, stage, **values)
    if isinstance(out, Provide):
        out = out.findings
    if out is None:
        return []
    if isinstance(out, (Finding, str)):
        out = [out]
    # A check that declares its own rule may return just the detail (the walk makes the finding).
    out = [finding(chk.codes[-1], f, chk.default_fix) if isinstance(f, str) else f for f in out]
    for f in out:
        assert f.code in chk.codes or f.code in declared_by(f.evidence.get("diagnosed_by", "")), (
            f"{chk.name} reported {f.code}, which neither it nor the diagnoser that named the cause declares"
        )
        assert f.severity == RULES[f.code].severity and f.title == RULES[f.code].title, f
    return list(out)


def one(code: str, stage: str | None = None, /, **values: Any) -> Finding:
    """The one finding of rule ``code`` the check reports (it may report others beside it)."""
    found = findings(code, stage, **values)
    got = [f for f in found if f.code == code]
    assert len(got) == 1, f"expected one {code}, got {[(f.code, f.detail) for f in found]}"
    return got[0]


def reported(code: str, detail: str) -> Finding:
    """A finding an earlier stage already reported (for a check that reads `findings_so_far`)."""
    load_checks()  # the stage rules are registered with their checks
    return finding(code, detail)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


# -- tokenizers: a fixed vocabulary, the pipelines the transformers classes build --------------------------------

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list(".,!?'-:") + list("0123456789abcdefghijklmnopqrstuvwxyz")
WORDS = (
    "the a an this that it is was were not very good bad great awful film movie plot actors play "
    "john mary lives works in at paris london acme bank who where what does did when answer question "
    "river park city old young cat dog sat on mat and of to"
).split()
PIECES = ["##ing", "##ed", "##s", "##er", "##ton", "##ville"] + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
VOCAB = list(dict.fromkeys(SPECIALS + CHARS + WORDS + PIECES))  # the `wordpiece()` vocabulary, in id order


def wordpiece(words: list[str] | None = None, *, lowercase: bool = True, cls: Any = None, max_length: int = 64):
    """A BERT-style WordPiece tokenizer over a fixed vocabulary ([CLS] ... [SEP], "##" pieces): a new one per call,
    so a test may add tokens to it."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    tokens = VOCAB if words is None else SPECIALS + CHARS + list(words) + PIECES
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return (cls or BertTokenizerFast)(
        tokenizer_object=backend,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


BOS, EOS, PAD = "<s>", "</s>", "<pad>"
CAUSAL_SPECIALS = [PAD, "<unk>", BOS, EOS, "<|reserved_pad|>"]


def causal(*, pad: str | None = PAD, bos: bool = True, chat_template: str | None = None):
    """A decoder-style tokenizer: BOS added in front of every text, EOS not added, ``pad`` as its pad token (None:
    none, as GPT-2 ships; ``EOS``: the end token doubles as padding)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys(CAUSAL_SPECIALS + CHARS + WORDS + PIECES))}
    backend = Tokenizer(WordPiece(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS}:0 $A:0", special_tokens=[(BOS, vocab[BOS])]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS if bos else None,
        eos_token=EOS,
        unk_token="<unk>",
        pad_token=pad,
        model_max_length=64,
        additional_special_tokens=["<|reserved_pad|>"],
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


# -- models: random-init from small configs ----------------------------------------------------------------------

SMALL = dict(
    hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, max_position_embeddings=64
)


def bert(cls_name: str = "BertForSequenceClassification", *, vocab_size: int = len(VOCAB), **config: Any):
    """A one-layer, 32-wide BERT with the given head (seeded: the same weights every time)."""
    import torch
    import transformers

    torch.manual_seed(0)
    return getattr(transformers, cls_name)(transformers.BertConfig(vocab_size=vocab_size, **{**SMALL, **config}))


def gpt2(cls_name: str = "GPT2LMHeadModel", *, tokenizer: Any = None, **config: Any):
    """A one-layer, 32-wide GPT-2 whose special ids are those of ``tokenizer`` (by default the `causal` one)."""
    import torch
    import transformers

    tok = tokenizer if tokenizer is not None else causal()
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64, **{**ids, **config})
    return getattr(transformers, cls_name)(cfg)


def bart(*, tokenizer: Any = None, **config: Any):
    """A one-layer, 32-wide BART for conditional generation (an encoder-decoder)."""
    import torch
    import transformers

    tok = tokenizer if tokenizer is not None else causal()
    torch.manual_seed(0)
    cfg = transformers.BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        **config,
    )
    return transformers.BartForConditionalGeneration(cfg)


# -- datasets ------------------------------------------------------------------------------------------------------


def dataset(columns: dict[str, list], class_names: dict[str, list[str]] | None = None):
    """A `datasets.Dataset` of ``columns``; a column named in ``class_names`` is a ClassLabel with those names."""
    from datasets import ClassLabel, Dataset

    ds = Dataset.from_dict(columns)
    for col, names in (class_names or {}).items():
        ds = ds.cast_column(col, ClassLabel(names=names))
    return ds


def encoded(tokenizer: Any, texts: list[str], **columns: list) -> Any:
    """``texts`` tokenized (input_ids, attention_mask, token_type_ids where the tokenizer makes them) with ``columns``
    beside them, as a `datasets.Dataset`."""
    enc = tokenizer(texts, truncation=True)
    return dataset({**{k: list(v) for k, v in enc.items()}, **columns})


# -- pipelines and targets -----------------------------------------------------------------------------------------


def capture(tmp_path, namespace: dict | None = None, **fields: Any):
    """The capture of a script in ``tmp_path`` that reached training, holding ``namespace`` as its variables."""
    from ftdoctor.capture import Capture

    script = tmp_path / "train.py"
    if not script.exists():
        script.write_text("# the script's variables are given to the test's capture\n")
    fields.setdefault("outcome", "training")
    return Capture(script=str(script), namespace=dict(namespace or {}), user_dir=str(tmp_path), **fields)


def context(pipeline: Any) -> dict[str, Any]:
    """What the walk offers checks for ``pipeline`` (``ftdoctor.engine.pipeline.context_values``)."""
    from ftdoctor.engine.pipeline import context_values

    return {k: v for k, v in context_values(pipeline).items() if not isinstance(v, Unavailable)}


def trainer_values(
    tmp_path,
    model: Any,
    train_dataset: Any = None,
    *,
    tokenizer: Any = None,
    eval_dataset: Any = None,
    data_collator: Any = None,
    cap: Any = None,
    trainer_cls: Any = None,
    **arguments: Any,
) -> dict:
    """The walk's values for a tiny `Trainer` built in-process (its TrainingArguments from ``arguments``)."""
    from transformers import Trainer, TrainingArguments

    from ftdoctor.engine.pipeline import Pipeline

    arguments = {
        "report_to": [],
        "use_cpu": True,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        **arguments,
    }
    args = TrainingArguments(str(tmp_path / "out"), **arguments)
    trainer = (trainer_cls or Trainer)(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=data_collator,
    )
    return context(Pipeline.from_trainer(trainer, cap))


def loop_values(model: Any, loader: Any, *, tokenizer: Any = None, cap: Any = None, batch: dict | None = None) -> dict:
    """The walk's values for a hand-written loop that draws from ``loader`` (a DataLoader)."""
    from ftdoctor.capture.loop import LoopRecord
    from ftdoctor.engine.pipeline import Pipeline

    p = Pipeline.from_parts(model, loader, tokenizer=tokenizer, capture=cap, batch=batch)
    p.extra["loop"] = LoopRecord(model=model, batch=batch, dataloader=loader)
    return context(p)


def rows(ds: Any) -> list[dict]:
    """The rows of a dataset as the decode stage hands them to later checks (`train_features`)."""
    return [ds[i] for i in range(len(ds))]


# -- a script run up to its failure, as the capture hands it over ----------------------------------------------------


def run_script(tmp_path, source: str, name: str = "train.py", **given: Any):
    """Run ``source`` as a script in ``tmp_path`` (as `python SCRIPT` would: ``__main__``, its folder on sys.path,
    the caller's working directory) and return the capture of its failure. ``given`` are names the script finds
    defined (objects the test built, standing in for what the script would load from the hub)."""
    from ftdoctor.capture import Capture

    script = tmp_path / name
    script.write_text(source)
    cap = Capture(script=str(script), outcome="finished", user_dir=str(tmp_path))
    saved_path = sys.path[:]
    sys.path.insert(0, str(tmp_path))
    try:
        cap.namespace = runpy.run_path(str(script), init_globals=given, run_name="__main__")
    except BaseException as exc:
        cap.outcome, cap.exception, cap.exc_tb = "error", exc, exc.__traceback__
    finally:
        sys.path[:] = saved_path
    return cap


def line_of(path, text: str) -> int:
    """The first line of ``path`` holding ``text``."""
    with open(path) as fh:
        return next(i for i, line in enumerate(fh, 1) if text in line)
