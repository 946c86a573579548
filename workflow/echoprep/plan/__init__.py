"""The plan: every job set, target and per-job input list of the workflow, from the validated
config and the discovered dataset.

The Snakemake rules (``workflow/rules/*.smk``) are thin: their ``input:``, ``output:``,
``params:`` and ``resources:`` call a :class:`Plan` method, and ``rule all`` asks the plan for
its targets. Everything that decides *which* jobs run and *which* files they read lives here,
where it is unit-tested without Snakemake (``tests/unit/test_plan.py``). Paths come from the
output registry (:mod:`echoprep.io.outputs`); memory and runtime models from
:mod:`echoprep.resources`. See ``docs/architecture.md``.

Methods that take ``wc`` accept any object with the rule's wildcards as attributes (Snakemake's
``wildcards``, or a :class:`types.SimpleNamespace` in tests). Path methods called without a
run/session/subject return the rule's wildcard pattern.
"""

from __future__ import annotations

from echoprep.plan._base import ALL_VARIANTS, BasePlan, PlanError
from echoprep.plan.publish import PublishPlan
from echoprep.plan.runs import RunPlan
from echoprep.plan.sessions import SessionPlan
from echoprep.plan.subjects import SubjectPlan


class Plan(RunPlan, SessionPlan, SubjectPlan, PublishPlan, BasePlan):
    """Jobs, targets and inputs of one workflow invocation.

    Parameters
    ----------
    config
        The validated config (:func:`echoprep.config.validate_config`: every default filled).
    dataset
        The discovered dataset (:func:`echoprep.io.bids.discover`).
    """


__all__ = ["ALL_VARIANTS", "Plan", "PlanError"]
