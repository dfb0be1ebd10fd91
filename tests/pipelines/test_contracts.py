"""Task contracts: a broken variant of each reference is reported at the stage where the contract breaks, with a
fix that names the concrete change and points at the reference."""

from __future__ import annotations

import pytest
from helpers import findings_at

pytestmark = pytest.mark.slow

# script, stages to run, stage of the finding, code, severity, tokens the fix must hold
CASES = [
    (
        "ner_labels_not_aligned.py",
        "decode",
        "FTD221",
        "error",
        ["word_ids()", "-100", "reference show token-classification"],
    ),
    ("ner_labels_copied_to_subtokens.py", "decode", "FTD222", "warning", ["-100 if word_id == previous_word", "I-X"]),
    (
        "qa_positions_off.py",
        "decode",
        "FTD223",
        "error",
        ["offset_mapping", "idx + 1", "reference show question-answering"],
    ),
    ("qa_answers_truncated.py", "decode", "FTD225", "error", ["return_overflowing_tokens=True", "stride"]),
    (
        "clm_labels_preshifted.py",
        "collate",
        "FTD321",
        "error",
        ["copy of `input_ids`", "mlm=False", "reference show causal-lm"],
    ),
    ("clm_pads_not_masked.py", "collate", "FTD322", "error", ["-100 where `attention_mask` is 0"]),
    (
        "seq2seq_labels_padded_with_pad_id.py",
        "collate",
        "FTD323",
        "error",
        ["DataCollatorForSeq2Seq(tokenizer, model=model)", "reference show translation"],
    ),
    (
        "seq2seq_decoder_inputs_not_shifted.py",
        "forward",
        "FTD421",
        "error",
        ["prepare_decoder_input_ids_from_labels", "reference show translation"],
    ),
    (
        "seq2seq_metrics_without_minus100_removed.py",
        "metrics",
        "FTD621",
        "error",
        ["np.where(labels != -100, labels, tokenizer.pad_token_id)", "reference show summarization"],
    ),
    (
        "ner_metrics_count_ignored_positions.py",
        "metrics",
        "FTD622",
        "warning",
        ["labels != -100", "reference show token-classification"],
    ),
]
# Only the stages a finding needs, so the file stays fast (metrics needs collate's eval batch and forward's copy).
NEEDS = {
    "decode": ["decode"],
    "collate": ["decode", "collate"],
    "forward": ["decode", "collate", "forward"],
    "metrics": ["decode", "collate", "metrics"],
}
TASK = {"ner": "token-classification", "qa": "question-answering", "clm": "causal-lm"}


@pytest.mark.parametrize("script,stage,code,severity,tokens", CASES, ids=[c[0].removesuffix(".py") for c in CASES])
def test_broken_contract_is_reported(check_pipeline, script, stage, code, severity, tokens):
    report = check_pipeline(script, stages=NEEDS[stage])
    found = findings_at(report, stage, code)
    assert found, [(f.code, f.detail) for f in report.findings]
    f = found[0]
    assert f.severity == severity
    for token in tokens:
        assert token in f.fix, (token, f.fix)
    assert "ftdoctor reference show" in f.fix
    # The contract finding is the only complaint: nothing else in the pipeline is wrong.
    others = [(g.code, g.detail) for g in report.findings if g.code != code and g.severity != "info"]
    assert not others, others
    prefix = script.split("_")[0]
    if prefix in TASK:
        assert report.task == TASK[prefix]


def test_answers_lost_are_counted(check_pipeline):
    f = findings_at(check_pipeline("qa_answers_truncated.py", stages=["decode"]), "decode", "FTD225")[0]
    assert f.evidence["answers_lost"] == f.evidence["questions"] > 0
    assert f"{f.evidence['answers_lost']} of {f.evidence['questions']}" in f.detail
