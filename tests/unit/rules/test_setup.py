"""One test per setup rule: a tiny script run up to its failure (as the capture runs it), then the setup check
called on that capture alone."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from ._build import bert, call, capture, causal, codes, findings, gpt2, line_of, one, run_script


@pytest.fixture(autouse=True)
def _run_from_the_scripts_folder(tmp_path, monkeypatch):
    """The script and the check both see the working directory the user started from: here, the script's folder."""
    monkeypatch.chdir(tmp_path)


# --- API drift: transformers 5 ------------------------------------------------------------------------------------


def test_renamed_training_argument_names_its_replacement_with_the_value_passed(tmp_path):
    cap = run_script(
        tmp_path,
        'from transformers import TrainingArguments\nargs = TrainingArguments("out", evaluation_strategy="epoch")\n',
    )
    f = one("FTD001", capture=cap)
    assert "`TrainingArguments` no longer takes `evaluation_strategy=`" in f.detail
    assert f.fix == 'Use `eval_strategy="epoch"` instead of `evaluation_strategy=...`.'
    assert f.evidence["replacement"] == "eval_strategy"
    assert f.location.endswith(f"train.py:{line_of(cap.script, 'TrainingArguments(')}")


def test_trainer_tokenizer_argument_becomes_processing_class(tmp_path):
    cap = run_script(
        tmp_path, "from transformers import Trainer\ntrainer = Trainer(model=None, tokenizer=tok)\n", tok=None
    )
    f = one("FTD001", capture=cap)
    assert f.evidence["owner"] == "Trainer" and "`processing_class=tok`" in f.fix


def test_dropped_training_argument_says_to_delete_it(tmp_path):
    cap = run_script(
        tmp_path, 'from transformers import TrainingArguments\nTrainingArguments("out", overwrite_output_dir=True)\n'
    )
    f = one("FTD001", capture=cap)
    assert "removed in transformers 5" in f.detail and f.fix.startswith("Remove `overwrite_output_dir=...`")


def test_removed_import_points_at_torch(tmp_path):
    cap = run_script(tmp_path, "from transformers import AdamW\n")
    f = one("FTD002", capture=cap)
    assert f.fix == "from torch.optim import AdamW" and f.evidence["name"] == "AdamW"
    assert f.location.endswith("train.py:1")


def test_a_name_transformers_never_had_is_not_a_removed_import(tmp_path):
    cap = run_script(tmp_path, "from transformers import NoSuchThingAnywhere\n")
    assert codes(findings("FTD002", capture=cap)) == ["FTD005"]


def test_misspelt_argument_suggests_the_real_one(tmp_path):
    cap = run_script(
        tmp_path, 'from transformers import TrainingArguments\nTrainingArguments("out", learning_rat=2e-5)\n'
    )
    f = one("FTD009", capture=cap)
    assert f.fix == "Did you mean `learning_rate=`?" and f.evidence["suggestion"] == "learning_rate"


def test_an_argument_like_no_other_is_relayed_not_guessed(tmp_path):
    cap = run_script(tmp_path, 'from transformers import TrainingArguments\nTrainingArguments("out", zzqx_qqq=1)\n')
    assert codes(findings("FTD009", capture=cap)) == ["FTD005"]


# --- the hub, files, syntax ---------------------------------------------------------------------------------------


def test_hub_model_unreachable_offline_names_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cap = run_script(
        tmp_path,
        'from transformers import AutoConfig\nconfig = AutoConfig.from_pretrained("acme-nowhere/tiny-model")\n',
    )
    f = one("FTD003", capture=cap)
    assert f.evidence["name"] == "acme-nowhere/tiny-model" and f.evidence["kind"] == "model"
    assert "HF_HUB_OFFLINE" in f.evidence["offline"] and "offline mode is on" in f.detail
    assert "hf download acme-nowhere/tiny-model" in f.fix


def test_hub_dataset_unreachable_offline_is_downloaded_as_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cap = run_script(tmp_path, "from datasets import load_dataset\nds = load_dataset('acme-nowhere/reviews')\n")
    f = one("FTD003", capture=cap)
    assert f.evidence["kind"] == "dataset" and "`hf download acme-nowhere/reviews --repo-type dataset`" in f.fix
    assert f.location.endswith("train.py:2")


def test_an_os_error_of_the_machine_is_no_hub_failure(tmp_path):
    cap = run_script(tmp_path, "raise OSError('No space left on device')\n")
    assert codes(findings("FTD003", capture=cap)) == ["FTD005"]


# --- causes read from the frames (diagnosers of checks/setup/raised.py) ---------------------------------------------


def test_trainer_given_the_base_arguments_class_is_told_the_subclass_it_reads(tmp_path):
    cap = run_script(
        tmp_path,
        "from transformers import Seq2SeqTrainer, TrainingArguments\n"
        "args = TrainingArguments('out', report_to='none', use_cpu=True)\n"
        "trainer = Seq2SeqTrainer(model=model, args=args)\n",
        model=bert(),
    )
    [f] = findings("FTD005", capture=cap)
    assert f.code == "FTD020" and f.evidence["expected_class"] == "Seq2SeqTrainingArguments"
    assert "`Seq2SeqTrainingArguments(...)` (`from transformers import Seq2SeqTrainingArguments`)" in f.fix
    assert f.location.endswith("train.py:2")


def test_batched_map_with_a_column_per_example_beside_its_windows(tmp_path):
    cap = run_script(
        tmp_path,
        "from datasets import Dataset\n"
        "def windows(batch):\n"
        "    out = {'input_ids': [[1]] * (2 * len(batch['q']))}\n"
        "    out['extra'] = [0] * len(batch['q'])\n"
        "    return out\n"
        "Dataset.from_dict({'q': ['a', 'b']}).map(windows, batched=True, remove_columns=['q'])\n",
    )
    [f] = findings("FTD005", capture=cap)
    assert f.code == "FTD021" and f.location.endswith("train.py:4") and f.evidence["column"] == "extra"


def test_missing_file_names_the_path_and_the_working_directory(tmp_path):
    cap = run_script(tmp_path, 'with open("data/train.csv") as fh:\n    rows = fh.read()\n')
    f = one("FTD004", capture=cap)
    assert f.evidence["path"] == "data/train.csv" and str(tmp_path) in f.detail
    assert "Path(__file__).parent" in f.fix
    assert f.location.endswith("train.py:1")


def test_any_other_exception_is_relayed_at_the_users_line(tmp_path):
    cap = run_script(tmp_path, "x = 1\nraise RuntimeError('the tokenizer folder is locked')\n")
    f = one("FTD005", capture=cap)
    assert f.detail.startswith("RuntimeError: the tokenizer folder is locked — at ") and f.location.endswith(
        "train.py:2"
    )
    assert "train.py:2 in <module>(): `raise RuntimeError('the tokenizer folder is locked')`." in f.detail
    assert "train.py:2" in f.fix and "cause shown" not in f.fix


def test_a_script_that_reached_training_has_nothing_to_diagnose(tmp_path):
    assert call("FTD005", capture=capture(tmp_path)) is None


def test_syntax_error_points_at_the_line(tmp_path):
    cap = run_script(tmp_path, "import os\nargs = dict(lr=2e-5\nprint(args)\n")
    f = one("FTD010", capture=cap)
    assert (
        f.location.endswith("train.py:2") and f.detail == "SyntaxError: '(' was never closed in `args = dict(lr=2e-5`"
    )


def test_syntax_error_in_a_library_is_no_script_syntax_error(tmp_path):
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "broken_lib.py").write_text("def f(:\n")
    cap = run_script(tmp_path, "import sys\nsys.path.insert(0, 'site-packages')\nimport broken_lib\n")
    assert codes(findings("FTD010", capture=cap)) == ["FTD005"]


# --- loops --------------------------------------------------------------------------------------------------------


def test_backward_on_a_loss_that_is_none(tmp_path):
    cap = run_script(tmp_path, "class Out:\n    loss = None\n\nout = Out()\nout.loss.backward()\n")
    f = one("FTD007", capture=cap)
    assert "labels" in f.fix and f.location.endswith("train.py:5")


def test_a_loop_that_failed_on_a_batch_it_drew_is_left_to_the_stages(tmp_path):
    cap = run_script(tmp_path, "batch = {'input_ids': [[1, 2]]}\nraise KeyError('labels')\n")
    cap.loop = SimpleNamespace(batch={"input_ids": [[1, 2]]})
    f = one("FTD008", capture=cap)
    assert "KeyError" in f.detail and f.evidence["exception"] == "KeyError: 'labels'"


def test_loss_none_inside_a_captured_loop_is_left_to_the_stages(tmp_path):
    cap = run_script(tmp_path, "loss = None\nloss.backward()\n")
    cap.loop = SimpleNamespace(batch=None)
    f = one("FTD008", capture=cap)
    assert "collate" in f.fix


# --- arguments TrainingArguments refuses ---------------------------------------------------------------------------


def test_best_model_with_mismatched_strategies(tmp_path):
    cap = run_script(
        tmp_path,
        "from transformers import TrainingArguments\n"
        'TrainingArguments("out", eval_strategy="epoch", save_strategy="steps",\n'
        "                  load_best_model_at_end=True)\n",
    )
    f = one("FTD106", "setup", capture=cap)
    assert 'eval_strategy="epoch"' in f.detail and 'save_strategy="steps"' in f.detail
    assert f.fix == 'Save when it evaluates: `save_strategy="epoch"` (the same as `eval_strategy`).'


def test_best_model_with_save_steps_not_a_multiple_of_eval_steps(tmp_path):
    cap = run_script(
        tmp_path,
        "from transformers import TrainingArguments\n"
        'TrainingArguments("out", eval_strategy="steps", eval_steps=10, save_steps=15,\n'
        "                  load_best_model_at_end=True)\n",
    )
    f = one("FTD106", "setup", capture=cap)
    assert "multiple of `eval_steps`" in f.detail


def test_bf16_where_it_cannot_run(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cap = run_script(tmp_path, 'from transformers import TrainingArguments\nTrainingArguments("out", bf16=True)\n')
    f = one("FTD108", "setup", capture=cap)
    assert "bf16" in f.detail and "torch.cuda.is_bf16_supported()" in f.fix


def test_optimizer_over_no_parameters(tmp_path):
    cap = run_script(tmp_path, "import torch\noptimizer = torch.optim.AdamW([], lr=1e-3)\n")
    f = one("FTD504", "setup", capture=cap)
    assert "empty parameter list" in f.detail


# --- several ranks ------------------------------------------------------------------------------------------------


def test_a_rank_stopped_in_a_collective(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cap = run_script(
        tmp_path, "raise RuntimeError('[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500')\n"
    )
    f = one("FTD012", capture=cap)
    assert "Connection closed by peer" in f.detail and "distributed stage" in f.fix


def test_the_same_error_on_one_rank_is_no_collective(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    cap = run_script(tmp_path, "raise RuntimeError('Connection closed by peer')\n")
    assert codes(findings("FTD012", capture=cap)) == ["FTD005"]


def test_torchrun_script_walked_as_one_rank(tmp_path):
    cap = capture(tmp_path, single_rank={"RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "29400"})
    f = one("FTD016", capture=cap)
    assert (
        "MASTER_PORT, RANK, WORLD_SIZE" in f.detail
        and f.fix == "To check the ranks against each other: `ftdoctor check --nproc 2 train.py`."
    )


def test_a_script_that_never_set_up_ranks_is_silent(tmp_path):
    assert call("FTD016", capture=capture(tmp_path)) is None


# --- TensorFlow ---------------------------------------------------------------------------------------------------


def test_a_keras_script_is_not_run(tmp_path):
    from ftdoctor.capture import tensorflow_import

    script = tmp_path / "keras_train.py"
    script.write_text("import os\nfrom transformers import TFAutoModelForSequenceClassification\n")
    site = tensorflow_import(str(script))  # what the capture notes instead of running the script
    cap = capture(tmp_path, outcome="tensorflow", train_site=site)
    f = one("FTD006", capture=cap)
    assert f.location.endswith("keras_train.py:2") and "Port the script to PyTorch" in f.fix


def test_a_pytorch_script_is_no_keras_script(tmp_path):
    assert call("FTD006", capture=capture(tmp_path)) is None


# --- LLM libraries: TRL and PEFT ----------------------------------------------------------------------------------


def test_trl_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # as if not installed: its import fails
    cap = run_script(tmp_path, "import os\nfrom trl import SFTTrainer\n")
    f = one("FTD014", capture=cap)
    assert f.evidence == {"exception": f.evidence["exception"], "module": "trl", "also_needed": ["peft"]}
    # the versions of ftdoctor's own `llm` extra, never the package's name (it is installed from a checkout)
    assert "pip install 'trl>=" in f.fix and "'peft>=" in f.fix and "pytest-ftdoctor" not in f.fix
    assert f.location.endswith("train.py:2")


def test_a_missing_module_of_another_library_is_not_trl(tmp_path):
    cap = run_script(tmp_path, "import acme_missing_module_xyz\n")
    assert codes(findings("FTD014", capture=cap)) == ["FTD018"]


def test_a_package_that_is_not_installed_is_named_with_its_pip_name(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed: its import fails
    cap = run_script(tmp_path, "import os\nimport sklearn\n")
    f = one("FTD018", capture=cap)
    assert "`sklearn`" in f.detail and "-m pip install scikit-learn" in f.fix
    assert f.location.endswith("train.py:2")


def test_google_colab_outside_colab(tmp_path):
    cap = run_script(tmp_path, "from google.colab import drive\ndrive.mount('/content/drive')\n")
    f = one("FTD018", capture=cap)
    assert "exists only inside Google Colab" in f.detail and "pip install" not in f.fix


def test_a_submodule_an_installed_library_does_not_have_is_not_a_missing_install(tmp_path):
    # the near miss: `transformers` is installed; its old module path is API drift or the relay, not "pip install"
    cap = run_script(tmp_path, "import transformers.acme_no_such_module\n")
    assert "FTD018" not in codes(findings("FTD018", capture=cap))


UNMARKED_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
CONVERSATION = (
    "messages = [{'role': 'user', 'content': 'where does john live'},\n"
    "            {'role': 'assistant', 'content': 'john lives in paris'}]\n"
)


def test_conversation_rendered_with_a_tokenizer_without_chat_template(tmp_path):
    tok = causal()
    cap = run_script(tmp_path, CONVERSATION + "ids = tokenizer.apply_chat_template(messages)\n", tokenizer=tok)
    f = one("FTD011", capture=cap)
    assert "`tokenizer`" in f.detail and "chat_template` is None" in f.detail
    assert "instruct" in f.fix and "`text` column" in f.fix
    assert "clone_chat_template" not in f.fix  # TRL is not what rendered it


def test_conversation_rendered_with_a_chat_template_is_not_a_missing_template(tmp_path):
    tok = causal(chat_template=UNMARKED_TEMPLATE)
    cap = run_script(
        tmp_path,
        CONVERSATION + "ids = tokenizer.apply_chat_template(messages)\nraise ValueError('later failure')\n",
        tokenizer=tok,
    )
    assert codes(findings("FTD011", capture=cap)) == ["FTD005"]


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # SFTConfig's own default
def test_assistant_only_loss_with_a_template_without_generation_markers(tmp_path):
    pytest.importorskip("trl")
    tok = causal()
    source = (
        "from trl import SFTConfig\nfrom trl.chat_template_utils import get_training_chat_template\n"
        + CONVERSATION
        + "tokenizer.chat_template = (\n    "
        + repr(UNMARKED_TEMPLATE)
        + ")\n"
        "config = SFTConfig('out', assistant_only_loss=True, use_cpu=True, bf16=False)\n"
        "template = get_training_chat_template(tokenizer)\n"
    )
    cap = run_script(tmp_path, source, tokenizer=tok)
    f = one("FTD015", capture=cap)
    assert "{% generation %}" in f.fix and "assistant_only_loss=False" in f.fix and "TRL patches" in f.fix
    assert f.location.endswith(f"train.py:{line_of(cap.script, 'tokenizer.chat_template = (')}")


def test_lora_targets_modules_the_model_lacks(tmp_path):
    pytest.importorskip("peft")
    model = gpt2()
    cap = run_script(
        tmp_path,
        "from peft import LoraConfig, get_peft_model\n"
        "config = LoraConfig(target_modules=['query', 'value'], task_type='CAUSAL_LM')\n"
        "model = get_peft_model(base, config)\n",
        base=model,
    )
    f = one("FTD013", capture=cap)
    assert f.evidence["target_modules"] == ["query", "value"] and f.evidence["suggested"] == ["c_attn"]
    assert 'target_modules=["c_attn"]' in f.fix and 'target_modules="all-linear"' in f.fix
    assert "lm_head" not in f.detail
    assert f.location.endswith(f"train.py:{line_of(cap.script, 'target_modules=')}")


# --- FTD900: the walk's rule for the user's code raising inside a check ---------------------------------------------


def test_users_code_raising_inside_a_check_is_relayed_as_its_own_error():
    """FTD900 belongs to the walk, not to a check: a check that lets the user's exception through (run_user) is
    turned into it by run_stage."""
    from ftdoctor.core.registry import Check, run_user
    from ftdoctor.core.report import StageResult
    from ftdoctor.engine.walk import Context, run_stage

    def collator(rows):
        raise KeyError("labels")

    def runs_the_collator(data_collator):
        run_user("the data collator", data_collator, [{"input_ids": [1]}])

    ctx = Context({"data_collator": collator, "findings_so_far": []})
    result, errors = StageResult("collate"), []
    run_stage("collate", ctx, result, errors, checks=[Check("t.runs_the_collator", "collate", runs_the_collator)])
    [f] = result.findings
    assert f.code == "FTD900" and f.severity == "error" and not errors
    assert f.detail.startswith("While collate ran, the data collator raised KeyError: 'labels' — at ")
    assert 'in collator(): `raise KeyError("labels")`, where `rows` = list[1] of dict.' in f.detail
    assert f.evidence["check"] == "t.runs_the_collator" and "KeyError" in f.evidence["traceback"]


def test_class_names_made_into_a_tensor_are_labels_without_ids(tmp_path):
    source = (
        "import torch\n"
        "train_labels = ['positive', 'negative', 'notr', 'negative'] * 5\n"
        "train_y = torch.tensor(train_labels)\n"
    )
    f = one("FTD204", "setup", capture=run_script(tmp_path, source))
    assert f.detail.startswith("`train_labels` holds class names (3 distinct strings over 20 rows")
    assert "label2id = {'negative': 0, 'notr': 1, 'positive': 2}" in f.fix
    assert f.location.endswith("train.py:3")


def test_free_text_made_into_a_tensor_is_relayed(tmp_path):
    source = "import torch\ntexts = ['a film', 'the plot', 'an actor']\nx = torch.tensor(texts)\n"
    assert codes(findings("FTD204", "setup", capture=run_script(tmp_path, source))) == ["FTD005"]


def test_padding_with_a_tokenizer_without_a_pad_token_in_the_script(tmp_path):
    cap = run_script(
        tmp_path,
        "raise ValueError('Asking to pad but the tokenizer does not have a padding token. Please select a token')\n",
    )
    f = one("FTD105", "setup", capture=cap)
    assert "tokenizer.pad_token = tokenizer.eos_token" in f.fix and "model.config.pad_token_id" in f.fix
    assert f.location.endswith("train.py:1")


def test_another_value_error_about_tokens_is_not_the_pad_token(tmp_path):
    cap = run_script(tmp_path, "raise ValueError('Asking to truncate to max_length but no maximum length is given')\n")
    assert "FTD105" not in codes(findings("FTD105", "setup", capture=cap))


def test_a_column_of_a_dataset_taken_for_its_values(tmp_path):
    cap = run_script(
        tmp_path,
        "from datasets import Dataset\n"
        "ds = Dataset.from_dict({'input_ids': [[1, 2], [3, 4]]}).with_format('torch')\n"
        "batch = {k: ds[k].to('cpu') for k in ds.column_names}\n",
    )
    f = one("FTD002", "setup", capture=cap)
    assert "lazy `datasets.Column` since datasets 4.0" in f.detail and "dataset[column][:]" in f.fix
    assert f.location.endswith("train.py:3")


def test_an_attribute_missing_from_another_column_class_is_not_datasets(tmp_path):
    cap = run_script(tmp_path, "class Column:\n    pass\n\nColumn().to('cpu')\n")
    assert "FTD002" not in codes(findings("FTD002", "setup", capture=cap))
