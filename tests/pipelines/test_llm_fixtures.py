"""The LLM fixtures: chat tokenizers and templates, tiny pre-trained chat models, a LoRA adapter, the chat,
prompt-completion, text and preference datasets, and the TRL / PEFT pipelines built on them.

The fixtures build without trl or peft; the tests that run pipelines or load the adapter skip cleanly when the
optional `llm` extra is not installed.
"""

from __future__ import annotations

import ast
import concurrent.futures
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ftdoctor import fixtures
from ftdoctor.fixtures import _llm, _llm_corpus, fixture_path

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

PIPELINES = Path(__file__).resolve().parents[2] / "fixtures" / "pipelines"
LLM_FIXTURES = sorted(name for name, (module, _) in fixtures._BUILDERS.items() if module == "_llm")
LLM_PIPELINES = sorted(p.name for p in PIPELINES.glob("*.py") if p.name.startswith(("trl_", "peft_", "llm_")))
CORRECT = [name for name in LLM_PIPELINES if name.endswith("_fixed.py")]
BROKEN = [name for name in LLM_PIPELINES if not name.endswith("_fixed.py")]
# Broken pipelines that stop with an error when run plainly: the message their docstring quotes.
FAILS_PLAINLY = {
    "trl_sft_lora_no_chat_template.py": "tokenizer.chat_template is not set",
    "peft_trainer_clm_target_modules_not_found.py": "not found in the base model",
    "peft_resume_adapter_not_trainable.py": "does not require grad and does not have a grad_fn",
    "peft_loop_gradient_checkpointing_no_input_grads.py": "does not require grad and does not have a grad_fn",
}

CHAT = [
    {"role": "system", "content": "You are a helpful farm assistant."},
    {"role": "user", "content": "What sound does a cow make?"},
    {"role": "assistant", "content": "The cow says moo."},
]


@pytest.fixture(scope="module")
def second_build(tmp_path_factory):
    """The same fixtures built by another process (other hash seeds) into another folder, started before `built`
    so that the two single-threaded builds run side by side; yields (process, its cache folder)."""
    root = tmp_path_factory.mktemp("llm-fixtures-again")
    code = f"from ftdoctor.fixtures import fixture_path\nfor name in {LLM_FIXTURES!r}:\n    fixture_path(name)\n"
    env = {**os.environ, "FTDOCTOR_FIXTURES_DIR": str(root / "cache"), "HF_HOME": str(root / "hf")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    yield proc, root / "cache" / f"v{fixtures.FIXTURES_VERSION}"
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.fixture(scope="module")
def built(second_build):
    """Every LLM fixture, built once (offline, into the session's fixture cache); name -> folder."""
    return {name: fixture_path(name) for name in LLM_FIXTURES}


def _tokenizer(built, name):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built[name])


def _model(built, name):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(built[name])


# --- the registry and determinism -----------------------------------------------------------------


def _hashes(folder: str) -> dict[str, str]:
    """sha256 of every built file under folder (relative path -> digest); the adapter's base path is specific to
    its cache, and `datasets` writes the cache files of a script's `.map()` beside the data (first as tmp* files,
    which a walk in another xdist worker may be writing meanwhile), so those are left out."""
    out = {}
    for root, _, files in os.walk(folder):
        for file in files:
            if re.fullmatch(r"cache-\w+\.arrow|tmp\w+", file):
                continue
            path = os.path.join(root, file)
            with open(path, "rb") as f:
                data = f.read()
            if file == "adapter_config.json":
                config = json.loads(data)
                assert os.path.isabs(config.pop("base_model_name_or_path"))
                data = json.dumps(config, sort_keys=True).encode()
            out[os.path.relpath(path, folder)] = hashlib.sha256(data).hexdigest()
    return out


def test_builds_are_byte_identical_across_folders_and_processes(built, second_build):
    # The pre-training runs on one thread in both builds, so the weights agree to the bit.
    proc, second = second_build
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    for name in LLM_FIXTURES:
        first_hashes, second_hashes = _hashes(built[name]), _hashes(str(second / name))
        assert sorted(first_hashes) == sorted(second_hashes), name
        for file, digest in first_hashes.items():
            assert second_hashes[file] == digest, f"{name}/{file} differs between builds"
    # The adapter points at its own cache's base model, as a real adapter names its base checkpoint.
    with open(second / "adapters" / "llama-chat-tiny-lora" / "adapter_config.json") as f:
        assert json.load(f)["base_model_name_or_path"] == str(second / "models" / "llama-chat-tiny")


def test_building_leaves_the_callers_rng_and_threads_alone(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("FTDOCTOR_FIXTURES_DIR", str(tmp_path))
    # A few steps are enough to see the RNG and the thread count restored.
    monkeypatch.setattr(_llm, "PRETRAIN_STEPS", 3)
    monkeypatch.setattr(_llm, "ADAPTER_STEPS", 3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fixture_path("adapters/llama-chat-tiny-lora")  # builds the tokenizer, the model and its pre-training first
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


# --- tokenizers and chat templates ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["tokenizers/llama-chat", "tokenizers/llama-no-template", "tokenizers/qwen2-chat"])
def test_saved_tokenizer_is_what_loads(built, name):
    tokenizer = _tokenizer(built, name)
    with open(os.path.join(built[name], "tokenizer.json")) as f:
        assert json.loads(tokenizer.backend_tokenizer.to_str()) == json.load(f)


def test_llama_tokenizer_special_tokens(built):
    tokenizer = _tokenizer(built, "models/llama-chat-tiny")
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|eot_id|>",
    )
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # pad == eos, as in many Llama fine-tunes
    # Llama 3's special tokens follow the BPE vocabulary, each one token.
    specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|finetune_right_pad_id|>",
        "<|eot_id|>",
    ]
    assert tokenizer.convert_tokens_to_ids(specials) == list(range(len(tokenizer) - 6, len(tokenizer)))
    assert all(len(tokenizer.tokenize(token)) == 1 for token in specials)
    # The post-processor adds BOS, and only BOS.
    ids = tokenizer("The cow says moo.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "The cow says moo."
    assert tokenizer.convert_ids_to_tokens(ids[1:]) == ["The", "Ġcow", "Ġsays", "Ġmoo", "."]


def test_qwen2_tokenizer_special_tokens(built):
    tokenizer = _tokenizer(built, "models/qwen2-chat-tiny")
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert tokenizer.bos_token is None
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    # No BOS added; the three special tokens follow the BPE vocabulary.
    ids = tokenizer("The cow says moo.")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["The", "Ġcow", "Ġsays", "Ġmoo", "."]
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == list(
        range(len(tokenizer) - 3, len(tokenizer))
    )


def test_llama3_template_renders_with_and_without_generation_prompt(built):
    tokenizer = _tokenizer(built, "models/llama-chat-tiny")
    head = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful farm assistant."
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat sound does a cow make?<|eot_id|>"
    )
    assert tokenizer.apply_chat_template(CHAT, tokenize=False) == (
        head + "<|start_header_id|>assistant<|end_header_id|>\n\nThe cow says moo.<|eot_id|>"
    )
    assert tokenizer.apply_chat_template(CHAT[:2], tokenize=False) == head
    assert tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True) == (
        head + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_chatml_template_renders_with_and_without_generation_prompt(built):
    tokenizer = _tokenizer(built, "models/qwen2-chat-tiny")
    head = (
        "<|im_start|>system\nYou are a helpful farm assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat sound does a cow make?<|im_end|>\n"
    )
    assert tokenizer.apply_chat_template(CHAT, tokenize=False) == (
        head + "<|im_start|>assistant\nThe cow says moo.<|im_end|>\n"
    )
    assert tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True) == (
        head + "<|im_start|>assistant\n"
    )
    # Without a system turn, ChatML adds the default one, as Qwen2.5's template does.
    assert tokenizer.apply_chat_template(CHAT[1:2], tokenize=False).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    )


@pytest.mark.parametrize(
    "model, stop", [("models/llama-chat-tiny", "<|eot_id|>"), ("models/qwen2-chat-tiny", "<|im_end|>")]
)
def test_assistant_tokens_mask_marks_only_the_assistant(built, model, stop):
    import datasets

    tokenizer = _tokenizer(built, model)
    chat = datasets.load_from_disk(built["datasets/chat"])
    for row in list(chat["train"]) + list(chat["test"]):
        out = tokenizer.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = out["input_ids"], out["assistant_masks"]
        assert len(mask) == len(ids)
        # The marked spans, in order, are exactly the assistant turns, each with its end-of-turn token.
        spans, current = [], []
        for token, marked in zip(ids, mask):
            if marked:
                current.append(token)
            elif current:
                spans.append(current)
                current = []
        if current:
            spans.append(current)
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert [tokenizer.decode(span) for span in spans] == [answer + stop for answer in answers]


def test_trl_sees_generation_markers_and_a_trained_stop_token(built):
    pytest.importorskip("trl")
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    for model in ("models/llama-chat-tiny", "models/qwen2-chat-tiny"):
        tokenizer = _tokenizer(built, model)
        assert has_generation_markers(tokenizer.chat_template)
        assert is_chat_template_stop_token_trained(tokenizer)


def test_no_template_tokenizer_has_no_chat_template(built):
    tokenizer = _tokenizer(built, "models/llama-tiny-no-template")
    assert tokenizer.chat_template is None
    assert tokenizer.get_vocab() == _tokenizer(built, "models/llama-chat-tiny").get_vocab()
    with pytest.raises(ValueError, match="chat_template is not set"):
        tokenizer.apply_chat_template(CHAT, tokenize=False)


def test_template_bos_plus_tokenizer_bos_doubles_it(built):
    # What the double-BOS pipeline does; apply_chat_template(tokenize=True) writes it once.
    tokenizer = _tokenizer(built, "models/llama-chat-tiny")
    bos = tokenizer.bos_token_id
    once = tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    twice = tokenizer(tokenizer.apply_chat_template(CHAT, tokenize=False))["input_ids"]
    assert once[0] == bos and once[1] != bos
    assert twice[:2] == [bos, bos] and twice[1:] == once


def test_response_template_tokenizes_differently_in_context(built):
    # Why the completion-collator pipeline with "\nAnswer:" matches nothing while "Answer:" matches every row.
    import datasets

    tokenizer = _tokenizer(built, "models/llama-chat-tiny")
    rows = datasets.load_from_disk(built["datasets/prompt-completion"])["train"]

    def found(template):
        ids = tokenizer.encode(template, add_special_tokens=False)
        hits = 0
        for row in rows:
            text = tokenizer(row["prompt"] + row["completion"])["input_ids"]
            hits += any(text[i : i + len(ids)] == ids for i in range(len(text)))
        return hits

    assert found("Answer:") == len(rows)
    assert found("\nAnswer:") == 0


# --- models ---------------------------------------------------------------------------------------


def test_model_shapes_and_embeddings(built):
    llama, qwen = _model(built, "models/llama-chat-tiny"), _model(built, "models/qwen2-chat-tiny")
    for model in (llama, qwen):
        config = model.config
        assert (
            config.hidden_size,
            config.num_hidden_layers,
            config.num_attention_heads,
            config.num_key_value_heads,
            config.intermediate_size,
        ) == (64, 2, 4, 2, 128)
        assert config.pad_token_id is None
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names
        assert sum(p.numel() for p in model.parameters()) < 200_000
    assert type(llama).__name__ == "LlamaForCausalLM" and type(qwen).__name__ == "Qwen2ForCausalLM"
    assert llama.get_input_embeddings().weight.data_ptr() != llama.get_output_embeddings().weight.data_ptr()
    assert qwen.get_input_embeddings().weight.data_ptr() == qwen.get_output_embeddings().weight.data_ptr()
    llama_tok, qwen_tok = _tokenizer(built, "models/llama-chat-tiny"), _tokenizer(built, "models/qwen2-chat-tiny")
    assert llama.config.vocab_size == len(llama_tok)
    # As real Qwen2 checkpoints: more embedding rows than tokens, padded to a multiple of 64.
    assert qwen.config.vocab_size % 64 == 0 and len(qwen_tok) < qwen.config.vocab_size <= len(qwen_tok) + 64
    assert (llama.config.bos_token_id, llama.config.eos_token_id) == (llama_tok.bos_token_id, llama_tok.eos_token_id)
    assert qwen.config.eos_token_id == qwen_tok.eos_token_id


def _mean_loss(model, tokenizer, texts):
    """Mean next-token loss over the texts, in one padded batch (padding left out of the loss by the mask)."""
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        return model(**batch, labels=labels).loss.item()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_pretraining_makes_logits_sharp(built, kind):
    tokenizer = _tokenizer(built, f"models/{kind}-chat-tiny")
    texts = _llm_corpus.pretraining_texts()[:40]
    random_loss = _mean_loss(_model(built, f"models/{kind}-chat-tiny-random"), tokenizer, texts)
    trained_loss = _mean_loss(_model(built, f"models/{kind}-chat-tiny"), tokenizer, texts)
    assert random_loss > 6.0  # about log(vocabulary)
    assert trained_loss < 1.5


def test_no_template_model_has_the_chat_models_weights(built):
    for file in ("config.json", "model.safetensors"):
        with (
            open(os.path.join(built["models/llama-tiny-no-template"], file), "rb") as a,
            open(os.path.join(built["models/llama-chat-tiny"], file), "rb") as b,
        ):
            assert a.read() == b.read()


def test_lora_adapter_loads_with_peft(built):
    pytest.importorskip("peft")
    import datasets
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    tokenizer = _tokenizer(built, "models/llama-chat-tiny")
    rows = datasets.load_from_disk(built["datasets/chat"])["test"]
    batch = next(_llm._chat_batches(tokenizer, list(rows), 8, torch.Generator().manual_seed(0)))
    inputs = dict(input_ids=batch[0], attention_mask=batch[1], labels=batch[2])
    base = _model(built, "models/llama-chat-tiny")
    with torch.no_grad():
        base_loss = base(**inputs).loss.item()
    # As saved, the adapter loads for inference only: nothing trains unless is_trainable=True.
    frozen = PeftModel.from_pretrained(base, built["adapters/llama-chat-tiny-lora"])
    assert not any(p.requires_grad for p in frozen.parameters())
    saved = load_file(os.path.join(built["adapters/llama-chat-tiny-lora"], "adapter_model.safetensors"))
    loaded = {k.replace(".default", ""): v for k, v in frozen.state_dict().items() if "lora_" in k}
    assert sorted(saved) == sorted(loaded) and len(saved) == 8
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    frozen.eval()
    with torch.no_grad():
        adapted_loss = frozen(**inputs).loss.item()
    assert adapted_loss < base_loss - 1.0, (base_loss, adapted_loss)  # partly trained on the task
    trainable = PeftModel.from_pretrained(
        _model(built, "models/llama-chat-tiny"), built["adapters/llama-chat-tiny-lora"], is_trainable=True
    )
    # r 8 on q_proj (64 -> 64) and v_proj (64 -> 32, two KV heads) in each of the two layers.
    assert sum(p.numel() for p in trainable.parameters() if p.requires_grad) == 2 * 8 * ((64 + 64) + (64 + 32))


# --- datasets -------------------------------------------------------------------------------------

COLUMNS = {
    "datasets/chat": ["messages"],
    "datasets/prompt-completion": ["prompt", "completion"],
    "datasets/text-lm": ["text"],
    "datasets/preference": ["prompt", "chosen", "rejected"],
}


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_dataset_splits_and_columns(built, name):
    import datasets

    dsd = datasets.load_from_disk(built[name])
    assert {split: len(ds) for split, ds in dsd.items()} == {"train": 40, "test": 8}
    for ds in dsd.values():
        assert ds.column_names == COLUMNS[name]


def test_rows_follow_the_task_and_are_learnable_from_train(built):
    import datasets

    pc = datasets.load_from_disk(built["datasets/prompt-completion"])
    train_animals = set()
    for split in ("train", "test"):
        for row in pc[split]:
            question = re.fullmatch(r"Question: (.*)\nAnswer:", row["prompt"]).group(1)
            [animal] = [word for word in re.findall(r"\w+", question) if word in _llm_corpus.SOUNDS]
            assert row["completion"] == f" The {animal} says {_llm_corpus.SOUNDS[animal]}."
            if split == "train":
                train_animals.add(animal)
            else:
                assert animal in train_animals, "every test animal is asked about in train"
    assert len(train_animals) == len(_llm_corpus.SOUNDS)
    train_prompts = set(pc["train"]["prompt"])
    assert not train_prompts & set(pc["test"]["prompt"])


def test_chat_rows_are_system_user_assistant(built):
    import datasets

    chat = datasets.load_from_disk(built["datasets/chat"])
    two_turns = 0
    for row in chat["train"]:
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "system" and roles[1:] in (["user", "assistant"], ["user", "assistant"] * 2)
        two_turns += len(roles) == 5
    assert two_turns == 8


def test_preference_rows_reject_an_answer_about_another_animal(built):
    import datasets

    for split in ("train", "test"):
        for row in datasets.load_from_disk(built["datasets/preference"])[split]:
            assert row["prompt"].endswith("\nAnswer:")
            chosen = re.fullmatch(r" The (\w+) says (\w+)\.", row["chosen"]).groups()
            rejected = re.fullmatch(r" The (\w+) says (\w+)\.", row["rejected"]).groups()
            assert chosen[0] in row["prompt"] and rejected[0] not in row["prompt"]
            assert _llm_corpus.SOUNDS[chosen[0]] == chosen[1] and _llm_corpus.SOUNDS[rejected[0]] == rejected[1]


# --- pipelines ------------------------------------------------------------------------------------


def _docstring(name: str) -> str:
    return ast.get_docstring(ast.parse((PIPELINES / name).read_text())) or ""


@pytest.fixture(scope="module")
def plain_runs(built, tmp_path_factory):
    """Run the correct pipelines and the broken ones that fail plainly, each as `python SCRIPT` in its own
    scratch folder, two at a time; name -> (exit code, output). One thread each: on a small machine, torch's
    default threads contend and make each step ten times slower."""
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

    def run(name):
        cwd = tmp_path_factory.mktemp(name.removesuffix(".py"))
        proc = subprocess.run(
            [sys.executable, str(PIPELINES / name)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        return proc.returncode, proc.stdout + proc.stderr

    names = CORRECT + sorted(FAILS_PLAINLY)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(names, pool.map(run, names)))


def _losses(output: str) -> list[float]:
    """Training losses in the order logged: the Trainer's log lines, or a loop's "train loss" prints."""
    logged = re.findall(r"\{'loss': '?([0-9.e+-]+)'?", output)
    return [float(x) for x in logged] or [float(x) for x in re.findall(r"train loss ([0-9.]+)", output)]


@pytest.mark.parametrize("name", CORRECT)
def test_correct_pipeline_runs_plainly_and_learns(plain_runs, name):
    code, output = plain_runs[name]
    assert code == 0, output[-3000:]
    losses = _losses(output)
    assert len(losses) >= 3, output[-3000:]
    assert losses[-1] < 0.95 * losses[0], losses


@pytest.mark.parametrize("name", sorted(FAILS_PLAINLY))
def test_broken_pipeline_fails_plainly_as_documented(plain_runs, name):
    code, output = plain_runs[name]
    assert code == 1, output[-3000:]
    assert FAILS_PLAINLY[name] in output
    assert FAILS_PLAINLY[name] in " ".join(_docstring(name).split())
