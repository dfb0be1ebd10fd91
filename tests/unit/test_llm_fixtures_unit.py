"""The LLM fixtures' registry and the LLM pipelines' documentation, read without building or running anything."""

from __future__ import annotations

import ast
import re

from helpers import PIPELINES

from ftdoctor import fixtures

LLM_FIXTURES = sorted(name for name, (module, _) in fixtures._BUILDERS.items() if module == "_llm")
LLM_PIPELINES = sorted(p.name for p in PIPELINES.glob("*.py") if p.name.startswith(("trl_", "peft_", "llm_")))
CORRECT = [name for name in LLM_PIPELINES if name.endswith("_fixed.py")]
BROKEN = [name for name in LLM_PIPELINES if not name.endswith("_fixed.py")]


def _docstring(name: str) -> str:
    return ast.get_docstring(ast.parse((PIPELINES / name).read_text())) or ""


def test_llm_fixtures_are_registered():
    expected = {
        "tokenizers/llama-chat",
        "tokenizers/llama-no-template",
        "tokenizers/qwen2-chat",
        "models/llama-chat-tiny",
        "models/qwen2-chat-tiny",
        "models/llama-chat-tiny-random",
        "models/qwen2-chat-tiny-random",
        "models/llama-tiny-no-template",
        "adapters/llama-chat-tiny-lora",
        "datasets/chat",
        "datasets/prompt-completion",
        "datasets/text-lm",
        "datasets/preference",
    }
    assert set(LLM_FIXTURES) == expected
    assert expected <= set(fixtures.list_fixtures())


def test_every_llm_pipeline_is_documented_and_broken_ones_name_their_bug():
    assert len(CORRECT) >= 7 and len(BROKEN) >= 10
    for name in CORRECT:
        doc = _docstring(name)
        assert doc and "Bug:" not in doc, name
    for name in BROKEN:
        assert re.search(r"^Bug: \S", _docstring(name), re.M), f"{name} has no 'Bug:' line in its docstring"
    for name in LLM_PIPELINES:
        source = (PIPELINES / name).read_text()
        # Every model and dataset comes from the offline fixtures.
        assert "fixture_path(" in source and 'from_pretrained("' not in source, name
        assert not re.search(r"load_dataset\(", source), name


def test_every_broken_pipeline_has_a_correct_twin():
    # Each broken pipeline is a correct one with one bug: its name starts with the correct one's stem.
    stems = [name.removesuffix("_fixed.py") for name in CORRECT]
    for name in BROKEN:
        assert any(name.startswith(stem + "_") for stem in stems), name
