"""End to end, as a user runs ftdoctor: data that holds every C0 control character, workflow commands and
terminal escapes stays inert in every format; outputs never overwrite inputs; every way of stopping ftdoctor
(SIGTERM, SIGHUP, --walk-timeout) ends the script's process, removes the temporary folder and says what happened."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pytest
from helpers import pipeline_path, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

# Data nobody here wrote: every C0 control character, workflow commands (new and legacy), terminal escapes (clear
# screen, window title), DEL and a bidi override. Built by the script itself, so the file holds only ASCII.
EVIL = (
    '"".join(chr(c) for c in range(32)) + "\\n::error file=evil.py,line=1::injected\\n  ::add-mask::secret'
    '\\n##[warning]legacy\\x1b[2J\\x1b]0;title\\x07\\u202eevil\\x7f"'
)

HOSTILE = f"""
from datasets import ClassLabel, Dataset, Features, Value
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
from ftdoctor.fixtures import fixture_path

EVIL = {EVIL}
tok = AutoTokenizer.from_pretrained(fixture_path("models/bert-tiny"))
rows = {{"text": [f"row {{i}} " + EVIL for i in range(16)], "label": [i % 2 for i in range(16)]}}
features = Features({{"text": Value("string"), "label": ClassLabel(names=["neg" + EVIL, "pos" + EVIL])}})
ds = Dataset.from_dict(rows, features=features)
ds = ds.map(lambda b: tok(b["text"], truncation=True), batched=True, remove_columns=["text"])
model = AutoModelForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=2)


def compute_metrics(pred):
    raise ValueError("metric failed on " + EVIL)


args = TrainingArguments("out", report_to=[], save_strategy="no", eval_strategy="epoch", use_cpu=True,
                         per_device_train_batch_size=4)
trainer = Trainer(model, args, train_dataset=ds, eval_dataset=ds, data_collator=DataCollatorWithPadding(tok),
                  compute_metrics=compute_metrics)
trainer.train()
"""

STAGES = ("--stages", "setup,config,decode,collate,forward,metrics")
# What cat -v would show as ^X or M-^X: C0 but tab and newline, DEL, C1; and bidi controls.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _no_command_lines(text: str, allowed: int = 0) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("::")][allowed:]


def test_hostile_data_stays_inert_in_text_junit_and_github(tmp_path):
    _write(tmp_path, "hostile.py", HOSTILE)
    text = run_cli("check", "hostile.py", *STAGES, "--html", "report.html", cwd=tmp_path, timeout=600)
    assert text.returncode == 1, text.stderr[-3000:]
    assert not RAW_CONTROL.search(text.stdout + text.stderr)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert not RAW_CONTROL.search(page) and "\\u202eevil" in page  # the override shown, not obeyed
    assert not _no_command_lines(text.stdout) and "##[" not in text.stdout
    assert "\\x1b[2J" in text.stdout and "\\x00\\x01" in text.stdout  # shown, as escapes
    assert "FTD602" in text.stdout

    junit = run_cli("check", "hostile.py", *STAGES, "--format", "junit", cwd=tmp_path, timeout=600)
    assert junit.returncode == 1, junit.stderr[-3000:]
    path = tmp_path / "junit.xml"
    path.write_text(junit.stdout, encoding="utf-8")
    if shutil.which("xmllint"):
        lint = subprocess.run(["xmllint", "--noout", str(path)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stderr
    failure = ET.fromstring(junit.stdout).find(".//testcase[@name='metrics']/failure")
    assert "metric failed on \\x00\\x01" in failure.text

    gh = run_cli("check", "hostile.py", *STAGES, "--format", "github", cwd=tmp_path, timeout=600)
    assert gh.returncode == 1, gh.stderr[-3000:]
    lines = gh.stdout.splitlines()
    assert lines and all(re.fullmatch(r"::(error|warning|notice) [^:]*::.*", line) for line in lines), lines
    assert [line.split(" ", 1)[0] for line in lines].count("::error") == 1  # FTD602 only: nothing injected
    assert not RAW_CONTROL.search(gh.stdout) and "##[" not in gh.stdout


def test_an_exception_message_before_training_stays_inert(tmp_path):
    _write(tmp_path, "raises.py", f"raise ValueError('cannot start: ' + {EVIL})\n")
    proc = run_cli("check", "raises.py", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "FTD005" in proc.stdout
    assert not RAW_CONTROL.search(proc.stdout + proc.stderr) and not _no_command_lines(proc.stdout + proc.stderr)


def test_html_naming_the_script_or_a_module_it_imports_is_refused_before_the_walk(tmp_path):
    _write(tmp_path, "helper.py", "VALUE = 1\n")
    script = _write(tmp_path, "train.py", "import helper\nopen('ran', 'w').write('the script ran')\n")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for target in ("train.py", "helper.py", "missing/report.html"):
        start = time.monotonic()
        proc = run_cli("check", "train.py", "--html", target, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert time.monotonic() - start < 60
        assert proc.stderr.count("\n") == 1 and target in proc.stderr, proc.stderr
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # the script never ran, nothing changed
    assert script.read_text().startswith("import helper")


def test_the_exit_2_message_keeps_a_few_kilobytes_of_a_50_mb_line(tmp_path):
    _write(
        tmp_path,
        "loud.py",
        """
        import os, sys
        sys.stdout.write("x" * 50_000_000 + "\\n")
        print("the last line", flush=True)
        os._exit(3)
    """,
    )
    start = time.monotonic()
    proc = run_cli("check", "loud.py", cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert len(proc.stderr) < 8000, len(proc.stderr)
    assert "exit code 3" in proc.stderr and "the last line" in proc.stderr and "more bytes]" in proc.stderr
    assert time.monotonic() - start < 60


# A team check that stops the walk in the decode stage until the test is done with it.
HANG = """
import os, time
from ftdoctor import stage_check


@stage_check("{stage}", code="TEAM777", title="hangs")
def hangs():
    open({marker!r}, "w").write(str(os.getpid()))
    time.sleep(3600)
"""


def _walking_project(tmp_path, stage="decode"):
    shutil.copy(pipeline_path("mrpc_bert_fixed.py"), tmp_path / "train.py")
    (tmp_path / "ftdoctor_checks").mkdir()
    marker = tmp_path / "walking"
    (tmp_path / "ftdoctor_checks" / "hang.py").write_text(HANG.format(stage=stage, marker=str(marker)))
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    return marker, temp, env


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_a_signal_mid_walk_ends_the_child_removes_the_temp_folder_and_says_so(tmp_path, sig, code, word):
    marker, temp, env = _walking_project(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftdoctor", "check", "train.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), proc.communicate(timeout=60)
    time.sleep(0.5)
    assert [p.name for p in temp.iterdir() if p.name.startswith("ftdoctor-")]  # the walk's folder, while it runs
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [
        f"ftdoctor: {'terminated' if word == 'SIGTERM' else 'hung up'} ({word}); the script's process was stopped."
    ], err
    assert not [p.name for p in temp.iterdir() if p.name.startswith("ftdoctor-")]
    assert _gone(int(marker.read_text())), "the script's process is still running"


def test_a_walk_timeout_keeps_and_reports_the_stages_that_finished(tmp_path):
    marker, _, env = _walking_project(tmp_path, stage="collate")
    proc = subprocess.run(
        [sys.executable, "-m", "ftdoctor", "check", "train.py", "--json", "--walk-timeout", "30"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert "--walk-timeout" in doc["error"] and "collate" in doc["error"]
    status = {s["stage"]: s["status"] for s in doc["stages"]}
    assert status["setup"] == status["config"] == "pass" and status["decode"] in ("pass", "warn")
    collate = next(s for s in doc["stages"] if s["stage"] == "collate")
    assert collate["status"] == "skip" and "stopped" in collate["reason"]
    assert "forward" not in status
    assert _gone(int(marker.read_text()))


def test_pytest_keeps_the_stages_that_finished_before_the_walk_timeout(pytester):
    _walking_project(pytester.path, stage="collate")
    pytester.makeini("[pytest]\nftdoctor_scripts = train.py\nftdoctor_walk_timeout = 30\n")
    result = pytester.runpytest_subprocess("--ftdoctor", "-rA", "-p", "no:cacheprovider", timeout=600)
    out = result.stdout.str()
    for stage in ("setup", "config", "decode"):
        result.stdout.fnmatch_lines([f"PASSED train.py::{stage}*"])
    result.stdout.fnmatch_lines(["FAILED train.py::collate*"])
    assert "--walk-timeout" in out
    result.stdout.fnmatch_lines(["SKIPPED*not reached: the walk was stopped in the collate stage*"])


def test_output_closed_early_keeps_the_exit_code_of_the_findings(tmp_path):
    shutil.copy(pipeline_path("mrpc_bert_fixed.py"), tmp_path / "train.py")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftdoctor", "check", "train.py", "--stages", "config"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the report is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err
