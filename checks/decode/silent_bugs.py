"""Silent bugs the data already shows: nothing fails, the run just learns or measures the wrong thing."""

from __future__ import annotations

from ftdoctor.facts import datasets, models
from ftdoctor.sdk import check, finding, rule

rule(
    "FTD215",
    "train-eval-overlap",
    "decode",
    "warning",
    "Evaluation rows also appear in the training set",
    """
     Rows of the evaluation set that are also training rows (exactly, or once case and whitespace are normalised)
     are scored as if the model had never seen them: the evaluation metric is optimistic, and model selection on
     it prefers memorisation. Common causes: evaluating on the training split, or duplicates across splits of a
     scraped dataset.
     """,
    broken='trainer = Trainer(model, args, train_dataset=tok["train"], eval_dataset=tok["train"].select(range(200)))',
    fixed="""
     seen = {" ".join(t.lower().split()) for t in raw["train"]["text"]}
     raw["test"] = raw["test"].filter(lambda e: " ".join(e["text"].lower().split()) not in seen)
     """,
)
rule(
    "FTD216",
    "second-label-column",
    "decode",
    "warning",
    "A second label column disagrees with the one the model trains on",
    """
     The model receives one column as its labels (`labels`, or `label` renamed by the collator), while the dataset
     holds another label column with different values: usually a mapping applied to a copy, or a column renamed
     to `labels` while the corrected `label` stayed behind. The model silently learns the wrong one.
     """,
    broken='ds = ds.map(lambda e: {"labels": e["label"] - 1})  # and later the corrected "label" column is kept',
    fixed='ds = ds.map(lambda e: {"labels": e["label"]}).remove_columns(["label"])  # one label column',
)
rule(
    "FTD217",
    "tokenizer-mismatch",
    "decode",
    "warning",
    "The tokenizer does not fit the model or the text",
    """
     A tokenizer from another checkpoint than the model's (or the right one with the wrong settings) trains
     silently: many unknown tokens, capitals lowered for a cased vocabulary, or a vocabulary far smaller than the
     model's embedding table (every id is valid, but means another token to the model).
     """,
    broken='tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")  # model: bert-base-cased',
    fixed="tokenizer = AutoTokenizer.from_pretrained(checkpoint)  # the same checkpoint as the model",
)

# What each split contributes to the comparison. Its cost is per token (reading, hashing, decoding), so the scans
# are bounded in tokens as well as rows: the walk's cost must not grow with the dataset or with its rows' length.
OVERLAP_ROWS = 10_000  # rows of each split compared token for token ...
OVERLAP_TOKENS = datasets.SCAN_TOKENS  # ... up to this many tokens
NORMALISED_TOKENS = 100_000  # tokens of each split also decoded, to compare with case and whitespace normalised


def _normalised(token_rows, tokenizer) -> list[str]:
    """Each row's tokens decoded, lower-cased, whitespace collapsed (multiple choice: all choices together)."""
    if not token_rows:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    try:  # a fast tokenizer's own batch decode: no Python-side conversion of every token
        texts = backend.decode_batch(token_rows, skip_special_tokens=True)
    except Exception:
        texts = tokenizer.batch_decode(token_rows, skip_special_tokens=True)
    return [" ".join(t.lower().split()) for t in texts]


def _split_rows(ds):
    """The rows of a split to compare (each row's tokens as one list), and how many of them to decode."""
    if not datasets.is_hf_dataset(ds) or "input_ids" not in (ds.column_names or []):
        return [], 0
    rows = datasets.row_tokens(ds, "input_ids", datasets.rows_within(ds, OVERLAP_ROWS, OVERLAP_TOKENS))
    return rows, datasets.prefix_within([len(r) for r in rows], NORMALISED_TOKENS)


@check("decode", codes=("FTD215",))
def train_eval_overlap(effective_train_dataset, effective_eval_dataset, pipeline, tokenizer, task=None):
    if task in ("causal-lm", "masked-lm"):
        return None  # text chunked into blocks: equal blocks across splits are boilerplate, not leaked examples
    train, train_decoded = _split_rows(effective_train_dataset)
    evals, eval_decoded = _split_rows(effective_eval_dataset)
    # Token for token over every row compared; once normalised over the rows decoded. An eval row counts when its
    # text is not empty (rows of special tokens only are no leaked example).
    exact = {tuple(r) for r in train}
    candidates = {i for i, r in enumerate(evals) if tuple(r) in exact}
    seen = {t for t in _normalised(train[:train_decoded], tokenizer) if t}
    texts = dict(enumerate(_normalised(evals[:eval_decoded], tokenizer)))
    candidates |= {i for i, t in texts.items() if t in seen}
    later = sorted(i for i in candidates if i not in texts)
    texts.update(zip(later, _normalised([evals[i] for i in later], tokenizer)))
    shared = [texts[i] for i in sorted(candidates) if texts[i]]
    if not shared:
        return None
    name = pipeline.name_of(effective_eval_dataset)
    how = (
        "once case and whitespace are normalised"
        if train_decoded == len(train) and eval_decoded == len(evals)
        else f"token for token (the first {train_decoded} training and {eval_decoded} evaluation rows also once "
        "case and whitespace are normalised)"
    )
    return finding(
        "FTD215",
        f"{len(shared)} of {len(evals)} evaluation rows{' (' + name + ')' if name else ''} "
        f"also appear among {len(train)} training rows {how} (e.g. "
        f"{shared[0][:120]!r}): evaluation scores them as unseen, so its metric is optimistic.",
        "Evaluate on rows the model does not train on: drop from the evaluation set every row whose "
        "normalised text is in the training set (`seen = {' '.join(t.lower().split()) for t in "
        "train_texts}`, then `eval_ds.filter(lambda e: norm(e[...]) not in seen)`), or split after "
        "deduplicating.",
        location=pipeline.location(effective_eval_dataset, pipeline.trainer),
        evidence={
            "shared": len(shared),
            "eval_rows": len(evals),
            "train_rows": len(train),
            "normalised_rows": {"train": train_decoded, "eval": eval_decoded},
        },
    )


@check("decode", codes=("FTD216",))
def one_label_column(effective_train_dataset, train_features, pipeline, target, task=None):
    """The dataset's other label-like columns must agree with the one the model receives."""
    ds = effective_train_dataset
    if not datasets.is_hf_dataset(ds) or not train_features or not isinstance(train_features[0], dict):
        return None
    used = datasets.label_key(train_features[0], target.label_names)
    if used is None or used not in ds.column_names:
        return None
    others = [
        c
        for c in ds.column_names
        if c != used and (c in datasets.LABEL_KEYS or datasets.class_label(ds, c) is not None)
    ]
    n = min(len(ds), 2000)
    mine = ds.select(range(n)).with_format(None)[used]
    out = []
    for col in others:
        theirs = ds.select(range(n)).with_format(None)[col]
        if any(isinstance(v, (list, dict)) for v in theirs[:5]) or type(theirs[0]) is not type(mine[0]):
            continue
        differ = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
        if not differ:
            continue
        i = differ[0]
        out.append(
            finding(
                "FTD216",
                f"The model trains on `{used}`, but the dataset also holds `{col}`, and the two "
                f"differ on {len(differ)} of {n} rows (row {i}: {used}={mine[i]!r}, {col}={theirs[i]!r}).",
                f'Keep one label column: drop the one you do not mean (`dataset.remove_columns(["{col}"])`'
                f"), or rename the right one to `{used}`.",
                location=pipeline.location(ds, pipeline.trainer),
                evidence={"used": used, "other": col, "differ": len(differ), "rows": n},
            )
        )
    return out


@check("decode", codes=("FTD217",))
def tokenizer_fits(train_features, model, pipeline, tokenizer):
    rows = [r for r in train_features if isinstance(r, dict) and "input_ids" in r]
    if not rows:
        return None
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk in {getattr(tokenizer, a, None) for a in ("eos_token_id", "bos_token_id", "pad_token_id")}:
        unk = None  # GPT-2 style: the "unknown" token is the end-of-text marker, which byte-level BPE never needs
    ids = [t for r in rows for t in datasets.flatten(r["input_ids"]) if t not in specials or t == unk]
    problems, evidence = [], {}
    if unk is not None and ids:
        rate = sum(1 for t in ids if t == unk) / len(ids)
        evidence["unknown_rate"] = rate
        if rate > 0.05:
            problems.append(f"{rate:.0%} of the sampled tokens are the unknown token `{tokenizer.unk_token}`")
    if _lowercases(tokenizer):
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        words = [t for t in vocab if t.strip("#▁Ġ").isalpha()]
        upper = sum(1 for t in words if any(c.isupper() for c in t))
        if words and upper / len(words) > 0.1:
            evidence["cased_vocabulary_share"] = upper / len(words)
            problems.append(
                f"the tokenizer lower-cases its input, but {upper / len(words):.0%} of its vocabulary is "
                "capitalised (a cased vocabulary: those embeddings are never used)"
            )
    rows_emb = models.embedding_rows(model)
    n_tok = datasets.safe_len(tokenizer)
    if rows_emb and n_tok and n_tok < 0.8 * rows_emb:
        evidence.update(tokenizer_size=n_tok, embedding_rows=rows_emb)
        problems.append(
            f"the tokenizer has {n_tok} tokens for an embedding table of {rows_emb} rows: every id is "
            "valid, but the model reads another vocabulary"
        )
    if not problems:
        return None
    names = [getattr(tokenizer, "name_or_path", None), getattr(getattr(model, "config", None), "_name_or_path", None)]
    text = "; ".join(problems)
    return finding(
        "FTD217",
        text[:1].upper() + text[1:] + ".",
        "Load the tokenizer from the model's own checkpoint: `AutoTokenizer.from_pretrained(checkpoint)` "
        "with the same `checkpoint` as the model"
        + (f" (tokenizer: {names[0]!r}, model: {names[1]!r})" if all(names) and names[0] != names[1] else "")
        + ".",
        location=pipeline.location(tokenizer),
        evidence=evidence,
    )


def _lowercases(tokenizer) -> bool:
    if getattr(tokenizer, "do_lower_case", False):
        return True
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    text = repr(normalizer) if normalizer is not None else ""
    return "Lowercase" in text or "lowercase=True" in text
