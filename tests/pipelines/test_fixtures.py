"""Tests for the offline fixtures: determinism, concurrent builds, tokenizers, models, datasets and metrics."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest

from ftdoctor import fixtures
from ftdoctor.fixtures import _corpus, fixture_path

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
TOKENIZERS = ("tokenizers/bert", "tokenizers/distilbert", "tokenizers/gpt2", "tokenizers/bart")
MODELS = ("models/bert-tiny", "models/distilbert-tiny", "models/gpt2-tiny", "models/bart-tiny")
DATASETS = ("datasets/mnli", "datasets/mrpc", "datasets/reviews")


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Build every fixture once, offline, under a temporary cache and HF_HOME; yield name -> folder."""
    root = tmp_path_factory.mktemp("ftdoctor-fixtures")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in OFFLINE.items():
            mp.setenv(key, value)
        mp.setenv("HF_HOME", str(root / "hf-home"))
        mp.setenv("FTDOCTOR_FIXTURES_DIR", str(root / "cache"))
        yield fixtures.build_all()


@pytest.fixture(scope="session")
def second_build(built, tmp_path_factory):
    """Build everything again in another folder and another process (so other Rust hash seeds); return its cache."""
    root = tmp_path_factory.mktemp("ftdoctor-fixtures-again")
    env = {**os.environ, **OFFLINE, "HF_HOME": str(root / "hf-home"), "FTDOCTOR_FIXTURES_DIR": str(root / "cache")}
    subprocess.run([sys.executable, "-m", "ftdoctor.fixtures"], env=env, check=True, capture_output=True)
    return str(root / "cache" / f"v{fixtures.FIXTURES_VERSION}")


def _load_tokenizer(built, name):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built[name])


# --- the registry and the cache ---------------------------------------------------------------


def test_import_is_light():
    code = (
        "import sys, ftdoctor.fixtures; "
        "print([m for m in ('torch', 'transformers', 'datasets', 'evaluate', 'tokenizers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_names_and_cache_layout(built, monkeypatch, tmp_path):
    assert sorted(built) == fixtures.list_fixtures()
    assert set(TOKENIZERS + MODELS + DATASETS) < set(built)
    cache = fixtures.cache_dir()
    assert cache.endswith(f"v{fixtures.FIXTURES_VERSION}")
    for name in TOKENIZERS + MODELS + DATASETS:
        assert built[name] == os.path.join(cache, *name.split("/"))
    # A second call is a cache hit: same folder, not rebuilt.
    before = os.stat(built["models/bert-tiny"]).st_ino
    assert fixture_path("models/bert-tiny") == built["models/bert-tiny"]
    assert os.stat(built["models/bert-tiny"]).st_ino == before
    # Metric modules are package source, not built.
    assert os.path.isfile(os.path.join(built["metrics/glue"], "glue.py"))
    monkeypatch.setenv("FTDOCTOR_FIXTURES_DIR", str(tmp_path))
    assert fixtures.cache_dir() == os.path.join(str(tmp_path), f"v{fixtures.FIXTURES_VERSION}")


def _temp_folders(root):
    return [os.path.join(d, n) for d, dirs, _ in os.walk(root) for n in dirs if n.endswith(".tmp")]


def test_a_fixture_is_built_in_a_fresh_interpreter(tmp_path, monkeypatch):
    """A script asking for a fixture may run under `ftdoctor check`, whose hooks would take a builder's training
    for the script's: the build runs in its own interpreter, untouched by what this process changed."""
    from ftdoctor.fixtures import _tokenizers

    def patched_here(dest):
        raise AssertionError("built in the calling process")

    monkeypatch.setenv("FTDOCTOR_FIXTURES_DIR", str(tmp_path))
    monkeypatch.delenv(fixtures._BUILDING, raising=False)
    monkeypatch.setattr(_tokenizers, "build_bert", patched_here)
    path = fixture_path("tokenizers/bert")
    assert sorted(os.listdir(path)) == ["tokenizer.json", "tokenizer_config.json"]


def test_processes_building_at_once_agree(tmp_path):
    code = "from ftdoctor.fixtures import fixture_path; print(fixture_path('tokenizers/gpt2'))"
    env = {**os.environ, **OFFLINE, "FTDOCTOR_FIXTURES_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    assert sorted(os.listdir(outputs[0][0].strip())) == ["tokenizer.json", "tokenizer_config.json"]
    assert _temp_folders(tmp_path) == []


def test_builds_are_byte_identical_across_folders_and_processes(built, second_build):
    import datasets

    cache = second_build
    for name in TOKENIZERS + MODELS:
        first, second = built[name], os.path.join(cache, *name.split("/"))
        assert sorted(os.listdir(first)) == sorted(os.listdir(second))
        for file in ("tokenizer.json", "tokenizer_config.json", "model.safetensors", "config.json"):
            if os.path.exists(os.path.join(first, file)):
                with open(os.path.join(first, file), "rb") as a, open(os.path.join(second, file), "rb") as b:
                    assert a.read() == b.read(), f"{name}/{file} differs between builds"
    for name in DATASETS:
        first = datasets.load_from_disk(built[name])
        second = datasets.load_from_disk(os.path.join(cache, *name.split("/")))
        for split in first:
            assert first[split].to_list() == second[split].to_list()


# --- tokenizers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOKENIZERS)
def test_saved_tokenizer_is_what_loads(built, name):
    # transformers 5 rebuilds the pipeline from the class on load; the fixture must match it exactly.
    tokenizer = _load_tokenizer(built, name)
    with open(os.path.join(built[name], "tokenizer.json")) as f:
        saved = json.load(f)
    assert json.loads(tokenizer.backend_tokenizer.to_str()) == saved


def test_bert_tokenizer_returns_token_type_ids_and_wordpieces(built):
    tokenizer = _load_tokenizer(built, "models/bert-tiny")
    assert type(tokenizer).__name__ == "BertTokenizer"
    assert tokenizer.model_max_length == 128
    enc = tokenizer("The teacher was unbelievably disappointing.", "Hello world")
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert tokens == [
        "[CLS]",
        "the",
        "teacher",
        "was",
        "un",
        "##believ",
        "##ably",
        "disappoint",
        "##ing",
        ".",
        "[SEP]",
        "hello",
        "world",
        "[SEP]",
    ]
    assert enc["token_type_ids"] == [0] * 11 + [1] * 3
    assert tokenizer.decode(enc["input_ids"], skip_special_tokens=True) == (
        "the teacher was unbelievably disappointing. hello world"
    )
    assert {
        tokenizer.pad_token,
        tokenizer.unk_token,
        tokenizer.cls_token,
        tokenizer.sep_token,
        tokenizer.mask_token,
    } == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


def test_distilbert_tokenizer_has_no_token_type_ids(built):
    tokenizer = _load_tokenizer(built, "models/distilbert-tiny")
    assert type(tokenizer).__name__ == "DistilBertTokenizer"
    enc = tokenizer("a premise", "a hypothesis")
    assert "token_type_ids" not in enc
    assert tokenizer.get_vocab() == _load_tokenizer(built, "models/bert-tiny").get_vocab()


def test_gpt2_tokenizer_has_no_pad_token(built):
    tokenizer = _load_tokenizer(built, "models/gpt2-tiny")
    assert type(tokenizer).__name__ == "GPT2Tokenizer"
    assert tokenizer.pad_token is None
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == len(tokenizer) - 1
    with pytest.raises(ValueError, match="pad"):
        tokenizer(["short", "a longer sentence"], padding=True)


def test_bart_tokenizer_encodes_targets(built):
    tokenizer = _load_tokenizer(built, "models/bart-tiny")
    assert (tokenizer.bos_token, tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == (
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
    )
    assert [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id] == [0, 1, 2]
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    enc = tokenizer(["The teacher painted the door.", "Hi"], text_target=["A door was painted.", "Hello"], padding=True)
    assert enc["labels"][0][0] == 0 and enc["labels"][0][-1] == 2
    assert tokenizer.decode(enc["labels"][0], skip_special_tokens=True) == "A door was painted."
    assert enc["input_ids"][1][-1] == tokenizer.pad_token_id


def test_every_dataset_word_is_in_the_wordpiece_vocabulary(built):
    tokenizer = _load_tokenizer(built, "tokenizers/bert")
    vocab = tokenizer.get_vocab()
    assert 300 <= len(vocab) <= 1000
    seen = {word for text in _corpus.corpus_texts() for word in _corpus.words(text)}
    for word in sorted(seen):
        pieces = tokenizer.tokenize(word)
        assert "[UNK]" not in pieces, word
        # Whole words are single tokens, except the few kept only as "##" pieces.
        assert pieces == _corpus.SPLIT_WORDS.get(word, [word]), word
    assert set(_corpus.SPLIT_WORDS) <= seen, "every split word should occur in the data"
    assert tokenizer.tokenize("日本") == ["[UNK]", "[UNK]"]


def test_byte_level_tokenizers_split_rare_words(built):
    tokenizer = _load_tokenizer(built, "tokenizers/gpt2")
    assert 500 <= len(tokenizer) <= 1100
    vocab = tokenizer.get_vocab()
    pre_tokenize = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    counts = collections.Counter(w for text in _corpus.corpus_texts() for w, _ in pre_tokenize(text))
    assert all(word in vocab for word, _ in counts.most_common(50)), "frequent words should be single tokens"
    assert sum(word not in vocab for word in counts) >= 20, "rare words should split into several pieces"
    assert tokenizer.decode(tokenizer("Ünïcode 日本 works.")["input_ids"]) == "Ünïcode 日本 works."


# --- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_model_folder_loads_like_a_hub_checkpoint(built, name):
    from transformers import AutoConfig, AutoModel

    files = set(os.listdir(built[name]))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    tokenizer = _load_tokenizer(built, name)
    model = AutoModel.from_pretrained(built[name])
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    config = AutoConfig.from_pretrained(built[name])
    positions = getattr(config, "max_position_embeddings", None) or config.n_positions
    assert positions == tokenizer.model_max_length == 128
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_bert_tiny_loads_as_a_three_class_classifier(built):
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    tokenizer = _load_tokenizer(built, "models/bert-tiny")
    model = AutoModelForSequenceClassification.from_pretrained(built["models/bert-tiny"], num_labels=3)
    assert model.config.num_labels == 3
    rows = datasets.load_from_disk(built["datasets/mnli"])["train"].select(range(8))
    features = [dict(tokenizer(row["premise"], row["hypothesis"]), labels=row["label"]) for row in rows]
    assert len({len(f["input_ids"]) for f in features}) > 1, "samples should need padding"
    batch = DataCollatorWithPadding(tokenizer)(features)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (8, 3)
    assert torch.isfinite(out.loss)


def test_model_init_leaves_the_global_rng_alone(built, tmp_path, monkeypatch):
    import torch

    from ftdoctor.fixtures import _models

    monkeypatch.setenv("FTDOCTOR_FIXTURES_DIR", str(tmp_path))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _models.build_bert(str(tmp_path / "bert"))
    assert torch.equal(torch.rand(3), expected)


# --- datasets -----------------------------------------------------------------------------------

EXPECTED_SPLITS = {
    "datasets/mnli": {"train": 300, "validation_matched": 60, "validation_mismatched": 60},
    "datasets/mrpc": {"train": 200, "validation": 50, "test": 50},
    "datasets/reviews": {"train": 300, "test": 60},
}
EXPECTED_NAMES = {
    "datasets/mnli": ["entailment", "neutral", "contradiction"],
    "datasets/mrpc": ["not_equivalent", "equivalent"],
    "datasets/reviews": ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"],
}


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_splits_labels_and_balance(built, name):
    import datasets

    dsd = datasets.load_from_disk(built[name])
    assert {split: len(ds) for split, ds in dsd.items()} == EXPECTED_SPLITS[name]
    for split, ds in dsd.items():
        label = ds.features["label"]
        assert isinstance(label, datasets.ClassLabel)
        assert label.names == EXPECTED_NAMES[name]
        counts = collections.Counter(ds["label"])
        assert set(counts) == set(range(label.num_classes))
        assert len(set(counts.values())) == 1, f"{split} is not balanced: {counts}"
        if "idx" in ds.column_names:
            assert ds["idx"] == list(range(len(ds)))


def _rule(name, row):
    """The documented surface rule, re-derived from the text alone."""
    if name == "datasets/mnli":
        words = set(_corpus.words(row["hypothesis"]))
        return 2 if words & set(_corpus.NEGATIONS) else 1 if words & set(_corpus.HEDGES) else 0
    if name == "datasets/mrpc":
        return 0 if set(_corpus.words(row["sentence2"])) & set(_corpus.CONTRASTS) else 1
    sentiment = [_corpus.SENTIMENT[w] for w in _corpus.words(row["text"]) if w in _corpus.SENTIMENT]
    assert len(sentiment) == 1, row["text"]
    return sentiment[0]


@pytest.mark.parametrize("name", DATASETS)
def test_labels_follow_the_documented_rule(built, name):
    import datasets

    for ds in datasets.load_from_disk(built[name]).values():
        for row in ds:
            assert _rule(name, row) == row["label"], row


def test_mnli_sentences_vary_in_length_and_genre(built):
    import datasets

    dsd = datasets.load_from_disk(built["datasets/mnli"])
    lengths = [len(p.rstrip(".").split()) for p in dsd["train"]["premise"]]
    assert min(lengths) >= 5 and max(lengths) <= 20 and len(set(lengths)) >= 10
    premise_words = {w for split in dsd.values() for t in split["premise"] for w in _corpus.words(t)}
    assert not premise_words & set(_corpus.NEGATIONS + _corpus.HEDGES), "the rule reads the hypothesis only"
    matched = {w for t in dsd["train"]["premise"] for w in _corpus.words(t)}
    mismatched = {w for t in dsd["validation_mismatched"]["premise"] for w in _corpus.words(t)}
    assert "minister" in mismatched - matched


def test_rules_are_learnable_from_surface_words(built):
    # A bag of words separates every class perfectly: the rules are surface rules, learnable by a tiny model.
    import datasets
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    cases = [
        ("datasets/mnli", "hypothesis", "validation_mismatched"),
        ("datasets/mrpc", "sentence2", "test"),
        ("datasets/reviews", "text", "test"),
    ]
    for name, column, held_out in cases:
        dsd = datasets.load_from_disk(built[name])
        vectorizer = CountVectorizer(token_pattern=r"\w+")
        model = LogisticRegression(max_iter=1000, C=10.0)
        model.fit(vectorizer.fit_transform(dsd["train"][column]), dsd["train"]["label"])
        accuracy = model.score(vectorizer.transform(dsd[held_out][column]), dsd[held_out]["label"])
        assert accuracy == 1.0, name


# --- metrics ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluate_offline(built):
    """Import evaluate with the offline variables and temporary HF_HOME of the `built` fixture in force."""
    import evaluate

    return evaluate


def test_local_accuracy_metric(built, evaluate_offline):
    import numpy as np

    accuracy = evaluate_offline.load(built["metrics/accuracy"])
    assert accuracy.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1]) == {"accuracy": 0.75}
    logits = np.array([[2.0, 0.1, 0.3], [0.1, 2.0, 0.3]])
    with pytest.raises(ValueError, match="don't match the expected format"):
        accuracy.compute(predictions=logits, references=[0, 1])
    assert accuracy.compute(predictions=logits.argmax(-1), references=[0, 1]) == {"accuracy": 1.0}


def test_local_f1_metric_averages(built, evaluate_offline):
    f1 = evaluate_offline.load(built["metrics/f1"])
    assert f1.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]) == pytest.approx({"f1": 2 / 3})
    predictions, references = [0, 1, 2, 0], [0, 1, 2, 2]
    assert f1.compute(predictions=predictions, references=references, average="micro")["f1"] == pytest.approx(0.75)
    assert f1.compute(predictions=predictions, references=references, average="macro")["f1"] == pytest.approx(7 / 9)
    with pytest.raises(ValueError, match="average"):
        f1.compute(predictions=predictions, references=references)


def test_local_glue_metric_configs(built, evaluate_offline):
    glue = evaluate_offline.load(built["metrics/glue"], "mnli")
    assert glue.compute(predictions=[0, 1, 2], references=[0, 1, 1]) == pytest.approx({"accuracy": 2 / 3})
    glue = evaluate_offline.load(built["metrics/glue"], "mrpc")
    assert glue.compute(predictions=[0, 1, 1], references=[0, 1, 0]) == pytest.approx({"accuracy": 2 / 3, "f1": 2 / 3})
    with pytest.raises(KeyError, match="configuration name"):
        evaluate_offline.load(built["metrics/glue"], "squad")
