"""TRL and PEFT failures named at their cause: a tokenizer without a chat template, a template without generation
markers for an assistant-only loss, LoRA target modules the model lacks, an adapter loaded for inference, reentrant
checkpointing that cuts the adapters off, and trl/peft not installed. Each broken pipeline is walked the way a user
runs it; its correct twin must come out clean."""

from __future__ import annotations

import sys

import pytest
from helpers import findings_at, pipeline_path

pytestmark = pytest.mark.slow

pytest.importorskip("trl")
pytest.importorskip("peft")


def _errors(report):
    return [(s.stage, f.code, f.detail) for s in report.stages for f in s.findings if f.severity == "error"]


def _walk_script(path, monkeypatch, tmp_path, stages=None):
    from ftdoctor.process.parent import check_script

    monkeypatch.chdir(tmp_path)
    result = check_script(str(path), [], timeout=300, stages=stages, in_process=True)
    assert result.report is not None, result.message
    assert not result.report.internal_errors, result.report.internal_errors
    return result.report


def _line_of(path, start: str) -> int:
    """The first line of the file that starts (indentation aside) with ``start``."""
    with open(path) as f:
        return next(i for i, line in enumerate(f, 1) if line.strip().startswith(start))


# --- setup: chat templates ------------------------------------------------------------------------------------


def test_conversations_with_a_tokenizer_without_chat_template(check_pipeline):
    report = check_pipeline("trl_sft_lora_no_chat_template.py", stages=["setup"])
    [f] = findings_at(report, "setup")
    assert f.code == "FTD011", f.detail
    assert "`messages`" in f.detail and "chat_template" in f.detail
    assert "chat_template" in f.fix and "instruct" in f.fix and "clone_chat_template" in f.fix
    assert "`text` column" in f.fix
    path = pipeline_path("trl_sft_lora_no_chat_template.py")
    assert f.location == f"{path}:{_line_of(path, 'tokenizer = AutoTokenizer.from_pretrained')}"


ASSISTANT_ONLY = pipeline_path("trl_sft_assistant_only_fixed.py")
# A hand-written Llama-3-style template: renders the conversation, but marks nothing as the assistant's.
UNMARKED_TEMPLATE = """tokenizer.chat_template = (
    "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\\n\\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
)
"""


def _assistant_only_script(tmp_path, template: str):
    with open(ASSISTANT_ONLY) as f:
        source = f.read()
    anchor = "model = AutoModelForCausalLM.from_pretrained(model_id)\n"
    assert anchor in source
    path = tmp_path / "sft_assistant_only.py"
    path.write_text(source.replace(anchor, template + anchor, 1))
    return path


def test_assistant_only_loss_with_a_template_without_generation_markers(tmp_path, monkeypatch):
    script = _assistant_only_script(tmp_path, UNMARKED_TEMPLATE)
    report = _walk_script(script, monkeypatch, tmp_path, stages=["setup"])
    [f] = findings_at(report, "setup")
    assert f.code == "FTD015", f.detail
    assert "{% generation %}" in f.fix and "assistant_only_loss=False" in f.fix
    assert f.location.endswith(f"{script.name}:{_line_of(script, 'tokenizer.chat_template = (')}")


def test_assistant_only_loss_with_no_template_at_all(tmp_path, monkeypatch):
    # TRL looks for the markers in a template that is None and fails with a TypeError of `re`.
    script = _assistant_only_script(tmp_path, "tokenizer.chat_template = None\n")
    report = _walk_script(script, monkeypatch, tmp_path, stages=["setup"])
    [f] = findings_at(report, "setup")
    assert f.code == "FTD011", f.detail
    assert "chat_template" in f.fix and "{% generation %}" in f.fix


def test_assistant_only_fixed_is_clean_at_setup(check_pipeline):
    report = check_pipeline("trl_sft_assistant_only_fixed.py", stages=["setup"])
    assert report.ok, _errors(report)


# --- setup: LoRA target modules -------------------------------------------------------------------------------


def test_lora_target_modules_the_model_lacks(check_pipeline):
    report = check_pipeline("peft_trainer_clm_target_modules_not_found.py", stages=["setup"])
    [f] = findings_at(report, "setup")
    assert f.code == "FTD013", f.detail
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert f"`{name}`" in f.detail
    assert "lm_head" not in f.detail  # the output head is not a LoRA target
    assert 'target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]' in f.fix
    assert 'target_modules="all-linear"' in f.fix
    assert f.evidence["target_modules"] == ["query", "value"]
    path = pipeline_path("peft_trainer_clm_target_modules_not_found.py")
    line = _line_of(path, 'target_modules=["query"')
    assert f.location == f"{path}:{line}"


@pytest.mark.parametrize("name", ["peft_trainer_clm_fixed.py", "trl_sft_lora_fixed.py"])
def test_correct_adapters_and_templates_are_clean_at_setup(check_pipeline, name):
    report = check_pipeline(name, stages=["setup"])
    assert report.ok, _errors(report)
    assert not findings_at(report, "setup")


# --- setup: trl / peft not installed --------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["trl", "peft"])
def test_trl_or_peft_not_installed(check_pipeline, monkeypatch, missing):
    # None in sys.modules is how Python itself blocks an import: `import trl` raises ModuleNotFoundError with
    # name="trl", exactly what a missing package raises.
    monkeypatch.setitem(sys.modules, missing, None)
    report = check_pipeline("trl_sft_lora_fixed.py", stages=["setup"])
    [f] = findings_at(report, "setup")
    assert f.code == "FTD014", f.detail
    assert f"`{missing}`" in f.detail
    assert "pip install 'trl>=" in f.fix and "'peft>=" in f.fix and "pytest-ftdoctor" not in f.fix
    path = pipeline_path("trl_sft_lora_fixed.py")
    assert f.location == f"{path}:{_line_of(path, f'from {missing} import')}"


def test_a_missing_module_inside_trl_is_not_trl_missing(tmp_path, monkeypatch):
    """trl installed, one of its own imports missing: not this rule (the module named is not trl)."""
    script = tmp_path / "imports.py"
    script.write_text("import trl.no_such_module_here\n")
    report = _walk_script(script, monkeypatch, tmp_path, stages=["setup"])
    assert [f.code for f in findings_at(report, "setup")] == ["FTD005"]


# --- backward: adapters -----------------------------------------------------------------------------------------


def test_adapter_loaded_for_inference(check_pipeline):
    report = check_pipeline("peft_resume_adapter_not_trainable.py", stages=["backward"])
    [f] = findings_at(report, "backward", "FTD507")
    assert (
        "is_trainable=True" in f.fix and "PeftModel.from_pretrained(base_model, adapter_id, is_trainable=True)" in f.fix
    )
    assert "inference" in f.fix
    assert "lm_head" not in f.fix and "requires_grad = True" not in f.fix  # never unfreeze the base of an adapter
    path = pipeline_path("peft_resume_adapter_not_trainable.py")
    assert f.location == f"{path}:{_line_of(path, 'model = PeftModel.from_pretrained(')}"


def test_reentrant_checkpointing_without_input_grads(check_pipeline):
    report = check_pipeline("peft_loop_gradient_checkpointing_no_input_grads.py", stages=["backward"])
    [f] = findings_at(report, "backward", "FTD508")
    assert "lora_A" in f.detail and "embeddings are frozen" in f.detail
    assert "model.enable_input_require_grads()" in f.fix and '"use_reentrant": False' in f.fix
    assert not findings_at(report, "backward", "FTD505") and not findings_at(report, "backward", "FTD501")
    path = pipeline_path("peft_loop_gradient_checkpointing_no_input_grads.py")
    assert f.location == f"{path}:{_line_of(path, 'return checkpoint(')}"


@pytest.mark.parametrize("name", ["peft_loop_gradient_checkpointing_fixed.py", "peft_resume_adapter_fixed.py"])
def test_correct_adapter_pipelines_are_clean(check_pipeline, name):
    report = check_pipeline(name, stages=["backward"])
    assert report.ok, _errors(report)
    assert report.stage("backward").status == "pass"
