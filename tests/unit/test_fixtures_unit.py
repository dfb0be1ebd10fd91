"""The fixture cache's names and its atomic builds, with the builders patched: nothing is really built."""

from __future__ import annotations

import os

import pytest

from ftdoctor import fixtures
from ftdoctor.fixtures import fixture_path


def _temp_folders(root):
    return [os.path.join(d, n) for d, dirs, _ in os.walk(root) for n in dirs if n.endswith(".tmp")]


def test_unknown_fixture_names_the_known_ones():
    with pytest.raises(ValueError, match="models/bert-tiny"):
        fixture_path("models/bert-huge")


def test_losing_a_build_race_uses_the_winners_folder(tmp_path, monkeypatch):
    from ftdoctor.fixtures import _tokenizers

    monkeypatch.setenv("FTDOCTOR_FIXTURES_DIR", str(tmp_path))
    monkeypatch.setenv(fixtures._BUILDING, "1")  # build in this process, where the builder is patched
    target = os.path.join(fixtures.cache_dir(), "tokenizers", "bert")

    def finished_elsewhere_meanwhile(dest):
        os.makedirs(target)
        open(os.path.join(target, "winner"), "w").close()
        open(os.path.join(dest, "loser"), "w").close()

    monkeypatch.setattr(_tokenizers, "build_bert", finished_elsewhere_meanwhile)
    assert fixture_path("tokenizers/bert") == target
    assert os.listdir(target) == ["winner"]
    assert _temp_folders(tmp_path) == []


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    from ftdoctor.fixtures import _datasets

    def broken(dest):
        open(os.path.join(dest, "half-written"), "w").close()
        raise RuntimeError("disk full")

    monkeypatch.setenv("FTDOCTOR_FIXTURES_DIR", str(tmp_path))
    monkeypatch.setenv(fixtures._BUILDING, "1")
    monkeypatch.setattr(_datasets, "build_mrpc", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        fixture_path("datasets/mrpc")
    assert not os.path.exists(os.path.join(fixtures.cache_dir(), "datasets", "mrpc"))
    assert _temp_folders(tmp_path) == []
