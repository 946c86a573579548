"""The plan: every rule, job set, target and per-job input list of the workflow, from the
validated config and the discovered dataset.

Every rule is defined once, in its family's module (:mod:`echoprep.plan.families`): a frozen
:class:`~echoprep.plan.rule.RuleDef` (name, level, log, threads, minutes, memory model, env,
group, command, message) next to the family class whose method of the rule's name gives its
inputs, outputs and params. :class:`~echoprep.plan.front.Plan` builds the families on one
shared :class:`~echoprep.plan.context.PlanContext` (composition; the families derive from
``Family`` alone) and joins both halves into the :class:`~echoprep.plan.rule.RuleSpec` of
each rule, which the rule block of its kind in ``workflow/rules/jobs.smk`` hands to
Snakemake; ``rule all`` asks the plan for
its targets. Everything that decides *which* jobs run and *which* files they read lives here,
where it is unit-tested without Snakemake (``tests/unit/test_plan.py``). Paths come from the
output registry (:mod:`echoprep.io.outputs`), memory models from :mod:`echoprep.resources`.
See ``docs/architecture.md``.

Methods that take ``wc`` accept any object with the rule's wildcards as attributes
(Snakemake's ``wildcards``, or a :class:`types.SimpleNamespace` in tests). Path methods
called without a run/session/subject return the rule's wildcard pattern. ``mypy`` (``make
lint``) checks the plan.
"""

from __future__ import annotations

from echoprep.plan.context import PlanError
from echoprep.plan.discovery import discovery_options
from echoprep.plan.families.spatial import RUN_STEM_PATTERN
from echoprep.plan.front import Plan
from echoprep.plan.hooks import RuleHooks
from echoprep.plan.rule import RuleDef, RuleSpec

__all__ = [
    "RUN_STEM_PATTERN",
    "Plan",
    "PlanError",
    "RuleDef",
    "RuleHooks",
    "RuleSpec",
    "discovery_options",
]
