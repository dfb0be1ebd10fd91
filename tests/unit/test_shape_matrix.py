"""Every stage that touches a user's object, against every shape the libraries allow for it (tests/shape_matrix.py):
each script is captured and walked in this process, through the same capture and walk as `ftdoctor check`. Every
(shape, stage) pair must run without a crashed check or an internal error; a correct shape must come out without
an error or a warning, a broken one with the finding it names, at the user's line."""

from __future__ import annotations

import functools
import os

import pytest
import torch
from shape_matrix import SHAPES, STAGES, pairs, render

WALKED = tuple(s for s in STAGES)


@functools.cache
def _walked(name: str, folder: str):
    """The capture and the report of shape ``name``, its script written and run in ``folder`` (once per shape)."""
    from ftdoctor.capture import capture_script
    from ftdoctor.process.child import walk_capture

    script = os.path.join(folder, "train.py")
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(render(name))
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(folder)
    torch.set_num_threads(1)
    try:
        cap = capture_script(script, timeout=120)
        assert cap.outcome in ("training", "loop"), f"{name}: the script did not reach training ({cap.outcome})\n" + (
            str(cap.exception) if cap.exception else cap.output[-2000:]
        )
        result = walk_capture(cap, stages=WALKED, options={"overfit_seconds": 3.0})
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    assert result.report is not None, result.message
    return cap, result.report


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: str(tmp_path_factory.mktemp(name)) for name in SHAPES}


def _describe(stage) -> str:
    return "; ".join(f"{f.code} {f.severity}: {f.detail[:300]}" for f in stage.findings) or "(no findings)"


@pytest.mark.parametrize(("name", "stage"), pairs())
def test_shape_at_stage(name, stage, folders):
    shape = SHAPES[name]
    cap, report = _walked(name, folders[name])
    st = report.stage(stage)
    assert st is not None, f"{stage} did not run for {name}"
    assert not st.crashed, f"{name} at {stage}: crashed {st.crashed}\n" + "\n".join(report.internal_errors)
    own = [e for e in report.internal_errors if f"({stage})" in e]
    assert not own, f"{name} at {stage}: " + "\n".join(own)
    if shape.expect is not None and shape.expect[0] == stage:
        code = shape.expect[1]
        got = [f for f in st.findings if f.code == code]
        assert got, f"{name}: expected {code} at {stage}, got {_describe(st)} ({st.status}: {st.reason})"
        assert all(f.location and f.location.startswith(cap.script) for f in got), [f.location for f in got]
        return
    if shape.expect is not None:
        stop = STAGES.index(shape.expect[0])
        if STAGES.index(stage) > stop:
            return  # after the broken variant's finding: whatever follows is judged by its own tests
    relayed = [f for f in st.findings if f.code == "FTD900"]
    assert not relayed, f"{name} at {stage}: the pipeline's code raised: {_describe(st)}"
    if stage in shape.not_applicable:
        assert st.status == "skip", f"{name} at {stage}: said not to apply ({shape.not_applicable[stage]}) but ran"
        return
    loud = [f for f in st.findings if f.severity in ("error", "warning")]
    assert not loud, f"{name} (correct) at {stage}: {_describe(st)}"
    assert st.status != "skip", f"{name} at {stage} skipped: {st.reason}"


def test_the_matrix_covers_every_dimension_and_names_why_a_stage_does_not_apply():
    dims = {s.dimension for s in SHAPES.values()}
    assert dims == {"rows", "batches", "outputs", "compute_loss", "metrics", "labels"}
    for name, shape in SHAPES.items():
        assert set(shape.not_applicable) <= set(STAGES), name
        assert all(reason.strip() for reason in shape.not_applicable.values()), name
    assert len(pairs()) == len(SHAPES) * len(STAGES)
