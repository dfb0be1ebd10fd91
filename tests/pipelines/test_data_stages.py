"""The config, decode and collate stages on realistic broken pipelines, one bug each, and on correct ones."""

from __future__ import annotations

import pytest
from helpers import PIPELINES, findings_at

pytestmark = pytest.mark.slow

DATA_STAGES = ("setup", "config", "decode", "collate")

# (script, stage, code, the essential text of the fix)
BROKEN = [
    ("gpt2_reviews_cls_no_pad_token.py", "config", "FTD105", "pad_token"),
    (
        "gpt2_reviews_clm_padding_collator.py",
        "collate",
        "FTD304",
        "DataCollatorForLanguageModeling(tokenizer, mlm=False)",
    ),
    ("bert_mrpc_added_tokens.py", "config", "FTD103", "resize_token_embeddings(len(tokenizer))"),
    ("distilbert_long_reviews_untruncated.py", "decode", "FTD206", "truncation=True"),
    ("bert_reviews_float_labels.py", "decode", "FTD204", "num_labels=1"),
    ("distilbert_mnli_label_map_off_by_one.py", "decode", "FTD203", "'entailment': 0"),
    ("bert_mrpc_unlabelled_rows.py", "decode", "FTD203", '.filter(lambda e: e["label"] >= 0)'),
    ("distilbert_reviews_sentiment_column.py", "decode", "FTD202", 'rename_column("sentiment", "labels")'),
    ("bert_mrpc_fp16_half_weights.py", "config", "FTD108", "dtype=torch.float16"),
]


@pytest.mark.parametrize("name,stage,code,token", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_pipeline_fails_at_its_stage_with_the_fix(check_pipeline, name, stage, code, token):
    report = check_pipeline(name, stages=DATA_STAGES)
    found = findings_at(report, stage, code)
    assert found, {s.stage: [(f.code, f.detail) for f in s.findings] for s in report.stages}
    f = found[0]
    assert f.severity == "error"
    assert token in f.fix, f.fix
    assert f.location and f.location.rpartition(":")[0].endswith(name), f.location
    assert report.stage(stage).status == "fail" and not report.ok
    # One bug each: no other stage blames the pipeline for something else.
    others = [
        (s.stage, f.code)
        for s in report.stages
        for f in s.findings
        if f.severity == "error" and (s.stage, f.code) != (stage, code)
    ]
    assert others == [], others


def test_no_pad_token_names_the_padding_collator_and_skips_collate(check_pipeline):
    report = check_pipeline("gpt2_reviews_cls_no_pad_token.py", stages=DATA_STAGES)
    f = findings_at(report, "config", "FTD105")[0]
    assert "DataCollatorWithPadding" in f.detail
    assert "model.config.pad_token_id" in f.fix
    assert report.stage("collate").status == "skip" and "FTD105" in report.stage("collate").reason


def test_off_by_one_mapping_is_not_mistaken_for_too_few_outputs(check_pipeline):
    report = check_pipeline("distilbert_mnli_label_map_off_by_one.py", stages=DATA_STAGES)
    assert not findings_at(report, "config", "FTD101")  # num_labels=4 would train a dead class 0
    f = findings_at(report, "decode", "FTD203")[0]
    assert "shifted by 1" in f.detail and f.evidence["mapping"] == "LABEL2ID"


def test_float_labels_fix_maps_each_score_to_a_class_id(check_pipeline):
    f = findings_at(check_pipeline("bert_reviews_float_labels.py", stages=DATA_STAGES), "decode", "FTD204")[0]
    assert "to_id = {0.0: 0, 0.25: 1, 0.5: 2, 0.75: 3, 1.0: 4}" in f.fix


def test_sequences_past_the_positions_report_the_longest(check_pipeline):
    f = findings_at(check_pipeline("distilbert_long_reviews_untruncated.py", stages=DATA_STAGES), "decode", "FTD206")[0]
    assert f.evidence["longest"] > f.evidence["max_positions"] == 128
    assert "max_length=128" in f.fix


def test_course_broken_pipeline_reports_all_four_bugs_in_one_run(check_pipeline):
    report = check_pipeline("course_mnli_broken.py", stages=("setup", "config", "decode", "collate", "metrics"))
    assert findings_at(report, "decode", "FTD201")
    assert "num_labels=3" in findings_at(report, "config", "FTD101")[0].fix
    assert "DataCollatorWithPadding" in findings_at(report, "collate", "FTD301")[0].fix
    assert "argmax" in findings_at(report, "metrics", "FTD601")[0].fix
    assert not report.ok


def test_course_fixed_pipeline_is_ok(check_pipeline):
    report = check_pipeline("course_mnli_fixed.py")
    assert report.ok, [(f.code, f.detail) for f in report.findings]
    loud = [
        (s.stage, f.code) for s in report.stages if s.stage in DATA_STAGES for f in s.findings if f.severity != "info"
    ]
    assert loud == []


FIXED = sorted(p.name for p in PIPELINES.glob("*_fixed.py") if p.name != "course_mnli_fixed.py")


@pytest.mark.parametrize("name", FIXED)
def test_correct_pipelines_have_nothing_above_info_in_the_data_stages(check_pipeline, name):
    report = check_pipeline(name, stages=DATA_STAGES)
    loud = [(s.stage, f.code, f.detail) for s in report.stages for f in s.findings if f.severity != "info"]
    assert loud == []
    assert all(s.status == "pass" for s in report.stages), [(s.stage, s.status, s.reason) for s in report.stages]
