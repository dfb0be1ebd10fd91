"""The process environment ftdoctor sets up: the offline variables, a fresh interpreter, a free local port."""

from __future__ import annotations

import os
import sys

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")


FORCED_OFFLINE = "FTDOCTOR_FORCED_OFFLINE"  # the offline variables ftdoctor set, that the user's run does not have


def set_offline(env: dict[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    forced = [var for var in OFFLINE_VARS if env.get(var) != "1"]
    for var in OFFLINE_VARS:
        env[var] = "1"
    if forced:
        env[FORCED_OFFLINE] = ",".join(forced)


def fresh_python(code: str, *args: str) -> list[str]:
    """`python -c CODE ARGS` without the working directory first on sys.path, where `-c` puts it (see _BOOT)."""
    return [sys.executable, "-c", "import sys; sys.path.pop(0)\n" + code, *args]


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
