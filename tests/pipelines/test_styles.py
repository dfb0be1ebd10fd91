"""The style matrix: each pipeline (correct, or with one bug) written in each coding style people use, generated
by style_matrix.py. A bug is found in every style where it can occur; the correct pipeline is clean in every one.

The whole matrix runs here in-process (each script is short); `benchmarks/style_matrix.py` runs it through the
`ftdoctor check` command and prints the detection table.
"""

from __future__ import annotations

import pytest
import style_matrix as sm

pytestmark = pytest.mark.slow

CASES = [(p, s) for p in sm.PIPELINES for s in sm.STYLES if sm.applies(p, s)]


@pytest.mark.parametrize("pipeline,style", CASES, ids=[f"{p}-{s}" for p, s in CASES])
def test_pipeline_in_style(tmp_path, monkeypatch, pipeline, style):
    from ftdoctor.process.parent import check_script

    monkeypatch.chdir(tmp_path)
    path = tmp_path / sm.filename(pipeline, style)
    path.write_text(sm.render(pipeline, style))
    result = check_script(str(path), in_process=True, timeout=300)
    assert result.report is not None, result.message
    report = result.report
    assert not report.internal_errors, report.internal_errors
    expected = sm.PIPELINES[pipeline][1]
    loud = [(s.stage, f.code) for s in report.stages for f in s.findings if f.severity != "info"]
    if expected is None:
        assert report.ok and not loud, loud
    else:
        assert expected in loud, loud
        errors = [(s.stage, f.code) for s in report.stages for f in s.findings if f.severity == "error"]
        assert errors == [expected], errors  # one bug, one error
