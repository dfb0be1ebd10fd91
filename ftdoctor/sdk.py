"""Everything a check imports, from one place.

A check is a plain function registered with ``@check(stage, codes=...)``. The walk passes it what it needs by
parameter name (``target``, ``batch``, ``model``, ...); it returns findings of the codes it declared (or a
``Provide`` with values for later checks and evidence for the report), raises ``Skip`` when it cannot judge, and
calls the user's code through ``run_user`` so that the user's exceptions are never taken for ftdoctor's.
"""

from __future__ import annotations

from .findings import DEFAULT_STAGES, RULES, SEVERITIES, STAGES, Finding, Rule, finding, rule
from .registry import Provide, Skip, Unavailable, UserCodeError, check, run_user, stage_check
from .capture.frames import deepest_user_frame, user_site_in_traceback
from .namespace import datasets as script_datasets
from .namespace import items as script_items
from .source import Site, read_source

__all__ = ["check", "stage_check", "rule", "finding", "Finding", "Rule", "RULES", "Provide", "Skip", "Unavailable",
           "UserCodeError", "run_user", "Site", "read_source", "script_datasets", "script_items", "deepest_user_frame", "user_site_in_traceback", "STAGES", "DEFAULT_STAGES", "SEVERITIES"]
