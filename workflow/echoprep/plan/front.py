"""The plan's front: the rule families built on one context, every rule's spec, the targets.

:class:`Plan` holds no rule of its own: it builds the shared pieces (context, fitted variants,
the chains' and gradients' decisions), then each family with the families it reads, and joins
each family's ``RuleDef`` with its files into the ``RuleSpec`` Snakemake takes
(``workflow/rules/jobs.smk``; :mod:`echoprep.plan.rule`, ``docs/architecture.md``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from echoprep.io import rule_logs
from echoprep.io.bids import Dataset
from echoprep.plan.chains import CHAIN_RULES, ChainChoice
from echoprep.plan.context import PlanContext, PlanError
from echoprep.plan.families.anatomy import AnatomyRules
from echoprep.plan.families.chains import ChainRules
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.comparison import ComparisonRules
from echoprep.plan.families.describe import DescribeRules
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.families.noiseceiling import NoiseCeilingRules
from echoprep.plan.families.planted import PlantedRules
from echoprep.plan.families.planted_run import PlantedRunRules
from echoprep.plan.families.publish import PublishRules
from echoprep.plan.families.report import ReportRules
from echoprep.plan.families.rois import RoiRules
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.families.surface import SurfaceRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.gradients import Gradients
from echoprep.plan.hooks import RuleHooks
from echoprep.plan.places import rule_places
from echoprep.plan.rule import (
    Family,
    RuleDef,
    RuleFiles,
    RuleSpec,
    declared_outputs,
    env_file,
    sidecars_of,
    split_inputs,
    with_signature,
    with_signatures,
)
from echoprep.plan.sdc import sdc_summary
from echoprep.plan.slice_timing import slice_timing_summary
from echoprep.plan.surfaces import Surfaces

#: The family classes, in the order of their rules (:meth:`Plan.rule_names`) and of their
#: derivative folders (``dataset_description``'s list).
FAMILIES: tuple[type[Family], ...] = (
    DescribeRules,
    ChainRules,
    CombineRules,
    SpatialRules,
    AnatomyRules,
    GlmRules,
    NoiseCeilingRules,
    SurfaceRules,
    RoiRules,
    PlantedRules,
    PlantedRunRules,
    ReportRules,
    ComparisonRules,
    PublishRules,
)


def rule_definitions() -> dict[str, RuleDef]:
    """Every rule's definition by name (no config or dataset needed)."""
    return {d.name: d for family in FAMILIES for d in family.RULES}


#: The rule whose profile group (``groups:``) a per-run job joins when the profile names no
#: group for its own rule: the run's NORDIC chain, so that a run's jobs share one submission.
RUN_GROUP_RULE = "nordic"


def _run_group(defn: RuleDef) -> str | None:
    """:data:`RUN_GROUP_RULE` for a per-run rule submitted as a job, else None."""
    return RUN_GROUP_RULE if defn.level == "run" and not defn.local else None


class Plan:
    """Jobs, targets and inputs of one workflow invocation.

    Parameters
    ----------
    config
        The validated config (:func:`echoprep.config.validate_config`: every default filled).
    dataset
        The discovered dataset (:func:`echoprep.io.bids.discover`).
    hooks
        What the specs need from the running Snakemake (``temp``, ``report``, the profile's
        groups); None in unit tests.

    Attributes
    ----------
    ctx, fitted, chains, gradients, surfaces
        The shared pieces: context, fitted variants, the chains' decisions, gradient
        decisions, the FreeSurfer subjects.
    anatomy, spatial, combine, chain_rules, glm, nc, surface, rois, comparison, report,
    publish, describe
        The rule families.
    """

    def __init__(
        self, config: Mapping[str, Any], dataset: Dataset, hooks: RuleHooks | None = None
    ) -> None:
        self.ctx = ctx = PlanContext(config, dataset, hooks)
        self.config = ctx.config  # (the echo handlings the runs' echoes allow)
        self.dataset = dataset
        self.fitted = fitted = FittedVariants(ctx)
        self.chains = chains = ChainChoice(ctx)
        self.gradients = Gradients(ctx)
        self.surfaces = Surfaces(ctx)
        # each family with the families it reads, in the order they need each other
        self.anatomy = AnatomyRules(ctx, self.gradients)
        self.spatial = SpatialRules(ctx, chains, self.anatomy, self.gradients)
        self.combine = CombineRules(ctx, chains, fitted, self.spatial)
        self.chain_rules = ChainRules(ctx, chains, self.spatial, self.combine, self.definition)
        self.glm = GlmRules(ctx, fitted, self.combine, self.spatial)
        self.nc = NoiseCeilingRules(ctx, fitted, self.glm)
        self.surface = SurfaceRules(
            ctx,
            fitted,
            self.surfaces,
            self.anatomy,
            (self.spatial, self.combine, self.glm, self.nc),
        )
        self.rois = RoiRules(
            ctx, fitted, self.anatomy, self.spatial, self.glm, self.nc, self.surface
        )
        self.planted = PlantedRules(ctx, fitted, self.combine, self.spatial, self.glm, self.rois)
        self.planted_run = PlantedRunRules(ctx, self.planted, self.combine, self.spatial, self.glm)
        self.comparison = ComparisonRules(ctx, fitted, self.glm, self.nc, self.rois, self.planted)
        self.report = ReportRules(
            ctx,
            fitted,
            anatomy=self.anatomy,
            spatial=self.spatial,
            combine=self.combine,
            glm=self.glm,
            nc=self.nc,
            rois=self.rois,
            comparison=self.comparison,
            surface=self.surface,
        )
        self.publish = PublishRules(ctx, fitted, self.nc, self.rois, self.surface)
        built = [
            self.anatomy,
            self.spatial,
            self.combine,
            self.chain_rules,
            self.glm,
            self.nc,
            self.surface,
            self.rois,
            self.planted,
            self.planted_run,
            self.comparison,
            self.report,
            self.publish,
        ]
        self.describe = DescribeRules(ctx, sorted(built, key=lambda f: FAMILIES.index(type(f))))
        self.families: tuple[Family, ...] = (self.describe, *self.describe.families)
        assert [type(f) for f in self.families] == list(FAMILIES), "a family not in FAMILIES"
        self._rules: dict[str, tuple[Family, RuleDef]] = {
            d.name: (f, d) for f in self.families for d in f.RULES
        }
        self._specs: dict[str, RuleSpec] | None = None

    # -----------------------------------------------------------------------------------------
    # rules

    def rule_names(self) -> list[str]:
        """Every rule's name (a per-run chain's under its family name), family by family."""
        return list(self._rules)

    def definition(self, rule: str) -> RuleDef:
        """A rule's (or a chain step's) definition.

        Raises
        ------
        KeyError
            No rule of that name (the message names the families' modules).
        """
        try:
            return self._rules[rule][1]
        except KeyError:
            raise KeyError(f"no rule {rule!r} (echoprep.plan.families)") from None

    def specs(self) -> list[RuleSpec]:
        """The spec of every rule: each family's, a per-run chain's once per echo count
        (built once per plan)."""
        if self._specs is None:
            found = []
            for name in self.rule_names():
                if name in CHAIN_RULES.values():
                    found += [self.spec(name, n) for n in self.ctx.echo_counts()]
                else:
                    found.append(self.spec(name))
            self._specs = {spec.name: spec for spec in found}
        return list(self._specs.values())

    def spec_of(self, name: str) -> RuleSpec:
        """The spec of the rule named ``name`` (a per-run chain's by its name for an echo
        count, ``nordic_4echoes``), among :meth:`specs`."""
        self.specs()
        assert self._specs is not None
        return self._specs[name]

    def spec(self, rule: str, echoes: int | None = None) -> RuleSpec:
        """The spec of ``rule``; for a per-run chain (``nordic``, ``spatial_resample``) that of
        its rule for runs with ``echoes`` echoes (:meth:`PlanContext.echo_counts`).

        Raises
        ------
        KeyError
            No rule of that name.
        PlanError
            A per-run chain asked for without its echo count.
        """
        if rule not in self._rules:
            raise KeyError(f"no rule spec {rule!r} (echoprep.plan.families)")
        family, defn = self._rules[rule]
        name = rule
        if rule in CHAIN_RULES.values():
            if echoes is None:
                raise PlanError(f"rule {rule}: expected an echo count (PLAN.ctx.echo_counts())")
            files: RuleFiles = getattr(family, rule)(echoes)
            name = self.ctx.echo_rule(rule, echoes)
        else:
            files = getattr(family, rule)()
        return self._join(defn, files, name)

    def _join(self, defn: RuleDef, files: RuleFiles, name: str) -> RuleSpec:
        """A rule's spec from its definition and files: the log, benchmark (none for a local
        rule), resources and threads (also as ``params.threads``, what a command passes to
        ``--threads``: fixed per rule, not scaled down to ``--cores``)."""
        in_process = defn.memory is None
        params = dict(files.params)
        resources: dict[str, Any] = {}
        if not in_process:
            params["threads"] = defn.threads
            resources = {"mem_mb": self.mem_mb(defn.name), "runtime": self.runtime(defn.name)}
            resources.update(files.resources)
        group = None
        candidates = [c for c in (defn.grouped, _run_group(defn)) if c is not None]
        if candidates:
            groups, names = self.ctx.hooks.groups, (name, *candidates)

            def group(wc: Any) -> str | None:
                table = groups()
                return next((table[n] for n in names if n in table), None)

        command = files.command or defn.command
        shell = ""
        if command:
            shell = f"( {command} ) 2> {{log:q}}" if defn.subshell else f"{command} 2> {{log:q}}"
        input_function, inputs = split_inputs(files.input)
        work = self.ctx.config["work_dir"]
        return RuleSpec(
            name=name,
            input_function=with_signature(input_function),
            input=with_signatures(inputs),
            output=declared_outputs(files.output),
            params=with_signatures(params),
            log=str(rule_logs.log_path(work, defn.log)),
            benchmark=None if defn.local else str(rule_logs.benchmark_path(work, defn.log)),
            resources=with_signatures(resources),
            group=with_signature(group),
            wildcard_constraints=dict(files.wildcard_constraints),
            conda=env_file(files.env or defn.env) if command else None,
            message=files.message or defn.message,
            threads=defn.threads,
            shell=shell,
            run=files.run,
            local=defn.local,
            doc=f"{defn.doc} [{rule_places(FAMILIES)[defn.name]}]",
        )

    # -----------------------------------------------------------------------------------------
    # resources (the models of each step's definition; echoprep.resources)

    def rule_steps(self, rule: str) -> tuple[str, ...]:
        """The steps one job of ``rule`` runs (a chain's, or the rule itself)."""
        return self.chains.rule_steps(rule)

    def _modelled_steps(self, rule: str) -> tuple[str, ...]:
        """:meth:`rule_steps`, each checked to have a resource model."""
        steps = self.rule_steps(rule)
        for step in steps:
            if self.definition(step).memory is None:
                raise KeyError(
                    f"rule {step!r} runs inside the Snakemake process: no memory or run time"
                )
        return steps

    def mem_mb(self, rule: str) -> Callable[[Any, int], int]:
        """The ``mem_mb`` resource of a rule: a function of (wildcards, attempt); for a job that
        runs several steps one after another (a per-run chain), the most of one step.

        Raises
        ------
        KeyError
            No rule of that name, or one that runs inside the Snakemake process (no model).
        """
        steps = [self._rules[s] for s in self._modelled_steps(rule)]

        def mem(wc: Any, attempt: int) -> int:
            return max(d.memory(f, wc, attempt) for f, d in steps if d.memory is not None)

        return mem

    def runtime(self, rule: str) -> Callable[[Any, int], int]:
        """The ``runtime`` resource (min) of a rule: a function of (wildcards, attempt); each
        step's minutes measured at LAION-fMRI size, scaled up for larger data (never down),
        times the run's echoes for steps that treat them one after another; for a job that
        runs several steps one after another (a per-run chain), the sum over its steps."""
        steps = [self._rules[s][1] for s in self._modelled_steps(rule)]
        ctx = self.ctx

        def minutes(wc: Any, attempt: int) -> int:
            total = 0
            for d in steps:
                echoes = len(ctx.job_run(wc).echoes) if d.per_echo else 1
                scale = max(1.0, ctx.work_scale(d.scale, wc))
                total += math.ceil(d.minutes * echoes * scale) * attempt
            return total

        return minutes

    # -----------------------------------------------------------------------------------------
    # targets and the plan's lines

    def targets(self) -> list[str]:
        """Every file ``rule all`` asks for: each family's targets and the dataset description
        of every derivative folder written (not the sidecars of other targets: their jobs write
        them without declaring them, :func:`declared_outputs`)."""
        found = self.describe.targets()
        for part in (
            self.combine.targets(),
            self.spatial.targets(),
            self.nc.targets(),
            self.surface.targets(),
            self.rois.targets(),
            self.report.targets(),
            self.publish.targets(),
        ):
            found.extend(part)
        sidecars = sidecars_of(found)
        return [f for f in dict.fromkeys(found) if f not in sidecars]

    def folder_pattern(self) -> str:
        """Wildcard constraint of the ``dataset_description`` rule's ``folder``."""
        return self.describe.folder_pattern()

    def sessions_warning(self) -> str | None:
        """:meth:`FittedVariants.sessions_warning`."""
        return self.fitted.sessions_warning()

    def publish_warning(self) -> str | None:
        """:meth:`PublishRules.publish_warning`."""
        return self.publish.publish_warning()

    def sdc_summary(self) -> str | None:
        """The distortion-correction line (:func:`echoprep.plan.sdc.sdc_summary`)."""
        return sdc_summary(self.ctx)

    def slice_timing_summary(self) -> str | None:
        """The slice-timing line (:func:`echoprep.plan.slice_timing.slice_timing_summary`)."""
        return slice_timing_summary(self.ctx)

    def gradient_summary(self) -> str | None:
        """The gradient-nonlinearity line (:meth:`Gradients.summary`)."""
        return self.gradients.summary()

    def surface_summary(self) -> str | None:
        """The surfaces' line (:meth:`Surfaces.summary`)."""
        return self.surfaces.summary()

    def reference_note(self) -> str | None:
        """A note when the config sets comparison.reference (no longer used), or None."""
        given = self.config["comparison"].get("reference")
        return given and (
            f"comparison.reference: {given!r} is no longer used: the held-out measures judge "
            "every variant against every other variant, never against itself "
            "(docs/comparison.md). Fix: remove comparison.reference from your config."
        )

    def echo_note(self) -> str | None:
        """:func:`echoprep.plan.echo_counts.allowed_combines`'s note, or None."""
        return self.ctx.echo_note


__all__ = ["FAMILIES", "RUN_GROUP_RULE", "Plan", "rule_definitions"]
