"""API drift from the libraries' own records: the table (checks/api_drift_table.json), its generator on a small
made-up history, and each form of exception the table explains, raised by the installed libraries themselves, with
a near miss beside each that must stay silent."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from helpers import ROOT
from rules._build import codes, findings, one, run_script


@pytest.fixture(autouse=True)
def _run_from_the_scripts_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _build_module():
    spec = importlib.util.spec_from_file_location("api_drift_build", ROOT / "benchmarks" / "api_drift" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- the table ------------------------------------------------------------------------------------------------------


def test_every_entry_names_its_source_and_a_replacement_or_what_to_do():
    from ftdoctor.checks import _drift

    entries = _drift.table()
    assert len(entries) > 50
    libraries = {d.library for d in entries}
    assert {"transformers", "datasets", "trl", "peft", "accelerate"} <= libraries
    for d in entries:
        assert d.kind in {"argument", "import", "method", "attribute", "signature"}, d
        assert d.source and ("github.com/" in d.source or "installed" in d.source), d
        assert d.replacement or len(d.note) > 10, d
        assert d.version and d.version[0].isdigit(), d
        assert (d.kind == "signature") == (d.argument is not None), d


def test_the_table_records_the_renames_scripts_meet_with_their_replacements():
    from ftdoctor.checks import _drift

    def replacement(kind, owner, name):
        found = _drift.find(kind, name, [owner])
        assert found is not None, (kind, owner, name)
        return found.replacement

    assert replacement("argument", "TrainingArguments", "evaluation_strategy") == "eval_strategy"
    assert replacement("argument", "SFTConfig", "max_seq_length") == "max_length"
    assert replacement("import", "peft", "prepare_model_for_int8_training") == "prepare_model_for_kbit_training"
    assert replacement("import", "datasets", "load_metric") == "evaluate.load"
    assert replacement("attribute", "DistributedType", "TPU") == "XLA"
    assert replacement("attribute", "PreTrainedTokenizerBase", "as_target_tokenizer") == "text_target"
    sig = [d for d in _drift.signature_drifts("compute_loss") if d.argument == "num_items_in_batch"]
    assert sig and "num_items_in_batch" in sig[0].replacement


def test_reading_the_table_stays_out_of_the_cli_start():
    # `ftdoctor --help` and `explain` import the checks; the table is read only when an exception is.
    import subprocess

    code = (
        "import sys, ftdoctor.checks.setup.script, ftdoctor.checks.forward; "
        "from ftdoctor.checks import _drift; print(_drift.table.cache_info().currsize, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0"


# --- the generator, on a made-up history -----------------------------------------------------------------------------

OLD = """
import warnings
from dataclasses import dataclass

@dataclass
class Args:
    output_dir: str
    evaluation_strategy: str = "no"
    eval_strategy: str = "no"
    old_flag: bool = False

    def __post_init__(self):
        if self.evaluation_strategy != "no":
            warnings.warn("`evaluation_strategy` is deprecated, use `eval_strategy` instead", FutureWarning)

def old_helper(x):
    warnings.warn("old_helper is deprecated and will be removed. Use new_helper instead.")
    return x
"""
NEW = """
from dataclasses import dataclass

@dataclass
class Args:
    output_dir: str
    eval_strategy: str = "no"

def new_helper(x):
    return x
"""


def test_generator_reads_removals_and_replacements_from_deprecation_code():
    build = _build_module()
    old, new = build.class_facts(OLD, "Args"), build.class_facts(NEW, "Args")
    gone = build.removals([("1.0", set(old["arguments"])), ("2.0", set(new["arguments"]))])
    assert gone == {"evaluation_strategy": (0, "2.0"), "old_flag": (0, "2.0")}
    notes = build.deprecation_notes(OLD, "evaluation_strategy")
    assert [(n[2]) for n in notes] == ["eval_strategy"]
    assert build.deprecation_notes(OLD, "old_helper")[0][2] == "new_helper"
    assert build.deprecation_notes(OLD, "old_flag") == []  # removed without a word: no replacement made up
    # The same input gives the same output, byte for byte.
    again = [build.deprecation_notes(OLD, n) for n in ("evaluation_strategy", "old_helper")]
    assert again == [build.deprecation_notes(OLD, n) for n in ("evaluation_strategy", "old_helper")]
    assert build.merge(list(reversed(_entries()))) == build.merge(_entries())


def test_generator_reads_deprecation_helpers_and_migration_guides():
    build = _build_module()
    src = 'class E:\n    TPU = DeprecatedFieldDescriptor("TPU", "XLA")\n'
    assert build.deprecation_notes(src, "TPU")[0][2] == "XLA"
    src = '@deprecate_kwarg("tokenizer", "0.14.0", "processing_class")\ndef __init__(self): pass\n'
    assert build.deprecation_notes(src, "tokenizer")[0][2] == "processing_class"
    guide = "## Removing arguments in `Args`\n\n- `no_cuda` -> `use_cpu`\n- `model_path` in train() -> `resume`\n"
    got = build.guide_entries(guide, "lib", "5.0", "guide.md")
    assert [(e["owner"], e["name"], e["replacement"], e["source"]) for e in got] == [
        ("Args", "no_cuda", "use_cpu", "guide.md#L3"),
        ("Args.train", "model_path", "resume", "guide.md#L4"),
    ]


def test_generator_adds_a_signature_change_only_where_the_method_still_has_the_parameter():
    build = _build_module()
    history = [("4.45", {"compute_loss": ["model", "inputs"]}), ("4.46", {"compute_loss": ["model", "inputs", "n"]})]
    assert build.additions(history) == {("compute_loss", "n"): "4.46"}
    history.append(("4.50", {"compute_loss": ["model", "inputs"]}))
    assert build.additions(history) == {}


def _entries():
    base = {"library": "lib", "kind": "argument", "owner": "Args", "version": "2.0", "source": "s"}
    return [
        {**base, "name": "a", "replacement": None, "note": "removed in lib 2.0 with no replacement named in its code"},
        {**base, "name": "a", "replacement": "b", "note": "use b"},
        {**base, "name": "c", "replacement": None, "note": "delete it"},
    ]


# --- each form, raised by the installed libraries ------------------------------------------------------------------


def test_trainer_argument_moved_to_the_config_class(tmp_path):
    cap = run_script(tmp_path, 'from trl import SFTTrainer\nSFTTrainer(model=None, dataset_text_field="text")\n')
    f = one("FTD001", capture=cap)
    assert f.evidence["replacement"] == "SFTConfig.dataset_text_field" and f.evidence["library"] == "trl"
    assert f.fix.startswith('Pass `dataset_text_field="text"` to `SFTConfig(...)`')


def test_config_argument_renamed_keeps_the_value_passed(tmp_path):
    cap = run_script(tmp_path, 'from trl import SFTConfig\nSFTConfig("out", max_seq_length=8 * 64)\n')
    f = one("FTD001", capture=cap)
    assert f.fix == "Use `max_length=8 * 64` instead of `max_seq_length=...`."
    assert "github.com/huggingface/trl" in f.evidence["source"]


def test_a_subclass_of_the_arguments_finds_its_base_s_entry(tmp_path):
    cap = run_script(
        tmp_path,
        "from transformers import Seq2SeqTrainingArguments\n"
        "class MyArgs(Seq2SeqTrainingArguments):\n    pass\n"
        'MyArgs("out", evaluation_strategy="steps")\n',
    )
    assert one("FTD001", capture=cap).fix == 'Use `eval_strategy="steps"` instead of `evaluation_strategy=...`.'


def test_peft_and_accelerate_constructor_arguments(tmp_path):
    cap = run_script(tmp_path, "from peft import LoraConfig\nLoraConfig(r=8, enable_lora=[True])\n")
    f = one("FTD001", capture=cap)
    assert f.evidence["library"] == "peft" and f.fix.startswith("Remove `enable_lora=...`")


def test_an_unknown_argument_that_is_no_typo_gets_no_drift_finding(tmp_path):
    cap = run_script(tmp_path, 'from trl import SFTConfig\nSFTConfig("out", zzqx_qqq=1)\n')
    assert codes(findings("FTD001", capture=cap)) == ["FTD005"]


def test_an_argument_removed_from_another_class_is_not_blamed_on_this_one(tmp_path):
    # dataset_text_field left SFTTrainer for SFTConfig; a class of the user's own that never had it is no drift.
    cap = run_script(
        tmp_path, "class Mine:\n    def __init__(self, x):\n        pass\nMine(1, dataset_text_field='text')\n"
    )
    assert codes(findings("FTD001", capture=cap)) == ["FTD005"]


def test_misspelt_argument_of_another_library_suggests_the_real_one(tmp_path):
    cap = run_script(tmp_path, 'from trl import SFTConfig\nSFTConfig("out", learning_rat=1e-4)\n')
    assert one("FTD009", capture=cap).evidence["suggestion"] == "learning_rate"


def test_import_removed_from_datasets_points_at_evaluate(tmp_path):
    cap = run_script(tmp_path, "from datasets import load_dataset, load_metric\n")
    f = one("FTD002", capture=cap)
    assert f.evidence["replacement"] == "evaluate.load" and "evaluate.load(...)" in f.fix
    assert f.location.endswith("train.py:1")


def test_import_removed_from_peft_names_its_successor(tmp_path):
    cap = run_script(tmp_path, "from peft import prepare_model_for_int8_training\n")
    assert one("FTD002", capture=cap).fix == "from peft import prepare_model_for_kbit_training"


def test_module_attribute_removed(tmp_path):
    cap = run_script(tmp_path, 'import datasets\nmetric = datasets.load_metric("accuracy")\n')
    assert one("FTD002", capture=cap).evidence["replacement"] == "evaluate.load"


def test_an_import_from_the_user_s_own_module_is_no_drift(tmp_path):
    (tmp_path / "helpers_of_mine.py").write_text("x = 1\n")
    cap = run_script(tmp_path, "from helpers_of_mine import load_metric\n")
    assert codes(findings("FTD002", capture=cap)) == ["FTD005"]


def test_a_name_the_library_never_had_is_no_drift(tmp_path):
    cap = run_script(tmp_path, "import peft\npeft.no_such_helper_anywhere()\n")
    assert codes(findings("FTD002", capture=cap)) == ["FTD005"]


def test_enum_member_renamed(tmp_path):
    cap = run_script(tmp_path, "from accelerate.utils import DistributedType\nif DistributedType.TPU:\n    pass\n")
    f = one("FTD002", capture=cap)
    assert f.fix == "Use `DistributedType.XLA` instead of `DistributedType.TPU`."


def test_a_member_an_enum_never_had_is_no_drift(tmp_path):
    cap = run_script(tmp_path, "from accelerate.utils import DistributedType\nDistributedType.QUANTUM\n")
    assert codes(findings("FTD002", capture=cap)) == ["FTD005"]


def test_tokenizer_method_removed(tmp_path):
    from rules._build import wordpiece

    cap = run_script(tmp_path, "with tok.as_target_tokenizer():\n    labels = tok(['a b'])\n", tok=wordpiece())
    f = one("FTD002", capture=cap)
    assert f.evidence["replacement"] == "text_target" and f.evidence["owner"] == "PreTrainedTokenizerBase"


def test_a_user_object_without_that_method_is_no_drift(tmp_path):
    cap = run_script(tmp_path, "class Tok:\n    pass\nwith Tok().as_target_tokenizer():\n    pass\n")
    assert codes(findings("FTD002", capture=cap)) == ["FTD005"]


# --- an override's signature ------------------------------------------------------------------------------------------


def test_override_without_the_parameter_the_trainer_passes():
    from transformers import Trainer

    from ftdoctor.checks import _drift

    class Old(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False):
            return None

    class New(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return None

    class Loose(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return None

    missing = _drift.overrides_missing(Old)
    assert [(d.name, d.argument) for d, _ in missing] == [("compute_loss", "num_items_in_batch")]
    assert _drift.overrides_missing(New) == [] and _drift.overrides_missing(Loose) == []
    assert _drift.overrides_missing(Trainer) == []  # the library's own methods


def test_the_type_error_of_such_an_override_is_read_as_that_drift():
    from ftdoctor.checks import _drift

    class CustomTrainer:
        def compute_loss(self, model, inputs, return_outputs=False):
            return None

    with pytest.raises(TypeError) as info:
        CustomTrainer().compute_loss(None, {}, num_items_in_batch=3)
    assert _drift.signature_drift(info.value).argument == "num_items_in_batch"
    with pytest.raises(TypeError) as info:
        CustomTrainer().compute_loss(None, {}, something_else=3)
    assert _drift.signature_drift(info.value) is None


def test_table_file_is_json_with_the_installed_versions():
    from ftdoctor.checks import _drift

    data = json.loads(_drift.TABLE.read_text())
    assert data["generated_by"] == "benchmarks/api_drift/build.py" and "transformers" in data["installed"]
