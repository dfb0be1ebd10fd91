"""The setup stage: scripts that fail before `trainer.train()`, and the harness outcomes (no training reached)."""

from __future__ import annotations

import ast
import json

import pytest
from helpers import findings_at, pipeline_path, run_cli

pytestmark = pytest.mark.slow

SETUP_ONLY = ("setup",)


def statement_lines(name: str, marker: str) -> range:
    """The lines of the statement in pipeline ``name`` that holds ``marker`` (a call spread over lines is whole)."""
    path = pipeline_path(name)
    source = open(path, encoding="utf-8").read()
    tree = ast.parse(source)
    docs = {
        i
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        for i in range(node.lineno, node.end_lineno + 1)
    }
    line = next(i for i, text in enumerate(source.splitlines(), 1) if marker in text and i not in docs)
    best = None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.stmt)
            and not isinstance(node, (ast.FunctionDef, ast.If))
            and node.lineno <= line <= node.end_lineno
            and (best is None or node.lineno >= best.lineno)
        ):
            best = node
    return range(best.lineno, best.end_lineno + 1)


def only_finding(report, stage: str, code: str):
    found = findings_at(report, stage, code)
    assert len(found) == 1, [(f.code, f.detail) for f in findings_at(report, stage)]
    assert report.stage(stage).status == "fail"
    assert not report.ok
    return found[0]


def assert_points_at(finding, name: str, marker: str) -> None:
    path, _, line = finding.location.rpartition(":")
    assert path.endswith(name), finding.location
    assert int(line) in statement_lines(name, marker), (finding.location, marker)


# (script, code, the essential text of the fix, a marker of the line it must point at)
SETUP_CASES = [
    ("v4_evaluation_strategy.py", "FTD001", 'eval_strategy="epoch"', "evaluation_strategy="),
    ("v4_trainer_tokenizer.py", "FTD001", "processing_class=tokenizer", "tokenizer=tokenizer,"),
    ("v4_overwrite_output_dir.py", "FTD001", "Remove `overwrite_output_dir=", "overwrite_output_dir=True"),
    ("v4_adamw_import.py", "FTD002", "torch.optim", "    AdamW,"),
    ("bert_mrpc_best_model_strategy_mismatch.py", "FTD106", 'save_strategy="epoch"', 'save_strategy="steps"'),
    ("distilbert_mnli_bf16_on_cpu.py", "FTD108", "torch.cuda.is_bf16_supported()", "bf16=True"),
    ("missing_csv_file.py", "FTD004", "Path(__file__).parent", "data/train.csv"),
]


@pytest.mark.parametrize("name,code,token,marker", SETUP_CASES, ids=[c[0] for c in SETUP_CASES])
def test_setup_failure_is_diagnosed_at_the_users_line(check_pipeline, name, code, token, marker):
    if code == "FTD108":
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            pytest.skip("bf16 runs on this GPU: the script is correct here")
    report = check_pipeline(name, stages=SETUP_ONLY)
    f = only_finding(report, "setup", code)
    assert token in f.fix, f.fix
    assert_points_at(f, name, marker)


def test_setup_failure_skips_the_later_stages(check_pipeline):
    report = check_pipeline("v4_evaluation_strategy.py", stages=("setup", "config", "decode", "collate"))
    assert findings_at(report, "setup", "FTD001")
    for stage in ("config", "decode", "collate"):
        assert report.stage(stage).status == "skip"
        assert "setup" in report.stage(stage).reason


def test_hub_name_offline_names_the_checkpoint_and_the_offline_mode(check_pipeline):
    report = check_pipeline("hub_model_offline.py", stages=SETUP_ONLY)
    f = only_finding(report, "setup", "FTD003")
    assert "hf download bert-base-uncased" in f.fix
    assert "HF_HUB_OFFLINE=1" in f.detail  # the tests run offline: the reason is the offline mode, not the network
    assert f.evidence["name"] == "bert-base-uncased"
    assert_points_at(f, "hub_model_offline.py", "AutoTokenizer.from_pretrained(checkpoint)")


def test_missing_file_names_the_path_and_working_directory(check_pipeline, tmp_path):
    f = only_finding(check_pipeline("missing_csv_file.py", stages=SETUP_ONLY), "setup", "FTD004")
    assert "data/train.csv" in f.detail and str(tmp_path) in f.detail


def test_strategy_mismatch_names_both_strategies(check_pipeline):
    f = only_finding(check_pipeline("bert_mrpc_best_model_strategy_mismatch.py", stages=SETUP_ONLY), "setup", "FTD106")
    assert 'eval_strategy="epoch"' in f.detail and 'save_strategy="steps"' in f.detail


# --- harness outcomes: no pipeline to walk, exit code 2 -------------------------------------------


HARNESS_CASES = [
    ("harness_never_trains.py", (), "without starting training"),
    ("harness_exits_early.py", (), "sys.exit(3)"),
    ("harness_hangs.py", ("--timeout", "3"), "within 3 s"),
]


@pytest.mark.subprocess
@pytest.mark.parametrize("name,options,message", HARNESS_CASES, ids=[c[0] for c in HARNESS_CASES])
def test_harness_outcome_exits_2_with_a_message_and_json(name, options, message, tmp_path):
    result = run_cli("check", "--json", *options, pipeline_path(name), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    report = json.loads(result.stdout)  # stdout holds only the JSON document
    assert report["ok"] is False and report["schema"] == "ftdoctor.report/1"
    assert message in report["error"]
