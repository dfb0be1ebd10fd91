"""Build the stand-in hub: a Hugging Face cache (HF_HOME) that serves real scripts offline, unmodified.

usage: python build_hub.py HF_HOME [--only ID,...] [--list]

Under the real ids the scripts name it stores, built offline and deterministically:
* models: tiny random-init checkpoints of the real class (hidden 32-64, 2 layers) with a tokenizer of the real
  format (same class, special tokens and chat template), as hub snapshots `hub/models--ORG--NAME/snapshots/<rev>/`;
* datasets: small prepared Arrow caches with the real columns, features, label names, configs and split names,
  `datasets/<ns>___<name>/<config>/0.0.0/<hash>/`, which `load_dataset` falls back to offline (train and
  evaluation rows are distinct);
* metrics: local `evaluate` modules under `modules/evaluate_modules/metrics/evaluate-metric--NAME/<sha256>/`, with
  the output keys of the hub's modules.
A `.built` file records the builder's own hash; a second run with the same sources does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import standin_text as T  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
METRIC_SOURCES = [os.path.join(HERE, "metrics"), os.path.join(REPO, "fixtures", "metrics")]


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def revision_of(name: str) -> str:
    return hashlib.sha1(("standin:" + name).encode()).hexdigest()


# ================================================================================================ text corpus
def corpus() -> list[str]:
    """The text every trained tokenizer sees: sentences of every generator plus each lexicon word."""
    w = T.Writer(7)
    lines = [" ".join(T.all_words())]
    for _ in range(300):
        lines.append(w.sentence())
        lines.append(w.review(w.rng.random() < 0.5))
        lines.append(" ".join(w.fact()))
        for lang in ("ro", "fr", "de"):
            lines.append(" ".join(w.translation(lang)))
        lines.append(" ".join(word for word, *_ in w.tagged()))
    lines += [
        " = History = ",
        "### Instruction:\n### Input:\n### Response:\n",
        "Question: Answer: Human: Assistant:",
        "summarize: translate English to Romanian: translate English to French: question: context:",
        "0123456789 " + " ".join(T.PUNCT),
        "def main():\n    return x + 1\n",
    ]
    return lines


# ================================================================================================ tokenizers
MAX_LEN = 512


def wordpiece_vocab(cased: bool) -> list[str]:
    specials = ["[PAD]"] + [f"[unused{i}]" for i in range(4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    if cased:
        letters += [c.upper() for c in letters]
    chars = letters + T.DIGITS + T.PUNCT
    words = T.all_words()
    words = list(words) + [w.capitalize() for w in words] if cased else [w.lower() for w in words]
    pieces = ["##" + c for c in letters + T.DIGITS] + ["##s", "##ed", "##ing", "##er", "##ly"]
    return list(dict.fromkeys(specials + chars + words + pieces))


def bert_tokenizer(cls_name: str, cased: bool):
    import transformers

    vocab = {t: i for i, t in enumerate(wordpiece_vocab(cased))}
    cls = getattr(transformers, cls_name)
    return cls(vocab=vocab, do_lower_case=not cased, model_max_length=MAX_LEN)


_BPE_CACHE: dict = {}


def byte_bpe(size: int = 1000):
    """A byte-level BPE trained on the corpus (deterministic): its ordered vocabulary and merges."""
    if size in _BPE_CACHE:
        return _BPE_CACHE[size]
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE

    t = Tokenizer(BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[], show_progress=False
    )
    t.train_from_iterator(corpus(), trainer)
    state = json.loads(t.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    vocab = [tok for tok, _ in sorted(state["vocab"].items(), key=lambda kv: kv[1])]
    _BPE_CACHE[size] = (vocab, merges)
    return vocab, merges


def sp_bpe(size: int = 1000):
    """A SentencePiece-style BPE (`▁` marks a word start, byte fallback) trained on the corpus."""
    key = ("sp", size)
    if key in _BPE_CACHE:
        return _BPE_CACHE[key]
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import BPE

    t = Tokenizer(BPE())
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    alphabet = sorted(set("".join(corpus())) - {" "}) + ["▁"]
    trainer = trainers.BpeTrainer(vocab_size=size, initial_alphabet=alphabet, special_tokens=[], show_progress=False)
    t.train_from_iterator(corpus(), trainer)
    state = json.loads(t.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    vocab = [tok for tok, _ in sorted(state["vocab"].items(), key=lambda kv: kv[1])]
    _BPE_CACHE[key] = (vocab, merges)
    return vocab, merges


def unigram_pieces() -> list[tuple[str, float]]:
    """A fixed Unigram vocabulary (no training): `▁word` for each lexicon word, then single characters."""
    words = T.all_words()
    pieces = []
    for w in list(dict.fromkeys(words + [w.capitalize() for w in words] + [w.lower() for w in words])):
        pieces.append(("▁" + w, -8.0 - 0.01 * len(pieces) / 100))
    chars = sorted(
        set("".join(words))
        | set(T.DIGITS)
        | set(T.PUNCT)
        | set("abcdefghijklmnopqrstuvwxyz")
        | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    )
    pieces += [("▁", -3.0)] + [(c, -10.0) for c in chars] + [("▁" + c, -11.0) for c in chars]
    return pieces


def ordered(vocab_tokens, head=(), tail=()):
    out = {}
    for t in list(head) + list(vocab_tokens) + list(tail):
        out.setdefault(t, len(out))
    return out


# ================================================================================================ chat templates
CHATML = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CHATML_PLAIN = (  # SmolLM2-Instruct: ChatML with a default system turn naming the model
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)


# ================================================================================================ model families
def _init(model_cls, config):
    import torch

    torch.manual_seed(0)
    return model_cls(config)


def fam_bert(opts):
    from transformers import BertConfig, BertForPreTraining

    tok = bert_tokenizer("BertTokenizer", opts.get("cased", False))
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN,
        type_vocab_size=2,
        pad_token_id=tok.pad_token_id,
        architectures=["BertForMaskedLM"],
    )
    return _init(BertForPreTraining, cfg), tok


def fam_distilbert(opts):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    tok = bert_tokenizer("DistilBertTokenizer", opts.get("cased", False))
    cfg = DistilBertConfig(
        vocab_size=len(tok),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=MAX_LEN,
        pad_token_id=tok.pad_token_id,
    )
    return _init(DistilBertForMaskedLM, cfg), tok


def fam_roberta(opts):
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    vocab, merges = byte_bpe()
    full = ordered(vocab, head=["<s>", "<pad>", "</s>", "<unk>"], tail=["<mask>"])
    tok = RobertaTokenizer(vocab=full, merges=merges, model_max_length=MAX_LEN)
    cfg = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN + 2,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return _init(RobertaForMaskedLM, cfg), tok


def fam_sp_roberta(opts):
    """CamemBERT / XLM-RoBERTa: the RoBERTa architecture with a SentencePiece Unigram vocabulary."""
    import transformers

    kind = opts["kind"]
    head = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab = head + unigram_pieces() + [("<mask>", 0.0)]
    if kind == "camembert":
        tok = transformers.CamembertTokenizer(vocab=vocab, model_max_length=MAX_LEN)
        config_cls, model_cls = transformers.CamembertConfig, transformers.CamembertForMaskedLM
    else:
        tok = transformers.XLMRobertaTokenizer(vocab=vocab, model_max_length=MAX_LEN)
        config_cls, model_cls = transformers.XLMRobertaConfig, transformers.XLMRobertaForMaskedLM
    cfg = config_cls(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN + 2,
        type_vocab_size=1,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return _init(model_cls, cfg), tok


def fam_gpt2(opts):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    vocab, merges = byte_bpe()
    full = ordered(vocab, tail=["<|endoftext|>"])
    eos = "<|endoftext|>"
    tok = GPT2Tokenizer(vocab=full, merges=merges, unk_token=eos, bos_token=eos, eos_token=eos, model_max_length=1024)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return _init(GPT2LMHeadModel, cfg), tok


def fam_bart(opts):
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer

    vocab, merges = byte_bpe()
    full = ordered(vocab, head=["<s>", "<pad>", "</s>", "<unk>"], tail=["<mask>"])
    tok = BartTokenizer(vocab=full, merges=merges, model_max_length=1024)
    cfg = BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=1024,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        forced_bos_token_id=0,
    )
    return _init(BartForConditionalGeneration, cfg), tok


def fam_t5(opts):
    import transformers
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    if opts.get("mt5"):
        T5Config, T5ForConditionalGeneration = transformers.MT5Config, transformers.MT5ForConditionalGeneration

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + unigram_pieces()
    tok = T5Tokenizer(vocab=vocab, extra_ids=100, model_max_length=MAX_LEN)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
        feed_forward_proj=opts.get("ff", "relu"),
        tie_word_embeddings=opts.get("tied", True),
    )
    return _init(T5ForConditionalGeneration, cfg), tok


def _llm_tokenizer(kind, opts):
    """Tokenizers of the LLM families, with their special tokens and chat templates."""
    import transformers

    if kind == "llama3":
        vocab, merges = byte_bpe(1200)
        specials = [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|finetune_right_pad_id|>",
            "<|eot_id|>",
        ]
        full = ordered(vocab, tail=specials)
        instruct = opts.get("instruct", False)
        tok = transformers.PreTrainedTokenizerFast(
            tokenizer_object=_bytelevel_backend(full, merges, bos="<|begin_of_text|>"),
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>" if instruct else "<|end_of_text|>",
            model_max_length=131072,
            chat_template=LLAMA3 if instruct else None,
            model_input_names=["input_ids", "attention_mask"],
        )
        return tok
    if kind in ("qwen2", "qwen3"):
        vocab, merges = byte_bpe(1200)
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        full = ordered(vocab, tail=specials)
        instruct = opts.get("instruct", False) or kind == "qwen3"
        tok = transformers.Qwen2Tokenizer(
            vocab=full,
            merges=merges,
            model_max_length=32768,
            eos_token="<|im_end|>" if instruct else "<|endoftext|>",
            pad_token="<|endoftext|>",
            unk_token=None,
        )
        # As in the real tokenizers, base models' included: the ChatML markers are special tokens, one id each
        # in text (without this a rendered template splits `<|im_end|>` into pieces and documents lose their end).
        tok.add_special_tokens({"additional_special_tokens": specials[1:]})
        tok.chat_template = CHATML
        return tok
    if kind == "smollm":
        vocab, merges = byte_bpe(1200)
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        full = ordered(vocab, head=specials)
        instruct = opts.get("instruct", False)
        tok = transformers.GPT2Tokenizer(
            vocab=full,
            merges=merges,
            unk_token="<|endoftext|>",
            bos_token="<|im_start|>" if instruct else "<|endoftext|>",
            eos_token="<|im_end|>" if instruct else "<|endoftext|>",
            pad_token="<|im_end|>" if instruct else None,
            model_max_length=8192,
        )
        tok.add_special_tokens({"additional_special_tokens": specials})
        if instruct:
            tok.chat_template = CHATML_PLAIN
        return tok
    if kind in ("llama2", "mistral", "tinyllama"):
        vocab, merges = sp_bpe(1000)
        head = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
        full = ordered(vocab, head=head)
        tok = transformers.LlamaTokenizer(
            vocab=full, merges=merges, model_max_length=4096 if kind != "mistral" else 32768, legacy=False
        )
        if kind == "tinyllama":
            tok.chat_template = ZEPHYR
        elif opts.get("instruct"):
            tok.chat_template = LLAMA2
        return tok
    if kind == "gemma":
        vocab, merges = sp_bpe(1000)
        head = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
        full = ordered(vocab, head=head)
        tok = transformers.GemmaTokenizer(vocab=full, merges=merges, model_max_length=8192)
        tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
        if opts.get("instruct"):
            tok.chat_template = GEMMA
        return tok
    if kind == "bloom":
        vocab, merges = byte_bpe()
        full = ordered(vocab, head=["<unk>", "<s>", "</s>", "<pad>"])
        return transformers.PreTrainedTokenizerFast(
            tokenizer_object=_bytelevel_backend(full, merges),
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            padding_side="left",
            model_max_length=2048,
            model_input_names=["input_ids", "attention_mask"],
        )
    if kind == "opt":
        vocab, merges = byte_bpe()
        full = ordered(vocab, head=["<s>", "<pad>", "</s>", "<unk>"])
        return transformers.GPT2Tokenizer(
            vocab=full,
            merges=merges,
            bos_token="</s>",
            eos_token="</s>",
            unk_token="</s>",
            pad_token="<pad>",
            model_max_length=2048,
            add_bos_token=True,
        )
    if kind == "neox":
        vocab, merges = byte_bpe()
        full = ordered(vocab, head=["<|endoftext|>", "<|padding|>"])
        return transformers.GPT2Tokenizer(
            vocab=full,
            merges=merges,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
            model_max_length=2048,
        )
    raise KeyError(kind)


def _bytelevel_backend(vocab, merges, bos=None):
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    t = Tokenizer(BPE(vocab=vocab, merges=merges, ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([k for k in vocab if k.startswith("<|")])
    if bos:
        t.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    return t


def _pad_vocab(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


def fam_llm(opts):
    import transformers

    kind = opts["kind"]
    tok = _llm_tokenizer(kind, opts)
    n = _pad_vocab(len(tok))
    common = dict(
        vocab_size=n,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if kind in ("llama2", "llama3", "tinyllama", "smollm"):
        cfg = transformers.LlamaConfig(**common, **ids, tie_word_embeddings=kind == "smollm" or opts.get("tied", False))
        cls = transformers.LlamaForCausalLM
    elif kind == "mistral":
        cfg = transformers.MistralConfig(**common, **ids)
        cls = transformers.MistralForCausalLM
    elif kind == "qwen2":
        cfg = transformers.Qwen2Config(**common, **ids, tie_word_embeddings=True)
        cls = transformers.Qwen2ForCausalLM
    elif kind == "qwen3":
        cfg = transformers.Qwen3Config(**common, **ids, head_dim=16, tie_word_embeddings=True)
        cls = transformers.Qwen3ForCausalLM
    elif kind == "gemma":
        cfg = transformers.GemmaConfig(**common, **ids, head_dim=16)
        cls = transformers.GemmaForCausalLM
    elif kind == "bloom":
        cfg = transformers.BloomConfig(
            vocab_size=n, hidden_size=64, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2, pad_token_id=3
        )
        cls = transformers.BloomForCausalLM
    elif kind == "opt":
        cfg = transformers.OPTConfig(
            vocab_size=n,
            hidden_size=64,
            ffn_dim=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=64,
            max_position_embeddings=2048,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        )
        cls = transformers.OPTForCausalLM
    elif kind == "neox":
        cfg = transformers.GPTNeoXConfig(
            vocab_size=n,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=2048,
            bos_token_id=0,
            eos_token_id=0,
            rotary_pct=0.25,
        )
        cls = transformers.GPTNeoXForCausalLM
    else:
        raise KeyError(kind)
    if opts.get("reward"):
        # a reward model checkpoint: the sequence-classification head with one label
        cfg.num_labels = 1
        cfg.architectures = None
        cls = getattr(transformers, cls.__name__.replace("ForCausalLM", "ForSequenceClassification"))
    return _init(cls, cfg), tok


FAMILIES = {
    "bert": fam_bert,
    "distilbert": fam_distilbert,
    "roberta": fam_roberta,
    "gpt2": fam_gpt2,
    "bart": fam_bart,
    "t5": fam_t5,
    "sp_roberta": fam_sp_roberta,
    "llm": fam_llm,
}


def _aliases(family, opts, *ids):
    return dict.fromkeys(ids, (family, opts))


MODELS: dict[str, tuple[str, dict]] = {
    **_aliases(
        "bert",
        {"cased": False},
        "bert-base-uncased",
        "google-bert/bert-base-uncased",
        "bert-large-uncased",
        "google-bert/bert-large-uncased",
    ),
    **_aliases(
        "bert",
        {"cased": True},
        "bert-base-cased",
        "google-bert/bert-base-cased",
        "bert-base-multilingual-cased",
        "google-bert/bert-base-multilingual-cased",
        "bert-large-cased",
    ),
    **_aliases("distilbert", {"cased": False}, "distilbert-base-uncased", "distilbert/distilbert-base-uncased"),
    **_aliases(
        "distilbert",
        {"cased": True},
        "distilbert-base-cased",
        "distilbert/distilbert-base-cased",
        "distilbert-base-cased-distilled-squad",
        "distilbert/distilbert-base-cased-distilled-squad",
    ),
    **_aliases(
        "roberta",
        {},
        "roberta-base",
        "FacebookAI/roberta-base",
        "roberta-large",
        "FacebookAI/roberta-large",
        "distilroberta-base",
        "distilbert/distilroberta-base",
    ),
    **_aliases("sp_roberta", {"kind": "camembert"}, "camembert-base", "almanach/camembert-base"),
    **_aliases("sp_roberta", {"kind": "xlmr"}, "xlm-roberta-base", "FacebookAI/xlm-roberta-base"),
    **_aliases(
        "gpt2",
        {},
        "gpt2",
        "openai-community/gpt2",
        "distilgpt2",
        "distilbert/distilgpt2",
        "gpt2-medium",
        "openai-community/gpt2-medium",
    ),
    **_aliases("bart", {}, "facebook/bart-base", "facebook/bart-large", "facebook/bart-large-cnn"),
    **_aliases("t5", {}, "t5-small", "google-t5/t5-small", "t5-base", "google-t5/t5-base"),
    **_aliases(
        "t5", {"ff": "gated-gelu", "tied": False}, "google/flan-t5-small", "google/flan-t5-base", "google/flan-t5-large"
    ),
    **_aliases(
        "t5",
        {"ff": "gated-gelu", "tied": False, "mt5": True},
        "google/mt5-small",
        "google/mt5-base",
        "bigscience/mt0-small",
        "bigscience/mt0-base",
        "bigscience/mt0-large",
    ),
    **_aliases(
        "llm", {"kind": "llama2"}, "meta-llama/Llama-2-7b-hf", "huggyllama/llama-7b", "NousResearch/Llama-2-7b-hf"
    ),
    **_aliases(
        "llm", {"kind": "llama2", "instruct": True}, "meta-llama/Llama-2-7b-chat-hf", "NousResearch/Llama-2-7b-chat-hf"
    ),
    **_aliases("llm", {"kind": "tinyllama"}, "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
    **_aliases("llm", {"kind": "mistral"}, "mistralai/Mistral-7B-v0.1"),
    **_aliases(
        "llm",
        {"kind": "llama3"},
        "meta-llama/Meta-Llama-3-8B",
        "meta-llama/Llama-3.1-8B",
        "meta-llama/Meta-Llama-3.1-8B",
        "meta-llama/Llama-3.2-1B",
        "meta-llama/Llama-3.2-3B",
    ),
    **_aliases(
        "llm",
        {"kind": "llama3", "instruct": True},
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.2-1B-Instruct",
        "meta-llama/Llama-3.2-3B-Instruct",
    ),
    **_aliases(
        "llm", {"kind": "qwen2"}, "Qwen/Qwen2-0.5B", "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-7B"
    ),
    **_aliases(
        "llm",
        {"kind": "qwen2", "instruct": True},
        "Qwen/Qwen2-0.5B-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-1.5B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen/Qwen2-1.5B-Instruct",
    ),
    **_aliases("llm", {"kind": "qwen2", "instruct": True, "reward": True}, "trl-lib/Qwen2-0.5B-Reward"),
    **_aliases("llm", {"kind": "qwen2", "instruct": True, "name": "qwen1.5-sft"}, "trl-lib/qwen1.5-1.8b-sft"),
    **_aliases(
        "llm",
        {"kind": "neox", "name": "tldr-sft"},
        "trl-lib/pythia-1b-deduped-tldr-sft",
        "EleutherAI/pythia-1b-deduped",
    ),
    **_aliases("llm", {"kind": "neox", "reward": True}, "trl-lib/pythia-1b-deduped-tldr-rm"),
    **_aliases("llm", {"kind": "qwen3"}, "Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B-Base", "Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B"),
    **_aliases(
        "llm",
        {"kind": "smollm"},
        "HuggingFaceTB/SmolLM2-135M",
        "HuggingFaceTB/SmolLM2-360M",
        "HuggingFaceTB/SmolLM-135M",
        "HuggingFaceTB/SmolLM-360M",
        "HuggingFaceTB/SmolLM2-1.7B",
    ),
    **_aliases(
        "llm",
        {"kind": "smollm", "instruct": True},
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "HuggingFaceTB/SmolLM-135M-Instruct",
        "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    ),
    **_aliases("llm", {"kind": "gemma"}, "google/gemma-2b", "google/gemma-7b"),
    **_aliases("llm", {"kind": "gemma", "instruct": True}, "google/gemma-2b-it", "google/gemma-7b-it"),
    **_aliases("llm", {"kind": "bloom"}, "bigscience/bloomz-560m", "bigscience/bloom-560m", "bigscience/bloom-1b1"),
    **_aliases(
        "llm", {"kind": "opt"}, "facebook/opt-125m", "facebook/opt-350m", "facebook/opt-1.3b", "facebook/opt-6.7b"
    ),
    **_aliases("llm", {"kind": "neox"}, "EleutherAI/pythia-70m", "EleutherAI/pythia-160m", "EleutherAI/pythia-410m"),
}


def save_model(hf_home: str, repo_id: str, model, tok) -> str:
    from transformers import GenerationConfig
    from transformers.utils import logging

    logging.disable_progress_bar()
    root = os.path.join(hf_home, "hub", "models--" + repo_id.replace("/", "--"))
    rev = revision_of(repo_id)
    snap = os.path.join(root, "snapshots", rev)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(snap)
    assert model.get_input_embeddings().weight.shape[0] >= len(tok), (repo_id, len(tok))
    model.save_pretrained(snap)
    tok.save_pretrained(snap)
    if model.can_generate() and not os.path.exists(os.path.join(snap, "generation_config.json")):
        GenerationConfig.from_model_config(model.config).save_pretrained(snap)
    os.makedirs(os.path.join(root, "refs"))
    with open(os.path.join(root, "refs", "main"), "w") as fh:
        fh.write(rev)
    return snap


# ================================================================================================ datasets
def _c(names):
    import datasets

    return datasets.ClassLabel(names=names)


def _v(dtype="string"):
    import datasets

    return datasets.Value(dtype)


def _seq(feature):
    import datasets

    return datasets.Sequence(feature)


def _list(feature):
    import datasets

    return datasets.List(feature)


SMALL = {"train": 96, "validation": 32, "test": 32}


def ds_glue(config):
    w = T.Writer(seed_of("glue/" + config))
    pair = {
        "mrpc": ("sentence1", "sentence2", ["not_equivalent", "equivalent"]),
        "rte": ("sentence1", "sentence2", ["entailment", "not_entailment"]),
        "wnli": ("sentence1", "sentence2", ["not_entailment", "entailment"]),
        "qqp": ("question1", "question2", ["not_duplicate", "duplicate"]),
        "qnli": ("question", "sentence", ["entailment", "not_entailment"]),
        "mnli": ("premise", "hypothesis", ["entailment", "neutral", "contradiction"]),
        "stsb": ("sentence1", "sentence2", None),
    }
    splits = dict(SMALL)
    if config == "mnli":
        splits = {
            "train": 96,
            "validation_matched": 32,
            "validation_mismatched": 32,
            "test_matched": 32,
            "test_mismatched": 32,
        }
    if config in ("cola", "sst2"):
        names = ["unacceptable", "acceptable"] if config == "cola" else ["negative", "positive"]

        def make(split, i):
            label = w.rng.randrange(2)
            text = w.review(bool(label), 1) if config == "sst2" else w.sentence()
            if config == "cola" and not label:
                words = text.split(" ")
                w.rng.shuffle(words)
                text = " ".join(words)
            return {"sentence": text, "label": -1 if split.startswith("test") else label, "idx": i}

        feats = {"sentence": _v(), "label": _c(names), "idx": _v("int32")}
    else:
        a, b, names = pair[config]

        def make(split, i):
            s1 = w.sentence()
            label = w.rng.randrange(len(names)) if names else round(w.rng.uniform(0, 5), 2)
            positive = {"mrpc": 1, "qqp": 1, "wnli": 1}.get(config, 0)
            same = label == positive if names else label > 2.5
            s2 = s1.replace(".", " again.") if same else w.sentence()
            if config in ("qqp", "qnli"):
                s1 = s1[:-1] + "?"
            if split.startswith("test"):
                label = -1 if names else -1.0
            return {a: s1, b: s2, "label": label, "idx": i}

        feats = {a: _v(), b: _v(), "label": _c(names) if names else _v("float32"), "idx": _v("int32")}
    return feats, unique_rows(make, splits)


# Row identifiers and bookkeeping columns: two rows that differ only in these hold the same example.
ID_COLUMNS = {
    "idx",
    "id",
    "q_id",
    "review_id",
    "product_id",
    "reviewer_id",
    "video-id",
    "fold-ind",
    "prompt_id",
    "score_chosen",
    "score_rejected",
}


def unique_rows(make, splits):
    return T.unique_rows(
        make, splits, key=lambda r: json.dumps({k: v for k, v in r.items() if k not in ID_COLUMNS}, sort_keys=True)
    )


CONLL_POS = [
    '"',
    "''",
    "#",
    "$",
    "(",
    ")",
    ",",
    ".",
    ":",
    "``",
    "CC",
    "CD",
    "DT",
    "EX",
    "FW",
    "IN",
    "JJ",
    "JJR",
    "JJS",
    "LS",
    "MD",
    "NN",
    "NNP",
    "NNPS",
    "NNS",
    "NN|SYM",
    "PDT",
    "POS",
    "PRP",
    "PRP$",
    "RB",
    "RBR",
    "RBS",
    "RP",
    "SYM",
    "TO",
    "UH",
    "VB",
    "VBD",
    "VBG",
    "VBN",
    "VBP",
    "VBZ",
    "WDT",
    "WP",
    "WP$",
    "WRB",
]
CONLL_CHUNK = [
    "O",
    "B-ADJP",
    "I-ADJP",
    "B-ADVP",
    "I-ADVP",
    "B-CONJP",
    "I-CONJP",
    "B-INTJ",
    "I-INTJ",
    "B-LST",
    "I-LST",
    "B-NP",
    "I-NP",
    "B-PP",
    "I-PP",
    "B-PRT",
    "I-PRT",
    "B-SBAR",
    "I-SBAR",
    "B-UCP",
    "I-UCP",
    "B-VP",
    "I-VP",
]
CONLL_NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
WNUT_NER = [
    "O",
    "B-corporation",
    "I-corporation",
    "B-creative-work",
    "I-creative-work",
    "B-group",
    "I-group",
    "B-location",
    "I-location",
    "B-person",
    "I-person",
    "B-product",
    "I-product",
]


def ds_conll(config):
    w = T.Writer(seed_of("conll2003"))

    def make(split, i):
        t = w.tagged()
        return {
            "id": str(i),
            "tokens": [x[0] for x in t],
            "pos_tags": [CONLL_POS.index(x[1]) for x in t],
            "chunk_tags": [CONLL_CHUNK.index(x[2]) for x in t],
            "ner_tags": [CONLL_NER.index(x[3]) for x in t],
        }

    feats = {
        "id": _v(),
        "tokens": _list(_v()),
        "pos_tags": _list(_c(CONLL_POS)),
        "chunk_tags": _list(_c(CONLL_CHUNK)),
        "ner_tags": _list(_c(CONLL_NER)),
    }
    return feats, unique_rows(make, SMALL)


def ds_wnut(config):
    w = T.Writer(seed_of("wnut_17"))
    mapping = {
        "B-PER": "B-person",
        "I-PER": "I-person",
        "B-ORG": "B-corporation",
        "I-ORG": "I-corporation",
        "B-LOC": "B-location",
        "I-LOC": "I-location",
        "B-MISC": "B-group",
        "I-MISC": "I-group",
        "O": "O",
    }

    def make(split, i):
        t = w.tagged()
        return {"id": str(i), "tokens": [x[0] for x in t], "ner_tags": [WNUT_NER.index(mapping[x[3]]) for x in t]}

    return {"id": _v(), "tokens": _list(_v()), "ner_tags": _list(_c(WNUT_NER))}, unique_rows(make, SMALL)


def ds_squad(config, v2=False):
    w = T.Writer(seed_of("squad_v2" if v2 else "squad"))

    def make(split, i):
        # contexts of 10 to 20 sentences (about 80 to 160 words, as SQuAD's paragraphs), the facts among filler
        facts = [w.fact() for _ in range(w.rng.randrange(2, 5))]
        parts = [f[0] for f in facts] + [w.sentence() for _ in range(w.rng.randrange(8, 16))]
        w.rng.shuffle(parts)
        context = " ".join(parts)
        sentence, question, answer = w.pick(facts)
        start = context.index(sentence) + sentence.index(answer)
        if v2 and w.rng.random() < 0.3:
            question = f"Where does {w.person()} live?"
            answers = {"text": [], "answer_start": []}
        else:
            n = 1 if split == "train" else 3
            answers = {"text": [answer] * n, "answer_start": [start] * n}
        return {
            "id": hashlib.md5(f"{split}{i}{question}".encode()).hexdigest()[:24],
            "title": w.pick(T.TOPICS).title(),
            "context": context,
            "question": question,
            "answers": answers,
        }

    feats = {
        "id": _v(),
        "title": _v(),
        "context": _v(),
        "question": _v(),
        "answers": _seq({"text": _v(), "answer_start": _v("int32")}),
    }
    # 128 validation questions: the course notebook evaluates on validation.select(range(100))
    return feats, unique_rows(make, {"train": 96, "validation": 128})


def ds_wikitext(config):
    w = T.Writer(seed_of("wikitext/" + config))

    def make(split, i):
        k = i % 6
        if k == 0:
            return {"text": ""}  # the real dataset has empty lines between paragraphs
        if k == 1:
            return {"text": f" = {w.pick(T.PLACES)} {w.pick(T.TOPICS)} {i} = \n"}
        return {"text": " " + w.paragraph(w.rng.randrange(3, 7)) + " \n"}

    rows = {}
    # 600 training lines: accelerate's gradient-accumulation example selects the first 500
    for split, n in {"train": 600, "validation": 48, "test": 48}.items():
        rows[split] = [make(split, i) for i in range(n)]
    return {"text": _v()}, rows


def ds_translation(langs, pair_name, splits=None, with_id=False):
    def build(config):
        a, b = config.split("-") if "-" in config else langs
        w = T.Writer(seed_of(pair_name + config))
        foreign = b if a == "en" else a

        def make(split, i):
            en, fo = w.translation(foreign)
            row = {"translation": {"en": en, foreign: fo}}
            return {"id": str(i), **row} if with_id else row

        import datasets

        feats = {"translation": datasets.Translation(languages=sorted([a, b]))}
        if with_id:
            feats = {"id": _v(), **feats}
        return feats, unique_rows(make, splits or SMALL)

    return build


def ds_summaries(doc, summ, extra=None, splits=None, seed="sum"):
    def build(config):
        w = T.Writer(seed_of(seed + config))

        def make(split, i):
            facts = [w.fact()[0] for _ in range(w.rng.randrange(3, 7))]
            row = {doc: " ".join(facts + [w.sentence() for _ in range(2)]), summ: " ".join(facts[:2])}
            if extra:
                row.update(extra(w, i))
            return row

        feats = {doc: _v(), summ: _v()}
        if extra:
            feats.update({k: _v() for k in extra(T.Writer(0), 0)})
        return feats, unique_rows(make, splits or SMALL)

    return build


def ds_pawsx(config):
    w = T.Writer(seed_of("paws-x" + config))

    def make(split, i):
        s1 = w.sentence()
        label = w.rng.randrange(2)
        s2 = s1.replace(".", " again.") if label else w.sentence()
        if config != "en":
            s1 = " ".join(T.foreign(x, config) for x in s1[:-1].split(" ")) + "."
            s2 = " ".join(T.foreign(x, config) for x in s2[:-1].split(" ")) + "."
        return {"id": i + 1, "sentence1": s1, "sentence2": s2, "label": label}

    feats = {"id": _v("int32"), "sentence1": _v(), "sentence2": _v(), "label": _c(["0", "1"])}
    return feats, unique_rows(make, SMALL)


def ds_swag(config):
    w = T.Writer(seed_of("swag"))

    def make(split, i):
        name = w.pick(T.FIRST)
        past, _ = w.pick(T.VERBS)
        sent1 = f"{name} walks to the {w.pick(T.NOUNS)}."
        sent2 = f"{name}"
        right = f"{past} the {w.pick(T.NOUNS)} {w.pick(T.ADVERBS)}."
        endings = [right] + [f"{w.pick(T.VERBS)[0]} a {w.pick(T.NOUNS)} {w.pick(T.ADVERBS)}." for _ in range(3)]
        label = w.rng.randrange(4)
        endings[0], endings[label] = endings[label], endings[0]
        return {
            "video-id": f"anetv_{i}",
            "fold-ind": str(i),
            "startphrase": f"{sent1} {sent2}",
            "sent1": sent1,
            "sent2": sent2,
            "gold-source": "gold",
            **{f"ending{k}": endings[k] for k in range(4)},
            "label": -1 if split == "test" else label,
        }

    feats = {
        "video-id": _v(),
        "fold-ind": _v(),
        "startphrase": _v(),
        "sent1": _v(),
        "sent2": _v(),
        "gold-source": _v(),
        **{f"ending{k}": _v() for k in range(4)},
        "label": _c(["0", "1", "2", "3"]),
    }
    return feats, unique_rows(make, SMALL)


def ds_xnli(config):
    w = T.Writer(seed_of("xnli" + config))
    names = ["entailment", "neutral", "contradiction"]

    def make(split, i):
        s1 = w.sentence()
        label = w.rng.randrange(3)
        s2 = (
            s1.replace(".", " again.")
            if label == 0
            else (w.sentence() if label == 1 else "Nobody " + s1.split(" ", 1)[1])
        )
        if config != "en":
            s1 = " ".join(T.foreign(x, config) for x in s1[:-1].split(" ")) + "."
            s2 = " ".join(T.foreign(x, config) for x in s2[:-1].split(" ")) + "."
        return {"premise": s1, "hypothesis": s2, "label": label}

    return {"premise": _v(), "hypothesis": _v(), "label": _c(names)}, unique_rows(
        make, {"train": 96, "test": 32, "validation": 32}
    )


def ds_text_label(names, splits, text="text", seed="tl", label="label", extra_splits=None):
    def build(config):
        w = T.Writer(seed_of(seed))

        def make(split, i):
            y = w.rng.randrange(len(names))
            if len(names) == 2:
                body = w.review(bool(y), w.rng.randrange(2, 5))
            else:
                body = f"{w.pick(T.TOPICS).capitalize()} {names[y].lower()} news: " + w.review(w.rng.random() < 0.5, 2)
            return {text: body, label: -1 if split == "unsupervised" else y}

        return {text: _v(), label: _c(names)}, unique_rows(make, splits)

    return build


def ds_emotion(config):
    names = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    w = T.Writer(seed_of("emotion"))
    words = {0: "sad", 1: "happy", 2: "loved", 3: "angry", 4: "afraid", 5: "surprised"}

    def make(split, i):
        y = w.rng.randrange(6)
        return {"text": f"i feel {words[y]} because {w.sentence().lower()[:-1]}", "label": y}

    return {"text": _v(), "label": _c(names)}, unique_rows(make, SMALL)


# --- chat / LLM datasets ---
SYSTEMS = ["You are a helpful assistant.", "You are a friendly assistant who answers briefly."]


def _qa_pair(w):
    if w.rng.random() < 0.5:
        animal = w.pick(list(T.ANIMALS))
        q = w.pick(["What sound does a {a} make?", "Which noise does the {a} make?", "How does a {a} sound?"])
        return q.format(a=animal), f"The {animal} says {T.ANIMALS[animal]}."
    sentence, question, answer = w.fact()
    return f"{sentence} {question}", f"{answer[0].upper()}{answer[1:]}."


def _wrong(w, answer):
    return f"I think it is {w.pick(T.NOUNS)}, but I am not sure."


def ds_messages(splits, system=False, extra=None, seed="chat", turns=1):
    def build(config):
        w = T.Writer(seed_of(seed + config))

        def make(split, i):
            msgs = [{"role": "system", "content": w.pick(SYSTEMS)}] if system else []
            for _ in range(turns):
                q, a = _qa_pair(w)
                msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            row = {"messages": msgs}
            if extra:
                row.update(extra(w, msgs, i))
            return row

        feats = {"messages": _list({"content": _v(), "role": _v()})}
        if extra:
            sample = extra(T.Writer(0), [{"role": "user", "content": "q"}], 0)
            feats.update({k: (_v("int64") if isinstance(v, int) else _v()) for k, v in sample.items()})
        return feats, unique_rows(make, splits)

    return build


def ds_preference(splits, conversational=True, scores=True, seed="pref", prompt_msgs=False):
    def build(config):
        w = T.Writer(seed_of(seed + config))

        def make(split, i):
            q, a = _qa_pair(w)
            bad = _wrong(w, a)
            if conversational:
                row = {
                    "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                    "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}],
                }
                if prompt_msgs:
                    row = {
                        "prompt": q,
                        "prompt_id": hashlib.sha256(q.encode()).hexdigest(),
                        **row,
                        "messages": row["chosen"],
                    }
            else:
                row = {"prompt": f"Question: {q}\nAnswer:", "chosen": " " + a, "rejected": " " + bad}
            if scores:
                row.update(
                    {"score_chosen": float(w.rng.randrange(7, 11)), "score_rejected": float(w.rng.randrange(1, 6))}
                )
            return row

        msgs = _list({"content": _v(), "role": _v()})
        if conversational:
            feats = {"chosen": msgs, "rejected": msgs}
            if prompt_msgs:
                feats = {"prompt": _v(), "prompt_id": _v(), **feats, "messages": msgs}
        else:
            feats = {"prompt": _v(), "chosen": _v(), "rejected": _v()}
        if scores:
            feats.update({"score_chosen": _v("float64"), "score_rejected": _v("float64")})
        return feats, unique_rows(make, splits)

    return build


def ds_prompt_completion(splits, seed, conversational=True, label=False, completion=True, messages=False):
    """prompt/completion rows (TRL's prompt-completion and unpaired-preference formats), or prompt-only rows;
    with `messages`, the whole conversation too (what GKD's collator reads)."""

    def build(config):
        w = T.Writer(seed_of(seed + config))

        def make(split, i):
            q, a = _qa_pair(w)
            good = not label or w.rng.random() < 0.5
            answer = a if good else _wrong(w, a)
            if conversational:
                row = {"prompt": [{"role": "user", "content": q}]}
                if completion:
                    row["completion"] = [{"role": "assistant", "content": answer}]
            else:
                row = {"prompt": f"Question: {q}\nAnswer:"}
                if completion:
                    row["completion"] = " " + answer
            if label:
                row["label"] = good
            if messages:
                row["messages"] = [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
            return row

        msgs = _list({"content": _v(), "role": _v()})
        feats = {"prompt": msgs if conversational else _v()}
        if completion:
            feats["completion"] = msgs if conversational else _v()
        if label:
            feats["label"] = _v("bool")
        if messages:
            feats["messages"] = msgs
        return feats, unique_rows(make, splits)

    return build


def ds_implicit_preference(splits, seed, reference=False, conversational=True):
    """prompt/chosen/rejected with the prompt apart (TRL style), conversational or plain text."""

    def build(config):
        w = T.Writer(seed_of(seed + config))

        def make(split, i):
            q, a = _qa_pair(w)
            bad = _wrong(w, a)
            if conversational:
                row = {
                    "prompt": [{"role": "user", "content": q}],
                    "chosen": [{"role": "assistant", "content": a}],
                    "rejected": [{"role": "assistant", "content": bad}],
                }
                if reference:
                    row["reference"] = [{"role": "assistant", "content": a + " That is certain."}]
            else:
                row = {"prompt": q, "chosen": " " + a, "rejected": " " + bad}
                if reference:
                    row["reference"] = " " + a + " That is certain."
            return row

        msgs = _list({"content": _v(), "role": _v()}) if conversational else _v()
        feats = {"prompt": msgs, "chosen": msgs, "rejected": msgs}
        if reference:
            feats["reference"] = msgs
        return feats, unique_rows(make, splits)

    return build


def ds_stepwise(config):
    w = T.Writer(seed_of("prm800k"))

    def make(split, i):
        q, a = _qa_pair(w)
        steps = [w.sentence() for _ in range(w.rng.randrange(2, 4))] + [a]
        return {"prompt": q, "completions": steps, "labels": [w.rng.random() < 0.8 for _ in steps]}

    return (
        {"prompt": _v(), "completions": _list(_v()), "labels": _list(_v("bool"))},
        unique_rows(make, {"train": 96, "test": 16}),
    )


def ds_columns(columns, splits, seed):
    """Rows of free-form text columns: instruction/input/output, prompt/completion, quote/author, ..."""

    def build(config):
        w = T.Writer(seed_of(seed + config))

        def make(split, i):
            q, a = _qa_pair(w)
            values = {
                "instruction": q,
                "input": w.rng.choice(["", w.sentence()]),
                "output": a,
                "response": a,
                "context": w.rng.choice(["", w.sentence()]),
                "category": w.pick(["open_qa", "closed_qa"]),
                "prompt": q,
                "completion": a,
                "question": q,
                "answer": a + f" #### {w.rng.randrange(100)}",
                "quote": f"\u201c{w.sentence()}\u201d",
                "author": w.person(),
                "act": w.pick(T.NOUNS).title(),
                "text": f"### Human: {q}### Assistant: {a}",
            }
            row = {c: values[c] for c in columns if c != "tags"}
            if "tags" in columns:
                row["tags"] = [w.pick(T.TOPICS) for _ in range(2)]
            if "text" in columns and "instruction" in columns:
                row["text"] = f"### Instruction:\n{q}\n\n### Response:\n{a}"
            return row

        feats = {c: (_list(_v()) if c == "tags" else _v()) for c in columns}
        return feats, unique_rows(make, splits)

    return build


def ds_amazon(config):
    w = T.Writer(seed_of("amazon" + config))

    def make(split, i):
        stars = w.rng.randrange(1, 6)
        return {
            "review_id": f"{config}_{split}_{i:07d}",
            "product_id": f"product_{w.rng.randrange(10**6):07d}",
            "reviewer_id": f"reviewer_{w.rng.randrange(10**6):07d}",
            "stars": stars,
            "review_body": w.review(stars >= 3, w.rng.randrange(2, 4)),
            "review_title": f"{w.pick(T.GOOD if stars >= 3 else T.BAD).capitalize()} {w.pick(T.NOUNS)}",
            "language": config,
            "product_category": w.pick(["home", "toy", "book", "kitchen", "sports"]),
        }

    feats = {
        "review_id": _v(),
        "product_id": _v(),
        "reviewer_id": _v(),
        "stars": _v("int32"),
        "review_body": _v(),
        "review_title": _v(),
        "language": _v(),
        "product_category": _v(),
    }
    return feats, unique_rows(make, SMALL)


def ds_eli5(config):
    w = T.Writer(seed_of("eli5"))

    def make(split, i):
        q, _ = _qa_pair(w)
        n = w.rng.randrange(1, 4)
        return {
            "q_id": f"{split[:2]}{i:05x}",
            "title": q,
            "selftext": w.rng.choice(["", w.sentence()]),
            "category": w.pick(["Biology", "Physics", "Economics", "Technology"]),
            "subreddit": "explainlikeimfive",
            "answers": {
                "a_id": [f"a{i}_{k}" for k in range(n)],
                "text": [w.paragraph(4) for _ in range(n)],
                "score": [w.rng.randrange(1, 50) for _ in range(n)],
                "text_urls": [[] for _ in range(n)],
            },
            "title_urls": [],
            "selftext_urls": [],
        }

    feats = {
        "q_id": _v(),
        "title": _v(),
        "selftext": _v(),
        "category": _v(),
        "subreddit": _v(),
        "answers": {
            "a_id": _list(_v()),
            "text": _list(_v()),
            "score": _list(_v("int32")),
            "text_urls": _list(_list(_v())),
        },
        "title_urls": _list(_v()),
        "selftext_urls": _list(_v()),
    }
    return feats, unique_rows(make, {"train": 128, "validation1": 32, "validation2": 32, "test": 32})


TRAIN_TEST = {"train": 96, "test": 32}

DATASETS: dict[str, dict] = {}


def register(ids, builder, configs=("default",)):
    for i in ids:
        DATASETS[i] = {"builder": builder, "configs": list(configs)}


register(["glue", "nyu-mll/glue"], ds_glue, ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"])
register(["conll2003", "eriktks/conll2003"], ds_conll, ["conll2003"])
register(["wnut_17", "leondz/wnut_17"], ds_wnut, ["wnut_17"])
register(["squad", "rajpurkar/squad"], ds_squad, ["plain_text"])
register(["squad_v2", "rajpurkar/squad_v2"], lambda c: ds_squad(c, v2=True), ["squad_v2"])
register(
    ["wikitext", "Salesforce/wikitext"], ds_wikitext, ["wikitext-2-raw-v1", "wikitext-103-raw-v1", "wikitext-2-v1"]
)
register(["wmt16"], ds_translation(None, "wmt16"), ["ro-en", "de-en"])
register(
    ["opus_books", "Helsinki-NLP/opus_books"],
    ds_translation(None, "opus_books", {"train": 128}, True),
    ["en-fr", "de-en"],
)
register(
    ["cnn_dailymail", "abisee/cnn_dailymail"],
    ds_summaries("article", "highlights", lambda w, i: {"id": f"{i:08x}"}, seed="cnn"),
    ["3.0.0"],
)
register(
    ["xsum", "EdinburghNLP/xsum"],
    ds_summaries("document", "summary", lambda w, i: {"id": str(30000 + i)}, seed="xsum"),
    ["default"],
)
register(
    ["billsum", "FiscalNote/billsum"],
    ds_summaries(
        "text", "summary", lambda w, i: {"title": f"Act {i}"}, {"train": 96, "test": 32, "ca_test": 16}, seed="bill"
    ),
    ["default"],
)
register(
    ["samsum", "knkarthick/samsum"],
    ds_summaries("dialogue", "summary", lambda w, i: {"id": f"1{i:07d}"}, seed="samsum"),
    ["samsum"],
)
register(["swag", "allenai/swag"], ds_swag, ["regular"])
register(["paws-x", "google-research-datasets/paws-x"], ds_pawsx, ["en", "de", "es", "fr"])
register(["xnli", "facebook/xnli"], ds_xnli, ["en", "de", "fr"])
register(
    ["imdb", "stanfordnlp/imdb"],
    ds_text_label(["neg", "pos"], {"train": 96, "test": 32, "unsupervised": 16}, seed="imdb"),
    ["plain_text"],
)
register(
    ["rotten_tomatoes", "cornell-movie-review-data/rotten_tomatoes"],
    ds_text_label(["neg", "pos"], SMALL, seed="rt"),
    ["default"],
)
register(
    ["yelp_review_full", "Yelp/yelp_review_full"],
    ds_text_label(["1 star", "2 star", "3 stars", "4 stars", "5 stars"], TRAIN_TEST, seed="yelp"),
    ["yelp_review_full"],
)
register(
    ["ag_news", "fancyzhx/ag_news"],
    ds_text_label(["World", "Sports", "Business", "Sci/Tech"], TRAIN_TEST, seed="ag"),
    ["default"],
)
register(["emotion", "dair-ai/emotion"], ds_emotion, ["split"])
register(["eli5_category", "dany0407/eli5_category"], ds_eli5, ["default"])
register(["amazon_reviews_multi", "mteb/amazon_reviews_multi"], ds_amazon, ["en", "de", "es"])
register(
    ["sst2", "stanfordnlp/sst2"],
    ds_text_label(["negative", "positive"], SMALL, text="sentence", seed="sst2"),
    ["default"],
)
# LLM / TRL datasets
register(["trl-lib/Capybara"], ds_messages({"train": 96, "test": 16}, seed="capy", turns=2), ["default"])
register(
    ["HuggingFaceH4/ultrachat_200k"],
    ds_messages(
        {"train_sft": 96, "test_sft": 16, "train_gen": 16, "test_gen": 16},
        seed="ultrachat",
        extra=lambda w, m, i: {"prompt": m[0]["content"], "prompt_id": f"{i:064x}"},
    ),
    ["default"],
)
register(
    ["HuggingFaceTB/smoltalk"],
    ds_messages(
        {"train": 96, "test": 16}, system=True, seed="smoltalk", extra=lambda w, m, i: {"full_topic": w.pick(T.TOPICS)}
    ),
    ["everyday-conversations", "all"],
)
register(["trl-lib/ultrafeedback_binarized"], ds_preference({"train": 96, "test": 16}, seed="ufb"), ["default"])
register(
    ["HuggingFaceH4/ultrafeedback_binarized"],
    ds_preference(
        {"train_prefs": 96, "test_prefs": 16, "train_sft": 32, "test_sft": 16, "train_gen": 16, "test_gen": 16},
        seed="h4ufb",
        prompt_msgs=True,
    ),
    ["default"],
)
register(
    ["trl-lib/kto-mix-14k", "trl-lib/ultrafeedback-gpt-3.5-turbo-helpfulness"],
    ds_prompt_completion({"train": 96, "test": 16}, "kto", label=True),
    ["default"],
)
register(
    ["trl-lib/chatbot_arena_completions"],
    # GKD's collator reads `messages` (and a `prompt`, if any, as text); the distillation trainer reads `prompt`
    ds_prompt_completion({"train": 96, "test": 16}, "arena", conversational=False, messages=True),
    ["default"],
)
register(
    ["trl-lib/ultrafeedback-prompt"],
    ds_prompt_completion({"train": 96, "test": 16}, "ufp", completion=False),
    ["default"],
)
register(
    ["trl-internal-testing/hh-rlhf-helpful-base-trl-style", "trl-lib/hh-rlhf-helpful-base"],
    ds_implicit_preference({"train": 96, "test": 16}, "hh"),
    ["default"],
)
register(
    ["tpo-alignment/triple-preference-ultrafeedback-40K"],
    ds_implicit_preference({"train": 96, "test": 16}, "tpo", reference=True, conversational=False),
    ["default"],
)
register(
    ["trl-internal-testing/descriptiveness-sentiment-trl-style"],
    ds_implicit_preference({"descriptiveness": 96, "sentiment": 96}, "desc", conversational=False),
    ["default"],
)
register(["trl-lib/prm800k"], ds_stepwise, ["default"])
register(
    ["trl-lib/tldr"],
    ds_columns(["prompt", "completion"], {"train": 96, "validation": 16, "test": 16}, "tldr"),
    ["default"],
)
register(["timdettmers/openassistant-guanaco"], ds_columns(["text"], TRAIN_TEST, "guanaco"), ["default"])
register(
    ["yahma/alpaca-cleaned"],
    ds_columns(["output", "input", "instruction"], {"train": 128}, "alpaca-clean"),
    ["default"],
)
register(
    ["tatsu-lab/alpaca"], ds_columns(["instruction", "input", "output", "text"], {"train": 128}, "alpaca"), ["default"]
)
register(
    ["databricks/databricks-dolly-15k"],
    ds_columns(["instruction", "context", "response", "category"], {"train": 128}, "dolly"),
    ["default"],
)
register(["Abirate/english_quotes"], ds_columns(["quote", "author", "tags"], {"train": 128}, "quotes"), ["default"])
register(["fka/awesome-chatgpt-prompts"], ds_columns(["act", "prompt"], {"train": 96}, "fka"), ["default"])
register(["openai/gsm8k", "gsm8k"], ds_columns(["question", "answer"], TRAIN_TEST, "gsm8k"), ["main", "socratic"])


def write_dataset(hf_home: str, repo_id: str, config: str, feats: dict, rows: dict) -> str:
    import datasets
    from datasets.arrow_writer import ArrowWriter
    from datasets.naming import camelcase_to_snakecase

    parts = repo_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    name = parts[-1]
    base = os.path.join(hf_home, "datasets", "___".join(parts), config, "0.0.0")
    out = os.path.join(base, revision_of(f"{repo_id}/{config}")[:16])
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(out)
    features = datasets.Features(feats)
    splits = datasets.SplitDict()
    for split, items in rows.items():
        path = os.path.join(out, f"{name}-{split}.arrow")
        with ArrowWriter(features=features, path=path) as writer:
            for row in items:
                writer.write(features.encode_example(row))
            n, nbytes = writer.finalize()
        splits.add(datasets.SplitInfo(name=split, num_bytes=nbytes, num_examples=n, dataset_name=name))
    info = datasets.DatasetInfo(
        features=features,
        splits=splits,
        config_name=config,
        dataset_name=name,
        builder_name=name,
        version="0.0.0",
        description="stand-in for " + repo_id,
    )
    info.write_to_directory(out)
    return out


# ================================================================================================ metrics
def metric_names() -> dict[str, str]:
    found = {}
    for root in METRIC_SOURCES:
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                path = os.path.join(root, name, name + ".py")
                if os.path.isfile(path):
                    found.setdefault(name, path)
    return found


def write_metric(hf_home: str, name: str, source: str) -> None:
    text = open(source, "rb").read()
    base = os.path.join(hf_home, "modules", "evaluate_modules")
    folder = os.path.join(base, "metrics", f"evaluate-metric--{name}")
    shutil.rmtree(folder, ignore_errors=True)
    out = os.path.join(folder, hashlib.sha256(text).hexdigest())
    os.makedirs(out)
    for d in (base, os.path.join(base, "metrics"), folder, out):
        open(os.path.join(d, "__init__.py"), "a").close()
    with open(os.path.join(out, name + ".py"), "wb") as fh:
        fh.write(text)
    with open(os.path.join(out, name + ".json"), "w") as fh:
        # relative paths: the same bytes whichever folder the hub is built in
        json.dump({"original file path": f"{name}/{name}.py", "local file path": f"{name}.py"}, fh)


# ================================================================================================ main
PUNKT_FILES = (
    "punkt/README",
    "punkt_tab/english/abbrev_types.txt",
    "punkt_tab/english/collocations.tab",
    "punkt_tab/english/ortho_context.tab",
    "punkt_tab/english/sent_starters.txt",
)


def write_nltk(hf_home: str) -> None:
    """Empty Punkt parameters (nltk_data/tokenizers/punkt{,_tab}), which scripts look up before they summarize."""
    for rel in PUNKT_FILES:
        path = os.path.join(hf_home, "nltk_data", "tokenizers", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()


def builder_hash() -> str:
    h = hashlib.sha256(sys.executable.encode())
    for f in sorted(
        [os.path.join(HERE, "build_hub.py"), os.path.join(HERE, "standin_text.py")] + list(metric_names().values())
    ):
        h.update(open(f, "rb").read())
    return h.hexdigest()


def build(hf_home: str, only: set[str] | None = None, quiet: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    os.makedirs(hf_home, exist_ok=True)
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    built_models: dict[tuple, str] = {}
    for repo_id, (family, opts) in MODELS.items():
        if only and repo_id not in only:
            continue
        key = (family, json.dumps(opts, sort_keys=True))
        if key in built_models:
            # same family and options: copy the snapshot files (same bytes) under this id
            src = built_models[key]
            root = os.path.join(hf_home, "hub", "models--" + repo_id.replace("/", "--"))
            shutil.rmtree(root, ignore_errors=True)
            snap = os.path.join(root, "snapshots", revision_of(repo_id))
            shutil.copytree(src, snap)
            os.makedirs(os.path.join(root, "refs"))
            with open(os.path.join(root, "refs", "main"), "w") as fh:
                fh.write(revision_of(repo_id))
        else:
            model, tok = FAMILIES[family](opts)
            built_models[key] = save_model(hf_home, repo_id, model, tok)
        if not quiet:
            print(f"model   {repo_id}", flush=True)
    for repo_id, spec in DATASETS.items():
        if only and repo_id not in only:
            continue
        for config in spec["configs"]:
            feats, rows = spec["builder"](config)
            write_dataset(hf_home, repo_id, config, feats, rows)
        if not quiet:
            print(f"dataset {repo_id} ({', '.join(spec['configs'])})", flush=True)
    write_nltk(hf_home)
    for name, source in metric_names().items():
        if only and name not in only:
            continue
        write_metric(hf_home, name, source)
    if not quiet:
        print(f"metrics {', '.join(metric_names())}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hf_home", nargs="?", help="the HF_HOME folder to build")
    ap.add_argument("--only", help="build only these ids (comma-separated), for development")
    ap.add_argument("--list", action="store_true", help="list the model, dataset and metric ids and exit")
    ap.add_argument("--force", action="store_true", help="rebuild even when the .built marker matches")
    a = ap.parse_args(argv)
    if a.list:
        for m in MODELS:
            print("model  ", m)
        for d, spec in DATASETS.items():
            print("dataset", d, ",".join(spec["configs"]))
        for n in metric_names():
            print("metric ", n)
        return 0
    if not a.hf_home:
        ap.error("HF_HOME folder needed")
    hf_home = os.path.abspath(a.hf_home)
    marker = os.path.join(hf_home, ".built")
    digest = builder_hash()
    only = {x.strip() for x in a.only.split(",")} if a.only else None
    if not only and not a.force and os.path.exists(marker) and open(marker).read() == digest:
        print(f"stand-in hub up to date in {hf_home}")
        return 0
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=hf_home, TOKENIZERS_PARALLELISM="false")
    build(hf_home, only)
    if not only:
        with open(marker, "w") as fh:
            fh.write(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
