"""The API a check is written against: registration, findings, skipping and calling the user's code.

A team's own checks need nothing else; the built-in checks also import the layers below them (targets, runtime,
facts) directly, as .importlinter allows.

A check is a plain function registered with ``@check(stage, codes=...)``. The walk passes it what it needs by
parameter name (``target``, ``batch``, ``model``, ...); it returns findings of the codes it declared (or a
``Provide`` with values for later checks and evidence for the report), raises ``Skip`` when it cannot judge, and
calls the user's code through ``run_user`` so that the user's exceptions are never taken for ftdoctor's.

A diagnoser is a plain function registered with ``@diagnoser(codes=...)``: given the ``evidence`` of an exception
(the user's frame, its values, the library frame) and the pipeline's facts by name, it proposes the ``Cause`` it
stands for, or None; ``diagnose`` keeps the best-supported cause and ``relay`` words the last resort.
"""

from __future__ import annotations

from ftdoctor.core.diagnosis import Cause, Evidence, diagnose, diagnoser, propose, read_evidence, relay
from ftdoctor.core.findings import Finding, finding
from ftdoctor.core.frames import deepest_user_frame, user_site_in_traceback
from ftdoctor.core.registry import Provide, Skip, Unavailable, UserCodeError, check, run_user, stage_check
from ftdoctor.core.rules import RULES, SEVERITIES, Rule, rule
from ftdoctor.core.source import Site, parse_source, read_source
from ftdoctor.core.stages import DEFAULT_STAGES, STAGES
from ftdoctor.facts.namespace import datasets as script_datasets
from ftdoctor.facts.namespace import items as script_items

__all__ = [
    "DEFAULT_STAGES",
    "RULES",
    "SEVERITIES",
    "STAGES",
    "Cause",
    "Evidence",
    "Finding",
    "Provide",
    "Rule",
    "Site",
    "Skip",
    "Unavailable",
    "UserCodeError",
    "check",
    "deepest_user_frame",
    "diagnose",
    "diagnoser",
    "finding",
    "parse_source",
    "propose",
    "read_evidence",
    "read_source",
    "relay",
    "rule",
    "run_user",
    "script_datasets",
    "script_items",
    "stage_check",
    "user_site_in_traceback",
]
