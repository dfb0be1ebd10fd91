"""Telling the user's code from library code in frames and tracebacks."""

from __future__ import annotations

import os
from types import FrameType, TracebackType

from ftdoctor.core.source import Site


def is_user_file(filename: str, user_dir: str) -> bool:
    if not filename or filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    if not path.startswith(user_dir + os.sep):
        return False
    # A virtual environment inside the project holds libraries, not the user's code.
    rel = path[len(user_dir) + 1 :]
    return "site-packages" not in rel and "dist-packages" not in rel


def deepest_user_frame(frame: FrameType | None, user_dir: str) -> FrameType | None:
    """Walk outwards from ``frame`` to the first frame that runs the user's code."""
    while frame is not None:
        if is_user_file(frame.f_code.co_filename, user_dir):
            return frame
        frame = frame.f_back
    return None


def user_site_in_traceback(tb: TracebackType | None, user_dir: str) -> Site | None:
    """The innermost traceback entry in the user's code: the line to fix."""
    site = None
    while tb is not None:
        if is_user_file(tb.tb_frame.f_code.co_filename, user_dir):
            site = Site(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return site


def user_frame_in_traceback(tb: TracebackType | None, user_dir: str) -> FrameType | None:
    """The innermost frame of the user's code in a traceback (its locals are what the script held)."""
    frame = None
    while tb is not None:
        if is_user_file(tb.tb_frame.f_code.co_filename, user_dir):
            frame = tb.tb_frame
        tb = tb.tb_next
    return frame
