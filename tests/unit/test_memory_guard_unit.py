"""Snapshots left by a killed walk are removed by the next one."""

from __future__ import annotations

import os

import pytest


@pytest.mark.subprocess
def test_a_killed_walks_snapshot_is_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    from ftdoctor.runtime import snapshot

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{snapshot.SNAPSHOT_PREFIX}{gone.stdout.strip()}-x.pt"
    stale.write_bytes(b"0" * 10)
    live = tmp_path / f"{snapshot.SNAPSHOT_PREFIX}{os.getpid()}-y.pt"
    live.write_bytes(b"0" * 10)
    snapshot.remove_stale_snapshots(str(tmp_path))
    assert not stale.exists() and live.exists()
