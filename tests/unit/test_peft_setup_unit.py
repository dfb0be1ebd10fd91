"""Adapter and work-copy helpers on tiny hand-built models: the linear layers LoRA may target, the fix for a
frozen adapter, and a copy of a model whose forward the script replaced."""

from __future__ import annotations

import pytest


def test_linear_layer_names_follow_the_architecture():
    """BERT's attention layers are query/key/value (its `dense` layers are everywhere), GPT-2's are Conv1D."""
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    from ftdoctor.checks.setup.llm_libraries import _linear_layer_names

    bert = BertForMaskedLM(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    names, attention = _linear_layer_names(bert)
    assert attention == ["query", "key", "value"]
    assert "dense" in names and "decoder" not in names  # the MLM decoder is the output head
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    names, attention = _linear_layer_names(gpt2)
    assert names == ["c_attn", "c_proj", "c_fc"] and attention == ["c_attn"]


def test_frozen_adapter_fix_never_unfreezes_the_base():
    """A PEFT model whose adapter was frozen after get_peft_model: turn the adapter back on, not the base."""
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, get_peft_model

    from ftdoctor.checks.backward import some_parameters_train
    from ftdoctor.engine.pipeline import Pipeline

    base = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["0"]))
    for p in model.parameters():
        p.requires_grad = False
    f = some_parameters_train(model, Pipeline(model=model))
    assert f.code == "FTD507"
    assert 'set_requires_grad("default")' in f.fix and "lm_head" not in f.fix


def test_work_copy_runs_its_own_modules_when_the_script_replaced_a_forward():
    """A forward set on a module instance, closing over that module, runs the copy's module in the copy."""
    import functools

    import torch

    from ftdoctor.targets import work_copy

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    for layer in model:

        def wrapped(x, _forward=layer.forward, _layer=layer):
            _layer.calls = getattr(_layer, "calls", 0) + 1
            return _forward(x)

        layer.forward = wrapped
    model[1].extra = functools.partial(torch.nn.Linear.forward, model[1])
    copy = work_copy(model)
    copy(torch.ones(2, 3)).sum().backward()
    assert all(p.grad is not None for p in copy.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert [getattr(m, "calls", 0) for m in (*model, *copy)] == [0, 0, 1, 1]
    assert copy[1].extra.args[0] is copy[1]
