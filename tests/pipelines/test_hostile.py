"""Inputs nobody here wrote: streaming data, empty or unlabelled sets, resuming from nothing, compiled models,
warmup schedules, foreign objects in the script, notebooks, syntax errors, binaries, and --stages on its own.
Each gets a clear message or the right diagnosis, never a crash of ftdoctor."""

from __future__ import annotations

import json

import pytest
from helpers import findings_at, pipeline_path, run_cli

pytestmark = pytest.mark.slow


def _errors(report):
    return [(s.stage, f.code) for s in report.stages for f in s.findings if f.severity == "error"]


@pytest.mark.parametrize(
    "name",
    [
        "streaming_dataset_fixed.py",
        "loop_warmup_schedule_fixed.py",
        "reviews_multilabel_fixed.py",
        "foreign_objects_fixed.py",
    ],
)
def test_correct_pipeline_of_an_unusual_kind_is_clean(check_pipeline, name):
    report = check_pipeline(name)
    loud = [(s.stage, f.code, f.detail) for s in report.stages for f in s.findings if f.severity != "info"]
    assert report.ok and not loud, loud
    for stage in ("decode", "collate", "forward", "backward"):
        assert report.stage(stage).status == "pass", (stage, report.stage(stage).reason)


# script, stage, code, a token of the fix
BUGS = [
    ("empty_training_set.py", "decode", "FTD212", "len(dataset)"),
    ("resume_without_checkpoint.py", "config", "FTD109", "get_last_checkpoint"),
    ("reviews_unlabelled_rows.py", "decode", "FTD213", "is not None"),
    ("compiled_model_trainer.py", "decode", "FTD214", "torch_compile=True"),
    ("gpt2_clm_default_collator.py", "collate", "FTD304", "pad_token = tokenizer.eos_token"),
]


@pytest.mark.parametrize("name,stage,code,token", BUGS, ids=[b[0] for b in BUGS])
def test_hostile_bug_is_named_once(check_pipeline, name, stage, code, token):
    report = check_pipeline(name)
    (f,) = findings_at(report, stage, code)
    assert token in f.fix, f.fix
    assert _errors(report) == [(stage, code)], _errors(report)


def test_resume_points_at_the_train_call(check_pipeline):
    f = findings_at(check_pipeline("resume_without_checkpoint.py", stages=["config"]), "config", "FTD109")[0]
    lines = open(pipeline_path("resume_without_checkpoint.py")).read().splitlines()
    assert lines[int(f.location.rsplit(":", 1)[1]) - 1].startswith("trainer.train(resume_from_checkpoint=True)")


def test_streaming_is_sampled_not_measured(check_pipeline):
    report = check_pipeline("streaming_dataset_fixed.py", stages=["decode"])
    assert report.stage("decode").evidence["streaming_rows_sampled"]["train"] > 0


@pytest.mark.subprocess
def test_syntax_error_is_a_finding_at_its_line(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("from transformers import Trainer\nargs = dict(lr=2e-5\nprint(args)\n")
    proc = run_cli("check", str(script), "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    (f,) = [f for s in json.loads(proc.stdout)["stages"] for f in s["findings"]]
    assert f["code"] == "FTD010" and f["location"] == "train.py:2"


@pytest.mark.subprocess
def test_binary_file_is_refused_with_a_message_and_json(tmp_path):
    script = tmp_path / "model.bin"
    script.write_bytes(b"\x7fELF\x00\x01\x02" * 100)
    proc = run_cli("check", str(script), "--json", cwd=tmp_path, timeout=60)  # a hang fails here, not a slow machine
    assert proc.returncode == 2
    assert "binary file" in json.loads(proc.stdout)["error"]


def test_a_stage_alone_runs_what_it_depends_on(check_pipeline):
    report = check_pipeline("mrpc_bert_fixed.py", stages=["memory"])
    assert [s.stage for s in report.stages] == ["setup", "decode", "collate", "forward", "backward", "memory"]
    memory = report.stage("memory")
    assert memory.status == "pass" and memory.findings[0].evidence["peak_train_bytes"] > 0


def test_notebook_cells_run_and_findings_point_at_the_cell(tmp_path, monkeypatch):
    import style_matrix as sm

    from ftdoctor.process.parent import check_script

    monkeypatch.chdir(tmp_path)
    nb = tmp_path / "finetune.ipynb"
    nb.write_text(sm.render("num_labels_short", "notebook"))
    report = check_script(str(nb), in_process=True, timeout=300).report
    (f,) = findings_at(report, "config", "FTD101")
    assert f.location.startswith("finetune.ipynb#cell1:")
    from ftdoctor.core.source import source_lines

    _start, code = source_lines(f.location)
    assert "from_pretrained" in code  # the shown line is the cell's, not the notebook's JSON
