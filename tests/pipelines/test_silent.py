"""Silent bugs: the run trains and measures, but learns or reports the wrong thing. Each is visible in the data or
the objects before training, and named with its evidence."""

from __future__ import annotations

import pytest
from helpers import findings_at

pytestmark = pytest.mark.slow

CASES = [
    ("mrpc_eval_on_train_rows.py", ["decode"], "decode", "FTD215", "shared", "not in seen"),
    ("reviews_two_label_columns.py", ["decode"], "decode", "FTD216", "differ", "remove_columns"),
    ("gpt2_model_bert_tokenizer.py", ["decode"], "decode", "FTD217", "embedding_rows", "from_pretrained(checkpoint)"),
]


@pytest.mark.parametrize("script,stages,stage,code,evidence,token", CASES, ids=[c[0] for c in CASES])
def test_silent_bug_is_named_with_evidence(check_pipeline, script, stages, stage, code, evidence, token):
    report = check_pipeline(script, stages=stages)
    (f,) = findings_at(report, stage, code)
    assert evidence in f.evidence and token in f.fix
    assert report.ok  # silent: a warning, the run itself would not fail


def test_eval_logits_pile_up_is_sized_against_the_device(check_pipeline):
    report = check_pipeline("gpt2_clm_token_accuracy.py", stages=["memory"], options={"gpu_memory": 2**20})
    (f,) = findings_at(report, "memory", "FTD805")
    assert "preprocess_logits_for_metrics" in f.fix and f.evidence["accumulated_bytes"] > 0
    clean = check_pipeline("gpt2_clm_token_accuracy.py", stages=["memory"])  # this machine's memory: no warning
    assert not findings_at(clean, "memory", "FTD805")


def test_multiple_choice_rows_are_measured_per_choice(check_pipeline):
    report = check_pipeline("swag_labels_one_based.py", stages=["decode"])
    assert " | " in report.stage("decode").evidence["first_sample"]["text"]


def test_overlap_is_found_token_for_token_beyond_the_rows_it_decodes(monkeypatch):
    """FTD215 reads each split token for token (cheap) and decodes only a bounded share of it for the normalised
    comparison: an eval row equal to a training row past that share is still found, a case-only variant is found
    within it, rows of special tokens only never count, and the finding says which comparison reached how far."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    import ftdoctor.checks.decode.silent_bugs as decode
    from ftdoctor.fixtures import fixture_path

    tok = AutoTokenizer.from_pretrained(fixture_path("tokenizers/gpt2"))
    words = [
        "the movie was good",
        "a bad film",
        "nice acting here",
        "the plot was thin",
        "great music",
        "boring and long",
        "fine work",
        "what a mess",
    ]
    train_texts = [f"{w} {i}" for i, w in enumerate(words * 8)]
    ids = lambda texts: Dataset.from_dict({"input_ids": [tok(t)["input_ids"] for t in texts]})  # noqa: E731
    late, early = train_texts[-1], train_texts[0]
    evals = ids([early.upper(), late, "unseen words only", ""])
    assert tok(early.upper())["input_ids"] != tok(early)["input_ids"]  # a cased tokenizer: only decoding finds it

    class Pipe:
        trainer = None

        def name_of(self, obj):
            return "eval"

        def location(self, *objs):
            return None

    per_row = len(tok(early)["input_ids"])
    monkeypatch.setattr(decode, "NORMALISED_TOKENS", 2 * per_row)  # decodes about two rows of each split
    f = decode.train_eval_overlap(ids(train_texts), evals, Pipe(), tok, task="text-classification")
    assert f.evidence["shared"] == 2 and f.evidence["train_rows"] == len(train_texts), f.evidence
    assert f.evidence["normalised_rows"]["train"] < len(train_texts)
    assert "token for token" in f.detail
    monkeypatch.setattr(decode, "OVERLAP_TOKENS", per_row * 10)  # the token-for-token scan bounded in tokens too
    f = decode.train_eval_overlap(ids(train_texts), evals, Pipe(), tok, task="text-classification")
    lengths = [len(tok(t)["input_ids"]) for t in train_texts]
    n = f.evidence["train_rows"]
    assert sum(lengths[:n]) <= per_row * 10 < sum(lengths[: n + 1]), (n, lengths)
    assert f.evidence["shared"] == 1, f.evidence  # the late row is past the scan; the case variant is found
