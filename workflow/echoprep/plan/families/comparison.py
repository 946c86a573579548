"""The 2x3 preprocessing comparison (:mod:`echoprep.stages.comparison`): per subject
(``comparison_subject``: each comparison session's variants against each other) and over all
subjects (``comparison``: the table, figure and verdict; ``snakemake --report`` shows the
figure)."""

from __future__ import annotations

from typing import Any

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.arguments import entry_words
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import SUBJECT_KEY, TOP_KEY
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.families.noiseceiling import NoiseCeilingRules
from echoprep.plan.families.planted import PlantedRules
from echoprep.plan.families.rois import RoiRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import Family, RuleDef, RuleFiles, fixed_mb
from echoprep.variants import Variant

_COMPARISON = folder_name("comparison")


def _subject_mb(family: Any, wc: Any, attempt: int) -> int:
    """One variant's betas and held-out image means (4 per image) at a time, of the report
    session, five float32 copies + 1 GB."""
    runs = family.dataset.runs_of(wc.subject, family.fitted.report_session(wc.subject))
    return res.betas_mb(family.ctx.runs_size(runs), 5, 1000, attempt)


COMPARISON_SUBJECT = RuleDef(
    name="comparison_subject",
    doc="The 2x3 comparison of one subject: held-out fidelity, noise ceiling, d' per variant",
    level="subject",
    log=(_COMPARISON, SUBJECT_KEY, "comparison"),
    command=(
        "python -m echoprep comparison subject {params.entries}"
        " --options-json {params.options:q} --seed {params.seed}"
        " --out tsv={output.tsv:q} bootstrap={output.bootstrap:q}"
        " planted={output.planted:q} transfer={output.transfer:q}"
    ),
    message="Variant comparison sub-{wildcards.subject}",
    memory=_subject_mb,
    minutes=30,
)
COMPARISON = RuleDef(
    name="comparison",
    doc="The group comparison: table, figure and the recommended variant with its verdict",
    level="dataset",
    log=(_COMPARISON, TOP_KEY, "comparison"),
    command=(
        "python -m echoprep comparison group --table {input.tables:q}"
        " --bootstrap-table {input.bootstraps:q} --planted-table {input.planted:q}"
        " --transfer-table {input.transfers:q} --options-json {params.options:q}"
        " --out tsv={output.tsv:q} png={output.png:q} svg={output.svg:q} json={output.json:q}"
    ),
    message="Variant comparison, all subjects",
    # a light local rule (one thread next to Snakemake): a few tables and a figure
    memory=fixed_mb(1000),
    minutes=10,
    env="report",
    local=True,
)


class ComparisonRules(Family):
    """The comparison rules and the entries they compare (module docstring)."""

    RULES = (COMPARISON_SUBJECT, COMPARISON)

    def __init__(
        self,
        ctx: PlanContext,
        fitted: FittedVariants,
        glm: GlmRules,
        nc: NoiseCeilingRules,
        rois: RoiRules,
        planted: PlantedRules,
    ) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.glm = glm
        self.nc = nc
        self.rois = rois
        self.planted = planted

    def folders(self) -> list[str]:
        """``comparison/`` with the report on and a comparison session fitted."""
        wanted = self.config["report"]["enabled"] and self.fitted.rois_enabled()
        return [_COMPARISON] if wanted and self.entries() else []

    def comparison_subject(self) -> RuleFiles:
        return RuleFiles(
            self._subject_inputs,
            self.subject_paths(),
            {
                "entries": self._subject_args,
                "options": self.ctx.options("comparison"),
                "seed": self.ctx.seed(),
            },
        )

    def comparison(self) -> RuleFiles:
        paths: dict[str, Any] = self.paths()
        report = self.ctx.hooks.in_report
        if report is not None:  # the figure in `snakemake --report`
            paths["png"] = report(
                paths["png"],
                caption=f"{self.ctx.hooks.captions}/comparison.rst",
                category="Preprocessing comparison",
            )
        return RuleFiles(self._group_inputs, paths, {"options": self.ctx.options("comparison")})

    def paths(self) -> Files:
        """The group comparison outputs (tsv, png, svg, json)."""
        key = reg.group_key(self.ctx.task())
        return {
            n: str(o.path(self.ctx.out, key))
            for n, o in reg.stage_outputs("comparison").items()
            if o.level == "group"
        }

    def subject_paths(self, subject: str = "{subject}") -> Files:
        """One subject's comparison table and bootstrap replicates."""
        outs = reg.stage_outputs("comparison")
        key = outs["subject_table"].subject_key(subject, self.ctx.task())
        return {
            "tsv": str(outs["subject_table"].path(self.ctx.out, key)),
            "bootstrap": str(outs["subject_bootstrap"].path(self.ctx.out, key)),
            "planted": str(outs["subject_planted"].path(self.ctx.out, key)),
            "transfer": str(outs["subject_transfer"].path(self.ctx.out, key)),
        }

    def entries(self, subject: str | None = None) -> list[dict[str, Any]]:
        """One dict per comparison session and variant (of one subject when given): its NC map,
        visual ROI, brain mask, fit mask, betas and trials, and its held-out fits (sessions of
        at least 2 runs)."""
        entries = []
        fitted = self.fitted.glm_variant_sessions()
        for sub in [subject] if subject else self.dataset.subjects():
            split = set(self.fitted.heldout_sessions(sub))
            for ses in self.fitted.comparison_sessions(sub):
                for variant in self.fitted.glm_variants():
                    if (sub, ses) not in fitted.get(variant, []):
                        continue
                    nordic, combine = Variant(variant).parts()
                    glm = self.glm.outputs(nordic, combine, sub, ses)
                    heldout = (
                        self.glm.heldout_outputs(nordic, combine, sub, ses) if ses in split else {}
                    )
                    entries.append(
                        {
                            "subject": sub,
                            "session": ses or "n/a",
                            "variant": variant,
                            "nc": self.nc.session_outputs(nordic, combine, sub, ses)["nc"],
                            "roi": self.rois.visual_roi(sub),
                            "brain": self.rois.brain_mask(sub),
                            "mask": glm["mask"],
                            "betas": glm["betas"],
                            "trials": glm["trials"],
                            "heldout": heldout.get("means"),
                            "heldout_volumes": heldout.get("volumes"),
                            "planted_design": None,
                            "planted": None,
                            "planted_typeb": None,
                            **self.planted.entry_files(sub, ses, variant),
                        }
                    )
        return entries

    def subjects(self) -> list[str]:
        """Subjects with at least one comparison session that the GLM fits."""
        return [sub for sub in self.dataset.subjects() if self.entries(sub)]

    def _subject_inputs(self, wc: Any) -> dict[str, list[str]]:
        entries = self.entries(wc.subject)
        keys = (
            "nc",
            "roi",
            "brain",
            "mask",
            "betas",
            "trials",
            "heldout",
            "heldout_volumes",
            "planted_design",
            "planted",
            "planted_typeb",
        )
        return {k: sorted({str(e[k]) for e in entries if e[k]}) for k in keys}

    def _subject_args(self, wc: Any) -> str:
        """``--entry key=value ...`` per comparison entry of the subject."""
        entries = self.entries(wc.subject)
        return words([w for e in entries for w in ("--entry", *entry_words(e))])

    def _group_inputs(self, wc: Any) -> dict[str, list[str]]:
        subjects = self.subjects()
        return {
            "tables": [self.subject_paths(s)["tsv"] for s in subjects],
            "bootstraps": [self.subject_paths(s)["bootstrap"] for s in subjects],
            "planted": [self.subject_paths(s)["planted"] for s in subjects],
            "transfers": [self.subject_paths(s)["transfer"] for s in subjects],
        }


__all__ = ["COMPARISON", "COMPARISON_SUBJECT", "ComparisonRules"]
