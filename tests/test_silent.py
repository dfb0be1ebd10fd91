"""Silent bugs: the run trains and measures, but learns or reports the wrong thing. Each is visible in the data or
the objects before training, and named with its evidence."""

from __future__ import annotations

import pytest

from conftest import findings_at

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
    report = check_pipeline("gpt2_clm_token_accuracy.py", stages=["memory"], options={"gpu_memory": 2 ** 20})
    (f,) = findings_at(report, "memory", "FTD805")
    assert "preprocess_logits_for_metrics" in f.fix and f.evidence["accumulated_bytes"] > 0
    clean = check_pipeline("gpt2_clm_token_accuracy.py", stages=["memory"])  # this machine's memory: no warning
    assert not findings_at(clean, "memory", "FTD805")


def test_multiple_choice_rows_are_measured_per_choice(check_pipeline):
    report = check_pipeline("swag_labels_one_based.py", stages=["decode"])
    assert " | " in report.stage("decode").evidence["first_sample"]["text"]
