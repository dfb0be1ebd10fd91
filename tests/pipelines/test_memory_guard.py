"""A machine short of memory: the stages that need copies of the model are not run and say so (FTD806), and the
stages before them keep their findings: a report, never a process killed for memory."""

from __future__ import annotations

import pytest
from helpers import findings_at

from ftdoctor.runtime import devices

pytestmark = pytest.mark.slow


def test_stages_short_of_memory_say_so_and_the_rest_stands(check_pipeline, monkeypatch):

    report_before = check_pipeline("course_mnli_broken.py", stages=["config", "decode", "collate"])
    # Nothing left: every stage that copies the model stops at once.
    monkeypatch.setattr(devices, "free_memory", lambda device=None: 1024)
    report = check_pipeline(
        "course_mnli_broken.py", stages=["config", "decode", "collate", "forward", "backward", "overfit", "memory"]
    )
    assert report.stage("forward").status == "skip" and report.stage("overfit").status == "skip"
    fixed = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate", "forward", "overfit", "memory"])
    (short,) = findings_at(fixed, "forward", "FTD806")
    assert short.severity == "warning" and "GiB" in short.detail
    assert fixed.stage("forward").status == "warn" and fixed.stage("overfit").status == "skip"
    assert fixed.stage("memory").status == "skip" and fixed.ok  # it needs the forward pass
    # The data stages' findings are the same as with memory to spare.
    codes = lambda r: sorted(  # noqa: E731
        (s.stage, f.code) for s in r.stages for f in s.findings if s.stage in ("config", "decode", "collate")
    )
    assert codes(report) == codes(report_before)


def test_backward_alone_short_of_memory(check_pipeline, monkeypatch):
    from ftdoctor.runtime import devices as budget

    model_bytes = {}

    def machine(device=None):
        # Room for the working copy (1x the trainable weights) but not for it and its gradients (2x).
        return int(model_bytes.get("n", 1 << 40) * 2)

    monkeypatch.setattr(devices, "free_memory", machine)
    first = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate", "forward"])
    model_bytes["n"] = budget.trainable_bytes(first.context["model"])
    report = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate", "forward", "backward"])
    assert report.stage("forward").status == "pass"
    assert findings_at(report, "backward", "FTD806")
    assert report.ok


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_model_too_large_to_copy_is_walked_in_place_with_the_same_verdicts(check_pipeline, monkeypatch):
    """In ftdoctor's own (disposable) process, a model whose copy would not fit is trained in place, restored
    from its copy-on-step snapshot between uses: the verdicts are those of the walk on copies, and the weights end
    as the script left them."""
    import torch

    from ftdoctor.runtime import devices as budget

    stages = ["decode", "collate", "forward", "backward", "overfit", "memory"]
    on_copies = check_pipeline("bert_mrpc_learning_rate_too_high.py", stages=stages)
    weights = budget.trainable_bytes(on_copies.context["model"])
    # Room for one step of the model itself (3x its weights), not for a trial on a copy beside it (5x).
    monkeypatch.setattr(devices, "free_memory", lambda device=None: 4 * weights)
    in_place = check_pipeline("bert_mrpc_learning_rate_too_high.py", stages=stages, options={"disposable": True})
    target = in_place.context["target"]
    assert target.copies() == 0 and target._snapshot is None  # worked in place; the snapshot is gone
    assert in_place.budget["in_place"] and not on_copies.budget["in_place"]  # and the report says so
    codes = lambda r: sorted((s.stage, f.code) for s in r.stages for f in s.findings)  # noqa: E731
    assert codes(in_place) == codes(on_copies)
    assert ("overfit", "FTD702") in codes(in_place)
    model = in_place.context["model"]
    fresh = check_pipeline("bert_mrpc_learning_rate_too_high.py", stages=["decode"])
    expected = _weights(fresh.context["model"])
    got = _weights(model)
    assert all(torch.equal(got[k], expected[k]) for k in expected), "the walk left the model trained"


def test_in_place_stages_see_the_model_as_the_script_left_it(check_pipeline):
    """Worked on in place, each stage starts from the script's weights, not from what the stage before did to
    them (the backward stage's step, an overfit trial): the numbers are those of the walk on copies."""
    stages = ["decode", "collate", "forward", "backward", "overfit", "memory"]
    on_copies = check_pipeline("mrpc_bert_fixed.py", stages=stages)
    in_place = check_pipeline("mrpc_bert_fixed.py", stages=stages, options={"disposable": True})
    assert in_place.context["target"].copies() == 0 and on_copies.context["target"].copies() == 1
    for stage, keys in (("backward", ("loss",)), ("overfit", ("never_trained", "prior_loss"))):
        a, b = on_copies.stage(stage).evidence, in_place.stage(stage).evidence
        assert all(a[k] == b[k] for k in keys), (stage, a, b)
    first = lambda r: [run["first_loss"] for run in r.stage("overfit").evidence["runs"]]  # noqa: E731
    assert first(in_place) == first(on_copies)
    codes = lambda r: sorted((s.stage, f.code) for s in r.stages for f in s.findings)  # noqa: E731  # noqa: E731
    assert codes(in_place) == codes(on_copies)
