"""Capture: run the user's script up to the moment training starts and hand over what it built.

script.py runs the script (``capture_script``); imports.py patches torch and transformers only once the script
imports them; recorder.py notes where each object was built; loop.py follows a hand-written loop to its first
optimizer step. Telling the user's code from library code (frames) lives in core, where checks reach it too.
"""

from ftdoctor.capture.loop import LoopRecord
from ftdoctor.capture.script import Capture, capture_script, format_exception, tensorflow_import
from ftdoctor.core.frames import deepest_user_frame, is_user_file, user_site_in_traceback

__all__ = [
    "Capture",
    "LoopRecord",
    "capture_script",
    "deepest_user_frame",
    "format_exception",
    "is_user_file",
    "tensorflow_import",
    "user_site_in_traceback",
]
