"""One test per config rule: a tiny model, tokenizer, dataset and arguments, and the config check called on them
alone (config executes nothing of the pipeline)."""

from __future__ import annotations

from ._build import bert, call, capture, causal, dataset, findings, gpt2, loop_values, one, trainer_values, wordpiece

NLI = ["entailment", "neutral", "contradiction"]


def _nli_rows(n: int = 6) -> dict:
    return {"input_ids": [[2, 50, 51, 3]] * n, "attention_mask": [[1, 1, 1, 1]] * n, "label": [i % 3 for i in range(n)]}


# --- the classifier's outputs against the data's classes -----------------------------------------------------------


def test_fewer_outputs_than_classes(tmp_path):
    values = trainer_values(tmp_path, bert(num_labels=2), dataset(_nli_rows(), {"label": NLI}))
    f = one("FTD101", "config", **values)
    assert f.evidence == {"model_num_labels": 2, "data_num_classes": 3, "class_names": NLI}
    assert "`label` column has 3 classes (its ClassLabel has 3 names)" in f.detail
    assert "num_labels=3, id2label={0: 'entailment', 1: 'neutral', 2: 'contradiction'}" in f.fix


def test_fewer_outputs_than_the_largest_label_without_class_names(tmp_path):
    rows = {**_nli_rows(), "label": [0, 1, 2, 3, 0, 1]}  # plain ints: classes counted from the values
    values = trainer_values(tmp_path, bert(num_labels=3), dataset(rows))
    f = one("FTD101", "config", **values)
    assert f.evidence["data_num_classes"] == 4 and "its largest label is 3" in f.detail


def test_as_many_outputs_as_classes_is_silent(tmp_path):
    names = dict(enumerate(NLI))
    model = bert(num_labels=3, id2label=names, label2id={v: k for k, v in names.items()})
    values = trainer_values(tmp_path, model, dataset(_nli_rows(), {"label": NLI}))
    assert findings("FTD101", "config", **values) == []


def test_more_outputs_than_classes(tmp_path):
    values = trainer_values(tmp_path, bert(num_labels=5), dataset(_nli_rows(), {"label": NLI}))
    f = one("FTD104", **values)
    assert f.evidence == {"model_num_labels": 5, "data_num_classes": 3} and "2 outputs never receive" in f.detail
    assert f.fix == "Pass `num_labels=3` to `from_pretrained`."


def test_id2label_names_other_classes(tmp_path):
    model = bert(num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"})
    values = trainer_values(tmp_path, model, dataset(_nli_rows(), {"label": NLI}))
    f = one("FTD102", **values)
    assert f.evidence == {"id2label": ["negative", "neutral", "positive"], "class_names": NLI}
    assert "id2label={0: 'entailment', 1: 'neutral', 2: 'contradiction'}" in f.fix


def test_default_label_names_are_no_mismatch(tmp_path):
    values = trainer_values(tmp_path, bert(num_labels=3), dataset(_nli_rows(), {"label": NLI}))  # LABEL_0..2
    assert findings("FTD102", **values) == []


# --- the tokenizer against the embeddings ----------------------------------------------------------------------------


def test_tokens_added_without_resizing_the_embeddings(tmp_path):
    tok = wordpiece()
    model = bert(vocab_size=len(tok))
    tok.add_tokens(["<product>", "<brand>"])
    values = trainer_values(tmp_path, model, dataset(_nli_rows()), tokenizer=tok)
    f = one("FTD103", **values)
    assert f.evidence == {"tokenizer_size": len(tok), "embedding_rows": len(tok) - 2}
    assert f.fix == "Call `model.resize_token_embeddings(len(tokenizer))` after adding tokens and before training."


def test_embeddings_resized_after_adding_tokens_is_silent(tmp_path):
    tok = wordpiece()
    model = bert(vocab_size=len(tok))
    tok.add_tokens(["<product>"])
    model.resize_token_embeddings(len(tok))
    values = trainer_values(tmp_path, model, dataset(_nli_rows()), tokenizer=tok)
    assert findings("FTD103", **values) == []


def _own_module(inner):
    """A module of the user's own around a transformers encoder (R-BERT-style relation heads): no config of its
    own, no get_input_embeddings; the inputs meet the inner model's embeddings."""
    import torch

    class Relation(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = inner
            self.head = torch.nn.Linear(inner.config.hidden_size * 2, 2)

        def forward(self, input_ids, attention_mask=None):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.head(torch.cat([h[:, 0], h[:, -1]], dim=-1))

    return Relation()


def _loader(tok):
    import torch

    enc = tok(["a b c", "d e f g"], padding=True, return_tensors="pt")
    return torch.utils.data.DataLoader([{k: v[i] for k, v in enc.items()} for i in range(2)], batch_size=2)


def test_tokens_added_to_a_model_inside_a_module_of_ones_own(tmp_path):
    tok = wordpiece()
    model = _own_module(bert("BertModel", vocab_size=len(tok)))
    tok.add_special_tokens({"additional_special_tokens": ["<e1>", "</e1>"]})
    f = one("FTD103", **loop_values(model, _loader(tok), tokenizer=tok))
    assert f.evidence == {"tokenizer_size": len(tok), "embedding_rows": len(tok) - 2}
    assert "`model.bert.resize_token_embeddings(len(tokenizer))`" in f.fix


def test_a_module_of_ones_own_around_a_resized_model_is_silent(tmp_path):
    tok = wordpiece()
    inner = bert("BertModel", vocab_size=len(tok))
    tok.add_special_tokens({"additional_special_tokens": ["<e1>", "</e1>"]})
    inner.resize_token_embeddings(len(tok))
    assert findings("FTD103", **loop_values(_own_module(inner), _loader(tok), tokenizer=tok)) == []


# --- padding ---------------------------------------------------------------------------------------------------------


def test_padding_collator_over_a_tokenizer_without_pad_token(tmp_path):
    from transformers import DataCollatorWithPadding

    tok = causal(pad=None)
    values = trainer_values(
        tmp_path, gpt2(tokenizer=tok), dataset(_nli_rows()), tokenizer=tok, data_collator=DataCollatorWithPadding(tok)
    )
    f = one("FTD105", "config", **values)
    assert "`DataCollatorWithPadding` pads with it" in f.detail and f.evidence == {"eos_token": "</s>"}
    assert "`tokenizer.pad_token = tokenizer.eos_token`" in f.fix


def test_decoder_classifier_without_pad_token_id_at_batch_size_above_one(tmp_path):
    tok = causal()  # has a pad token; the model's config does not know it
    model = gpt2("GPT2ForSequenceClassification", tokenizer=tok, num_labels=3)
    assert model.config.pad_token_id is None
    values = trainer_values(tmp_path, model, dataset(_nli_rows(), {"label": NLI}), tokenizer=tok)
    f = one("FTD105", "config", **values)
    assert "`model.config.pad_token_id` is None" in f.detail
    assert f.fix == "Set `model.config.pad_token_id = tokenizer.pad_token_id`."


def test_decoder_classifier_at_batch_size_one_needs_no_pad(tmp_path):
    tok = causal()
    model = gpt2("GPT2ForSequenceClassification", tokenizer=tok, num_labels=3)
    values = trainer_values(
        tmp_path, model, dataset(_nli_rows(), {"label": NLI}), tokenizer=tok, per_device_train_batch_size=1
    )
    assert findings("FTD105", "config", **values) == []


def test_encoder_classifier_never_reads_pad_token_id(tmp_path):
    tok = wordpiece()
    model = bert(num_labels=3, pad_token_id=None)
    values = trainer_values(tmp_path, model, dataset(_nli_rows(), {"label": NLI}), tokenizer=tok)
    assert findings("FTD105", "config", **values) == []


# --- precision ---------------------------------------------------------------------------------------------------------


def test_fp16_over_float16_weights(tmp_path):
    model = bert(num_labels=3).half()
    values = trainer_values(tmp_path, model, dataset(_nli_rows()), fp16=True)
    f = one("FTD108", "config", **values)
    n = sum(1 for p in model.parameters() if p.requires_grad)
    assert f.evidence == {"float16_parameters": n} and "Attempting to unscale FP16 gradients" in f.detail


def test_fp16_over_float32_weights_is_silent(tmp_path):
    values = trainer_values(tmp_path, bert(num_labels=3), dataset(_nli_rows()), fp16=True)
    assert findings("FTD108", "config", **values) == []


# --- resuming ---------------------------------------------------------------------------------------------------------


def test_resume_true_with_no_checkpoint_in_output_dir(tmp_path):
    cap = capture(tmp_path, train_kwargs={"resume_from_checkpoint": True})
    values = trainer_values(tmp_path, bert(), dataset(_nli_rows()), cap=cap)
    f = one("FTD109", **values)
    assert f.evidence == {"output_dir": str(tmp_path / "out")} and "which holds none" in f.detail
    assert "get_last_checkpoint(args.output_dir)" in f.fix


def test_resume_true_with_a_checkpoint_is_silent(tmp_path):
    (tmp_path / "out" / "checkpoint-500").mkdir(parents=True)
    cap = capture(tmp_path, train_kwargs={"resume_from_checkpoint": True})
    values = trainer_values(tmp_path, bert(), dataset(_nli_rows()), cap=cap)
    assert call("FTD109", **values) is None


def test_resume_from_a_folder_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "out" / "checkpoint-7")
    cap = capture(tmp_path, train_kwargs={"resume_from_checkpoint": missing})
    values = trainer_values(tmp_path, bert(), dataset(_nli_rows()), cap=cap)
    f = one("FTD109", **values)
    assert f.evidence == {"path": missing}


def test_training_from_scratch_is_silent(tmp_path):
    cap = capture(tmp_path, train_kwargs={"resume_from_checkpoint": None})
    values = trainer_values(tmp_path, bert(), dataset(_nli_rows()), cap=cap)
    assert call("FTD109", **values) is None


# FTD106 (best model with mismatched strategies) is a config rule that TrainingArguments itself enforces: the
# arguments cannot be built, so the setup check reports it from the exception (test_setup.py covers it).
