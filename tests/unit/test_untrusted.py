"""Text ftdoctor quotes but did not write (label names, rows, exception messages, a team's check text, file names)
stays inert in every output: the sanitiser itself, then properties over every format with arbitrary text."""

from __future__ import annotations

import html.parser
import io
import json
import os
import re
import xml.dom.minidom
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftdoctor.core.findings import Finding
from ftdoctor.core.report import CHECK_ERROR, INTERNAL_ERROR, Report, StageResult, Suppressed
from ftdoctor.core.untrusted import cut, defuse_lines, inline, json_text, tail, visible
from ftdoctor.output import document, github, junit, sarif
from ftdoctor.output.document import Outcome
from ftdoctor.output.html import write_html
from ftdoctor.output.terminal import print_report, render_text
from ftdoctor.output.text import format_stage

ROOT = Path(__file__).resolve().parents[2]
C0 = "".join(chr(c) for c in range(32))
# What no output may hand a terminal, a CI log or an XML parser: C0 but tab and newline, DEL, C1, bidi controls,
# line and paragraph separators, lone surrogates, U+FFFE/U+FFFF.
UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff\ufffe\uffff]"
)
HOSTILE = [
    "\n::error file=evil.py,line=1::injected",
    "\n  ::add-mask::secret",
    "::stop-commands::tok",
    "##[warning]legacy",
    "\x1b[2J",
    "\x1b]0;title\x07",
    "\u202eevil",
    "\r\n",
    "\x85",
    "\u2028",
    "\x00",
    "\x7f",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "&amp;",
    "]]>",
    "%0A::error::x",
    "\ud800",
    "\ufffe",
    " " * 90 + "::error::wrapped",
    "x" * 75 + "::error::folded",
    C0,
]


def _lines_are_inert(text: str) -> None:
    for line in text.split("\n"):
        assert not line.lstrip().startswith("::"), repr(line)
        assert "##[" not in line, repr(line)
    m = UNSAFE.search(text)
    assert m is None, repr(text[max(0, m.start() - 40) : m.end() + 40])


# -- the sanitiser --------------------------------------------------------------------------------------------


def test_control_characters_and_bidi_overrides_are_shown_as_escapes():
    assert visible("a\x1bb\u202ec\x7f\x85\ud800\ufffe") == "a\\x1bb\\u202ec\\x7f\\x85\\ud800\\ufffe"
    assert visible("tab\tand\nnewline kept") == "tab\tand\nnewline kept"
    assert visible("\r") == "\\r" and visible("\u2028") == "\\u2028"
    assert inline("one\ntwo") == "one\\ntwo"
    assert "\\x00" in visible(C0) and not UNSAFE.search(visible(C0))


def test_no_line_of_quoted_text_is_a_workflow_command():
    out = visible("ok\n::error file=a::b\n   ::add-mask::s\nx ::notice::mid-line is harmless\n##[group]g")
    assert out.split("\n") == [
        "ok",
        "\\x3a:error file=a::b",
        "   \\x3a:add-mask::s",
        "x ::notice::mid-line is harmless",
        "##\\x5bgroup]g",
    ]
    assert inline("::error::x\n::warning::y") == "\\x3a:error::x\\n::warning::y"  # one line: only its start


def test_long_text_is_cut_with_a_marker_of_what_was_left_out():
    assert cut("abcdef", 4) == "abcd … [2 more characters]"
    assert inline("é" * 10_000, 300).endswith("… [9700 more characters]")
    shown = tail("first\n" + "x" * 50_000 + "\nlast line\n", lines=15, chars=4000)
    assert shown.startswith("[… ") and "earlier characters left out]" in shown.split("\n")[0]
    assert shown.endswith("last line") and len(shown) < 4100


def test_defusing_a_rendered_report_keeps_its_colours():
    rendered = "\x1b[2m   \x1b[0m::error file=a::b\nplain\n\x1b[1m##[warning]\x1b[0m"
    out = defuse_lines(rendered)
    assert out.split("\n")[0] == "\x1b[2m   \x1b[0m\\x3a:error file=a::b"
    assert out.split("\n")[2] == "\x1b[1m##\\x5bwarning]\x1b[0m"
    linked = "\x1b]8;id=1;https://example.org\x1b\\::error::x"  # a link's URL holds a colon of its own
    assert defuse_lines(linked) == "\x1b]8;id=1;https://example.org\x1b\\\\x3a:error::x"


def test_json_keeps_the_data_and_hides_legacy_commands_from_the_log():
    data = {"label": "##[error]x", "other": "a\x1b\n::b"}
    text = json_text(json.dumps(data))
    assert "##[" not in text and json.loads(text) == data


# -- every format, on arbitrary text ---------------------------------------------------------------------------

texts = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(blacklist_categories=()), max_size=30)), max_size=6
).map("".join)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A script whose name and lines hold control characters and workflow commands (its lines are quoted)."""
    root = tmp_path_factory.mktemp("project")
    script = root / "ev\x1bil\n::error file=x,line=1::name\u202e.py"
    script.write_text("import os\nx = '\x1b[2J\x00 ##[error]in source'  # \u202e\n::error::a source line\n")
    return root, str(script)


def _report(text: str, name: str, script: str) -> Report:
    """A report holding ``text`` and ``name`` wherever the data, a message or a team's check reaches it."""
    where = f"{script}:2"
    error = Finding("FTD602", "error", title=text, detail=text, fix=text, location=where, evidence={"traceback": text})
    team = Finding(name or "TEAM1", "warning", title=name, detail=text, fix="", location=f"{name}:3")
    decode = StageResult(
        "decode",
        "warn",
        0.5,
        [team],
        evidence={
            "first_sample": {"text": text, "label": name, "label_name": name},
            "trained_tokens": {"row": 0, "trained": 1, "tokens": 2, "segments": [[text, True], [name, False]]},
            "batch": [{"key": name, "shape": [2, 3], "dtype": text}],
        },
    )
    stages = [
        StageResult("setup", "pass", 0.1),
        decode,
        StageResult("metrics", "fail", 0.2, [error]),
        StageResult("overfit", "skip", 0.0, reason=text),
    ]
    return Report(
        script=script,
        task=name,
        stages=stages,
        duration_s=1.0,
        internal_errors=[text],
        check_errors=[f"{name}: {text}"],
        suppressed=[Suppressed("decode", team, name)],
        budget={"mode": "fast", "reduced": [text], "device": name},
    )


def _outcomes(text, name, script):
    return [
        Outcome(script, _report(text, name, script), None, 2),
        Outcome(name, None, text, 2),
        Outcome(script, _report(name, text, script), text, 2),
    ]  # the last: a walk stopped part way


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(text=texts, name=texts, width=st.integers(20, 160))
def test_terminal_and_text_output_is_inert(project, text, name, width):
    _, script = project
    report = _report(text, name, script)
    buf = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # rich wraps at this width: a wrapped line may start inside quoted text
    try:
        print_report(report, file=buf, show_traceback=True)
    finally:
        os.environ.pop("COLUMNS") if old is None else os.environ.__setitem__("COLUMNS", old)
    _lines_are_inert(buf.getvalue())
    _lines_are_inert(render_text(report))
    for st_ in report.stages:
        _lines_are_inert(format_stage(st_))


@PROPERTY
@given(text=texts, name=texts)
def test_github_lines_are_only_the_commands_ftdoctor_writes(project, text, name):
    _, script = project
    outcomes = _outcomes(text, name, script)
    out = github.to_github(outcomes)
    lines = out.split("\n")
    # a finding each, and per report the stop (if any), the check error and the internal error
    assert len(lines) == (2 + 2) + 1 + (2 + 3)
    for line in lines:
        m = re.fullmatch(r"::(error|warning|notice)( [^:\r]*)?::([^\r]*)", line)
        assert m, repr(line)
        assert "##[" not in line and not UNSAFE.search(line), repr(line)


@PROPERTY
@given(text=texts, name=texts)
def test_junit_parses_with_a_strict_xml_parser(project, text, name):
    _, script = project
    out = junit.to_junit(_outcomes(text, name, script))
    root = ET.fromstring(out)  # expat: a control character or a character reference to one is fatal
    xml.dom.minidom.parseString(out.encode("utf-8"))
    assert [s.get("tests") for s in root.iter("testsuite")] == ["6", "1", "7"]
    assert "\\x1b" in out if "\x1b" in text + name else True


@PROPERTY
@given(text=texts, name=texts)
def test_sarif_validates_and_holds_no_control_character(project, text, name):
    import jsonschema

    _, script = project
    log = json.loads(sarif.to_sarif(_outcomes(text, name, script)))
    schema = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(log)

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    for s in strings(log):
        assert not UNSAFE.search(s), repr(s)


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.data: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)

    def handle_data(self, data):
        self.data.append(data)


@PROPERTY
@given(text=texts, name=texts)
def test_html_has_only_the_elements_the_report_makes(project, tmp_path_factory, text, name):
    _, script = project
    page = tmp_path_factory.getbasetemp() / "report.html"
    write_html(_outcomes(text, name, script), str(page), show_traceback=True)
    parser = _Tags()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.tags <= {"html", "head", "meta", "style", "body", "pre", "code", "span"}, parser.tags
    assert not UNSAFE.search("".join(parser.data))


@PROPERTY
@given(text=texts, name=texts)
def test_json_keeps_the_data_as_it_is(project, text, name):
    _, script = project
    doc = json.loads(document.to_json(_outcomes(text, name, script)))
    finding = doc[0]["stages"][2]["findings"][0]
    assert (finding["detail"], finding["title"]) == (text, text)
    assert doc[0]["stages"][1]["evidence"]["first_sample"]["label_name"] == name
    assert doc[1]["error"] == (text or "no report") and doc[2]["error"] == text


# -- the failures the hostile probe found, one by one ----------------------------------------------------------


def _one(detail="", title="t", label=None, location=None, reason=None) -> Report:
    f = Finding("FTD602", "error", title, detail, "fix it", location)
    ev = {"first_sample": {"text": "a row", "label": 0, "label_name": label}} if label is not None else {}
    stages = [StageResult("metrics", "fail", 0.1, [f], evidence=ev)]
    if reason is not None:
        stages.append(StageResult("overfit", "skip", 0.0, reason=reason))
    return Report(script="train.py", stages=stages)


def test_junit_with_esc_and_nul_in_an_exception_message_is_well_formed():
    out = junit.to_junit(
        [Outcome("train.py", _one("compute_metrics raised ValueError: bad \x1b[31m\x00 row"), None, 1)]
    )
    failure = ET.fromstring(out).find(".//failure")
    assert "bad \\x1b[31m\\x00 row" in failure.text


def test_a_label_name_cannot_put_a_workflow_command_on_a_line_of_its_own():
    report = _one(label="neg\n::error file=evil.py,line=1::injected", detail="x\n::add-mask::secret")
    for out in (render_text(report), format_stage(report.stages[0])):
        assert not [line for line in out.splitlines() if line.lstrip().startswith("::")], out
        assert "x\\n::add-mask::secret" in out  # shown, on the line it belongs to
    assert "neg\\n::error file=evil.py" in render_text(report)


def test_terminal_escapes_from_data_do_not_reach_the_terminal(tmp_path):
    report = _one(label="pos\x1b[2J\x1b]0;owned\x07\x00\x7f", detail="raised: \x1b[2J")
    out = render_text(report)
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out and "\x7f" not in out
    assert "pos\\x1b[2J\\x1b]0;owned\\x07\\x00\\x7f" in out
    page = tmp_path / "r.html"
    write_html([Outcome("train.py", _one(label="\u202eevil"), None, 1)], str(page))
    assert "\u202e" not in page.read_text() and "\\u202eevil" in page.read_text()


def test_a_team_check_that_fails_to_import_is_blamed_on_its_file(tmp_path):
    from ftdoctor.engine.walk import walk

    checks = tmp_path / "ftdoctor_checks"
    checks.mkdir()
    (checks / "broken.py").write_text("import ftdoctor\nraise RuntimeError('the team check is broken')\n")
    report = walk({}, stages=["config"], check_dirs=[str(checks)])
    assert not report.internal_errors, report.internal_errors
    (err,) = report.check_errors
    assert str(checks / "broken.py") in err and "the team check is broken" in err
    text = render_text(report)
    assert CHECK_ERROR in text and INTERNAL_ERROR not in text
    assert "could not load checks" in github.to_github([Outcome("train.py", report, None, 2)])


def test_a_team_check_that_crashes_is_blamed_on_its_file(tmp_path):
    from ftdoctor.engine.walk import walk

    checks = tmp_path / "ftdoctor_checks"
    checks.mkdir()
    (checks / "crashes.py").write_text(
        "import ftdoctor\n\n@ftdoctor.stage_check('config', code='TEAM901', title='never')\n"
        "def crashes():\n    raise KeyError('team bug')\n"
    )
    report = walk({}, stages=["config"], check_dirs=[str(checks)])
    assert not report.internal_errors, report.internal_errors
    assert any(str(checks / "crashes.py") in e and "team bug" in e for e in report.check_errors), report.check_errors
