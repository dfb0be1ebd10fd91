"""What a tokenizer holds that the checks judge by: the tokens that end a sequence or a chat turn."""

from __future__ import annotations

from typing import Any


def end_tokens(tokenizer: Any, model: Any = None) -> set[int]:
    """The ids that end a text or a turn: the tokenizer's EOS, the model's generation EOS ids, and the token a
    chat template writes after an assistant's message (Llama 3's <|eot_id|>, Qwen's <|im_end|>)."""
    ends: set[int] = set()
    sources = [
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(getattr(model, "config", None), "eos_token_id", None),
    ]
    for src in sources:
        if isinstance(src, int):
            ends.add(src)
        elif isinstance(src, (list, tuple)):
            ends.update(x for x in src if isinstance(x, int))
    turn_end = template_turn_end(tokenizer)
    if turn_end is not None:
        ends.add(turn_end)
    return ends


def template_turn_end(tokenizer: Any) -> int | None:
    """The special token the tokenizer's chat template writes right after an assistant message, if any."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "ftdoctorpong"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "ping"}, {"role": "assistant", "content": marker}], tokenize=False
        )
        tail = text[text.rindex(marker) + len(marker) :]
        ids = tokenizer.encode(tail, add_special_tokens=False) if tail.strip() else []
    except Exception:  # a template that needs other roles or arguments: no turn-end token learnt from it
        return None
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return next((i for i in ids if i in special), None)
