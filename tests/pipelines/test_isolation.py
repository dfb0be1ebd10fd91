"""Each script runs in a child process of its own: nothing the script does after training starts can run, and no
way the script ends (os._exit, a hung thread, a timeout, Ctrl-C) leaves ftdoctor silent or hanging."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

# A correct Trainer pipeline on the offline fixtures; {after} is what the script does around trainer.train().
TRAINER_SCRIPT = """
import os
import sys
from datasets import load_from_disk
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
from ftdoctor.fixtures import fixture_path

OUT = sys.argv[1]
ckpt = fixture_path("models/bert-tiny")
tok = AutoTokenizer.from_pretrained(ckpt)
raw = load_from_disk(fixture_path("datasets/mrpc"))
data = raw.map(lambda e: tok(e["sentence1"], e["sentence2"], truncation=True), batched=True,
               remove_columns=["sentence1", "sentence2", "idx"])
model = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=2)
args = TrainingArguments(os.path.join(OUT, "run"), max_steps=2, per_device_train_batch_size=8, learning_rate=3e-3,
                         report_to=[], save_strategy="no", use_cpu=True)
trainer = Trainer(model, args, train_dataset=data["train"], data_collator=DataCollatorWithPadding(tok))
{after}
"""

FAST_STAGES = ("--stages", "setup,config,decode,collate,forward")


def _digests(folder) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def _user_files(tmp_path):
    """A folder of the user's with a trained model already in it, which nothing may touch."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"trained weights " * 64)
    (out / "config.json").write_text('{"trained": true}')
    return out


@pytest.mark.parametrize(
    "after",
    [
        # the finally: block saved the untrained model over the trained one when the script was unwound
        "try:\n    trainer.train()\nfinally:\n    trainer.save_model(OUT)\n",
        # a bare except around train() swallowed the stop and ran the rest of the script
        "try:\n    trainer.train()\nexcept BaseException:\n    pass\ntrainer.save_model(OUT)\n"
        "open(os.path.join(OUT, 'after.txt'), 'w').write('ran')\n",
        # an atexit handler of the script
        "import atexit\natexit.register(lambda: open(os.path.join(OUT, 'atexit.txt'), 'w').write('ran'))\n"
        "trainer.train()\n",
    ],
    ids=["finally", "except-BaseException", "atexit"],
)
def test_no_line_after_train_runs_and_user_files_stay_identical(tmp_path, after):
    out = _user_files(tmp_path)
    before = _digests(out)
    script = _script(tmp_path, "train.py", TRAINER_SCRIPT.replace("{after}", after))
    start = time.monotonic()
    proc = run_cli("check", script, "--json", *FAST_STAGES, "--", str(out), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    assert _digests(out) == before  # byte-identical, nothing added
    assert time.monotonic() - start < 300


def test_a_non_daemon_thread_does_not_keep_ftdoctor_alive(tmp_path):
    out = _user_files(tmp_path)
    after = "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,)).start()\ntrainer.train()\n"
    script = _script(tmp_path, "train.py", TRAINER_SCRIPT.replace("{after}", after))
    start = time.monotonic()
    proc = run_cli("check", script, "--json", *FAST_STAGES, "--", str(out), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 120


def test_a_script_that_never_trains_with_a_hanging_thread_ends_with_a_message(tmp_path):
    script = _script(
        tmp_path,
        "idle.py",
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,)).start()
        print("set up, not training")
    """,
    )
    start = time.monotonic()
    proc = run_cli("check", script, "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "without starting training" in json.loads(proc.stdout)["error"]
    assert time.monotonic() - start < 60


def test_os_exit_in_the_script_is_exit_2_with_a_message_and_json(tmp_path):
    script = _script(
        tmp_path,
        "leaves.py",
        """
        import os
        print("loading data ...", flush=True)
        os._exit(3)
    """,
    )
    proc = run_cli("check", script, "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["ok"] is False and "exit code 3" in report["error"]
    assert "loading data ..." in proc.stderr  # the script's last lines are shown


def test_timeout_kills_the_script_and_its_children(tmp_path):
    pidfile = tmp_path / "pids"
    script = _script(
        tmp_path,
        "slow.py",
        f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        open({str(pidfile)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(3600)
    """,
    )
    start = time.monotonic()
    proc = run_cli("check", script, "--json", "--timeout", "3", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "within 3 s" in json.loads(proc.stdout)["error"]
    assert time.monotonic() - start < 60
    _assert_gone(pidfile)


def _assert_gone(pidfile):
    pids = [int(p) for p in pidfile.read_text().split()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes left running: {alive}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for every purpose but the process table
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_the_script_with_exit_130_and_a_clean_message(tmp_path):
    pidfile = tmp_path / "pids"
    script = _script(
        tmp_path,
        "slow.py",
        f"""
        import os, time
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        time.sleep(3600)
    """,
    )
    # Ctrl-C as at a terminal: a suite started in the background of a shell inherits SIGINT ignored.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftdoctor", "check", script, "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pidfile.exists(), "the script never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert "interrupted" in json.loads(out)["error"]
    _assert_gone(pidfile)


def test_a_script_raising_keyboard_interrupt_is_named_as_such(tmp_path):
    script = _script(
        tmp_path,
        "interrupts.py",
        """
        print("about to stop")
        raise KeyboardInterrupt
    """,
    )
    proc = run_cli("check", script, "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert "KeyboardInterrupt" in error and "interrupts.py:3" in error
    assert "without starting training" not in error


def test_a_prompt_of_the_script_is_shown_and_answered(tmp_path):
    answer = tmp_path / "answer.txt"
    script = _script(
        tmp_path,
        "asks.py",
        f"""
        name = input("Which dataset? ")
        open({str(answer)!r}, "w").write(name)
    """,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ftdoctor", "check", script],
        cwd=tmp_path,
        input="mrpc\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Which dataset? " in proc.stderr
    assert answer.read_text() == "mrpc"
    assert proc.returncode == 2  # it never trains: said so, after the prompt was answered


def test_pytest_plugin_survives_os_exit_and_isolates_scripts(pytester):
    """Two scripts in different folders each chdir and import their own `common.py`; a third ends the process
    with os._exit. Each is walked (or reported) on its own, and the session ends with a summary and junit."""
    for name in ("a", "b"):
        folder = pytester.path / name
        folder.mkdir()
        (folder / "common.py").write_text(f"WHO = {name!r}\n")
        (folder / "data.txt").write_text(name)
        (folder / "train.py").write_text(
            textwrap.dedent(f"""
            import os
            os.chdir(os.path.dirname(os.path.abspath(__file__)))
            import common
            assert common.WHO == {name!r}, common.WHO
            assert open("data.txt").read() == {name!r}
            raise SystemExit("stop: {name} set up")
        """)
        )
    (pytester.path / "leaves.py").write_text("import os\nos._exit(7)\n")
    pytester.makeini("[pytest]\nftdoctor_scripts =\n    a/train.py\n    b/train.py\n    leaves.py\n")
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--ftdoctor", "-p", "no:cacheprovider", "-k", "setup", f"--junitxml={xml}", timeout=300
    )
    out = result.stdout.str()
    # the two scripts ran to their own SystemExit (so both found their own module and file); the third's
    # os._exit is a clear failure of its setup item, and the session still summarises and writes junit
    assert "stop: a set up" in out and "stop: b set up" in out
    assert "AssertionError" not in out
    assert "exit code 7" in out
    assert xml.exists()
    result.assert_outcomes(failed=3)


def test_a_folder_named_ftdoctor_in_the_working_directory_does_not_shadow_the_child(tmp_path):
    """Run from a clone of ftdoctor's repository (or a project with its own ftdoctor/ folder), the child still
    imports the installed package: it is not started with `python -m`, which puts the working directory first."""
    proj = tmp_path / "proj"
    (proj / "ftdoctor").mkdir(parents=True)
    (proj / "ftdoctor" / "__init__.py").write_text("raise ImportError('the decoy ftdoctor was imported')\n")
    script = _script(tmp_path, "train.py", TRAINER_SCRIPT.format(after="trainer.train()\n"))
    parent = "import sys; sys.path.pop(0); from ftdoctor.entry.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", parent, "check", script, "--json", *FAST_STAGES, "--", str(tmp_path)],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["ok"] and not report.get("internal_errors"), report


# -- a script written for a GPU, checked on a machine without one -------------------------------------------------------

GPU_LOOP = """
import torch
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertConfig, BertForSequenceClassification

torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=37, num_labels=2))
device = {device}
model.to(device)
ids = torch.randint(5, 64, (16, 12))
data = TensorDataset(ids, torch.ones_like(ids), torch.randint(0, 2, (16,)))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for input_ids, mask, labels in DataLoader(data, batch_size=8):
    out = model(input_ids=input_ids.cuda(), attention_mask=mask.to(device), labels=labels.to(device))
    out.loss.backward()
    opt.step()
    opt.zero_grad()
"""


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without a GPU")
def test_a_script_written_for_a_gpu_is_walked_on_the_cpu(tmp_path):
    script = _script(tmp_path, "train.py", GPU_LOOP.format(device='torch.device("cuda")'))
    proc = run_cli("check", script, "--json", *FAST_STAGES, cwd=tmp_path, timeout=300)
    report = json.loads(proc.stdout)
    found = {f["code"]: f for s in report["stages"] for f in s["findings"]}
    assert proc.returncode == 0 and report["ok"], proc.stdout[-3000:]
    assert found["FTD017"]["severity"] == "info" and found["FTD017"]["location"].endswith("train.py:10")
    assert [c for c, f in found.items() if f["severity"] != "info"] == []
    assert {s["stage"]: s["status"] for s in report["stages"]}["forward"] == "pass"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without a GPU")
def test_a_script_that_asks_for_a_gpu_first_runs_once_without_the_stand_in(tmp_path):
    device = 'torch.device("cuda" if torch.cuda.is_available() else "cpu")\ntorch.Tensor.cuda = lambda t: t'
    script = _script(tmp_path, "train.py", GPU_LOOP.format(device=device))
    proc = run_cli("check", script, "--json", *FAST_STAGES, cwd=tmp_path, timeout=300)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], proc.stdout[-3000:]
    assert "FTD017" not in {f["code"] for s in report["stages"] for f in s["findings"]}


QLORA_TRAINER = """
import torch
from datasets import load_from_disk
from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, DataCollatorForLanguageModeling,
                          Trainer, TrainingArguments)
from ftdoctor.fixtures import fixture_path

ckpt = fixture_path("models/llama-chat-tiny")
tok = AutoTokenizer.from_pretrained(ckpt)
quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
model = AutoModelForCausalLM.from_pretrained(ckpt, quantization_config=quant, device_map={"": 0})
data = load_from_disk(fixture_path("datasets/text-lm"))["train"].map(lambda b: tok(b["text"]), batched=True,
                                                                      remove_columns=["text"])
args = TrainingArguments("out", per_device_train_batch_size=4, max_steps=2, bf16=True, optim="paged_adamw_8bit",
                         report_to=[])
trainer = Trainer(model=model, args=args, train_dataset=data,
                  data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
trainer.train()
"""


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without a GPU")
def test_a_4bit_script_for_a_gpu_loads_in_full_precision_on_the_cpu(tmp_path):
    script = _script(tmp_path, "train.py", QLORA_TRAINER)
    proc = run_cli("check", script, "--json", *FAST_STAGES, cwd=tmp_path, timeout=300)
    report = json.loads(proc.stdout)
    found = {f["code"]: f for s in report["stages"] for f in s["findings"]}
    assert proc.returncode == 0 and report["ok"], proc.stdout[-3000:]
    f = found["FTD017"]
    assert f["location"].endswith("train.py:11"), f["location"]
    for part in (
        "4-bit bitsandbytes `quantization_config`",
        "device_map={'': 0}",
        "`bf16=True` run on the CPU",
        "paged_adamw_8bit",
    ):
        assert part in f["detail"], f["detail"]
    assert {s["stage"]: s["status"] for s in report["stages"]}["forward"] == "pass"
