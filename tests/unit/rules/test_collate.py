"""One test per collate rule: rows (as decode hands them over) or a hand-built batch, and the collate check called
on them alone, inside a tiny Trainer's (or loop's) pipeline."""

from __future__ import annotations

import torch

from ._build import (
    EOS,
    bart,
    bert,
    call,
    capture,
    causal,
    codes,
    findings,
    gpt2,
    loop_values,
    one,
    reported,
    rows,
    trainer_values,
    wordpiece,
)

# --- building batches: build_batches ---------------------------------------------------------------------------------


def _token_rows(lengths, **extra):
    return [
        {
            "input_ids": [2] + [50] * (n - 2) + [3],
            "attention_mask": [1] * n,
            "label": i % 2,
            **{k: v[i] for k, v in extra.items()},
        }
        for i, n in enumerate(lengths)
    ]


def _batches(values, features, findings_so_far=()):
    return call("FTD301", **values, train_features=features, findings_so_far=list(findings_so_far))


def test_stacking_collator_over_rows_of_different_lengths(tmp_path):
    values = trainer_values(tmp_path, bert())  # no processing_class: the Trainer's default_data_collator
    out = _batches(values, _token_rows([5, 7, 6, 9]))
    [f] = out.findings
    assert f.code == "FTD301" and f.evidence == {"min_length": 5, "max_length": 9}
    assert "`default_data_collator` only stacks rows" in f.detail
    assert "`data_collator=DataCollatorWithPadding(tokenizer)`" in f.fix
    assert out.values["batch"].reason == "no batch: the collator cannot pad"


def test_padding_collator_builds_the_batch(tmp_path):
    values = trainer_values(tmp_path, bert(), tokenizer=wordpiece())  # DataCollatorWithPadding by default
    out = _batches(values, _token_rows([5, 7, 6, 9]))
    assert out.findings == []
    assert out.values["batch"]["input_ids"].shape == (4, 9) and out.values["batch"]["labels"].tolist() == [0, 1, 0, 1]
    assert {"key": "input_ids", "shape": [4, 9], "dtype": "int64"} in out.evidence["batch"]


class _NeedsPixels:
    def __call__(self, rows):
        return {"pixel_values": torch.stack([torch.tensor(r["pixel_values"]) for r in rows])}


def test_collator_that_raises_on_the_rows(tmp_path):
    values = trainer_values(tmp_path, bert(), data_collator=_NeedsPixels())
    f = one("FTD302", **values, train_features=_token_rows([4, 4]), findings_so_far=[])
    assert f.detail.startswith("`_NeedsPixels` raised KeyError: 'pixel_values' — at ")
    assert "`r` = dict[3] keys input_ids, attention_mask, label" in f.detail  # the row that lacks the key
    assert f.evidence["exception"] == "KeyError: 'pixel_values'" and "cause shown" not in f.fix


def test_collator_that_returns_no_mapping(tmp_path):
    values = trainer_values(tmp_path, bert(), data_collator=lambda rows: [r["input_ids"] for r in rows])
    f = one("FTD302", **values, train_features=_token_rows([4, 4]), findings_so_far=[])
    assert f.detail == "The collator returned a list, not a mapping of tensors."


def test_padding_collator_over_a_tokenizer_without_pad_token(tmp_path):
    from transformers import DataCollatorWithPadding

    tok = causal(pad=None)
    values = trainer_values(
        tmp_path, gpt2("GPT2ForSequenceClassification", tokenizer=tok), data_collator=DataCollatorWithPadding(tok)
    )
    f = one("FTD105", "collate", **values, train_features=_token_rows([4, 6]), findings_so_far=[])
    assert "the tokenizer has no pad token" in f.detail
    assert f.fix == "Set `tokenizer.pad_token = tokenizer.eos_token` before building the collator."


def test_missing_pad_token_already_reported_by_config_is_not_repeated(tmp_path):
    from transformers import DataCollatorWithPadding

    tok = causal(pad=None)
    values = trainer_values(
        tmp_path, gpt2("GPT2ForSequenceClassification", tokenizer=tok), data_collator=DataCollatorWithPadding(tok)
    )
    earlier = reported("FTD105", "config saw it first")
    out = _batches(values, _token_rows([4, 6]), [earlier])
    assert out.findings == [] and "(config FTD105)" in out.values["batch"].reason


def _tensor_of_every_key(rows):
    """A hand-written collator: every key of the rows becomes a tensor."""
    return {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}


def test_text_values_reaching_the_collator(tmp_path):
    values = trainer_values(tmp_path, bert(), data_collator=_tensor_of_every_key, remove_unused_columns=False)
    features = _token_rows([4, 4], sentence=["the film", "a plot"])
    f = one("FTD210", "collate", **values, train_features=features, findings_so_far=[])
    assert "`_tensor_of_every_key` received text values: too many dimensions 'str'" == f.detail


def test_text_values_already_reported_by_decode_are_not_repeated(tmp_path):
    values = trainer_values(tmp_path, bert(), data_collator=_tensor_of_every_key, remove_unused_columns=False)
    features = _token_rows([4, 4], sentence=["the film", "a plot"])
    out = _batches(values, features, [reported("FTD210", "decode saw it first")])
    assert out.findings == [] and "(decode FTD210)" in out.values["batch"].reason


# --- labels in the batch ---------------------------------------------------------------------------------------------


class _InputsOnly:
    """A collator that pads the model's inputs and forgets everything else."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, rows):
        keep = [{k: r[k] for k in ("input_ids", "attention_mask")} for r in rows]
        return self.tokenizer.pad(keep, return_tensors="pt")


def test_collator_that_drops_the_labels(tmp_path):
    tok = wordpiece()
    collator = _InputsOnly(tok)
    values = trainer_values(tmp_path, bert(), data_collator=collator)
    features = _token_rows([4, 5])
    f = one("FTD304", **values, batch=dict(collator(features)), train_features=features)
    assert f.detail == (
        "The rows carry labels but `_InputsOnly` drops them: the batch has only ['attention_mask', 'input_ids']."
    )
    assert f.evidence == {"batch_keys": ["attention_mask", "input_ids"]}


def test_function_collator_that_drops_the_labels_is_named(tmp_path):
    tok = wordpiece()

    def inputs_only(rows):
        return tok.pad([{k: r[k] for k in ("input_ids", "attention_mask")} for r in rows], return_tensors="pt")

    values = trainer_values(tmp_path, bert(), data_collator=inputs_only)
    features = _token_rows([4, 5])
    f = one("FTD304", **values, batch=dict(inputs_only(features)), train_features=features)
    assert "`inputs_only` drops them" in f.detail


def test_causal_lm_batch_without_labels(tmp_path):
    from transformers import DataCollatorWithPadding

    tok = causal(pad=None)
    values = trainer_values(tmp_path, gpt2(tokenizer=tok), tokenizer=tok, data_collator=DataCollatorWithPadding(tok))
    features = [{"input_ids": [2, 50, 51], "attention_mask": [1, 1, 1]}]
    batch = {"input_ids": torch.tensor([[2, 50, 51]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    f = one("FTD304", **values, batch=batch, train_features=features)
    assert (
        f.detail == "Nothing creates the language-modelling labels: the batch has only ['attention_mask', 'input_ids']."
    )
    # without a pad token, the language-modelling collator needs one: a spare special token, not EOS
    assert f.fix.startswith('Set `tokenizer.pad_token = "<|reserved_pad|>"`')
    assert "DataCollatorForLanguageModeling(tokenizer, mlm=False)" in f.fix


def test_batch_with_labels_is_silent(tmp_path):
    tok = wordpiece()
    values = trainer_values(tmp_path, bert(), tokenizer=tok)
    features = _token_rows([4, 5])
    batch = dict(values["data_collator"](features))
    assert "labels" in batch and call("FTD304", **values, batch=batch, train_features=features) is None


def test_classification_rows_without_labels_are_left_to_decode(tmp_path):
    tok = wordpiece()
    values = trainer_values(tmp_path, bert(), tokenizer=tok)
    features = [{"input_ids": [2, 50, 3], "attention_mask": [1, 1, 1]}]
    batch = dict(values["data_collator"](features))
    assert call("FTD304", **values, batch=batch, train_features=features) is None


def test_loop_batch_with_label_where_the_model_takes_labels(tmp_path):
    from torch.utils.data import DataLoader

    features = _token_rows([4, 4, 4, 4])
    loader = DataLoader(features, batch_size=2, collate_fn=_tensor_of_every_key)
    batch = next(iter(loader))
    values = loop_values(bert(), loader, tokenizer=wordpiece(), batch=batch)
    f = one("FTD305", **values, batch=batch)
    assert (
        f.detail == "The batch has `label` but `BertForSequenceClassification.forward` takes `labels`: the model "
        "returns no loss."
    )
    assert 'batch["labels"] = batch.pop("label")' in f.fix


def test_loop_batch_with_labels_is_silent(tmp_path):
    from torch.utils.data import DataLoader

    features = [{("labels" if k == "label" else k): v for k, v in r.items()} for r in _token_rows([4, 4])]
    loader = DataLoader(features, batch_size=2, collate_fn=_tensor_of_every_key)
    batch = next(iter(loader))
    assert call("FTD305", **loop_values(bert(), loader, batch=batch), batch=batch) is None


# --- causal LM labels ------------------------------------------------------------------------------------------------


def _clm(tmp_path, tok=None):
    from transformers import DataCollatorForLanguageModeling

    tok = tok if tok is not None else causal()
    assert (tok.bos_token_id, tok.eos_token_id) == (2, 3)  # the ids the hand-built rows below use
    return trainer_values(
        tmp_path, gpt2(tokenizer=tok), tokenizer=tok, data_collator=DataCollatorForLanguageModeling(tok, mlm=False)
    )


IDS = torch.tensor([[2, 50, 51, 52, 53, 54, 55, 56], [2, 57, 58, 59, 60, 61, 62, 63]])


def test_labels_shifted_by_hand(tmp_path):
    labels = torch.cat([IDS[:, 1:], torch.full((2, 1), -100)], dim=1)
    f = one("FTD321", **_clm(tmp_path), batch={"input_ids": IDS, "labels": labels})
    assert f.evidence == {"match_next_token": 1.0, "match_same_token": 0.0}


def test_labels_copied_from_the_inputs_are_silent(tmp_path):
    assert findings("FTD321", **_clm(tmp_path), batch={"input_ids": IDS, "labels": IDS.clone()}) == []


def test_padding_positions_that_carry_labels(tmp_path):
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    ids = IDS.masked_fill(mask == 0, 0)  # padded with the pad id 0
    f = one("FTD322", **_clm(tmp_path), batch={"input_ids": ids, "attention_mask": mask, "labels": ids.clone()})
    assert f.evidence == {"labelled_padding": 3} and "3 of 3 padding positions" in f.detail


def test_padding_masked_with_ignore_index_is_silent(tmp_path):
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    ids = IDS.masked_fill(mask == 0, 0)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    assert findings("FTD322", **_clm(tmp_path), batch=batch) == []


# --- seq2seq labels --------------------------------------------------------------------------------------------------


def _seq2seq(tmp_path, labels):
    tok = causal()
    values = trainer_values(tmp_path, bart(tokenizer=tok), tokenizer=tok)
    return {**values, "batch": {"input_ids": IDS, "labels": labels}}


def test_seq2seq_labels_padded_with_the_pad_id(tmp_path):
    pad = causal().pad_token_id
    labels = torch.tensor([[50, 51, 3, pad, pad], [52, 53, 54, 55, 3]])
    f = one("FTD323", **_seq2seq(tmp_path, labels))
    assert f.evidence == {"rows": 1, "pad_token_id": pad} and "1 of 2 label rows hold the pad id" in f.detail
    assert "DataCollatorForSeq2Seq(tokenizer, model=model)" in f.fix


def test_seq2seq_labels_padded_with_ignore_index_are_silent(tmp_path):
    labels = torch.tensor([[50, 51, 3, -100, -100], [52, 53, 54, 55, 3]])
    assert call("FTD323", **_seq2seq(tmp_path, labels)) is None


# --- the supervised tokens of a causal LM: supervised_tokens ---------------------------------------------------------


def _supervised(tmp_path, batch, tok=None):
    values = _clm(tmp_path, tok)
    return call("FTD324", **values, batch=batch)


def _rows(*rows, width=None, pad=0):
    """A batch of rows given as (ids, number of prompt tokens): labels -100 on the prompt and on padding."""
    width = width or max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for r, (row, prompt) in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
        labels[r, prompt : len(row)] = torch.tensor(row[prompt:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_no_token_is_trained(tmp_path):
    batch = _rows(([2, 50, 51, 52, 3], 5), ([2, 53, 54, 3], 4))
    out = _supervised(tmp_path, batch)
    [f] = out.findings
    assert f.code == "FTD324" and "Every label of the 2-row batch is -100" in f.detail
    assert out.evidence["trained_per_row"] == [0, 0]


def test_end_token_masked_as_padding(tmp_path):
    from transformers import DataCollatorForLanguageModeling

    tok = causal(pad=EOS)  # the end token pads: the collator masks every pad id, the real ends too
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    batch = dict(collator([tok("the film was good" + EOS), tok("a great movie" + EOS)]))
    out = _supervised(tmp_path, batch, tok)
    [f] = out.findings
    assert f.code == "FTD325" and f.evidence == {"masked_end_tokens": 2, "pad_token_id": tok.eos_token_id}
    assert '`tokenizer.pad_token = "<|reserved_pad|>"`' in f.fix


def test_end_token_trained_with_its_own_pad_token_is_silent(tmp_path):
    from transformers import DataCollatorForLanguageModeling

    tok = causal()
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    batch = dict(collator([tok("the film was good" + EOS), tok("a great movie" + EOS)]))
    out = _supervised(tmp_path, batch, tok)
    assert out.findings == [] and out.evidence["trained_per_row"] == [6, 5]  # BOS, four words, EOS


def test_most_answers_cut_at_max_length(tmp_path):
    # Both rows fill the batch's width, and their trained answers stop before any end token.
    batch = _rows(([2, 50, 51, 52, 53, 54, 55, 56], 3), ([2, 57, 58, 59, 60, 61, 62, 63], 4))
    [f] = _supervised(tmp_path, batch).findings
    assert f.code == "FTD326" and f.evidence == {"cut_rows": 2, "rows": 2, "trained_tokens": [4, 5]}
    assert "2 of 2 rows are cut at 8 tokens" in f.detail


def test_prompts_cut_to_keep_the_answers_whole_are_silent(tmp_path):
    """The rows fill max_length without an end token because the format has none; their prompts were cut from the
    left (they lost the BOS every text starts with), so the answers are whole. It was FTD326."""
    batch = _rows(([50, 51, 52, 53, 54, 55, 56, 57], 3), ([58, 59, 60, 61, 62, 63, 64, 65], 4))
    assert _supervised(tmp_path, batch).findings == []


def test_a_tokenizer_truncating_from_the_left_keeps_the_answers(tmp_path):
    tok = causal()
    tok.truncation_side = "left"
    batch = _rows(([2, 50, 51, 52, 53, 54, 55, 56], 3), ([2, 57, 58, 59, 60, 61, 62, 63], 4))
    assert _supervised(tmp_path, batch, tok).findings == []


def test_answers_cut_from_the_right_are_still_found_when_the_rows_keep_their_start(tmp_path):
    batch = _rows(([2, 51, 52, 53, 54, 55, 56, 57], 3), ([2, 59, 60, 61, 62, 63, 64, 65], 4))
    [f] = _supervised(tmp_path, batch).findings
    assert f.code == "FTD326"


def test_some_answers_cut_at_max_length(tmp_path):
    batch = _rows(([2, 50, 51, 52, 53, 54, 55, 56], 3), ([2, 57, 58, 59, 3], 2), ([2, 60, 61, 62, 3], 3))
    [f] = _supervised(tmp_path, batch).findings
    assert f.code == "FTD327" and f.evidence == {"cut_rows": 1, "rows": 3, "trained_tokens": [5]}


def test_answers_that_never_end(tmp_path):
    batch = _rows(([2, 50, 51, 52, 53], 2), ([2, 54, 55, 56, 57, 58], 3), width=8)
    out = _supervised(tmp_path, batch)
    [f] = out.findings
    assert f.code == "FTD328" and f.evidence == {"answers": 2}
    view = out.evidence["trained_tokens"]
    assert view["row"] == 0 and [s[1] for s in view["segments"]] == [False, True]


def test_answers_that_end_with_the_end_token_are_silent(tmp_path):
    batch = _rows(([2, 50, 51, 52, 3], 2), ([2, 54, 55, 56, 57, 3], 3), width=8)
    assert _supervised(tmp_path, batch).findings == []


def test_documents_packed_without_an_end_token_between_them(tmp_path):
    batch = _rows(([2, 50, 51, 52, 2, 53, 54, 55], 0), ([2, 56, 57, 3, 2, 58, 59, 3], 0))
    [f] = _supervised(tmp_path, batch).findings
    assert f.code == "FTD329" and f.evidence == {"joins": 1}  # the second row has its end token between


def test_rows_that_start_with_two_bos_tokens(tmp_path):
    tok = causal()
    rendered = tok.bos_token + "the film was good" + EOS  # a template that writes BOS, tokenized with specials
    ids = tok(rendered)["input_ids"]
    assert ids[:2] == [tok.bos_token_id, tok.bos_token_id]
    batch = _rows((ids, 0), (tok("a great movie" + EOS)["input_ids"], 0))
    [f] = _supervised(tmp_path, batch, tok).findings
    assert f.code == "FTD330" and f.evidence == {"rows": 1}
    assert "add_special_tokens=False" in f.fix


def test_other_tasks_are_not_judged(tmp_path):
    values = trainer_values(tmp_path, bert(), tokenizer=wordpiece())
    batch = _rows(([2, 50, 51, 52, 53], 5), ([2, 54, 55, 3], 4))
    assert values["task"] == "sequence-classification"
    assert codes(findings("FTD324", **values, batch=batch)) == []


# --- contracts before collating: what the collator pads, what it keeps -----------------------------------------------


def _tagged_rows(lengths):
    """Token-classification rows: one label per token (-100 on the special tokens), of each row's length."""
    return [
        {"input_ids": [2] + [50] * (n - 2) + [3], "attention_mask": [1] * n, "labels": [-100] + [1] * (n - 2) + [-100]}
        for n in lengths
    ]


def test_padding_collator_with_per_token_labels_of_different_lengths(tmp_path):
    from transformers import DataCollatorWithPadding

    tok = wordpiece()
    values = trainer_values(tmp_path, bert("BertForTokenClassification"), data_collator=DataCollatorWithPadding(tok))
    rows = _tagged_rows([5, 7, 6])
    f = one("FTD331", **values, train_features=rows)
    assert "per-token lists of 5 to 7 entries" in f.detail and "`DataCollatorWithPadding` pads only" in f.detail
    assert f.fix.startswith("`data_collator=DataCollatorForTokenClassification(")
    assert f.evidence == {
        "label_key": "labels",
        "min_length": 5,
        "max_length": 7,
        "collator": "DataCollatorWithPadding",
    }
    # the crash that follows is the one the contract predicted: no relay of the collator's error
    out = _batches(values, rows, [f])
    assert out.findings == [] and "predicted by FTD331" in out.values["batch"].reason


def test_language_modelling_collator_with_masked_labels_of_different_lengths(tmp_path):
    from transformers import DataCollatorForLanguageModeling

    tok = causal()
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    values = trainer_values(tmp_path, gpt2(tokenizer=tok), data_collator=collator)
    rows = [
        {"input_ids": [2] + [50] * n, "attention_mask": [1] * (n + 1), "labels": [-100] * 3 + [50] * (n - 2)}
        for n in (4, 6)
    ]
    f = one("FTD331", **values, train_features=rows)
    assert "would still replace them with labels built from `input_ids`" in f.detail
    assert "DataCollatorForSeq2Seq(" in f.fix


def test_collators_that_pad_labels_or_labels_of_one_length_are_silent(tmp_path):
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    tok = wordpiece()
    model = bert("BertForTokenClassification")
    padded = trainer_values(tmp_path, model, data_collator=DataCollatorForTokenClassification(tok))
    assert findings("FTD331", **padded, train_features=_tagged_rows([5, 7, 6])) == []
    plain = trainer_values(tmp_path, model, data_collator=DataCollatorWithPadding(tok))
    assert findings("FTD331", **plain, train_features=_tagged_rows([6, 6])) == []
    assert findings("FTD331", **plain, train_features=_token_rows([5, 7])) == []


def _prompt_masked_rows(prompt=3, lengths=(8, 8, 8)):
    """Causal-LM rows of one length whose labels leave the prompt (``prompt`` tokens) out of the loss."""
    return [
        {
            "input_ids": [2] + [50 + i] * (n - 1),
            "attention_mask": [1] * n,
            "labels": [-100] * prompt + [50 + i] * (n - prompt),
        }
        for i, n in enumerate(lengths)
    ]


def test_language_modelling_collator_discards_the_prompt_mask(tmp_path):
    from transformers import DataCollatorForLanguageModeling

    tok = causal()
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    values = trainer_values(tmp_path, gpt2(tokenizer=tok), data_collator=collator)
    rows = _prompt_masked_rows()
    f = one("FTD332", **values, batch=dict(collator(rows)), train_features=rows)
    assert f.evidence == {"masked_in_rows": 9, "trained_in_batch": 9}
    assert "`DataCollatorForLanguageModeling` builds its own labels" in f.detail
    assert f.fix.startswith("`data_collator=DataCollatorForSeq2Seq(")


def test_collator_that_keeps_the_prompt_mask_is_silent(tmp_path):
    from transformers import DataCollatorForSeq2Seq

    tok = causal()
    collator = DataCollatorForSeq2Seq(tok, padding=True)
    values = trainer_values(tmp_path, gpt2(tokenizer=tok), data_collator=collator)
    rows = _prompt_masked_rows(lengths=(6, 8, 7))
    assert findings("FTD332", **values, batch=dict(collator(rows)), train_features=rows) == []


def _mlm_batch(tok, label_every_position):
    ids = torch.tensor([[2, 50, 51, 52, 53, 54, 55, 3]] * 2)
    inputs = ids.clone()
    inputs[:, 2] = tok.mask_token_id
    labels = ids.clone() if label_every_position else torch.where(inputs == tok.mask_token_id, ids, -100)
    return {"input_ids": inputs, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_masked_lm_labels_on_every_position(tmp_path):
    from torch.utils.data import DataLoader

    tok = wordpiece()
    batch = _mlm_batch(tok, label_every_position=True)
    values = loop_values(bert("BertForMaskedLM"), DataLoader([]), tokenizer=tok, batch=batch)
    f = one("FTD333", **values, batch=batch)
    assert f.evidence == {"copied_positions": 14, "masked_positions": 2}
    assert "torch.where(inputs == tokenizer.mask_token_id, labels, -100)" in f.fix


def test_masked_lm_labels_at_the_masks_only_are_silent(tmp_path):
    from torch.utils.data import DataLoader

    tok = wordpiece()
    batch = _mlm_batch(tok, label_every_position=False)
    values = loop_values(bert("BertForMaskedLM"), DataLoader([]), tokenizer=tok, batch=batch)
    assert findings("FTD333", **values, batch=batch) == []


def test_collator_key_error_predicted_by_a_dropped_column_is_not_relayed(tmp_path):
    values = trainer_values(tmp_path, bert(), data_collator=_NeedsPixels())
    earlier = reported("FTD218", "the collator reads a column the Trainer removes")
    out = _batches(values, _token_rows([4, 4]), [earlier])
    assert out.findings == [] and "predicted by FTD218: KeyError: 'pixel_values'" in out.values["batch"].reason


def test_padding_collator_given_rows_without_inputs_after_ftd214_is_predicted(tmp_path):
    values = trainer_values(tmp_path, bert(), tokenizer=wordpiece())  # DataCollatorWithPadding
    earlier = reported("FTD214", "the Trainer drops the model's inputs")
    out = _batches(values, [{"label": 0}, {"label": 1}], [earlier])
    assert out.findings == [] and "predicted by FTD214" in out.values["batch"].reason


# --- documents concatenated into blocks (run_clm's group_texts) ------------------------------------------------------

DOCS = ["the film was good", "a great movie", "the film was great", "a good movie"]


def _grouped(tmp_path, docs, width=6):
    """Documents tokenized by a tokenizer that adds no special token (GPT-2's), concatenated and cut into blocks of
    ``width`` (labels = input_ids), with the documents' dataset in the script's namespace."""
    from transformers import DataCollatorForLanguageModeling

    from ._build import dataset

    tok = causal(bos=False)
    ids = [tok(d)["input_ids"] for d in docs]
    documents = dataset({"input_ids": ids})
    stream = [t for d in ids for t in d]
    blocks = [stream[i : i + width] for i in range(0, len(stream) - width + 1, width)]
    train = dataset({"input_ids": blocks, "labels": blocks})
    cap = capture(tmp_path, {"tokenized": documents, "lm_datasets": train})
    values = trainer_values(
        tmp_path,
        gpt2(tokenizer=tok),
        train,
        tokenizer=tok,
        cap=cap,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
    )
    batch = {"input_ids": torch.tensor(blocks), "labels": torch.tensor(blocks)}
    return call("FTD324", **values, batch=batch, train_features=rows(train))


def test_grouped_documents_without_an_end_token(tmp_path):
    [f] = _grouped(tmp_path, DOCS).findings
    assert f.code == "FTD329" and f.evidence == {"joins": 3, "seams": 3, "documents": "tokenized"}
    assert "`tokenized`'s documents concatenated and cut into blocks" in f.detail


def test_grouped_documents_each_ending_with_eos_are_silent(tmp_path):
    assert _grouped(tmp_path, [d + EOS for d in DOCS]).findings == []


# --- masked LM: batches the collator leaves without a masked token ---------------------------------------------------


def _mlm(tmp_path, texts):
    from transformers import DataCollatorForLanguageModeling

    tok = wordpiece()
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    torch.manual_seed(1)
    batch = dict(collator([tok(t) for t in texts]))
    values = trainer_values(tmp_path, bert("BertForMaskedLM"), tokenizer=tok, data_collator=collator)
    return findings("FTD341", **values, batch=batch)


def test_one_short_example_per_batch_often_masks_nothing(tmp_path):
    [f] = _mlm(tmp_path, ["the film was good"])
    assert f.code == "FTD341" and f.evidence["rows"] == 1 and f.evidence["tokens"] == 6
    assert 0.3 < f.evidence["empty"] / f.evidence["draws"] < 0.7  # 0.85 ** 4: four maskable words
    assert "the loss of that step is NaN" in f.detail


def test_a_batch_of_many_tokens_always_has_a_masked_one(tmp_path):
    assert _mlm(tmp_path, ["the film was good and a great movie"] * 8) == []
