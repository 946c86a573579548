"""The plan: every job set, target and per-job input list of the workflow, from the validated
config and the discovered dataset.

The Snakemake rules (``workflow/rules/*.smk``) are thin: each takes its ``input:``,
``output:``, ``params:``, ``log:``, ``benchmark:``, ``resources:``, ``group:`` and own wildcard
constraints from its rule's spec (:meth:`Plan.spec`, :mod:`echoprep.plan.specs`: one method per
rule), and ``rule all`` asks the plan for its targets. Everything that decides *which* jobs run
and *which* files they read lives here, where it is unit-tested without Snakemake
(``tests/unit/test_plan.py``). Paths come from the output registry (:mod:`echoprep.io.outputs`);
memory and runtime models from :mod:`echoprep.resources`. See ``docs/architecture.md``.

Methods that take ``wc`` accept any object with the rule's wildcards as attributes (Snakemake's
``wildcards``, or a :class:`types.SimpleNamespace` in tests). Path methods called without a
run/session/subject return the rule's wildcard pattern.

One class per level, each on the one below: :class:`~echoprep.plan._base.BasePlan` (config,
dataset, paths, targets, resources) ← ``RunPlan`` (``runs.py``) ← ``ChainPlan`` (``chains.py``:
the per-run jobs that run several steps) ← ``SessionPlan``
(``sessions.py``) ← ``SubjectPlan`` (``subjects.py``) ← ``PublishPlan`` (``publish.py``) ←
``SpecPlan`` (``specs.py``: the rule specs) ← :class:`Plan`. The input functions and argument
builders the specs call are private; the public methods are the specs, the targets, the paths
of each stage's outputs and the plan's decisions (which variants, sessions, chains).
``mypy`` (``make lint``) checks the plan.
"""

from __future__ import annotations

from echoprep.plan._base import PlanError, discovery_options
from echoprep.plan.specs import RUN_STEM_PATTERN, RuleHooks, RuleSpec, SpecPlan


class Plan(SpecPlan):
    """Jobs, targets and inputs of one workflow invocation.

    Parameters
    ----------
    config
        The validated config (:func:`echoprep.config.validate_config`: every default filled).
    dataset
        The discovered dataset (:func:`echoprep.io.bids.discover`).
    hooks
        What the specs need from the running Snakemake (``temp``, the profile's groups);
        None in unit tests.
    """


__all__ = ["RUN_STEM_PATTERN", "Plan", "PlanError", "RuleHooks", "RuleSpec", "discovery_options"]
