"""The API a check is written against: registration, findings, skipping and calling the user's code.

A team's own checks need nothing else; the built-in checks also import the layers below them (targets, runtime,
facts) directly, as .importlinter allows.

A check is a plain function registered with ``@check(stage, codes=...)``. The walk passes it what it needs by
parameter name (``target``, ``batch``, ``model``, ...); it returns findings of the codes it declared (or a
``Provide`` with values for later checks and evidence for the report), raises ``Skip`` when it cannot judge, and
calls the user's code through ``run_user`` so that the user's exceptions are never taken for ftdoctor's.
"""

from __future__ import annotations

from ftdoctor.core.stages import DEFAULT_STAGES, STAGES
from ftdoctor.core.rules import RULES, SEVERITIES, Rule, rule
from ftdoctor.core.findings import Finding, finding
from ftdoctor.core.registry import Provide, Skip, Unavailable, UserCodeError, check, run_user, stage_check
from ftdoctor.core.frames import deepest_user_frame, user_site_in_traceback
from ftdoctor.facts.namespace import datasets as script_datasets
from ftdoctor.facts.namespace import items as script_items
from ftdoctor.core.source import Site, read_source

__all__ = ["check", "stage_check", "rule", "finding", "Finding", "Rule", "RULES", "Provide", "Skip", "Unavailable",
           "UserCodeError", "run_user", "Site", "read_source", "script_datasets", "script_items", "deepest_user_frame", "user_site_in_traceback", "STAGES", "DEFAULT_STAGES", "SEVERITIES"]
