"""One test per decode rule: a tiny Trainer (or loop) over a hand-built dataset, and the decode check called on it
alone, with the rows the stage's first check would have read handed over as `train_features`."""

from __future__ import annotations

import torch
from transformers import Trainer

from ._build import (
    bert,
    call,
    capture,
    causal,
    codes,
    dataset,
    encoded,
    findings,
    gpt2,
    one,
    rows,
    trainer_values,
    wordpiece,
)

TEXTS = [
    "the film was good",
    "the plot was bad",
    "a great movie",
    "an awful film",
    "the actors play well",
    "this movie was not good",
]


def _judged(tmp_path, ds, model=None, tokenizer=None, **kwargs) -> dict:
    """The walk's values once decode has read ``ds``: the rows as the trainer keeps them are the features."""
    values = trainer_values(tmp_path, model if model is not None else bert(), ds, tokenizer=tokenizer, **kwargs)
    return {**values, "effective_train_dataset": ds, "train_features": rows(ds)}


# --- reading the samples: read_samples -------------------------------------------------------------------------------


def test_raw_text_given_to_the_trainer(tmp_path):
    tok = wordpiece()
    raw = dataset({"text": TEXTS[:4], "label": [1, 0, 1, 0]})
    out = call("FTD201", **trainer_values(tmp_path, bert(), raw, tokenizer=tok))
    [f] = out.findings
    assert f.code == "FTD201" and f.evidence == {"text_columns": ["text"], "stand_in": None}
    assert "`train_dataset` has `text` but no `input_ids`" in f.detail and "Tokenize first" in f.fix
    assert "train_features" not in {k for k, v in out.values.items() if isinstance(v, list)}


class _Generating(Trainer):
    """An online trainer: its own `_prepare_inputs` tokenizes the prompts (and would generate completions)."""

    def _prepare_inputs(self, inputs):
        return self.processing_class([r["prompt"] for r in inputs], return_tensors="pt", padding=True)


class _Timed(Trainer):
    """A subclass whose steps only wrap the Trainer's: the batch still goes to the model as it is."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        return super().training_step(model, inputs, num_items_in_batch)


class _OwnStep(Trainer):
    """A hand-written training step that reads the prompts by name and builds the inputs itself."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        enc = self.processing_class(inputs["prompt"], return_tensors="pt", padding=True)
        return model(**enc, labels=enc["input_ids"]).loss


class _CopiedStep(Trainer):
    """A hand-written training step that hands the batch to compute_loss, as the Trainer's does."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        if "prompt" in inputs:  # reads a column by name, yet the batch goes to compute_loss as it is
            model.train()
        return self.compute_loss(model, inputs)


def test_prompts_given_to_a_trainer_that_makes_its_own_inputs(tmp_path):
    tok = wordpiece()
    prompts = dataset({"prompt": TEXTS[:4]})
    for cls, step in ((_Generating, "_Generating._prepare_inputs"), (_OwnStep, "_OwnStep.training_step")):
        out = call(
            "FTD201",
            **trainer_values(
                tmp_path,
                bert(),
                prompts,
                tokenizer=tok,
                trainer_cls=cls,
                data_collator=list,
                remove_unused_columns=False,
            ),
        )
        assert out.findings == []
        assert (
            out.values["train_features"].reason
            == f"`{step}` makes the model's inputs from the train rows during training"
        )


def test_raw_text_to_a_trainer_whose_step_passes_the_batch_on(tmp_path):
    tok = wordpiece()
    raw = dataset({"prompt": TEXTS[:4], "label": [1, 0, 1, 0]})
    for cls in (_Timed, _CopiedStep):
        [f] = call("FTD201", **trainer_values(tmp_path, bert(), raw, tokenizer=tok, trainer_cls=cls)).findings
        assert f.code == "FTD201" and f.evidence["text_columns"] == ["prompt"]


def test_raw_text_given_while_the_script_holds_the_tokenized_split(tmp_path):
    tok = wordpiece()
    raw = dataset({"text": TEXTS[:4], "label": [1, 0, 1, 0]})
    tokenized = raw.map(lambda b: tok(b["text"]), batched=True)
    cap = capture(tmp_path, {"raw": raw, "tokenized": tokenized})
    out = call("FTD201", **trainer_values(tmp_path, bert(), raw, tokenizer=tok, cap=cap))
    [f] = out.findings
    assert f.fix == "Pass the tokenized dataset: `train_dataset=tokenized`." and f.evidence["stand_in"] == [
        "train: tokenized"
    ]
    assert "`train_dataset` (raw) has `text`" in f.detail
    # the later checks go on with the split that was meant
    assert out.values["effective_train_dataset"] is tokenized and "input_ids" in out.values["train_features"][0]


def test_tokenized_rows_are_read_as_they_are(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:4], label=[1, 0, 1, 0])
    out = call("FTD201", **trainer_values(tmp_path, bert(), ds, tokenizer=tok))
    assert out.findings == [] and len(out.values["train_features"]) == 4


def test_label_column_under_a_name_the_trainer_drops(tmp_path):
    tok = wordpiece()
    ds = dataset({**tok(TEXTS[:4]), "sentiment": [1, 0, 1, 0]}, {"sentiment": ["negative", "positive"]})
    f = one("FTD202", **trainer_values(tmp_path, bert(), ds, tokenizer=tok))
    assert f.evidence == {"column": "sentiment", "expected": "labels"}
    assert f.fix == 'Rename it: `dataset = dataset.rename_column("sentiment", "labels")`.'


def test_label_column_the_trainer_keeps_is_silent(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:4], label=[1, 0, 1, 0])
    assert findings("FTD202", **trainer_values(tmp_path, bert(), ds, tokenizer=tok)) == []


def test_an_id_column_is_no_label_column(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:4], idx=[0, 1, 2, 3], label=[1, 0, 1, 0])
    assert findings("FTD202", **trainer_values(tmp_path, bert(), ds, tokenizer=tok)) == []


def test_empty_training_and_evaluation_datasets(tmp_path):
    tok = wordpiece()
    full = encoded(tok, TEXTS[:4], label=[1, 0, 1, 0])
    empty = full.filter(lambda e: len(e["input_ids"]) > 1000)
    found = findings("FTD212", **trainer_values(tmp_path, bert(), empty, tokenizer=tok, eval_dataset=empty))
    assert codes(found) == ["FTD212", "FTD212"]
    assert "training stops at once" in found[0].detail and "nothing to score" in found[1].detail


class _Wrapper(torch.nn.Module):
    """A module around the model whose forward names no input (as `torch.compile`'s OptimizedModule and DDP do)."""

    def __init__(self, model):
        super().__init__()
        self.module = model

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_wrapped_model_hides_its_inputs_from_the_trainer(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:4], label=[1, 0, 1, 0])
    out = call("FTD214", **trainer_values(tmp_path, _Wrapper(bert()), ds, tokenizer=tok))
    [f] = out.findings
    assert f.code == "FTD214" and f.evidence["signature_of"] == "_Wrapper"
    assert set(f.evidence["dropped"]) == {"input_ids", "token_type_ids", "attention_mask"}
    assert "torch_compile=True" in f.fix
    # decode goes on with the columns the model itself takes
    assert set(out.values["train_features"][0]) == {"input_ids", "token_type_ids", "attention_mask", "label"}


# --- labels: labels_are_class_ids --------------------------------------------------------------------------------------


def _labelled(tok, labels, class_names=None):
    texts = [TEXTS[i % len(TEXTS)] for i in range(len(labels))]
    enc = tok(texts)
    return dataset(
        {**{k: list(v) for k, v in enc.items()}, "label": labels}, {"label": class_names} if class_names else None
    )


def test_unlabelled_split_with_minus_one(tmp_path):
    ds = _labelled(wordpiece(), [0, 1, -1, 1, 0, -1])
    f = one("FTD203", **_judged(tmp_path, ds, bert(num_labels=2)))
    assert f.evidence == {"out_of_range": [-1], "count": 2}
    assert "outside the model's 2 outputs 0..1" in f.detail and "GLUE test sets" in f.detail
    assert f.fix == 'Drop or fix those rows: `dataset = dataset.filter(lambda e: e["label"] >= 0)`.'


def test_class_ids_numbered_from_one_name_the_mapping_to_fix(tmp_path):
    ds = _labelled(wordpiece(), [1, 2, 3, 1, 2, 3])
    label2id = {"negative": 1, "neutral": 2, "positive": 3}
    cap = capture(tmp_path, {"label2id": label2id})
    f = one("FTD203", **_judged(tmp_path, ds, bert(num_labels=3), cap=cap))
    assert "shifted by 1" in f.detail and f.evidence["mapping"] == "label2id"
    assert (
        f.fix == "Number the classes from 0 in `label2id`: `label2id = {'negative': 0, 'neutral': 1, 'positive': 2}`."
    )


def test_class_ids_past_a_head_too_small_name_num_labels(tmp_path):
    # dense ids 0..5 and a head with 4 outputs: the head is too small, not the mapping wrong
    ds = _labelled(wordpiece(), [0, 1, 2, 3, 4, 5, 0, 5])
    found = findings("FTD203", **_judged(tmp_path, ds, bert(num_labels=4)))  # the decode check
    assert codes(found) == ["FTD101"], codes(found)
    f = found[0]
    assert "has num_labels=4" in f.detail and "run 0..5" in f.detail and "num_labels=6" in f.fix
    assert f.evidence == {"model_num_labels": 4, "largest_label": 5, "distinct": 6}


def test_sparse_class_ids_past_the_head_are_a_mapping_problem(tmp_path):
    # ids 0, 1, 9 for a 3-output head: as many classes as outputs, numbered wrongly (FTD203, not FTD101)
    ds = _labelled(wordpiece(), [0, 1, 9, 0, 1, 9])
    found = findings("FTD203", **_judged(tmp_path, ds, bert(num_labels=3)))
    assert codes(found) == ["FTD203"], codes(found)


def test_ignore_index_is_no_label_out_of_range(tmp_path):
    ds = _labelled(wordpiece(), [0, 1, -100, 1, 0, 1])
    assert "FTD203" not in codes(findings("FTD203", **_judged(tmp_path, ds, bert(num_labels=2))))


def test_string_labels(tmp_path):
    ds = _labelled(wordpiece(), ["pos", "neg", "pos", "neg"])
    f = one("FTD204", "decode", **_judged(tmp_path, ds, bert(num_labels=2)))
    assert "['neg', 'pos']" in f.detail and 'class_encode_column("label")' in f.fix


def test_float_labels_for_a_classifier(tmp_path):
    ds = _labelled(wordpiece(), [0.0, 1.0, 1.0, 0.0])
    f = one("FTD204", "decode", **_judged(tmp_path, ds, bert(num_labels=2)))
    assert f.evidence["distinct"] == [0.0, 1.0] and "multi-label BCE loss" in f.detail
    assert f.fix == 'Make them integers: `dataset = dataset.cast_column("label", Value("int64"))`.'


def test_float_labels_for_a_regression_head_are_silent(tmp_path):
    ds = _labelled(wordpiece(), [0.1, 0.7, 0.4, 0.9])
    assert findings("FTD204", "decode", **_judged(tmp_path, ds, bert(num_labels=1))) == []


def test_one_class_dominates(tmp_path):
    ds = _labelled(wordpiece(), [0] * 19 + [1], ["negative", "positive"])
    f = one("FTD209", **_judged(tmp_path, ds, bert(num_labels=2)))
    assert "95% of training labels are 'negative'" in f.detail and f.evidence == {"counts": {0: 19, 1: 1}}


def test_a_mild_imbalance_is_silent(tmp_path):
    ds = _labelled(wordpiece(), [0] * 15 + [1] * 5, ["negative", "positive"])
    assert findings("FTD209", **_judged(tmp_path, ds, bert(num_labels=2))) == []


def test_every_label_is_one_class(tmp_path):
    ds = _labelled(wordpiece(), [1] * 8, ["negative", "positive"])
    f = one("FTD211", **_judged(tmp_path, ds, bert(num_labels=2)))
    assert f.detail == "Every training label is 'positive': there is nothing to learn." and f.evidence == {
        "counts": {1: 8}
    }


def test_rows_without_a_label(tmp_path):
    ds = _labelled(wordpiece(), [0, None, 1, None, 1, 0])
    f = one("FTD213", **_judged(tmp_path, ds, bert(num_labels=2)))
    assert f.evidence == {"missing": 2} and "2 of 6 `label` values are None" in f.detail
    assert 'filter(lambda e: e["label"] is not None)' in f.fix


def test_clean_labels_are_silent(tmp_path):
    ds = _labelled(wordpiece(), [0, 1, 2, 1, 0, 2], ["a", "b", "c"])
    assert findings("FTD203", **_judged(tmp_path, ds, bert(num_labels=3))) == []


# --- token ids: token_ids_fit_model ----------------------------------------------------------------------------------


def _ids(rows_, **columns):
    return dataset({"input_ids": rows_, "attention_mask": [[1] * len(r) for r in rows_], **columns})


def test_attention_mask_of_another_length(tmp_path):
    ds = dataset(
        {"input_ids": [[2, 50, 51, 3], [2, 52, 3]], "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 1, 1]], "label": [0, 1]}
    )
    f = one("FTD205", **_judged(tmp_path, ds))
    assert "1 of 2 sampled rows" in f.detail and "(row 1: 5 vs 3)" in f.detail


def test_rows_longer_than_the_position_embeddings(tmp_path):
    ds = _ids([[2] + [50] * 68 + [3], [2, 50, 3]], label=[0, 1])
    f = one("FTD206", **_judged(tmp_path, ds))  # the model has 64 positions
    assert f.evidence == {"longest": 70, "max_positions": 64, "rows": 1}
    assert "max_length=64" in f.fix


def test_token_ids_past_the_embedding_matrix(tmp_path):
    tok = wordpiece()
    ds = _ids([[2, 50, 3], [2, len(tok) + 7, 3]], label=[0, 1])
    f = one("FTD207", **_judged(tmp_path, ds, bert(vocab_size=len(tok)), tokenizer=tok))
    assert f.evidence == {"largest_id": len(tok) + 7, "embedding_rows": len(tok)}


def test_samples_with_only_special_tokens(tmp_path):
    tok = wordpiece()
    ds = _ids([[2, 3], [2, 50, 3], [2, 3]], label=[0, 1, 0])
    f = one("FTD208", **_judged(tmp_path, ds, tokenizer=tok))
    assert f.evidence == {"empty_rows": 2, "sampled": 3}


def test_text_column_left_for_the_collator(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:2], sentence=TEXTS[:2], label=[0, 1])
    f = one("FTD210", "decode", **_judged(tmp_path, ds, tokenizer=tok, remove_unused_columns=False))
    assert f.evidence == {"columns": ["sentence"]} and "remove_columns=['sentence']" in f.fix


def test_well_formed_token_rows_are_silent(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS, label=[0, 1, 0, 1, 0, 1])
    assert findings("FTD206", **_judged(tmp_path, ds, bert(vocab_size=len(tok)), tokenizer=tok)) == []


# --- silent data bugs ------------------------------------------------------------------------------------------------


def test_evaluation_rows_that_are_training_rows(tmp_path):
    tok = wordpiece()
    train = encoded(tok, TEXTS, label=[0, 1, 0, 1, 0, 1])
    evals = encoded(tok, ["the film was good", "a very old cat", "this movie was not good"], label=[0, 1, 1])
    values = _judged(tmp_path, train, tokenizer=tok, eval_dataset=evals)
    f = one("FTD215", **values, effective_eval_dataset=evals)
    assert f.evidence["shared"] == 2 and f.evidence["eval_rows"] == 3 and f.evidence["train_rows"] == 6
    assert "'the film was good'" in f.detail


def test_distinct_evaluation_rows_are_silent(tmp_path):
    tok = wordpiece()
    train = encoded(tok, TEXTS, label=[0, 1, 0, 1, 0, 1])
    evals = encoded(tok, ["a very old cat", "the dog sat on the mat"], label=[0, 1])
    values = _judged(tmp_path, train, tokenizer=tok, eval_dataset=evals)
    assert findings("FTD215", **values, effective_eval_dataset=evals) == []


def test_overlap_of_language_modelling_blocks_is_not_judged(tmp_path):
    tok = causal()
    blocks = encoded(tok, TEXTS)
    values = _judged(tmp_path, blocks, gpt2(tokenizer=tok), tokenizer=tok, eval_dataset=blocks)
    assert values["task"] == "causal-lm"
    assert findings("FTD215", **values, effective_eval_dataset=blocks) == []


def test_second_label_column_that_disagrees(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:4], labels=[0, 1, 0, 1], label=[1, 1, 0, 0])
    f = one("FTD216", **_judged(tmp_path, ds, tokenizer=tok))
    assert f.evidence == {"used": "labels", "other": "label", "differ": 2, "rows": 4}
    assert 'remove_columns(["label"])' in f.fix


def test_a_copy_of_the_label_column_is_silent(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:4], labels=[0, 1, 0, 1], label=[0, 1, 0, 1])
    assert findings("FTD216", **_judged(tmp_path, ds, tokenizer=tok)) == []


def test_lowercasing_tokenizer_over_a_cased_vocabulary(tmp_path):
    cased = [
        "The",
        "Film",
        "Was",
        "Good",
        "Paris",
        "London",
        "John",
        "Mary",
        "Bank",
        "River",
        "Movie",
        "Plot",
        "Actors",
        "City",
        "Park",
        "Old",
        "Young",
        "Cat",
        "Dog",
        "Bad",
    ]
    tok = wordpiece(words=cased + ["the", "film", "was", "good"], lowercase=True)
    ds = encoded(tok, TEXTS[:1], label=[0])
    f = one("FTD217", **_judged(tmp_path, ds, bert(vocab_size=len(tok)), tokenizer=tok))
    assert "lower-cases its input" in f.detail and f.evidence["cased_vocabulary_share"] > 0.1


def test_many_unknown_tokens(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, ["zebras quietly munched €€€ ☃☃☃ grass", "the film was good"], label=[0, 1])
    f = one("FTD217", **_judged(tmp_path, ds, bert(vocab_size=len(tok)), tokenizer=tok))
    assert "of the sampled tokens are the unknown token" in f.detail and f.evidence["unknown_rate"] > 0.05


def test_unknown_token_is_named_as_the_tokenizer_spells_it(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, ["zebras quietly munched €€€ ☃☃☃ grass", "the film was good"], label=[0, 1])
    f = one("FTD217", **_judged(tmp_path, ds, bert(vocab_size=len(tok)), tokenizer=tok))
    assert "`[UNK]`" in f.detail


def test_tokenizer_far_smaller_than_the_embedding_table(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS[:2], label=[0, 1])
    f = one("FTD217", **_judged(tmp_path, ds, bert(vocab_size=4 * len(tok)), tokenizer=tok))
    assert f.evidence == {"unknown_rate": 0.0, "tokenizer_size": len(tok), "embedding_rows": 4 * len(tok)}


def test_the_models_own_tokenizer_is_silent(tmp_path):
    tok = wordpiece()
    ds = encoded(tok, TEXTS, label=[0, 1, 0, 1, 0, 1])
    assert findings("FTD217", **_judged(tmp_path, ds, bert(vocab_size=len(tok)), tokenizer=tok)) == []


# --- token classification --------------------------------------------------------------------------------------------

NER = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def _ner(tmp_path, labels):
    tok = wordpiece()
    enc = tok(["johnton lives in paris"])  # [CLS] john ##ton lives in paris [SEP]
    assert tok.convert_ids_to_tokens(enc["input_ids"][0])[1:3] == ["john", "##ton"]
    ds = dataset({**{k: list(v) for k, v in enc.items()}, "labels": [labels]})
    model = bert("BertForTokenClassification", num_labels=5, id2label=NER, label2id={v: k for k, v in NER.items()})
    return _judged(tmp_path, ds, model, tokenizer=tok)


def test_word_tags_given_per_word_not_per_token(tmp_path):
    f = one("FTD221", **_ner(tmp_path, [1, 0, 0, 3]))
    assert "(row 0: 4 labels for 7 tokens)" in f.detail
    assert f.evidence == {"wrong_length_rows": 1, "labelled_special_rows": 0, "sampled": 1}


def test_special_tokens_with_a_real_tag(tmp_path):
    f = one("FTD221", **_ner(tmp_path, [0, 1, 2, 0, 0, 3, 0]))
    assert "give special tokens ([CLS], [SEP]) a real label" in f.detail
    assert f.evidence["labelled_special_rows"] == 1


def test_begin_tag_copied_onto_a_words_later_piece(tmp_path):
    f = one("FTD222", **_ner(tmp_path, [-100, 1, 1, 0, 0, 3, -100]))
    assert "`john` `##ton` both B-PER" in f.detail and f.evidence == {"copied": 1, "continuation_pieces": 1}


def test_first_piece_labelled_and_the_rest_ignored_is_silent(tmp_path):
    assert findings("FTD221", **_ner(tmp_path, [-100, 1, -100, 0, 0, 3, -100])) == []


def test_inside_tag_on_a_later_piece_is_silent(tmp_path):
    assert findings("FTD222", **_ner(tmp_path, [-100, 1, 2, 0, 0, 3, -100])) == []


def _ner_default_names(tmp_path, labels, names=None):
    """The head built with `num_labels=` alone (LABEL_0.. names); the tag names are those of the script's dataset."""
    from datasets import ClassLabel, Sequence

    tok = wordpiece()
    enc = tok(["johnton lives in paris"])
    words = dataset({"tokens": [["johnton", "lives", "in", "paris"]], "ner_tags": [[1, 0, 0, 3]]})
    words = words.cast_column("ner_tags", Sequence(ClassLabel(names=list(names or NER.values()))))
    ds = dataset({**{k: list(v) for k, v in enc.items()}, "labels": [labels]})
    model = bert("BertForTokenClassification", num_labels=5)
    cap = capture(tmp_path, {"raw_datasets": words})
    return _judged(tmp_path, ds, model, tokenizer=tok, cap=cap)


def test_begin_tag_copied_named_from_the_datasets_tags(tmp_path):
    f = one("FTD222", **_ner_default_names(tmp_path, [-100, 1, 1, 0, 0, 3, -100]))
    assert "`john` `##ton` both B-PER" in f.detail and f.evidence == {"copied": 1, "continuation_pieces": 1}


def test_inside_tag_copied_with_the_datasets_tags_is_silent(tmp_path):
    assert findings("FTD222", **_ner_default_names(tmp_path, [-100, 1, 2, 0, 0, 3, -100])) == []


def test_tags_of_another_label_count_are_not_borrowed(tmp_path):
    names = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG")  # six tags for a five-label head: not its names
    assert findings("FTD222", **_ner_default_names(tmp_path, [-100, 1, 1, 0, 0, 3, -100], names)) == []


def test_begin_tag_copied_in_a_loops_tensor_dataset_beyond_its_batch(tmp_path):
    from torch.utils.data import TensorDataset

    values = _ner_default_names(tmp_path, [-100, 1, -100, 0, 0, 3, -100])
    batch_row = values["train_features"][0]  # the loop's batch: this row has no copied tag
    copied = [-100, 1, 1, 0, 0, 3, -100]  # a later row of its dataset has
    # the dataset's rows are padded (pad id 0, label -100); the batch row came without its padding
    ids = torch.tensor([batch_row["input_ids"] + [0, 0]] * 2)
    labels = torch.tensor([batch_row["labels"] + [-100, -100], copied + [-100, -100]])
    values["pipeline"].train_dataset = TensorDataset(ids, labels)
    f = one("FTD222", **values)
    assert f.evidence == {"copied": 1, "continuation_pieces": 3}  # the batch row, then the dataset's two rows


def test_unknown_token_with_the_words_tag_is_not_a_special_token(tmp_path):
    tok = wordpiece()
    enc = tok(["§ lives in paris"])  # [CLS] [UNK] lives in paris [SEP]: the unknown word keeps its tag
    assert tok.unk_token_id in enc["input_ids"][0]
    ds = dataset({**{k: list(v) for k, v in enc.items()}, "labels": [[-100, 1, 0, 0, 3, -100]]})
    model = bert("BertForTokenClassification", num_labels=5, id2label=NER, label2id={v: k for k, v in NER.items()})
    assert findings("FTD221", **_judged(tmp_path, ds, model, tokenizer=tok)) == []


# --- extractive question answering -----------------------------------------------------------------------------------

QA = [
    ("who lives in paris", "the old cat and the young dog sat on the mat in paris and john lives in london", "john"),
    ("where does mary work", "mary works at the acme bank in london near the river and the park", "acme bank"),
    ("what sat on the mat", "the old cat sat on the mat in the city of paris near the river", "the old cat"),
    ("where does john live", "the young dog and the old cat sat in the park and john lives in paris", "paris"),
]


def _qa(tmp_path, max_length=64, shift=0):
    """SQuAD-style examples and their rows, each answer located through the offsets (``shift`` moves every end)."""
    tok = wordpiece()
    examples = dataset(
        {
            "question": [q for q, _, _ in QA],
            "context": [c for _, c, _ in QA],
            "answers": [{"text": [a], "answer_start": [c.rindex(a)]} for _, c, a in QA],
        }
    )
    enc = tok(
        [q for q, _, _ in QA],
        [c for _, c, _ in QA],
        truncation="only_second",
        max_length=max_length,
        return_offsets_mapping=True,
    )
    starts, ends = [], []
    for i, (_, context, answer) in enumerate(QA):
        first, last = context.rindex(answer), context.rindex(answer) + len(answer)
        seq, offsets = enc.sequence_ids(i), enc["offset_mapping"][i]
        inside = [j for j, (s, e) in enumerate(offsets) if seq[j] == 1 and s >= first and e <= last]
        starts.append(inside[0] if inside else 0)
        ends.append(inside[-1] + shift if inside else 0)
    ds = dataset(
        {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "start_positions": starts,
            "end_positions": ends,
        }
    )
    cap = capture(tmp_path, {"raw_examples": examples})
    return _judged(tmp_path, ds, bert("BertForQuestionAnswering"), tokenizer=tok, cap=cap)


def test_answer_positions_one_token_off(tmp_path):
    f = one("FTD223", **_qa(tmp_path, shift=1))
    assert f.evidence == {"off": 4, "matched_rows": 4}
    assert "positions (" in f.detail and "the answer is 'john'" in f.detail


def test_truncation_cut_some_answers(tmp_path):
    values = _qa(tmp_path, max_length=22)  # the last example's answer ends its context: cut away
    assert [r["start_positions"] == 0 for r in values["train_features"]] == [False, False, False, True]
    f = one("FTD224", **values)
    assert f.evidence == {"answers_lost": 1, "questions": 4}


def test_truncation_cut_most_answers(tmp_path):
    values = _qa(tmp_path, max_length=16)
    assert [r["start_positions"] == 0 for r in values["train_features"]] == [True, False, False, True]
    f = one("FTD225", **values)
    assert f.evidence == {"answers_lost": 2, "questions": 4} and "return_overflowing_tokens=True" in f.fix


def test_positions_that_spell_the_answers_are_silent(tmp_path):
    assert findings("FTD223", **_qa(tmp_path)) == []


# --- label dtype against the loss the head picks ---------------------------------------------------------------------


def test_integer_multi_hot_targets_for_a_multi_label_head(tmp_path):
    ds = _labelled(wordpiece(), [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    model = bert(num_labels=3, problem_type="multi_label_classification")
    f = one("FTD204", "decode", **_judged(tmp_path, ds, model))
    assert "needs float multi-hot targets" in f.detail and f.evidence == {"example": [1, 0, 1]}
    assert "float(v)" in f.fix


def test_float_multi_hot_targets_for_a_multi_label_head_are_silent(tmp_path):
    ds = _labelled(wordpiece(), [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    model = bert(num_labels=3, problem_type="multi_label_classification")
    assert findings("FTD204", "decode", **_judged(tmp_path, ds, model)) == []


def test_one_hot_rows_for_a_single_label_classifier(tmp_path):
    ds = _labelled(wordpiece(), [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    f = one("FTD204", "decode", **_judged(tmp_path, ds, bert(num_labels=3)))
    assert "one-hot float vectors (3 values, one 1.0)" in f.detail and "BCEWithLogitsLoss" in f.detail
    assert "class id" in f.fix and f.evidence["num_labels"] == 3


# --- columns the Trainer removes before the collator or a transform reads them ----------------------------------------


def _tagging_collator(tok):
    def align_tags(features):
        word_ids = [f.pop("word_ids") for f in features]
        batch = tok.pad(features, return_tensors="pt")
        batch["labels"] = torch.tensor([[0 if w >= 0 else -100 for w in ws] for ws in word_ids])
        return batch

    return align_tags


def _with_word_ids(tok):
    enc = tok(TEXTS[:4])
    word_ids = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(4)]
    return dataset({**{k: list(v) for k, v in enc.items()}, "word_ids": word_ids})


def test_collator_reads_a_column_the_trainer_removes(tmp_path):
    tok = wordpiece()
    ds = _with_word_ids(tok)
    values = trainer_values(tmp_path, bert("BertForTokenClassification"), ds, data_collator=_tagging_collator(tok))
    f = one("FTD218", **values)
    assert "The collator `align_tags` reads `word_ids`" in f.detail and "KeyError: 'word_ids'" in f.detail
    assert "remove_unused_columns=False" in f.fix
    assert f.location.endswith(f"test_decode.py:{_tagging_collator.__code__.co_firstlineno + 2}")
    assert f.evidence == {"reads": ["word_ids"], "dropped": ["word_ids"], "reader": "collator"}


def test_transform_reads_the_text_the_trainer_removes(tmp_path):
    tok = wordpiece()

    def tokenize(batch):
        return tok(batch["text"], truncation=True)

    ds = dataset({"text": TEXTS[:4]}).with_transform(tokenize)
    f = one("FTD218", **trainer_values(tmp_path, bert("BertForMaskedLM"), ds))
    assert f.detail.startswith("The dataset's transform `tokenize` reads `text`")
    assert "No columns in the dataset match the model's forward method signature" in f.detail


def test_columns_kept_for_the_collator_are_silent(tmp_path):
    tok = wordpiece()
    ds = _with_word_ids(tok)
    collator = _tagging_collator(tok)
    model = bert("BertForTokenClassification")
    kept = trainer_values(tmp_path, model, ds, data_collator=collator, remove_unused_columns=False)
    assert findings("FTD218", **kept) == []
    plain = trainer_values(tmp_path, model, ds.remove_columns("word_ids"), data_collator=collator)
    assert findings("FTD218", **plain) == []


def test_collator_given_as_a_partial_is_read_through(tmp_path):
    import functools

    tok = wordpiece()

    def align_with(features, tokenizer):
        word_ids = [f.pop("word_ids") for f in features]  # the line that reads it
        return tokenizer.pad(features, return_tensors="pt") | {"word_ids": word_ids}

    collator = functools.partial(align_with, tokenizer=tok)
    values = trainer_values(tmp_path, bert("BertForTokenClassification"), _with_word_ids(tok), data_collator=collator)
    f = one("FTD218", **values)
    assert f.location.endswith(f"test_decode.py:{align_with.__code__.co_firstlineno + 1}")


def test_the_trainer_refusing_a_transformed_dataset_is_the_failure_ftd218_predicted(tmp_path):
    tok = wordpiece()
    ds = dataset({"text": TEXTS[:4]}).with_transform(lambda b: tok(b["text"]))
    values = trainer_values(tmp_path, bert("BertForMaskedLM"), ds)
    earlier = findings("FTD218", **values)
    out = call("FTD201", **values, findings_so_far=earlier)
    assert out.findings == [] and "predicted by FTD218" in out.values["train_features"].reason
