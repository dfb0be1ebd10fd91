"""Offline, deterministic assets for benchmarks/real_size.py: generated review texts, tokenizers with real vocabulary
sizes, random-weight models at real shapes (saved with save_pretrained, safetensors) and the user-style Trainer
scripts that load them. Everything is built lazily into one cache folder, each piece once, atomically (a piece is
written under a temporary name and renamed when complete), so an interrupted build is simply redone.

Determinism: the texts come from seeded `random.Random` streams (rows are generated in blocks of 1000 with a seed
per block, so the first 1000 rows of the 400k set are the 1k set); the BERT tokenizer is a WordPiece built from a
fixed vocabulary list (WordPiece training is not deterministic); GPT-2 and Llama use byte-level BPE trained on the
same generated sample (that training is deterministic; the tokenizer's checksum is recorded in the manifest); model
weights are random-initialised after `torch.manual_seed(0)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil

SEED = 1234
BLOCK = 1000  # rows per seeded block
POSITIVE = ["great", "excellent", "wonderful", "loved", "superb", "delightful", "brilliant", "enjoyable"]
NEGATIVE = ["terrible", "awful", "boring", "hated", "dreadful", "disappointing", "poor", "tedious"]
BERT_VOCAB = 30522
GPT2_VOCAB = 50257
LLAMA_VOCAB = 32000
BPE_SAMPLE_ROWS = 60_000  # rows the byte-level BPE tokenizers are trained on


def eval_rows(rows: int) -> int:
    """Rows of the test split that goes with a train split of ``rows``."""
    return min(max(rows // 10, 100), 2000)


# --------------------------------------------------------------------------------------------------- the corpus


def _syllables() -> list[str]:
    onsets = [
        "b",
        "c",
        "d",
        "f",
        "g",
        "h",
        "j",
        "k",
        "l",
        "m",
        "n",
        "p",
        "r",
        "s",
        "t",
        "v",
        "w",
        "z",
        "ch",
        "sh",
        "th",
        "st",
        "tr",
        "pl",
        "br",
        "gr",
    ]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
    codas = ["", "n", "r", "s", "t", "l", "m", "nd", "st"]
    return [o + n + c for o in onsets for n in nuclei for c in codas]


_LEXICON: list[str] | None = None
_CUM: list[float] | None = None


def lexicon() -> list[str]:
    """60k distinct made-up words of one to four syllables, in Zipf rank order (the first is the most frequent)."""
    global _LEXICON, _CUM
    if _LEXICON is None:
        rng = random.Random(SEED)
        syl = _syllables()
        seen, words = set(POSITIVE + NEGATIVE), []
        while len(words) < 60_000:
            w = "".join(rng.choice(syl) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
            if w not in seen:
                seen.add(w)
                words.append(w)
        _LEXICON = words
        total, cum = 0.0, []
        for rank in range(len(words)):
            total += 1.0 / (rank + 2.7)
            cum.append(total)
        _CUM = cum
    return _LEXICON


def _block(index: int, salt: int) -> tuple[list[str], list[int]]:
    """One seeded block of BLOCK rows: (texts, labels)."""
    words = lexicon()
    rng = random.Random(SEED * 1_000_003 + salt * 7_919 + index)
    texts, labels = [], []
    for _ in range(BLOCK):
        label = rng.random() < 0.5
        cues = POSITIVE if label else NEGATIVE
        sentences = []
        for _ in range(rng.randint(1, 4)):
            sent = rng.choices(words, cum_weights=_CUM, k=rng.randint(6, 18))
            if rng.random() < 0.6:
                sent.insert(rng.randrange(len(sent) + 1), rng.choice(cues))
            if rng.random() < 0.2:
                sent.insert(rng.randrange(len(sent) + 1), str(rng.randint(1, 2000)))
            if len(sent) > 8 and rng.random() < 0.4:
                sent[rng.randrange(2, len(sent) - 1)] += ","
            sentences.append(" ".join(sent).capitalize() + rng.choice(".....!?"))
        texts.append(" ".join(sentences))
        labels.append(int(label))
    return texts, labels


def generate(rows: int, salt: int = 0) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for b in range((rows + BLOCK - 1) // BLOCK):
        t, y = _block(b, salt)
        texts += t
        labels += y
    return texts[:rows], labels[:rows]


def _atomic(path: str, build) -> str:
    """Build ``path`` (a folder) with ``build(tmp)`` unless it is already there."""
    if os.path.isdir(path):
        return path
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    build(tmp)
    os.replace(tmp, path)
    return path


def dataset(root: str, rows: int, log=print) -> str:
    """A DatasetDict (train: ``rows``, test: eval_rows(rows)) of reviews with a `text` and a ClassLabel `label`
    column, saved with save_to_disk."""

    def build(tmp):
        from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

        log(f"  generating {rows} + {eval_rows(rows)} review rows")
        features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
        splits = {}
        for split, n, salt in (("train", rows, 0), ("test", eval_rows(rows), 1)):
            texts, labels = generate(n, salt)
            splits[split] = Dataset.from_dict({"text": texts, "label": labels}, features=features)
        DatasetDict(splits).save_to_disk(tmp)

    return _atomic(os.path.join(root, "data", f"reviews-{rows}"), build)


# ----------------------------------------------------------------------------------------------- the tokenizers


def _bert_vocab() -> list[str]:
    """BERT's layout ([PAD], [unused*], [UNK] [CLS] [SEP] [MASK] at 100-103), then characters, syllables as word
    starts and as ##continuations, then the most frequent words, to exactly BERT_VOCAB entries."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab += chars + ["##" + c for c in chars if c.isalnum()]
    syl = _syllables()
    vocab += syl + ["##" + s for s in syl]
    vocab += [str(n) for n in range(10, 1000)] + POSITIVE + NEGATIVE
    vocab = list(dict.fromkeys(vocab))  # a syllable can also be a word ("great")
    seen = set(vocab)
    for w in lexicon():
        if len(vocab) >= BERT_VOCAB:
            break
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    assert len(vocab) == BERT_VOCAB, len(vocab)
    return vocab


def bert_tokenizer(root: str, log=print) -> str:
    def build(tmp):
        from transformers import BertTokenizer

        log("  building the BERT WordPiece tokenizer (fixed vocabulary)")
        vocab = {tok: i for i, tok in enumerate(_bert_vocab())}
        BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512).save_pretrained(tmp)

    return _atomic(os.path.join(root, "tokenizers", "bert-base"), build)


def _bpe_sample() -> list[str]:
    texts, _ = generate(BPE_SAMPLE_ROWS, salt=2)
    return texts


def _train_bpe(vocab_size: int, special: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_bpe_sample(), trainer=trainer)
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"byte-level BPE stopped at {tok.get_vocab_size()} tokens, not {vocab_size}")
    return tok


def gpt2_tokenizer(root: str, log=print) -> str:
    """GPT-2's layout: 50256 byte-level BPE tokens, then <|endoftext|> at 50256."""

    def build(tmp):
        from transformers import GPT2Tokenizer

        log(f"  training the GPT-2 byte-level BPE tokenizer ({GPT2_VOCAB} tokens) on {BPE_SAMPLE_ROWS} rows")
        tok = _train_bpe(GPT2_VOCAB - 1, [])
        data = json.loads(tok.to_str())
        vocab = dict(data["model"]["vocab"])
        vocab["<|endoftext|>"] = GPT2_VOCAB - 1
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
        GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024).save_pretrained(tmp)

    return _atomic(os.path.join(root, "tokenizers", "gpt2"), build)


def llama_tokenizer(root: str, log=print) -> str:
    """A byte-level BPE of 32000 tokens with <unk> <s> </s> at 0-2, adding <s> in front like Llama's."""

    def build(tmp):
        from tokenizers import processors
        from transformers import PreTrainedTokenizerFast

        log(f"  training the Llama byte-level BPE tokenizer ({LLAMA_VOCAB} tokens) on {BPE_SAMPLE_ROWS} rows")
        tok = _train_bpe(LLAMA_VOCAB, ["<unk>", "<s>", "</s>"])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
        PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=2048
        ).save_pretrained(tmp)

    return _atomic(os.path.join(root, "tokenizers", "llama"), build)


# --------------------------------------------------------------------------------------------------- the models

MODELS = {
    "bert-base": dict(tokenizer=bert_tokenizer, about="BertForSequenceClassification, BERT-base shape"),
    "gpt2": dict(tokenizer=gpt2_tokenizer, about="GPT2LMHeadModel, GPT-2 small shape"),
    "llama-1b": dict(
        tokenizer=llama_tokenizer,
        about="LlamaForCausalLM, hidden 2048, 20 layers, 32 heads, 8 KV heads, intermediate 5632, vocab 32000",
    ),
}


def _make_model(name: str):
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if name == "bert-base":
        cfg = BertConfig(
            vocab_size=BERT_VOCAB,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
            num_labels=2,
            pad_token_id=0,
        )
        return BertForSequenceClassification(cfg)
    if name == "gpt2":
        cfg = GPT2Config(
            vocab_size=GPT2_VOCAB,
            n_positions=1024,
            n_embd=768,
            n_layer=12,
            n_head=12,
            bos_token_id=GPT2_VOCAB - 1,
            eos_token_id=GPT2_VOCAB - 1,
        )
        return GPT2LMHeadModel(cfg)
    if name == "llama-1b":
        cfg = LlamaConfig(
            vocab_size=LLAMA_VOCAB,
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=20,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=False,
        )
        return LlamaForCausalLM(cfg)
    raise KeyError(name)


def model(root: str, name: str, log=print) -> str:
    """The model folder (weights, config and tokenizer together, as on the hub)."""
    tok_dir = MODELS[name]["tokenizer"](root, log)

    def build(tmp):
        import time

        t0 = time.perf_counter()
        log(f"  building {name} ({MODELS[name]['about']}), random weights")
        m = _make_model(name)
        n = sum(p.numel() for p in m.parameters())
        m.save_pretrained(tmp, safe_serialization=True)
        del m
        for f in os.listdir(tok_dir):
            shutil.copy(os.path.join(tok_dir, f), tmp)
        log(f"  {name}: {n / 1e6:.0f}M parameters, saved in {time.perf_counter() - t0:.0f} s")
        with open(os.path.join(tmp, "ftdoctor-bench.json"), "w") as fh:
            json.dump({"parameters": n, "tokenizer_sha256": _sha256(os.path.join(tok_dir, "tokenizer.json"))}, fh)

    return _atomic(os.path.join(root, "models", name), build)


def model_info(path: str) -> dict:
    with open(os.path.join(path, "ftdoctor-bench.json")) as fh:
        return json.load(fh)


def _sha256(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


# -------------------------------------------------------------------------------------------------- the scripts

_BERT = '''\
"""Review sentiment with BERT-base: tokenize, pad per batch, accuracy, best model by accuracy."""

import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

checkpoint = {model!r}  # "bert-base-uncased"
raw = load_from_disk({data!r})
label_names = raw["train"].features["label"].names
id2label = dict(enumerate(label_names))
label2id = {{name: i for i, name in id2label.items()}}

tokenizer = AutoTokenizer.from_pretrained(checkpoint)


def tokenize(batch):
    return tokenizer(batch["text"], truncation=True, max_length=128)


tokenized = raw.map(tokenize, batched=True, remove_columns=["text"])

model = AutoModelForSequenceClassification.from_pretrained(
    checkpoint, num_labels=len(label_names), id2label=id2label, label2id=label2id
)


def compute_metrics(eval_pred):
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    return {{"accuracy": float((predictions == labels).mean())}}


training_args = TrainingArguments(
    output_dir="bert-base-reviews",
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    learning_rate=2e-5,
    weight_decay=0.01,
    warmup_steps=0.1,
    num_train_epochs=3,
    eval_strategy="epoch",
    save_strategy="epoch",
    load_best_model_at_end=True,
    metric_for_best_model="accuracy",
    logging_steps=50,
    report_to="none",
    seed=42,
)

trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=tokenized["train"],
    eval_dataset=tokenized["test"],
    processing_class=tokenizer,
    data_collator=DataCollatorWithPadding(tokenizer=tokenizer),
    compute_metrics=compute_metrics,
)
trainer.train()
print(trainer.evaluate())
'''

_CLM = '''\
"""Causal language modelling on review texts, as in run_clm.py: tokenize with EOS, pack into blocks, train."""

import math
from itertools import chain

from datasets import load_from_disk
{peft_import}from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

model_name = {model!r}  # {hub!r}
block_size = {block}

raw = load_from_disk({data!r})
tokenizer = AutoTokenizer.from_pretrained(model_name)
tokenizer.pad_token = tokenizer.{pad}


def tokenize_function(examples):
    return tokenizer([text + tokenizer.eos_token for text in examples["text"]])


def group_texts(examples):
    # Concatenate all texts and split them into blocks of block_size tokens (the remainder is dropped).
    concatenated = {{k: list(chain(*examples[k])) for k in examples.keys()}}
    total_length = (len(concatenated["input_ids"]) // block_size) * block_size
    result = {{k: [t[i : i + block_size] for i in range(0, total_length, block_size)] for k, t in concatenated.items()}}
    result["labels"] = [ids.copy() for ids in result["input_ids"]]
    return result


tokenized = raw.map(tokenize_function, batched=True, remove_columns=raw["train"].column_names)
lm_datasets = tokenized.map(group_texts, batched=True)

model = AutoModelForCausalLM.from_pretrained(model_name)
{peft_setup}data_collator = {collator}

training_args = TrainingArguments(
    output_dir={output!r},
    per_device_train_batch_size={batch},
    per_device_eval_batch_size={batch},
    learning_rate={lr},
    weight_decay=0.01,
    warmup_steps=0.03,
    lr_scheduler_type="cosine",
    num_train_epochs=1,
{extra}    eval_strategy="steps",
    eval_steps=500,
    save_steps=500,
    save_total_limit=2,
    logging_steps=10,
    report_to="none",
    seed=42,
)

trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=lm_datasets["train"],
    eval_dataset=lm_datasets["test"],
    data_collator=data_collator,
)
trainer.train()
eval_results = trainer.evaluate()
print(f"Perplexity: {{math.exp(eval_results['eval_loss']):.2f}}")
'''

_LORA = """\
lora_config = LoraConfig(
    r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    task_type="CAUSAL_LM",
)
model = get_peft_model(model, lora_config)
model.print_trainable_parameters()
"""

_LM_COLLATOR = "DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False)"

# pipeline -> (model folder, what the script is)
PIPELINES = {
    "bert": ("bert-base", "BERT-base sequence classification, batch 32, max_length 128"),
    "gpt2": ("gpt2", "GPT-2 causal LM, block 512, batch 8"),
    "llama1b": ("llama-1b", "Llama ~1B causal LM, full fine-tuning, sequence 512, batch 4, gradient checkpointing"),
    "llama1b-lora": ("llama-1b", "Llama ~1B causal LM, LoRA r=16 (peft), sequence 512, batch 4"),
}


def script(root: str, pipeline: str, rows: int, model_dir: str, data_dir: str) -> str:
    """Write the user's training script for this pipeline and dataset; returns its path."""
    if pipeline == "bert":
        text = _BERT.format(model=model_dir, data=data_dir)
    elif pipeline == "gpt2":
        text = _CLM.format(
            model=model_dir,
            hub="gpt2",
            data=data_dir,
            block=512,
            pad="eos_token",
            batch=8,
            lr="5e-5",
            output="gpt2-reviews-clm",
            extra="",
            peft_import="",
            peft_setup="",
            # GPT-2 pads with its EOS: a padding collator would mask every EOS label (FTD325).
            # Blocks are full, so no padding is needed (as run_clm.py does).
            collator="default_data_collator",
        )
    elif pipeline == "llama1b":
        text = _CLM.format(
            model=model_dir,
            hub="TinyLlama/TinyLlama_v1.1",
            data=data_dir,
            block=512,
            pad="unk_token",
            batch=4,
            lr="2e-5",
            output="llama-1b-reviews-clm",
            extra="    gradient_checkpointing=True,\n",
            peft_import="",
            peft_setup="",
            collator=_LM_COLLATOR,
        )
    elif pipeline == "llama1b-lora":
        text = _CLM.format(
            model=model_dir,
            hub="TinyLlama/TinyLlama_v1.1",
            data=data_dir,
            block=512,
            pad="unk_token",
            batch=4,
            lr="2e-4",
            output="llama-1b-reviews-lora",
            extra="",
            peft_import="from peft import LoraConfig, get_peft_model\n",
            peft_setup=_LORA,
            collator=_LM_COLLATOR,
        )
    else:
        raise KeyError(pipeline)
    folder = os.path.join(root, "scripts")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"train_{pipeline.replace('-', '_')}_{rows}.py")
    if not os.path.exists(path) or open(path).read() != text:
        with open(path + ".partial", "w") as fh:
            fh.write(text)
        os.replace(path + ".partial", path)
    return path


def prepare(root: str, pipeline: str, rows: int, log=print) -> dict:
    """Everything a run of ``pipeline`` on ``rows`` rows needs; returns the script's path and what it uses."""
    import datasets

    datasets.disable_progress_bars()
    name = PIPELINES[pipeline][0]
    model_dir = model(root, name, log)
    data_dir = dataset(root, rows, log)
    return {
        "script": script(root, pipeline, rows, model_dir, data_dir),
        "model": model_dir,
        "data": data_dir,
        **model_info(model_dir),
    }


if __name__ == "__main__":
    # python _real_size_assets.py ROOT PIPELINE ROWS: build what is missing, print what prepare() returns as JSON
    # on the last line (real_size.py runs this in a child so that its own process never holds torch or a model).
    import sys

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # "Writing model shards" on every build
    info = prepare(sys.argv[1], sys.argv[2], int(sys.argv[3]), log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(info))
