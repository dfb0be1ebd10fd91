"""The shrunk twin (ftdoctor/runtime/twin.py): the overfit stage's stand-in for a model too large to train for dozens of
steps on this machine. It must keep the user's class, head and weights where they exist, refuse what it cannot
stand in for, and find the same learning bugs as the model itself."""

from __future__ import annotations

import pytest


def _llama(layers=4, vocab=64, tie=False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # not at init values: the copy must carry the user's weights, not the class's init
        for p in model.parameters():
            p.add_(0.01)
    return model


def test_twin_keeps_class_head_and_the_users_first_layers():
    import torch

    from ftdoctor.runtime import twin

    model = _llama()
    model.model.layers[0].mlp.down_proj.weight.requires_grad_(False)
    state = torch.random.get_rng_state()
    made = twin.build(model)
    assert torch.equal(state, torch.random.get_rng_state())  # the run's random stream did not move
    assert made is not None and type(made.model) is type(model)
    assert (made.layers, made.of_layers) == (2, 4) and len(made.model.model.layers) == 2
    assert made.params < made.of_params
    own = model.state_dict()
    for name, tensor in made.model.state_dict().items():
        assert torch.equal(tensor, own[name]), name
    assert not made.model.model.layers[0].mlp.down_proj.weight.requires_grad
    assert made.model.lm_head.weight.requires_grad
    ids = torch.randint(0, 64, (2, 8))
    out = made.model(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 8, 64) and torch.isfinite(out.loss)
    # The twin is its own: training it leaves the user's model as it was.
    out.loss.backward()
    with torch.no_grad():
        made.model.lm_head.weight.sub_(1.0)
    assert torch.equal(model.lm_head.weight, own["lm_head.weight"])
    assert "2-layer twin" in made.describe()


def test_twin_buffers_outside_the_state_dict_are_the_users():
    """The twin is built without drawing weights and everything is copied in: buffers a state dict leaves out
    (the rotary frequencies) too, so the twin computes what the model computes."""
    import torch

    from ftdoctor.runtime import twin

    model = _llama()
    rotary = model.model.rotary_emb
    assert "inv_freq" in dict(rotary.named_buffers()) and "model.rotary_emb.inv_freq" not in model.state_dict()
    with torch.no_grad():
        rotary.inv_freq.mul_(0.5)  # not what the class computes from the config
    made = twin.build(model)
    assert torch.equal(made.model.model.rotary_emb.inv_freq, rotary.inv_freq)


def test_twin_keeps_per_layer_config_lists():
    """A config list with one entry per layer (attention kinds) keeps the kept layers' entries."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ftdoctor.runtime import twin

    config = Qwen2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    config.layer_types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    made = twin.build(Qwen2ForCausalLM(config))
    assert made is not None and made.model.config.layer_types == ["full_attention", "sliding_attention"]
    assert made.model.config.num_hidden_layers == 2


@pytest.mark.parametrize("build", ["gpt2", "bert", "distilbert"])
def test_twin_of_other_families(build):
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
    )

    from ftdoctor.runtime import twin

    if build == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=4, n_head=2, n_positions=32))
    elif build == "bert":
        model = BertForSequenceClassification(
            BertConfig(
                vocab_size=50,
                hidden_size=32,
                num_hidden_layers=4,
                num_attention_heads=2,
                intermediate_size=64,
                num_labels=3,
            )
        )
    else:
        model = DistilBertForSequenceClassification(
            DistilBertConfig(vocab_size=50, dim=32, n_layers=4, n_heads=2, hidden_dim=64, num_labels=3)
        )
    made = twin.build(model)
    assert made is not None and made.layers == 2 and made.of_layers == 4
    ids = torch.randint(1, 50, (2, 6))
    logits = made.model(input_ids=ids).logits
    assert logits.shape[:-1] == model(input_ids=ids).logits.shape[:-1]
    assert logits.shape[-1] == model(input_ids=ids).logits.shape[-1]


def test_no_twin_for_what_it_cannot_stand_in_for():
    import torch

    from ftdoctor.runtime import twin

    replaced_head = _llama()
    replaced_head.lm_head = torch.nn.Linear(32, 100, bias=False)  # another vocabulary than the config's
    assert twin.build(replaced_head) is None
    extra = _llama()
    extra.value_head = torch.nn.Linear(32, 1)  # a module the config's class does not build
    assert twin.build(extra) is None
    shallow = _llama(layers=2)
    assert twin.build(shallow) is None and twin.why_not(shallow) is not None
    assert twin.build(torch.nn.Linear(4, 4)) is None
    patched = _llama()
    patched.model.layers[1].forward = lambda *a, **k: None
    assert twin.build(patched) is None


def test_twin_of_a_lora_model_carries_the_adapter():
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, get_peft_model

    from ftdoctor.runtime import twin

    model = get_peft_model(_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # the user's adapter has trained a little: B is no longer zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    made = twin.build(model)
    assert made is not None and type(made.model) is type(model) and made.layers == 2
    own = model.state_dict()
    for name, tensor in made.model.state_dict().items():
        assert torch.equal(tensor, own[name]), name
    trainable = {n for n, p in made.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert trainable == {n for n, p in model.named_parameters() if p.requires_grad and n in trainable}
    ids = torch.randint(0, 64, (2, 8))
    assert torch.isfinite(made.model(input_ids=ids, labels=ids).loss)


def test_no_twin_for_several_adapters_or_a_frozen_one():
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    from ftdoctor.runtime import twin

    two = get_peft_model(_llama(), LoraConfig(r=4, target_modules=["q_proj"]))
    two.add_adapter("other", LoraConfig(r=4, target_modules=["v_proj"]))
    assert twin.why_not(two) == "several adapters" and twin.build(two) is None
    frozen = get_peft_model(_llama(), LoraConfig(r=4, target_modules=["q_proj"], inference_mode=True))
    assert twin.build(frozen) is None


def test_the_twin_stands_in_when_the_whole_sweep_would_not_fit_the_stage():
    """The decision counts every trial the sweep may run, not two: a model whose two trials fit the stage's time
    but whose sweep does not (a verdict needs the sweep) is trained as a twin."""
    from ftdoctor.checks.overfit import MAX_TRIALS, STEPS, Trial, _sweep, sweep_too_long

    outcomes = {}
    for losses in ([1.0, 50.0], [1.0] * 12, [1.0, 0.85, 0.8]):  # diverged, stalled, slow
        for lr in (1e-6, 5e-5, 1e-3, 0.5):
            user = Trial(lr, losses, None, None)
            outcomes[user.outcome] = max(outcomes.get(user.outcome, 0), 1 + len(_sweep(user)))
    assert set(outcomes) == {"diverged", "stalled", "slow"}
    assert max(outcomes.values()) == MAX_TRIALS, outcomes
    seconds = 30.0
    # Two trials of this step take half the stage's time; the sweep does not fit it.
    assert sweep_too_long(seconds / (STEPS * 4), seconds)
    assert not sweep_too_long(seconds / (STEPS * MAX_TRIALS * 2), seconds)
    assert not sweep_too_long(None, seconds) and not sweep_too_long(1.0, None)


def test_a_library_wrapper_on_forward_is_carried_to_the_twin_and_runs_the_twin():
    """TRL patches the model's forward with a wrapper (functools.wraps of the class's forward) that closes over
    the original bound forward; the twin gets the same wrapper, bound to its own modules."""
    import functools
    import types

    import torch

    from ftdoctor.runtime import twin

    model = _llama()
    original = model.forward

    @functools.wraps(type(model).forward)
    def patched(self, *args, **kwargs):
        out = original(*args, **kwargs)
        out["marker"] = self.lm_head.weight.shape  # the wrapper adds something the trainer's loss reads
        return out

    model.forward = types.MethodType(patched, model)
    made = twin.build(model)
    assert made is not None and "forward" in vars(made.model)
    ids = torch.randint(0, 64, (1, 6))
    out = made.model(input_ids=ids, labels=ids)
    assert "marker" in out
    out.loss.backward()  # the gradient reaches the twin's weights, not the user's
    assert made.model.model.layers[0].self_attn.q_proj.weight.grad is not None
    assert model.model.layers[0].self_attn.q_proj.weight.grad is None
