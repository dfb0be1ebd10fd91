"""Task contracts: what the loss of each task needs from its rows (token labels aligned to the tokens, answer positions
that decode to the answer)."""

from __future__ import annotations

from ftdoctor.core.diagnosis import FACTS, MESSAGE, VALUES
from ftdoctor.facts import datasets
from ftdoctor.facts.datasets import flatten as _flat
from ftdoctor.sdk import Cause, check, diagnoser, finding, rule, script_datasets

rule(
    "FTD221",
    "token-labels-not-aligned",
    "decode",
    "error",
    "Token labels are not aligned to the tokens",
    """
     A token classifier scores every token, so its labels need one entry per token: the word's tag on the word's
     first token and -100 (ignored by the loss) on special tokens. Word-level tags given as they are fall out of
     step as soon as one word splits into several pieces, and [CLS]/[SEP] get real tags: the model learns tags
     for the wrong tokens, silently.
     """,
    broken='tokenized["labels"] = examples["ner_tags"]  # one tag per word',
    fixed="""
     def align_labels_with_tokens(labels, word_ids):
         new, previous = [], None
         for word_id in word_ids:
             new.append(-100 if word_id is None or word_id == previous else labels[word_id])
             previous = word_id
         return new
     """,
)
rule(
    "FTD222",
    "subword-labels-copied",
    "decode",
    "warning",
    "A word's B- tag is copied onto its other pieces",
    """
     When a word splits into pieces, copying its `B-` tag onto every piece makes each piece start a new entity:
     the model is taught to predict several entities where there is one. Label only the first piece (-100 on the
     others), or, with `label_all_tokens`, turn the copies into the matching `I-` tag.
     """,
    broken="new_labels.append(labels[word_id])  # every piece of the word, B- included",
    fixed="new_labels.append(-100 if word_id == previous_word else labels[word_id])",
)
rule(
    "FTD223",
    "qa-positions-off",
    "decode",
    "error",
    "Answer positions do not decode to the answer text",
    """
     Extractive QA trains on `start_positions`/`end_positions`: the tokens between them must spell the answer.
     Mapping character offsets to tokens off by one (or with the question's offsets) makes the model learn
     spans next to the answers; the exact match stays near 0 however long it trains.
     """,
    broken="end_positions.append(idx)  # one token past the answer",
    fixed="end_positions.append(idx + 1)  # after `while offset[idx][1] >= end_char: idx -= 1`",
)
rule(
    "FTD225",
    "qa-most-answers-truncated",
    "decode",
    "error",
    "Truncation cut answers out of their contexts: most of them, or leaving positions training cannot use",
    """
     For at least half of the sampled questions, every window of the context is labelled (0, 0): truncation cut
     the answer away, so training mostly teaches the model that there is no answer. Or the answers it cut were
     given no position at all (`char_to_token()` returns None for a character truncation removed), and the first
     batch holding one fails to become a tensor. Split long contexts into overlapping windows with
     `return_overflowing_tokens=True` and a `stride`.
     """,
    broken='tokenizer(questions, contexts, max_length=384, truncation="only_second")',
    fixed="""
     tokenizer(questions, contexts, max_length=384, truncation="only_second", stride=128,
               return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
     """,
)
rule(
    "FTD224",
    "qa-answers-truncated",
    "decode",
    "warning",
    "Truncation cut answers out of their contexts",
    """
     Contexts longer than `max_length` are cut; an answer beyond the cut is labelled (0, 0), the [CLS] token, and
     the question teaches the model that there is no answer. Split long contexts into overlapping windows with
     `return_overflowing_tokens=True` and a `stride`, and label the window that holds the answer.
     """,
    broken='tokenizer(questions, contexts, max_length=384, truncation="only_second")',
    fixed="""
     tokenizer(questions, contexts, max_length=384, truncation="only_second", stride=128,
               return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
     """,
)


def _see(task):
    return f"see `ftdoctor reference show {task}`"


def _continuation_marker(tokenizer):
    """How the tokenizer marks a word's later pieces: ("prefix", "##") for WordPiece, ("start", "Ġ"/"▁") for
    tokenizers that mark word starts instead; None when it cannot be told from the tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = getattr(backend, "model", None)
    if type(model).__name__ == "WordPiece":
        return "prefix", getattr(model, "continuing_subword_prefix", "##")
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    for mark in ("Ġ", "▁"):
        if sum(1 for t in list(vocab)[:5000] if t.startswith(mark)) > 50:
            return "start", mark
    return None


def _is_continuation(marker, token, previous_special):
    kind, mark = marker
    if kind == "prefix":
        return token.startswith(mark)
    return not previous_special and not token.startswith(mark)


@check("decode", codes=("FTD221", "FTD222"))
def token_labels_aligned(train_features, model, pipeline, tokenizer=None, trainer=None, task=None):
    """Token-classification rows: one label per token, -100 on special tokens, B- tags not copied onto pieces."""
    if task != "token-classification" or tokenizer is None or not train_features:
        return None
    rows = [
        r
        for r in train_features
        if isinstance(r, dict) and "input_ids" in r and "labels" in r and isinstance(_flat(r["labels"]), list)
    ]
    if not rows:
        return None
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    # The unknown token stands for a real word (one the vocabulary lacks): its tag is the word's.
    structural = specials - {getattr(tokenizer, "unk_token_id", None)}
    loc = pipeline.location(pipeline.train_dataset, trainer)
    fix = (
        "Align the word tags to the tokens with `word_ids()`: the word's tag on its first token, -100 on special "
        "tokens (word id None) and on the word's other pieces, in the `tokenize_and_align_labels` function you "
        "map over the dataset; " + _see("token-classification") + "."
    )
    wrong_length = [i for i, r in enumerate(rows) if len(_flat(r["labels"])) != len(_flat(r["input_ids"]))]
    on_specials = [
        i
        for i, r in enumerate(rows)
        if i not in wrong_length
        and any(t in structural and lab != -100 for t, lab in zip(_flat(r["input_ids"]), _flat(r["labels"])))
    ]
    if wrong_length or on_specials:
        parts = []
        if wrong_length:
            i = wrong_length[0]
            parts.append(
                f"{len(wrong_length)} of {len(rows)} sampled rows have labels of another length than their "
                f"tokens (row {i}: {len(_flat(rows[i]['labels']))} labels for "
                f"{len(_flat(rows[i]['input_ids']))} tokens): the tags are per word, not per token"
            )
        if on_specials:
            parts.append(
                f"{len(on_specials)} of {len(rows)} sampled rows give special tokens ([CLS], [SEP]) a real "
                "label instead of -100"
            )
        return finding(
            "FTD221",
            "; ".join(parts) + ". The loss then trains tags on the wrong tokens.",
            fix,
            location=loc,
            evidence={
                "wrong_length_rows": len(wrong_length),
                "labelled_special_rows": len(on_specials),
                "sampled": len(rows),
            },
        )
    marker = _continuation_marker(tokenizer)
    names = _tag_names(model, pipeline)
    if marker is None or not names:
        return None
    copied, pieces, example = 0, 0, None
    for r in rows + _more_rows(pipeline, rows):
        ids, labels = _flat(r["input_ids"]), _flat(r["labels"])
        tokens = tokenizer.convert_ids_to_tokens(ids)
        for j in range(1, len(ids)):
            if ids[j] in specials or not _is_continuation(marker, tokens[j], ids[j - 1] in specials):
                continue
            pieces += 1
            name = str(names.get(labels[j], ""))
            if labels[j] != -100 and labels[j] == labels[j - 1] and name.startswith("B-"):
                copied += 1
                example = example or (tokens[j - 1], tokens[j], name)
    if not copied:
        return None
    return finding(
        "FTD222",
        f"{copied} of {pieces} word-continuation pieces repeat the word's `B-` tag (e.g. "
        f"`{example[0]}` `{example[1]}` both {example[2]}): each piece is taught to start a new entity.",
        "Put -100 on a word's later pieces (`-100 if word_id == previous_word else labels[word_id]`), or, "
        "to label every piece (label_all_tokens), turn a copied `B-X` into `I-X`; "
        + _see("token-classification")
        + ".",
        location=loc,
        evidence={"copied": copied, "continuation_pieces": pieces},
    )


_MORE_ROWS = 512  # rows of a tensor dataset read beside a loop's one batch: word pieces of B- words are rare


def _more_rows(pipeline, rows) -> list[dict]:
    """Beside the sampled rows (a loop's one shuffled batch), the first rows of the TensorDataset they were drawn
    from, its tensors named as the batch names them: the tensors that hold the first sampled row's input_ids and
    labels."""
    from ftdoctor.facts import namespace

    if not rows:
        return []
    cap = pipeline.capture
    held = namespace.values(cap.namespace or {}) if cap is not None else []
    candidates = [pipeline.train_dataset, *held, *(namespace.attr(v, "dataset") for v in held)]
    seen = set()
    for ds in candidates:
        if id(ds) in seen or not isinstance(namespace.attr(ds, "tensors"), tuple):
            continue
        seen.add(id(ds))
        got = _tensor_rows(ds.tensors, rows[0])
        if got:
            return got
    return []


def _tensor_rows(tensors, row) -> list[dict]:
    import torch

    named = {}
    for key in ("input_ids", "labels"):
        first = torch.as_tensor(_flat(row[key]))
        for t in tensors:
            n = first.numel()
            # the row may have lost its padding (a loop's batch split into rows by its attention mask)
            if torch.is_tensor(t) and t.dim() == 2 and 0 < n <= t.shape[1] and (t[:, :n] == first).all(1).any():
                named[key] = t
                break
    if len(named) != 2 or named["input_ids"] is named["labels"]:
        return []
    count = min(len(named["input_ids"]), _MORE_ROWS)
    ids, labels = named["input_ids"], named["labels"]
    return [{"input_ids": ids[i].tolist(), "labels": labels[i].tolist()} for i in range(count)]


def _tag_names(model, pipeline) -> dict:
    """The tag name of each label id: the model's id2label, or, when that holds only the default LABEL_n names
    (`num_labels=` alone), the tag names of a token-level ClassLabel column of the script's datasets with exactly
    as many classes as the head scores."""
    config = getattr(model, "config", None)
    names = dict(getattr(config, "id2label", None) or {})
    if any(not str(v).startswith("LABEL_") for v in names.values()):
        return names
    n = getattr(config, "num_labels", None) or len(names)
    cap = pipeline.capture
    sources = [pipeline.train_dataset, *(ds for _, ds in (script_datasets(cap.namespace) if cap is not None else ()))]
    for ds in sources:
        feats = getattr(ds, "features", None)
        if not hasattr(feats, "keys"):
            continue
        for column in feats.keys():
            if type(feats[column]).__name__ == "ClassLabel":
                continue  # one class per row: not a tag sequence
            label = datasets.class_label(ds, column)
            tags = list(getattr(label, "names", None) or [])
            if len(tags) == n and any(str(t).startswith("B-") for t in tags):
                return dict(enumerate(tags))
    return {}


def _norm(text):
    import re

    # Whitespace only: decoding may re-space punctuation, but a token more or less must still show.
    return re.sub(r"\s+", "", text.lower())


def _qa_examples(pipeline):
    """The SQuAD-format examples the QA rows were made from (a dataset with `context` and `answers` columns)."""
    cap = pipeline.capture
    return [
        ds
        for _, ds in (script_datasets(cap.namespace) if cap is not None else ())
        if {"context", "answers"} <= set(ds.column_names or []) and datasets.safe_len(ds)
    ]


@check("decode", codes=("FTD223", "FTD224", "FTD225"))
def qa_positions_decode_to_answers(
    train_features, pipeline, effective_train_dataset=None, tokenizer=None, trainer=None, task=None
):
    """QA rows: the tokens between start and end spell the answer; count the answers truncation cut away."""
    rows = train_features
    if (
        task != "question-answering"
        or tokenizer is None
        or not rows
        or not isinstance(rows[0], dict)
        or not {"input_ids", "start_positions", "end_positions"} <= set(rows[0])
    ):
        return None
    sources = _qa_examples(pipeline)
    if not sources:
        return None
    sep = getattr(tokenizer, "sep_token_id", None)
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    # Each row's context window, decoded, locates its example (a window is a piece of exactly one context).
    examples = []
    for ds in sources:
        sub = ds.select(range(min(len(ds), 2000)))
        for ex in sub:
            texts = ex["answers"]["text"] if isinstance(ex["answers"], dict) else [a["text"] for a in ex["answers"]]
            examples.append((_norm(ex["context"]), [_norm(t) for t in texts], texts))
    off, lost_groups, matched, first_off = 0, {}, 0, None
    for i, r in enumerate(rows):
        ids = _flat(r["input_ids"])
        cut = ids.index(sep) + 1 if sep in ids else 0
        window = _norm(tokenizer.decode([t for t in ids[cut:] if t not in specials]))
        if len(window) < 8:
            continue
        owner = next((k for k, ex in enumerate(examples) if window in ex[0]), None)
        if owner is None:
            continue
        matched += 1
        _context, answers, raw_answers = examples[owner]
        start, end = (
            int(_flat(r["start_positions"])[0] if isinstance(r["start_positions"], list) else r["start_positions"]),
            int(_flat(r["end_positions"])[0] if isinstance(r["end_positions"], list) else r["end_positions"]),
        )
        no_answer = start == end == 0 or (ids[start] in specials and start == end)
        lost_groups.setdefault(owner, []).append(no_answer)
        if no_answer:
            continue
        span = _norm(tokenizer.decode(ids[start : end + 1])) if end >= start else ""
        if span not in answers:
            off += 1
            first_off = first_off or (i, start, end, tokenizer.decode(ids[start : end + 1]).strip(), raw_answers[0])
    out = []
    loc = pipeline.location(pipeline.train_dataset, trainer)
    if off:
        i, s, e, got, want = first_off
        out.append(
            finding(
                "FTD223",
                f"{off} of {matched} sampled rows have start/end positions that do not decode "
                f"to their answer (row {i}: positions ({s}, {e}) decode to {got!r}, the answer is "
                f"{want!r}). The model learns spans beside the answers.",
                "Map the answer's characters to tokens through `offset_mapping`, counting only context "
                "tokens (`sequence_ids(i) == 1`): start = the token whose span holds the first character, "
                "end = the token whose span holds the last one (`idx + 1` after the `while "
                "offset[idx][1] >= end_char: idx -= 1` loop); " + _see("question-answering") + ".",
                location=loc,
                evidence={"off": off, "matched_rows": matched},
            )
        )
    # The last example's windows may continue past the sample: judge only examples seen whole. Questions
    # without an answer (SQuAD v2) are labelled (0, 0) on purpose.
    owners = list(lost_groups)[:-1] if len(rows) >= 64 else list(lost_groups)
    groups = [lost_groups[k] for k in owners if any(examples[k][1])]
    lost = sum(1 for g in groups if all(g))
    if lost:
        code = "FTD225" if lost * 2 >= len(groups) else "FTD224"
        out.append(
            finding(
                code,
                f"{lost} of {len(groups)} sampled questions lost their answer to truncation: "
                "every window of their context is labelled (0, 0), [CLS], so they teach the model that "
                "there is no answer.",
                "Keep long contexts whole in overlapping windows: `tokenizer(questions, contexts, "
                'truncation="only_second", max_length=..., stride=..., return_overflowing_tokens=True, '
                "return_offsets_mapping=True)`, and label each window from its `offset_mapping` "
                "(`overflow_to_sample_mapping` names its example); " + _see("question-answering") + ".",
                location=loc,
                evidence={"answers_lost": lost, "questions": len(groups)},
            )
        )
    return out


QA_POSITIONS = ("start_positions", "end_positions")  # the labels a question-answering head computes its loss from


@diagnoser(codes=("FTD224", "FTD225"))
def qa_positions_none(evidence, target=None):
    """A None answer position reached a tensor: `char_to_token` (like an `offset_mapping` lookup) finds no token
    for an answer character that truncation cut off, and the None was kept."""
    if "NoneType" not in evidence.message and "None" not in evidence.message:
        return None
    names = [n for n in getattr(target, "label_names", None) or () if n in QA_POSITIONS] or list(QA_POSITIONS)
    # The positions column: a list with None in it, named as one of the labels or read under such a key.
    keys = [n for n, s in evidence.values.items() if s.get("type") == "str" and evidence.local(n) in names]
    column = next(
        (
            n
            for n, s in evidence.values.items()
            if s.get("none") and s.get("len") and (n in names or (keys and _holds_ints(s)))
        ),
        None,
    )
    if column is None:
        return None
    summary = evidence.values[column]
    label = column if column in names else evidence.local(keys[0])
    none, total = summary["none"], summary["len"]
    # A None position stops training at the first batch that holds one: an error however few there are.
    f = finding(
        "FTD225",
        f"{none} of {total} `{label}` are None (the first at row {summary['first_none']}): `char_to_token()` finds "
        "no token for an answer character that truncation cut out of the context, and a None position cannot "
        f"become a tensor ({evidence.first_line}).",
        "Give every answer that truncation cut a position the model ignores, for the start and the end alike: "
        "`if end is None: end = tokenizer.model_max_length` (or label it (0, 0), the [CLS] token); better, keep "
        'long contexts whole in overlapping windows (`truncation="only_second", stride=..., '
        "return_overflowing_tokens=True, return_offsets_mapping=True`) and label each window; "
        + _see("question-answering")
        + ".",
        evidence={"column": label, "none": none, "rows": total},
    )
    return Cause(f, MESSAGE + VALUES + FACTS)


def _holds_ints(summary) -> bool:
    return set(summary.get("items") or ()) <= {"int", "NoneType"}
