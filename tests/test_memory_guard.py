"""A machine short of memory: the stages that need copies of the model are not run and say so (FTD806), and the
stages before them keep their findings: a report, never a process killed for memory."""

from __future__ import annotations

from conftest import findings_at


def test_stages_short_of_memory_say_so_and_the_rest_stands(check_pipeline, monkeypatch):
    from ftdoctor import budget

    report_before = check_pipeline("course_mnli_broken.py", stages=["config", "decode", "collate"])
    free = {"bytes": 1 << 40}

    def machine():
        return free["bytes"]

    monkeypatch.setattr(budget, "free_memory", machine)
    free["bytes"] = 1024  # nothing left: every stage that copies the model stops at once
    report = check_pipeline("course_mnli_broken.py", stages=["config", "decode", "collate", "forward", "backward",
                                                            "overfit", "memory"])
    assert report.stage("forward").status == "skip" and report.stage("overfit").status == "skip"
    fixed = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate", "forward", "overfit", "memory"])
    (short,) = findings_at(fixed, "forward", "FTD806")
    assert short.severity == "warning" and "GiB" in short.detail
    assert fixed.stage("forward").status == "warn" and fixed.stage("overfit").status == "skip"
    assert fixed.stage("memory").status == "skip" and fixed.ok  # it needs the forward pass
    # The data stages' findings are the same as with memory to spare.
    codes = lambda r: sorted((s.stage, f.code) for s in r.stages for f in s.findings if s.stage in ("config", "decode", "collate"))
    assert codes(report) == codes(report_before)


def test_backward_alone_short_of_memory(check_pipeline, monkeypatch):
    from ftdoctor import budget

    model_bytes = {}

    def machine():
        # Room for the working copy (1x the trainable weights) but not for a step (3x more).
        return int(model_bytes.get("n", 1 << 40) * 2)

    monkeypatch.setattr(budget, "free_memory", machine)
    first = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate", "forward"])
    model_bytes["n"] = budget.trainable_bytes(first.context["model"])
    report = check_pipeline("course_mnli_fixed.py", stages=["decode", "collate", "forward", "backward"])
    assert report.stage("forward").status == "pass"
    assert findings_at(report, "backward", "FTD806")
    assert report.ok
