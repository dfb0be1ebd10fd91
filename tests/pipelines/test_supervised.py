"""The supervised-token contract of causal-LM pipelines (collate stage): which tokens the loss trains on.

Each bug class runs as a fixture pipeline (TRL or plain Trainer) or as a one-line variant of a correct one, and
asserts the stage, the code and the fix's essential token; the correct counterparts must come out clean. The
trained-token view (one row with its trained tokens marked) is checked in the JSON evidence and the text report.
"""

from __future__ import annotations

import pytest
from helpers import findings_at, pipeline_path

pytestmark = pytest.mark.slow

pytest.importorskip("peft")
pytest.importorskip("trl")


def _variant(tmp_path, name: str, old: str, new: str) -> str:
    """A copy of fixture pipeline `name` with one change, written beside the test's working directory."""
    source = open(pipeline_path(name), encoding="utf-8").read()
    assert old in source, f"{old!r} not in {name}"
    path = tmp_path / f"variant_{name}"
    path.write_text(source.replace(old, new), encoding="utf-8")
    return str(path)


def _check(path, tmp_path, monkeypatch):
    from ftdoctor.process.parent import check_script

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    result = check_script(path, timeout=300, in_process=True, stages=["decode", "collate", "forward"])
    assert result.report is not None, result.message
    assert not result.report.internal_errors, result.report.internal_errors
    return result.report


def _errors(report):
    return [(st.stage, f.code) for st in report.stages for f in st.findings if f.severity == "error"]


BROKEN = [
    # A completion collator whose response template is found in no row: every label -100.
    ("peft_trainer_completion_collator_matches_nothing.py", "FTD324", "in context"),
    # pad == eos, and DataCollatorForLanguageModeling masks every pad id: EOS never trained.
    ("peft_trainer_clm_pad_is_eos.py", "FTD325", "<|finetune_right_pad_id|>"),
    # TRL assistant-only loss with max_length cutting every conversation inside the answer.
    ("trl_sft_assistant_only_max_length_cuts_answer.py", "FTD326", "max_length"),
    # Documents concatenated into blocks with no EOS between them.
    ("peft_trainer_clm_packed_without_eos.py", "FTD329", "eos_token"),
    # The Llama 3 template writes BOS, and the rendered text is tokenized with special tokens again.
    ("peft_trainer_chat_double_bos.py", "FTD330", "add_special_tokens=False"),
]


@pytest.mark.parametrize("name, code, token", BROKEN)
def test_broken_fixture_named_at_collate(check_pipeline, name, code, token):
    report = check_pipeline(name, stages=["decode", "collate", "forward"])
    found = findings_at(report, "collate", code)
    assert found, [(st.stage, [f.code for f in st.findings]) for st in report.stages]
    assert token in found[0].fix, found[0].fix
    assert found[0].location, "the finding points at the script"


def test_no_supervised_token_is_the_one_root_cause(check_pipeline):
    """Nothing trained makes the loss 0/0: the NaN is not reported again as its own problem."""
    report = check_pipeline(
        "peft_trainer_completion_collator_matches_nothing.py", stages=["decode", "collate", "forward", "backward"]
    )
    assert _errors(report) == [("collate", "FTD324")]
    assert report.stage("forward").status == "skip"
    f = findings_at(report, "collate", "FTD324")[0]
    assert "Could not find response template" in f.detail  # the collator's own warning, quoted
    assert f.evidence["trained_per_row"] == [0] * len(f.evidence["trained_per_row"])


def test_answer_truncated_in_a_plain_trainer(tmp_path, monkeypatch):
    """The same truncation with a hand-written completion collator and `truncation=True, max_length=...`."""
    path = _variant(
        tmp_path,
        "peft_trainer_completion_collator_fixed.py",
        'return tokenizer(example["prompt"] + example["completion"] + tokenizer.eos_token)',
        'return tokenizer(example["prompt"] + example["completion"] + tokenizer.eos_token, '
        "truncation=True, max_length=12)",
    )
    report = _check(path, tmp_path, monkeypatch)
    found = findings_at(report, "collate", "FTD326")
    assert found, _errors(report)
    assert "max_length" in found[0].fix


def test_answers_without_eos(tmp_path, monkeypatch):
    """Completion-only rows whose answer ends without EOS: the model never learns to stop."""
    path = _variant(
        tmp_path,
        "peft_trainer_completion_collator_fixed.py",
        'return tokenizer(example["prompt"] + example["completion"] + tokenizer.eos_token)',
        'return tokenizer(example["prompt"] + example["completion"])',
    )
    report = _check(path, tmp_path, monkeypatch)
    found = findings_at(report, "collate", "FTD328")
    assert found, [(st.stage, [f.code for f in st.findings]) for st in report.stages]
    assert "eos_token" in found[0].fix


def test_pad_is_eos_in_a_loop(tmp_path, monkeypatch):
    """A hand-written loop whose collate_fn masks the labels of the pad id, with pad == eos (Qwen's <|im_end|>)."""
    path = _variant(
        tmp_path,
        "peft_loop_fixed.py",
        'labels[batch["attention_mask"] == 0] = -100  # padding only: <|im_end|> stays a label',
        "tokenizer.pad_token = tokenizer.eos_token\n    labels[labels == tokenizer.pad_token_id] = -100",
    )
    report = _check(path, tmp_path, monkeypatch)
    assert ("collate", "FTD325") in _errors(report)


@pytest.mark.parametrize(
    "name",
    [
        "peft_trainer_clm_fixed.py",  # blocks of documents with EOS between them, a distinct pad token
        "peft_trainer_completion_collator_fixed.py",  # the template searched as it appears in context
        "peft_trainer_chat_fixed.py",
        "trl_sft_assistant_only_fixed.py",  # pad == eos, but TRL masks padding by position
        "trl_sft_completion_only_fixed.py",
        "trl_sft_packing_fixed.py",  # padding-free packing: documents split by position_ids
        "trl_dpo_lora_fixed.py",  # no labels: the completion mask says what is trained
        "peft_loop_fixed.py",  # a collate_fn that tokenizes the chat text itself
        "gpt2_causal_lm_fixed.py",  # GPT-2 blocks: the EOS between reviews stays a label
    ],
)
def test_correct_counterparts_are_clean(check_pipeline, name):
    report = check_pipeline(name, stages=["decode", "collate", "forward"])
    loud = [(st.stage, f.code) for st in report.stages for f in st.findings if f.severity in ("error", "warning")]
    assert not loud, loud


def test_trained_token_view(check_pipeline):
    """Assistant-only loss: the view shows the answers trained and the prompt masked, in JSON and in the text."""
    from ftdoctor.output.terminal import render_text

    report = check_pipeline("trl_sft_assistant_only_fixed.py", stages=["decode", "collate"])
    view = report.stage("collate").evidence["trained_tokens"]
    trained = "".join(text for text, on in view["segments"] if on)
    masked = "".join(text for text, on in view["segments"] if not on)
    assert "says" in trained and "<|eot_id|>" in trained  # the answer and its end of turn
    assert "<|start_header_id|>user" in masked and "says" not in masked
    assert 0 < view["trained"] < view["tokens"]
    text = render_text(report)
    assert "as trained" in text and "«" in text
