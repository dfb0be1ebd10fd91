"""`ftdoctor check --offline` must not invalidate the user's `datasets` cache: the fingerprint of a `.map` that
uses the tokenizer is the same under ftdoctor as in the user's own (online) run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

SCRIPT = """
import os, sys
from datasets import load_from_disk
from transformers import AutoTokenizer
from ftdoctor.fixtures import fixture_path

tokenizer = AutoTokenizer.from_pretrained(fixture_path("tokenizers/bert"))
raw = load_from_disk(fixture_path("datasets/mnli"))
tokenized = raw["train"].select(range(8)).map(lambda b: tokenizer(b["premise"], b["hypothesis"]), batched=True)
with open(os.environ["FINGERPRINT_FILE"], "a") as fh:
    fh.write(tokenized._fingerprint + "\\n")
"""


def test_offline_keeps_the_map_fingerprint(tmp_path):
    script = tmp_path / "tokenize_only.py"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "fingerprints.txt"
    # The user's own run: online (no offline variables), as `python tokenize_only.py`.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["FINGERPRINT_FILE"] = str(out)
    subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.endswith("_OFFLINE")}
    os.environ["FINGERPRINT_FILE"] = str(out)
    try:
        run_cli("check", str(script), "--offline", cwd=tmp_path, timeout=300)
    finally:
        os.environ.update(saved)
        os.environ.pop("FINGERPRINT_FILE", None)
    plain, under_ftdoctor = out.read_text().split()
    assert plain == under_ftdoctor
