"""The metrics stage's rules, one check each on hand-built predictions and compute_metrics functions (the loop's
evaluation rule, FTD610, is in test_loop.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import accuracy_score
from transformers import EvalPrediction

from ._build_b import (
    bart,
    bert,
    call,
    capture,
    line_of,
    one_thread,  # noqa: F401  (the fixture below)
    pipeline,
    target,
    token_batch,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LOGITS = np.array([[2.0, 0.1, 0.3], [0.2, 1.5, 0.1], [0.1, 0.2, 3.0], [1.0, 0.5, 0.2]], dtype=np.float32)
LABELS = np.array([0, 1, 2, 1])
LABEL_NAMES = ["O", "B-PER", "I-PER"]


def _values(compute_metrics, predictions=LOGITS, labels=LABELS, model=None, **kw):
    model = model if model is not None else bert()
    p = pipeline(model, compute_metrics=compute_metrics, **kw)
    return {
        "compute_metrics": compute_metrics,
        "eval_prediction": EvalPrediction(predictions, labels),
        "pipeline": p,
        "target": target(p),
        "model": model,
    }


def accuracy(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": accuracy_score(labels, np.argmax(logits, axis=-1))}


def test_correct_metrics_are_passed_on():
    got = call("FTD601", **_values(accuracy))
    assert got.findings == [] and got.values == {"metric_values": {"accuracy": 0.75}}


def _predicted(model):
    """What the metrics stage hands compute_metrics for an eval batch: the check that provides it, on its own."""
    values = _values(accuracy, model=model, task="sequence-classification")
    del values["eval_prediction"]
    return call(None, named="eval_predictions", eval_batch=token_batch(), **values)


def test_compute_metrics_receives_the_logits_of_an_eval_batch():
    got = _predicted(bert())
    assert got.evidence == {"source": "eval batch", "predictions_shape": [4, 3], "labels_shape": [4]}
    np.testing.assert_array_equal(got.values["eval_prediction"].label_ids, token_batch()["labels"].numpy())


def test_compute_metrics_receives_the_logits_of_a_model_that_returns_a_tuple():
    got = _predicted(bert(return_dict=False))
    assert got.evidence["predictions_shape"] == [4, 3]


def accuracy_of_logits(eval_pred):
    predictions, labels = eval_pred
    return {"accuracy": accuracy_score(labels, predictions)}


def test_logits_without_argmax():
    f = call("FTD601", **_values(accuracy_of_logits)).one("FTD601")
    assert "`accuracy_of_logits` passes logits of shape [4, 3] to the metric" in f.detail
    assert "Classification metrics can't handle a mix of multiclass and continuous-multioutput targets" in f.detail
    assert "`predictions = np.argmax(logits, axis=-1)` inside `accuracy_of_logits`" in f.fix


def f1_missing(eval_pred):
    scores = {"accuracy": 1.0}
    return {"f1": scores["f1"]}  # the line that raises


def f1_binary(eval_pred):
    from sklearn.metrics import f1_score

    logits, labels = eval_pred
    return {"f1": f1_score(labels, np.argmax(logits, axis=-1))}


def test_binary_f1_on_three_classes_is_told_to_average():
    got = call("FTD602", **_values(f1_binary, capture=capture(__file__)))
    f = got.one("FTD607")
    assert "3 classes" in f.detail and 'f1_score(labels, np.argmax(logits, axis=-1), average="macro")' in f.fix
    assert f.location.endswith(f"test_metrics.py:{line_of(__file__, 'f1_score(labels, np.argmax')}")


def test_compute_metrics_error_points_at_its_line():
    got = call("FTD602", **_values(f1_missing, capture=capture(__file__)))
    f = got.one("FTD602")
    assert f.detail.startswith("`f1_missing` raised KeyError: 'f1' on predictions of shape [4, 3] — at ")
    # The relay shows the line that raised and the values it read, and points the fix there.
    assert (
        'in f1_missing(): `return {"f1": scores["f1"]}' in f.detail and "`scores` = dict[1] keys accuracy" in f.detail
    )
    assert "cause shown" not in f.fix and f"test_metrics.py:{line_of(__file__, '# the line that raises')}" in f.fix
    assert f.location.endswith(f"test_metrics.py:{line_of(__file__, '# the line that raises')}")


def argmax_of_predictions(eval_pred):
    return {"accuracy": accuracy_score(eval_pred.label_ids, np.argmax(eval_pred.predictions, axis=-1))}


def test_tuple_predictions():
    hidden = np.zeros((4, 7, 32), dtype=np.float32)
    model = bert(output_hidden_states=True)
    f = call("FTD604", **_values(argmax_of_predictions, predictions=(LOGITS, hidden), model=model)).one("FTD604")
    assert (
        "received a tuple of 2 arrays as predictions (the model's config sets `output_hidden_states=True`)" in f.detail
    )
    assert "isinstance(predictions, tuple)" in f.fix and "or drop `output_hidden_states=True`" in f.fix
    assert f.evidence == {"shapes": [[4, 3], [4, 7, 32]]}


def accuracy_as_a_number(eval_pred):
    logits, labels = eval_pred
    return accuracy_score(labels, np.argmax(logits, axis=-1))  # not a dict


def test_metrics_not_a_dict():
    f = call("FTD606", **_values(accuracy_as_a_number)).one("FTD606")
    assert f.detail.startswith("`accuracy_as_a_number` returned a float (0.75); the Trainer needs a dict")
    assert f.location.endswith(f"test_metrics.py:{line_of(__file__, '# not a dict')}")
    assert f.evidence == {"type": "float"}


def named_tags(eval_pred):
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    true = [LABEL_NAMES[label] for row in labels for label in row]
    predicted = [LABEL_NAMES[p] for row in predictions for p in row]
    return {"accuracy": float(np.mean([a == b for a, b in zip(true, predicted)]))}


def _token_level(rows=2, length=5, seed=0):
    g = np.random.default_rng(seed)
    logits = g.normal(size=(rows, length, 3)).astype(np.float32)
    labels = g.integers(0, 3, size=(rows, length))
    return logits, labels


def test_minus100_reaching_a_label_lookup():
    # The check that runs compute_metrics judges its error; it declares FTD621 (it did not: the walk then dropped the
    # finding as ftdoctor's internal error and the stage passed).
    logits, labels = _token_level()
    labels[:, 0] = -100
    values = _values(named_tags, logits, labels, model=bert("TokenClassification"), task="token-classification")
    f = call("FTD601", **values).one("FTD621")
    assert "the labels hold -100 at 2 positions" in f.detail and "l != -100" in f.fix


def test_minus100_once_the_batch_is_padded():
    logits, labels = _token_level()
    values = _values(named_tags, logits, labels, model=bert("TokenClassification"), task="token-classification")
    first = call("FTD601", **values)  # this batch has no -100: the metric runs
    got = call("FTD621", named="metrics_ignore_minus100", **values, **first.values)
    f = got.one("FTD621")
    assert (
        "works on this eval batch but raised IndexError: list index out of range once its labels hold -100" in f.detail
    )
    assert "`[label_names[p] for p, l in zip(prediction, label) if l != -100]`" in f.fix
    assert "reference show token-classification" in f.fix and f.evidence["minus100_positions"] == 8


def decoded_match_with(tokenizer):
    """A seq2seq metric that decodes predictions and labels as they come (-100 included)."""

    def decoded_match(eval_pred):
        predictions, labels = eval_pred
        preds = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        refs = tokenizer.batch_decode(labels, skip_special_tokens=True)
        return {"exact_match": float(np.mean([p == r for p, r in zip(preds, refs)]))}

    return decoded_match


def test_minus100_reaching_a_decode_in_a_seq2seq_metric():
    from transformers import PreTrainedTokenizerFast

    from ftdoctor.fixtures._tokenizers import _wordpiece_backend

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_wordpiece_backend(), pad_token="[PAD]")
    ids = np.array([[7, 8, 9, 10], [11, 12, 13, 14]])
    values = _values(decoded_match_with(tokenizer), ids, ids, model=bart(), task="summarization", tokenizer=tokenizer)
    first = call("FTD601", **values)
    f = call("FTD621", named="metrics_ignore_minus100", **values, **first.values).one("FTD621")
    assert f.detail.startswith("`decoded_match` works on this eval batch but raised OverflowError")
    assert "`labels = np.where(labels != -100, labels, tokenizer.pad_token_id)`" in f.fix
    assert "reference show summarization" in f.fix


def per_position_accuracy(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def masked_accuracy(eval_pred):
    logits, labels = eval_pred
    keep = labels != -100
    return {"accuracy": float((np.argmax(logits, axis=-1)[keep] == labels[keep]).mean())}


def test_metric_that_scores_padding_positions():
    logits, labels = _token_level()
    values = _values(
        per_position_accuracy, logits, labels, model=bert("TokenClassification"), task="token-classification"
    )
    first = call("FTD601", **values)
    f = call("FTD622", **values, **first.values).one("FTD622")
    before = first.values["metric_values"]["accuracy"]
    assert f"moves `accuracy` from {before:.4g} to {before * 10 / 18:.4g}" in f.detail
    assert "keep = labels != -100" in f.fix
    assert f.evidence == {"changed": {"accuracy": [before, pytest.approx(before * 10 / 18)]}}


def test_metric_that_drops_padding_positions_is_fine():
    logits, labels = _token_level()
    values = _values(masked_accuracy, logits, labels, model=bert("TokenClassification"), task="token-classification")
    first = call("FTD601", **values)
    assert first.findings == [] and call("FTD622", **values, **first.values).findings == []


def _best(name, metric_values, compute_metrics=accuracy):
    args = SimpleNamespace(metric_for_best_model=name)
    return call(
        "FTD603",
        args=args,
        pipeline=pipeline(bert(), args=args),
        metric_values=metric_values,
        compute_metrics=compute_metrics,
    )


def test_best_metric_that_is_not_returned():
    f = _best("f1", {"accuracy": 0.75, "precision": 0.5}).one("FTD603")
    assert (
        "compute_metrics returns ['accuracy', 'precision']: the first evaluation fails with KeyError: 'eval_f1'"
        in f.detail
    )
    assert f.evidence == {"returned": ["accuracy", "precision"]}


def test_best_metric_named_after_a_longer_key():
    f = _best("f1_score", {"accuracy": 0.75, "f1": 0.5}).one("FTD603")
    assert f.fix.startswith("Use `metric_for_best_model=\"f1\"` (one of ['accuracy', 'f1'])")


def test_best_metric_without_compute_metrics():
    f = _best("accuracy", None, compute_metrics=None).one("FTD603")
    assert "the trainer has no compute_metrics" in f.detail and 'metric_for_best_model="loss"' in f.fix


def test_best_metric_that_is_returned_with_or_without_the_prefix():
    assert _best("eval_accuracy", {"accuracy": 0.75}).findings == []
    assert _best("accuracy", {"eval_accuracy": 0.75}).findings == []


def test_best_metric_on_the_loss_is_not_judged():
    from ftdoctor.core.registry import Skip

    with pytest.raises(Skip):
        _best("eval_loss", {"accuracy": 0.75})


def test_a_model_without_a_head_has_no_predictions_to_score():
    import transformers

    base = transformers.BertModel(transformers.BertConfig(**{**bert().config.to_dict(), "architectures": None}))
    hidden = np.zeros((4, 10, 32), dtype=np.float32)
    got = call("FTD602", **_values(accuracy, predictions=hidden, labels=None, model=base))
    assert got.findings == [] and got.skip_reason == "the model has no task head, so it makes no predictions to score"


# --- what an encoder-decoder's metric is given ----------------------------------------------------------------------


def _seq2seq(tmp_path, label_lengths, trainer_cls="Trainer", **arguments):
    """A tiny BART under a Trainer (or Seq2SeqTrainer) whose eval set has labels of ``label_lengths`` tokens."""
    import transformers
    from datasets import Dataset

    model = bart()
    eval_ds = Dataset.from_dict(
        {"input_ids": [[5, 6, 7]] * len(label_lengths), "labels": [[8] * n for n in label_lengths]}
    )
    args_cls = (
        transformers.Seq2SeqTrainingArguments if trainer_cls == "Seq2SeqTrainer" else transformers.TrainingArguments
    )
    args = args_cls(str(tmp_path / "out"), report_to=[], use_cpu=True, **arguments)
    trainer = getattr(transformers, trainer_cls)(model=model, args=args, eval_dataset=eval_ds)
    return {
        "compute_metrics": accuracy,
        "metric_values": {"rouge1": 0.5},
        "trainer": trainer,
        "model": model,
        "args": args,
        "pipeline": pipeline(model, args=args, trainer=trainer, compute_metrics=accuracy),
        "eval_dataset": eval_ds,
    }


def test_teacher_forced_predictions_of_an_encoder_decoder(tmp_path):
    f = call("FTD632", **_seq2seq(tmp_path, [6, 8])).one("FTD632")
    assert "`Trainer` evaluates this encoder-decoder model by a forward pass" in f.detail
    assert "predict_with_generate=True" in f.fix


def test_generation_capped_below_the_references(tmp_path):
    values = _seq2seq(tmp_path, [30, 12, 40, 18], "Seq2SeqTrainer", predict_with_generate=True)
    values["model"].generation_config.max_length = 20
    f = call("FTD633", **values).one("FTD633")
    assert f.evidence == {"cap": 20, "longer": 2, "references": 4, "longest": 40}
    assert "generation_max_length=40" in f.fix


def test_generation_long_enough_for_the_references_is_silent(tmp_path):
    values = _seq2seq(
        tmp_path, [30, 12, 40, 18], "Seq2SeqTrainer", predict_with_generate=True, generation_max_length=40
    )
    values["model"].generation_config.max_length = 20
    assert call("FTD633", **values).findings == []


def _script(tmp_path, text):
    path = tmp_path / "train.py"
    path.write_text(text)
    return str(path)


_EVALUATES_ITSELF = """trainer.train()
metrics = trainer.evaluate(max_length=max_length, num_beams=num_beams, metric_key_prefix="eval")
"""


def test_the_scripts_own_evaluate_sets_the_length_so_the_cap_never_applies(tmp_path):
    # run_translation.py: no evaluation during training; after train() it calls evaluate(max_length=...)
    values = _seq2seq(tmp_path, [30, 12, 40, 18], "Seq2SeqTrainer", predict_with_generate=True)
    values["model"].generation_config.max_length = 20
    values["pipeline"].capture = capture(_script(tmp_path, _EVALUATES_ITSELF))
    assert call("FTD633", **values).findings == []


def test_evaluation_during_training_uses_the_cap_whatever_evaluate_is_given_later(tmp_path):
    values = _seq2seq(tmp_path, [30, 12, 40, 18], "Seq2SeqTrainer", predict_with_generate=True, eval_strategy="steps")
    values["model"].generation_config.max_length = 20
    values["pipeline"].capture = capture(_script(tmp_path, _EVALUATES_ITSELF))
    assert call("FTD633", **values).one("FTD633").evidence["cap"] == 20


def test_an_evaluate_call_without_a_length_keeps_the_cap(tmp_path):
    values = _seq2seq(tmp_path, [30, 12, 40, 18], "Seq2SeqTrainer", predict_with_generate=True)
    values["model"].generation_config.max_length = 20
    values["pipeline"].capture = capture(_script(tmp_path, "trainer.train()\ntrainer.evaluate()\n"))
    assert call("FTD633", **values).one("FTD633").evidence["cap"] == 20


def _bleu(streams):
    def compute_metrics(eval_pred):
        import sacrebleu

        hyps = ["the cat sat", "a dog ran", "the bird flew"]
        refs = ["the cat sat", "a dog walked", "the bird flew"]
        return {"bleu": sacrebleu.corpus_bleu(hyps, streams(refs)).score}

    return compute_metrics


def test_sacrebleu_given_one_reference_list_per_sentence():
    pytest.importorskip("sacrebleu")
    per_sentence = _bleu(lambda refs: [[r] for r in refs])
    f = call("FTD634", **_values(per_sentence), metric_values={"bleu": 100.0}).one("FTD634")
    assert f.evidence == {"hypotheses": 3, "streams": 3, "stream_lengths": [1, 1, 1]}
    assert "`sacrebleu.corpus_bleu(hyps, [refs])`" in f.fix


def test_sacrebleu_given_reference_streams_is_silent():
    pytest.importorskip("sacrebleu")
    streams = _bleu(lambda refs: [refs])
    assert call("FTD634", **_values(streams), metric_values={"bleu": 80.0}).findings == []


class _Decoder:
    pad_token_id = 0

    def batch_decode(self, ids, skip_special_tokens=True):
        if (np.asarray(ids) < 0).any():  # as a fast tokenizer does
            raise OverflowError("number too small to fit in target type")
        return [" ".join(str(t) for t in row if t) for row in ids]


def test_minus100_in_generated_predictions_is_named_there():
    # The translation recipe: labels cleaned, generated ids not; the Trainer padded a shorter batch with -100.
    tok = _Decoder()

    def bleu(eval_pred):
        preds, labels = eval_pred
        decoded = tok.batch_decode(preds)
        refs = tok.batch_decode(np.where(labels != -100, labels, tok.pad_token_id))
        return {"exact": float(np.mean([a == b for a, b in zip(decoded, refs)]))}

    preds = np.array([[0, 5, 6, 1], [0, 7, 1, -100]])
    labels = np.array([[5, 6, 1, -100], [7, 1, -100, -100]])
    values = _values(bleu, preds, labels, task="translation")
    values["pipeline"].tokenizer = tok
    f = call("FTD601", **values).one("FTD621")
    assert "the predictions hold -100 at 1 positions (the Trainer pads generated ids" in f.detail
    assert "and the same for generated predictions" in f.fix
