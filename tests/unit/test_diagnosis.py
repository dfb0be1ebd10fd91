"""Differential diagnosis of the user's exceptions: the evidence read from the frames, the registry that picks the
best-supported cause, the last-resort relay, and each diagnoser on the evidence of its cause and on a near miss."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from ftdoctor.core.diagnosis import (
    _DIAGNOSERS,
    Cause,
    Evidence,
    describe,
    diagnose,
    diagnoser,
    propose,
    read_evidence,
    relay,
    summarize,
)
from ftdoctor.core.findings import finding
from ftdoctor.core.registry import load_checks

load_checks()

from ftdoctor.checks._failures import reported_earlier  # noqa: E402
from ftdoctor.checks.decode.rows import ids_beyond_an_embedding  # noqa: E402
from ftdoctor.checks.decode.task_contracts import qa_positions_none  # noqa: E402
from ftdoctor.checks.forward import bce_target_shape, logits_labels_shape, no_loss_without_labels  # noqa: E402
from ftdoctor.checks.metrics import (  # noqa: E402
    _eval_loss_without_labels,
    binary_average_on_multiclass,
    references_not_nested,
)
from ftdoctor.checks.setup.raised import map_columns_of_different_lengths, trainer_arguments_class  # noqa: E402


def raised(tmp_path, source: str, namespace: dict | None = None, name: str = "train.py") -> BaseException:
    """The exception that ``source``, run as the user's script ``train.py`` in ``tmp_path``, raises."""
    path = tmp_path / name
    path.write_text(source)
    ns = {"__name__": "__main__", **(namespace or {})}
    try:
        exec(compile(source, str(path), "exec"), ns)
    except Exception as exc:
        return exc
    raise AssertionError("the script did not raise")


def evidence(tmp_path, source: str, namespace: dict | None = None, stage: str = "setup") -> Evidence:
    return read_evidence(raised(tmp_path, source, namespace), stage, str(tmp_path))


# -- the evidence -------------------------------------------------------------------------------------------------


def test_evidence_reads_the_users_frame_its_line_and_values_and_the_library_frame(tmp_path):
    ev = evidence(
        tmp_path,
        "import json\n"
        "def parse(rows, opts):\n"
        "    width = len(rows)\n"
        "    return json.loads(rows[0], **opts)\n"
        "parse(['{bad', 'x'], {'strict': True})\n",
    )
    assert (ev.exc_type, ev.user.function, ev.user.line) == ("JSONDecodeError", "parse", 4)
    assert ev.user.source == "return json.loads(rows[0], **opts)" and ev.user.site.endswith("train.py:4")
    assert ev.library is not None and ev.library.module_path.endswith("json/decoder.py")
    assert ev.values["rows"] == {"type": "list", "len": 2, "items": ["str"], "item_lengths": [1, 4]}
    assert ev.values["opts"]["keys"] == ["strict"] and ev.values["width"]["value"] == "2"
    assert list(ev.values)[:2] == ["rows", "opts"]  # the names the failing line reads come first
    assert ev.is_a("ValueError")  # JSONDecodeError's base


def test_summaries_are_bounded_and_never_raise():
    class Hostile:
        @property
        def shape(self):
            raise RuntimeError("no")

        def __len__(self):
            raise RuntimeError("no")

    assert summarize(Hostile()) == {"type": "Hostile"}
    big = summarize(list(range(100_000)) + [None])
    assert big["len"] == 100_001 and "none" not in big  # only the first elements are scanned
    keys = summarize({f"k{i}": i for i in range(50)})
    assert keys["len"] == 50 and len(keys["keys"]) == 12 and describe(keys).endswith("…")
    arr = summarize(np.zeros((4, 3), dtype=np.float32))
    assert describe(arr) == "ndarray[4, 3] float32"
    assert summarize("\x1b[31mred")["value"] == "'\\x1b[31mred'"  # quoted text is made inert


def test_evidence_without_a_users_frame_names_the_library_frame_only(tmp_path):
    import json

    try:
        json.loads("{bad")
    except ValueError as exc:
        ev = read_evidence(exc, "forward", str(tmp_path / "elsewhere"))
    assert ev.user is None and ev.values == {} and ev.library.function == "JSONDecoder.raw_decode"


# -- the registry -------------------------------------------------------------------------------------------------


@pytest.fixture
def scratch_diagnosers():
    before = dict(_DIAGNOSERS)
    yield
    _DIAGNOSERS.clear()
    _DIAGNOSERS.update(before)


def test_the_best_supported_cause_wins_and_a_crashing_diagnoser_is_silent(tmp_path, scratch_diagnosers, monkeypatch):
    monkeypatch.delenv("FTDOCTOR_STRICT_CONTRACTS", raising=False)

    @diagnoser(codes=("FTD005",), stages="setup", name="t.weak")
    def weak(evidence):
        return Cause(finding("FTD005", "weak"), 1)

    @diagnoser(codes=("FTD005",), stages="setup", name="t.strong")
    def strong(evidence, capture):
        return Cause(finding("FTD005", f"strong {capture}"), 3)

    @diagnoser(codes=("FTD005",), stages="setup", name="t.broken")
    def broken(evidence):
        raise RuntimeError("a diagnoser's bug")

    @diagnoser(codes=("FTD005",), stages="forward", name="t.elsewhere")
    def elsewhere(evidence):
        return Cause(finding("FTD005", "elsewhere"), 9)

    exc = raised(tmp_path, "raise RuntimeError('x')\n")
    _, best = diagnose(exc, "setup", {"capture": "cap"}, user_dir=str(tmp_path))
    assert best.finding.detail == "strong cap" and best.diagnoser == "t.strong"
    assert best.finding.evidence["diagnosed_by"] == "t.strong" and best.finding.location.endswith("train.py:1")
    _, best = diagnose(exc, "setup", {}, user_dir=str(tmp_path))  # without the fact it needs, strong is silent
    assert best.finding.detail == "weak"


def test_a_diagnoser_reporting_a_code_it_did_not_declare_is_refused(tmp_path, scratch_diagnosers, monkeypatch):
    monkeypatch.setenv("FTDOCTOR_STRICT_CONTRACTS", "1")

    @diagnoser(codes=("FTD005",), stages="setup", name="t.liar")
    def liar(evidence):
        return Cause(finding("FTD900", "not mine"), 1)

    with pytest.raises(RuntimeError, match="reported FTD900"):
        propose(raised(tmp_path, "raise KeyError('k')\n"), "setup", {}, user_dir=str(tmp_path))


def test_the_walk_turns_a_diagnosed_exception_into_the_diagnosers_finding(tmp_path):
    """FTD900's place: a check that lets the user's exception through is diagnosed by the registry."""
    from ftdoctor.core.registry import Check, run_user
    from ftdoctor.core.report import StageResult
    from ftdoctor.engine.walk import Context, run_stage

    def reads(rows):
        import torch

        return {k: torch.tensor(v[0]) for k, v in rows.items()}

    def runs(rows):
        run_user("reading the rows", reads, rows)

    ctx = Context({"rows": {"end_positions": [None, 3, None]}, "findings_so_far": []})
    result = StageResult("decode")
    run_stage("decode", ctx, result, [], checks=[Check("t.runs", "decode", runs)])
    [f] = result.findings
    assert f.code == "FTD225" and "2 of 3 `end_positions` are None" in f.detail


# -- the last resort ----------------------------------------------------------------------------------------------


def test_the_relay_shows_the_users_line_and_the_values_and_points_the_fix_there(tmp_path):
    ev = evidence(
        tmp_path,
        "def scale(batch, factor):\n"
        "    widths = [len(r) for r in batch]\n"
        "    return sum(widths) / factor\n"
        "scale([[1, 2], [3]], 0)\n",
        stage="metrics",
    )
    f = relay("FTD602", ev, "`scale` raised ZeroDivisionError: division by zero")
    assert f.location.endswith("train.py:3")
    assert "train.py:3 in scale(): `return sum(widths) / factor`" in f.detail
    assert "`widths` = list[2] of int" in f.detail and "`factor` = 0" in f.detail
    assert "train.py:3" in f.fix and "cause shown" not in f.fix
    assert f.evidence["values"]["batch"] == "list[2] of list" and f.evidence["user_frame"]["function"] == "scale"


def test_the_relay_without_a_users_line_shows_the_inputs_and_keeps_a_stated_remedy(tmp_path):
    import json

    try:
        json.loads("{bad")
    except ValueError as exc:
        ev = read_evidence(exc, "forward", str(tmp_path))
    f = relay("FTD405", ev, inputs={"input_ids": np.zeros((2, 5), dtype=np.int64)}, location="train.py:9")
    assert "on `input_ids` = ndarray[2, 5] int64" in f.detail and f.location == "train.py:9"
    # The raising library function's own arguments are the values involved when no line of the user's ran.
    assert "(JSONDecoder.raw_decode, given `s` = str '{bad', `idx` = 0)" in f.detail
    assert "cause shown" not in f.fix and "`JSONDecoder.raw_decode()` rejected" in f.fix
    ev = dataclasses.replace(ev, message="3 channels. Please pass images with 4 channels.")
    assert relay("FTD405", ev).fix.startswith("Please pass images with 4 channels. (from the error message)")


# -- each diagnoser: the evidence of its cause, and a near miss ---------------------------------------------------


def test_reported_earlier_makes_a_crash_that_an_earlier_finding_names_predicted(tmp_path):
    ev = evidence(tmp_path, "raise IndexError('index out of range in self')\n", stage="forward")
    cause = reported_earlier(ev, [finding("FTD103", "ids past the vocabulary")], "forward")
    assert cause.finding is None and cause.predicted_by == ["FTD103"] and "predicted by FTD103" in cause.reason


def test_reported_earlier_near_miss_without_the_earlier_finding(tmp_path):
    ev = evidence(tmp_path, "raise IndexError('index out of range in self')\n", stage="forward")
    assert reported_earlier(ev, [finding("FTD105", "no pad token")], "forward") is None


def _forward_facts():
    class BertForSequenceClassification:
        pass

    pipeline = SimpleNamespace(location=lambda *objs: "train.py:7", trainer=None)
    return pipeline, BertForSequenceClassification()


def test_logits_labels_shape_names_per_token_labels_on_a_sequence_classifier(tmp_path):
    import torch

    pipeline, model = _forward_facts()
    ev = evidence(tmp_path, "raise ValueError('Expected input batch_size (4) to match target batch_size (40).')\n")
    cause = logits_labels_shape(ev, pipeline, model, {"labels": torch.zeros(4, 10)})
    assert cause.finding.code == "FTD402" and "AutoModelForTokenClassification" in cause.finding.fix


def test_logits_labels_shape_near_miss_another_size_error(tmp_path):
    import torch

    pipeline, model = _forward_facts()
    ev = evidence(tmp_path, "raise ValueError('Expected input of 4 dimensions, got 3')\n")
    assert logits_labels_shape(ev, pipeline, model, {"labels": torch.zeros(4, 10)}) is None


def test_bce_target_shape_class_ids_for_a_two_column_head(tmp_path):
    pipeline, model = _forward_facts()
    ev = evidence(
        tmp_path,
        "import torch\n"
        "logits, labels = torch.zeros(8, 2), torch.zeros(8)\n"
        "loss = torch.nn.BCEWithLogitsLoss()(logits, labels)\n",
    )
    cause = bce_target_shape(ev, pipeline, model)
    assert cause.finding.code == "FTD402" and cause.finding.evidence == {"labels_shape": [8], "logits_shape": [8, 2]}
    assert "`CrossEntropyLoss`" in cause.finding.fix and "multi-hot float labels of shape [8, 2]" in cause.finding.fix
    assert cause.finding.location.endswith("train.py:3")


def test_bce_target_shape_near_miss_cross_entropy_sizes(tmp_path):
    pipeline, model = _forward_facts()
    ev = evidence(
        tmp_path,
        "import torch\nloss = torch.nn.CrossEntropyLoss()(torch.zeros(8, 2), torch.zeros(4, dtype=torch.long))\n",
    )
    assert bce_target_shape(ev, pipeline, model) is None


def test_no_loss_without_labels(tmp_path):
    pipeline, _ = _forward_facts()
    ev = evidence(tmp_path, "raise ValueError('The model did not return a loss from the inputs, only logits.')\n")
    assert no_loss_without_labels(ev, pipeline).finding.code == "FTD401"


def test_no_loss_near_miss_a_loss_of_the_wrong_shape(tmp_path):
    pipeline, _ = _forward_facts()
    ev = evidence(tmp_path, "raise RuntimeError('grad can be implicitly created only for scalar outputs')\n")
    assert no_loss_without_labels(ev, pipeline) is None


QA_DATASET = """
import torch
class Squad(torch.utils.data.Dataset):
    def __init__(self, encodings):
        self.encodings = encodings
    def __getitem__(self, idx):
        out = {}
        for key, val in self.encodings.items():
            out[key] = torch.tensor(val[idx])
        return out
"""


def test_qa_positions_none_names_answers_truncation_cut(tmp_path):
    ev = evidence(
        tmp_path,
        QA_DATASET + "Squad({'input_ids': [[1, 2]] * 4, 'end_positions': [5, None, 7, 3]})[1]\n",
        stage="decode",
    )
    cause = qa_positions_none(ev, SimpleNamespace(label_names=["start_positions", "end_positions"]))
    f = cause.finding
    # one None is enough to stop training at its batch: the error rule, however few there are
    assert f.code == "FTD225" and f.detail.startswith("1 of 4 `end_positions` are None (the first at row 1)")
    assert "model_max_length" in f.fix and "return_overflowing_tokens=True" in f.fix
    assert f.evidence == {"column": "end_positions", "none": 1, "rows": 4}


def test_qa_positions_none_many_answers_cut_is_the_error_rule_too(tmp_path):
    ev = evidence(tmp_path, QA_DATASET + "Squad({'start_positions': [None, None, 7, None]})[0]\n", stage="decode")
    assert qa_positions_none(ev).finding.code == "FTD225"


def test_qa_positions_none_near_miss_a_none_in_another_column(tmp_path):
    ev = evidence(tmp_path, QA_DATASET + "Squad({'labels': [1, None, 0, 1]})[1]\n", stage="decode")
    assert "NoneType" in ev.message and ev.values["val"]["none"] == 1
    assert qa_positions_none(ev, SimpleNamespace(label_names=["labels"])) is None


F1_SCRIPT = """
import numpy as np
from sklearn.metrics import f1_score
def compute_metrics(eval_pred):
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    return {"f1": f1_score(labels, predictions)}
"""


def test_binary_average_on_multiclass_adds_the_average_at_the_users_line(tmp_path):
    logits = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 2]]
    ev = evidence(
        tmp_path, F1_SCRIPT + "compute_metrics((logits, labels))\n", {"logits": logits, "labels": np.arange(6) % 5}
    )
    model = SimpleNamespace(config=SimpleNamespace(num_labels=5))
    cause = binary_average_on_multiclass(ev, model)
    assert cause.support == 3 and cause.finding.code == "FTD607" and "5 classes" in cause.finding.detail
    assert '`return {"f1": f1_score(labels, predictions, average="macro")}`' in cause.finding.fix
    assert cause.finding.evidence == {"classes": 5}


def test_binary_average_near_miss_logits_given_to_the_metric(tmp_path):
    logits = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 2]]
    script = F1_SCRIPT.replace("f1_score(labels, predictions)", "f1_score(labels, logits)")
    ev = evidence(
        tmp_path, script + "compute_metrics((logits, labels))\n", {"logits": logits, "labels": np.arange(6) % 5}
    )
    assert "multiclass" in ev.message
    assert binary_average_on_multiclass(ev, SimpleNamespace(config=SimpleNamespace(num_labels=5))) is None


class _BleuLike:
    """A metric with the input format of (sacre)BLEU: a list of references for each prediction."""

    name = "sacrebleu"

    def __init__(self):
        import datasets

        self.features = {"predictions": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}

    def compute(self, predictions, references):
        for r in references:
            if isinstance(r, str):
                raise ValueError(f"Got a string but expected a list instead: {r!r}")
        return {"score": 1.0}


BLEU_SCRIPT = """
def compute_metrics(preds, labels):
    decoded_preds = [p.strip() for p in preds]
    decoded_labels = [x.strip() for x in labels]
    return metric.compute(predictions=decoded_preds, references=decoded_labels)
compute_metrics(['le chat'], ['le chat'])
"""


def test_references_not_nested_wraps_each_reference_in_a_list(tmp_path):
    ev = evidence(tmp_path, BLEU_SCRIPT, {"metric": _BleuLike()})
    f = references_not_nested(ev).finding
    assert f.code == "FTD608" and "`references=decoded_labels` is one string per prediction" in f.detail
    assert "`references=[[r] for r in decoded_labels]`" in f.fix and f.location is None


def test_references_not_nested_near_miss_a_metric_that_takes_one_reference(tmp_path):
    import datasets

    flat = _BleuLike()
    flat.features = {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
    assert references_not_nested(evidence(tmp_path, BLEU_SCRIPT, {"metric": flat})) is None


ARGS_LIBRARY = """
class TrainingArguments:
    def __init__(self, output_dir):
        self.output_dir = output_dir
class GenerationTrainingArguments(TrainingArguments):
    generation_config = None
class Trainer:
    def __init__(self, model=None, args=None):
        self.args = args
class GenerationTrainer(Trainer):
    def __init__(self, model=None, args=None):
        super().__init__(model, args)
        if self.args.{attr} is not None:
            pass
"""


def _trainer_evidence(tmp_path, attr):
    """A trainer of a library (a file under site-packages) built by the user's script with the base class."""
    lib = tmp_path / "site-packages" / "genlib.py"
    lib.parent.mkdir()
    source = ARGS_LIBRARY.replace("{attr}", attr)
    lib.write_text(source)
    names = {"__name__": "genlib"}
    exec(compile(source, str(lib), "exec"), names)
    script = "training_args = TrainingArguments('out')\ntrainer = GenerationTrainer(model=None, args=training_args)\n"
    return evidence(tmp_path, script, {k: names[k] for k in ("TrainingArguments", "GenerationTrainer")})


def test_trainer_arguments_class_names_the_subclass_the_trainer_reads(tmp_path):
    ev = _trainer_evidence(tmp_path, "generation_config")
    f = trainer_arguments_class(ev).finding
    assert f.code == "FTD020" and f.evidence["expected_class"] == "GenerationTrainingArguments"
    assert "`GenerationTrainer` reads `args.generation_config`" in f.detail
    assert "`GenerationTrainingArguments(...)` (`from genlib import GenerationTrainingArguments`)" in f.fix
    assert "`args=training_args`" in f.fix and f.location.endswith("train.py:1")  # where the arguments are built


def test_trainer_arguments_class_near_miss_a_field_no_subclass_has(tmp_path):
    ev = _trainer_evidence(tmp_path, "learning_rat")
    assert ev.is_a("AttributeError") and trainer_arguments_class(ev) is None


def test_map_columns_new_column_per_example_beside_windows(tmp_path):
    from datasets import Dataset

    ev = evidence(
        tmp_path,
        "def windows(batch):\n"
        "    out = {'input_ids': [[1]] * (2 * len(batch['q']))}\n"
        "    out['extra'] = [0] * len(batch['q'])\n"
        "    return out\n"
        "ds.map(windows, batched=True, remove_columns=['q'])\n",
        {"ds": Dataset.from_dict({"q": ["a", "b", "c"]})},
    )
    f = map_columns_of_different_lengths(ev).finding
    assert f.code == "FTD021" and f.location.endswith("train.py:3")
    assert "`windows` returns 6 rows in its first column but 3 values in `extra`" in f.detail


def test_map_columns_input_column_kept(tmp_path):
    from datasets import Dataset

    ev = evidence(
        tmp_path,
        "def windows(batch):\n    return {'input_ids': [[1]] * (2 * len(batch['q']))}\nds.map(windows, batched=True)\n",
        {"ds": Dataset.from_dict({"q": ["a", "b", "c"]})},
    )
    f = map_columns_of_different_lengths(ev).finding
    assert "the input column `q` it keeps" in f.detail and "remove_columns=" in f.fix
    assert f.location.endswith("train.py:3")


def test_map_columns_near_miss_the_same_message_outside_a_map(tmp_path):
    ev = evidence(tmp_path, "raise ValueError('Column 1 named y expected length 6 but got length 3')\n")
    assert map_columns_of_different_lengths(ev) is None


# -- FTD603 for the loss: a contract, not a diagnoser (evaluation would raise KeyError: 'eval_loss') ---------------


def _qa_target():
    return SimpleNamespace(label_names=["start_positions", "end_positions"])


def test_best_model_on_the_loss_without_labels_in_the_evaluation_batches():
    pipeline = SimpleNamespace(location=lambda *objs: "train.py:60", eval_dataset=None)
    batch = {"input_ids": np.zeros((2, 4)), "attention_mask": np.ones((2, 4))}
    f = _eval_loss_without_labels("loss", None, pipeline, batch, _qa_target())
    assert f.code == "FTD603" and f.evidence["missing"] == ["start_positions", "end_positions"]
    assert "KeyError: 'eval_loss'" in f.detail and f.location == "train.py:60"


def test_best_model_on_the_loss_near_miss_evaluation_batches_with_labels():
    pipeline = SimpleNamespace(location=lambda *objs: "train.py:60", eval_dataset=None)
    batch = {"input_ids": np.zeros((2, 4)), "start_positions": np.zeros(2), "end_positions": np.zeros(2)}
    assert _eval_loss_without_labels("eval_loss", None, pipeline, batch, _qa_target()) is None


def test_the_walk_accepts_a_code_from_the_diagnoser_that_named_the_cause_and_no_other():
    from ftdoctor.core.registry import Check
    from ftdoctor.engine.walk import _as_findings

    chk = Check("t.metrics", "metrics", lambda: None, codes=("FTD602",))
    by = f"{binary_average_on_multiclass.__module__}.binary_average_on_multiclass"
    named = finding("FTD607", "binary average", evidence={"diagnosed_by": by})
    assert _as_findings([named], chk)[1] == []
    stray = finding("FTD608", "references", evidence={"diagnosed_by": by})
    assert "it reported FTD608, which it does not declare" in _as_findings([stray], chk)[1][0]


EMBEDDING_SCRIPT = """
import torch
class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(10, 4)
        self.position_embeddings = torch.nn.Embedding(6, 4)
    def forward(self, ids):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return self.word_embeddings(ids) + self.position_embeddings(positions)
class Wrapper(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
    def forward(self, ids):
        return self.encoder(ids)
model = Wrapper()
model(ids)
"""


def _embedding_facts(tmp_path, ids, tokenizer_size=12):
    import torch

    ns = {"ids": torch.tensor(ids)}
    ev = evidence(tmp_path, EMBEDDING_SCRIPT, ns, stage="forward")
    model = ev.frame_local("self", lambda v: type(v).__name__ == "Wrapper")
    model.encoder.resize_token_embeddings = lambda n: None  # the part that can resize, as a transformers model can
    pipeline = SimpleNamespace(tokenizer=[0] * tokenizer_size, name_of=lambda obj: "net")
    return ev, model, pipeline


def test_ids_beyond_the_token_embeddings_are_told_to_resize_them(tmp_path):
    ev, model, pipeline = _embedding_facts(tmp_path, [[1, 11, 10, 2]])
    f = ids_beyond_an_embedding(ev, model, pipeline).finding
    assert f.code == "FTD207" and "2 ids of the batch are 10 or more (the largest 11)" in f.detail
    assert "`encoder.word_embeddings`" in f.detail and "the tokenizer has 12 tokens" in f.detail
    assert "`net.encoder.resize_token_embeddings(len(tokenizer))`" in f.fix


def test_rows_longer_than_the_position_embeddings(tmp_path):
    ev, model, pipeline = _embedding_facts(tmp_path, [[1, 2, 3, 4, 5, 6, 7, 8]])
    f = ids_beyond_an_embedding(ev, model, pipeline).finding
    assert f.code == "FTD206" and "`encoder.position_embeddings` has 6 positions" in f.detail
    assert "max_length=6" in f.fix


def test_ids_beyond_an_embedding_near_miss_an_index_error_of_the_users_own(tmp_path):
    ev = evidence(tmp_path, "import torch\nrows = torch.zeros(3)\nraise IndexError('index out of range in self')\n")
    assert ids_beyond_an_embedding(ev, None, None) is None


EXPAND_SCRIPT = """
import torch
def embed(input_ids, position_ids):
    return position_ids.expand(input_ids.shape)
embed(torch.zeros(2, 8, dtype=torch.long), torch.arange(6).unsqueeze(0))
"""


def test_rows_longer_than_the_position_ids_buffer(tmp_path):
    ev = evidence(tmp_path, EXPAND_SCRIPT, stage="forward")
    f = ids_beyond_an_embedding(ev, None, None).finding
    assert f.code == "FTD206" and "rows have 8 tokens, and the model has 6 positions" in f.detail
    assert "max_length=6" in f.fix


def test_rows_longer_near_miss_an_expand_without_position_ids(tmp_path):
    script = EXPAND_SCRIPT.replace("position_ids", "weights")
    ev = evidence(tmp_path, script, stage="forward")
    assert "expanded size" in ev.message and ids_beyond_an_embedding(ev, None, None) is None


def test_a_cause_an_earlier_stage_reported_makes_the_crash_predicted(tmp_path):
    exc = raised(tmp_path, EXPAND_SCRIPT)
    _, first = diagnose(exc, "forward", {}, [], user_dir=str(tmp_path))
    assert first.finding.code == "FTD206"
    _, again = diagnose(exc, "backward", {}, [first.finding], user_dir=str(tmp_path))
    assert again.finding is None and again.predicted_by == ["FTD206"] and "predicted by FTD206" in again.reason
