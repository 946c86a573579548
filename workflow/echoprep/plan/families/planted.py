"""Responses planted into the comparison sessions (:mod:`echoprep.stages.comparison.planting`): the
session's design (``planted_design``), each run's chains on its echoes with them added and
subtracted (``planted_run``) and each variant's frozen GLM on what its series contain of them
(``planted_glm``). Only comparison sessions with at least two runs are planted, with
``comparison.planted.enabled``, and only when the comparison asks for them. The planted series
live in the work folder (``<work_dir>/planted/``, temporary); the design and each variant's
planted betas are derivatives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echoprep import resources as res
from echoprep.io.bids import Run
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import SESSION_KEY
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.glm import GlmRules, fit_mb
from echoprep.plan.families.rois import RoiRules
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import Family, RuleDef, RuleFiles
from echoprep.plan.slice_timing import slice_timing_args
from echoprep.variants import Variant

PLANTED_FOLDER = folder_name("planted")
#: The echo-handling outputs the planted chains reproduce.
COMBINES = ("single", "optcom", "denoised")


def slice_timing_words(run: Run) -> str:
    """:func:`echoprep.plan.slice_timing.slice_timing_args` as shell words."""
    return words(slice_timing_args(run))


PLANTED_DESIGN = RuleDef(
    name="planted_design",
    doc=(
        "The responses planted into a comparison session: a small copy of each image's own, "
        "scored against its other presentations"
    ),
    level="session",
    log=(PLANTED_FOLDER, SESSION_KEY, "design"),
    command=(
        "python -m echoprep planted design --reference {input.reference:q}"
        " --trials {input.trials:q} --summary {input.summary:q} --hrf {input.hrf:q}"
        " --fit-mask {input.fit_masks:q} --mask {input.mask:q} --roi {input.roi:q}"
        " --series {input.series:q} --run-labels {params.run_labels} {params.slice_timing}"
        " --te-ref {params.te_ref} --options-json {params.options:q}"
        " --source-betas {input.source_betas:q} --source-trials {input.source_trials:q}"
        " --out design={output.design:q}"
    ),
    message="Planted responses {wildcards.ses_prefix}",
    memory=lambda family, wc, attempt: res.betas_mb(
        family.ctx.runs_size(family.ctx.session_runs(wc)), 3, 1000, attempt
    ),
    minutes=5,
    scale="session",
)
PLANTED_GLM = RuleDef(
    name="planted_glm",
    doc=(
        "A variant's GLM fit with its choices frozen, applied to what its series carry of the "
        "planted responses"
    ),
    level="session",
    log=(folder_name("glm"), SESSION_KEY, "planted"),
    command=(
        "python -m echoprep glm-planted --bold {input.bold:q} --events {input.events:q}"
        " --planted {input.planted:q} --fit {params.fit} --mask {input.mask:q}"
        " --run-labels {params.run_labels} --options-json {params.options:q}"
        " --threads {params.threads} --out {params.out}"
    ),
    message="Planted betas {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})",
    memory=fit_mb,
    minutes=10,
    threads=2,
    scale="session",
)


class PlantedRules(Family):
    """The planted rules, their files and which sessions are planted (module docstring)."""

    RULES = (PLANTED_DESIGN, PLANTED_GLM)

    def __init__(
        self,
        ctx: PlanContext,
        fitted: FittedVariants,
        combine: CombineRules,
        spatial: SpatialRules,
        glm: GlmRules,
        rois: RoiRules,
    ) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.combine = combine
        self.spatial = spatial
        self.glm = glm
        self.rois = rois

    # -----------------------------------------------------------------------------------------
    # which sessions

    def enabled(self) -> bool:
        """Planting is on and the comparison can run (its jobs exist only where the
        comparison asks for them)."""
        return bool(self.config["comparison"]["planted"]["enabled"] and self.fitted.rois_enabled())

    def sessions(self, subject: str) -> list[str | None]:
        """The subject's planted sessions: its comparison sessions of two runs or more."""
        return self.fitted.heldout_sessions(subject) if self.enabled() else []

    def folders(self) -> list[str]:
        """``planted/`` when the report (and with it the comparison) runs and a session is
        planted."""
        if not self.config["report"]["enabled"]:
            return []
        return [PLANTED_FOLDER] if any(self.sessions(s) for s in self.dataset.subjects()) else []

    def reference_variant(self, subject: str, session: str | None) -> str:
        """The fit whose type-B betas give the planted responses: raw-single where the
        session fits it (least squares on one echo, no denoising), else the visual ROI's
        source."""
        if "raw-single" in self.fitted.session_variants(subject, session):
            return "raw-single"
        nordic, combine, _ = self.rois.visual_source(subject)
        return Variant.of(nordic, combine)

    # -----------------------------------------------------------------------------------------
    # rules

    def planted_design(self) -> RuleFiles:
        return RuleFiles(
            self._design_inputs,
            self.design_outputs(),
            {
                "te_ref": self._te_ref,
                "run_labels": self._run_labels,
                "slice_timing": self._slice_timing,
                "options": self.ctx.options("comparison"),
            },
        )

    def planted_glm(self) -> RuleFiles:
        return RuleFiles(
            self._glm_inputs,
            self.glm_outputs(),
            {
                "fit": self._fit_args,
                "run_labels": self._run_labels,
                "options": self.ctx.options("glm"),
                "out": self._glm_out,
            },
        )

    # -----------------------------------------------------------------------------------------
    # files

    def design_outputs(self, subject: str | None = None, session: str | None = None) -> Files:
        """The design (and sidecar) of a session, as patterns or for one."""
        return self.ctx.files("planted_design", self.ctx.session_key(subject, session))

    def glm_outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """A variant's planted betas and those of its type-B fit (with sidecars), as patterns
        or for a session (the comparison reads the type-B ones of the reference variant)."""
        return self.ctx.files(
            "planted_glm", self.ctx.session_key(subject, session), nordic=nordic, combine=combine
        )

    def series(self, run: Run | None, variant: str) -> str:
        """What a run's series of ``variant`` contains of the planted responses (in the work
        folder: ``<work_dir>/planted/`` + the series' own place below the output folder)."""
        nordic, combine = Variant(variant).parts()
        real = Path(self.combine.outputs(combine, run, nordic)["bold"])
        return str(Path(self.config["work_dir"]) / PLANTED_FOLDER / real.relative_to(self.ctx.out))

    def variants(self, subject: str, session: str | None) -> list[str]:
        """The session's fitted variants the planting reproduces."""
        return [
            v
            for v in self.fitted.session_variants(subject, session)
            if Variant(v).combine in COMBINES
        ]

    def _design_inputs(self, wc: Any) -> dict[str, Any]:
        sub, ses = self.ctx.session_of(wc)
        ref = Variant(self.reference_variant(sub, ses))
        typeb = self.glm.reference_outputs(ref.nordic, ref.combine, sub, ses)
        real = self.glm.outputs(ref.nordic, ref.combine, sub, ses)
        fits = [self.glm.outputs(*Variant(v).parts(), sub, ses) for v in self.variants(sub, ses)]
        return {
            "reference": typeb["betas_typeb"],
            "trials": real["trials"],
            "summary": real["summary"],
            "hrf": [f["hrfindex"] for f in fits],
            "fit_masks": [f["mask"] for f in fits],
            "mask": self.glm.mask_path(sub, ses),
            "roi": self.rois.visual_roi(sub),
            "series": [
                self.combine.outputs(ref.combine, r, ref.nordic)["bold"]
                for r in self.ctx.session_runs_of(sub, ses)
            ],
            **self._source_inputs(sub, ses),
        }

    def source_sessions(self, subject: str, session: str | None) -> list[str | None]:
        """The sessions whose reference fits give a session its planted responses
        (``comparison.planted.source: other_sessions``): the subject's other planted
        sessions. A handful per subject (its comparison sessions), never every session."""
        if self.config["comparison"]["planted"]["source"] != "other_sessions":
            return []
        return [s for s in self.sessions(subject) if s != session]

    def _source_inputs(self, sub: str, ses: str | None) -> dict[str, list[str]]:
        """The other sessions' type-B betas and trials tables (empty lists where none)."""
        betas, trials = [], []
        for other in self.source_sessions(sub, ses):
            ref = Variant(self.reference_variant(sub, other))
            betas.append(
                self.glm.reference_outputs(ref.nordic, ref.combine, sub, other)["betas_typeb"]
            )
            trials.append(self.glm.outputs(ref.nordic, ref.combine, sub, other)["trials"])
        return {"source_betas": betas, "source_trials": trials}

    def _run_labels(self, wc: Any) -> str:
        """The session's run labels in the trials tables, in run order."""
        return words(self.run_label(r) for r in self.ctx.session_runs(wc))

    def _slice_timing(self, wc: Any) -> str:
        """``--slice-timing`` with the SliceTiming of the session's first run, or nothing (the
        shape estimate reads it only for series not corrected for slice timing)."""
        sub, ses = self.ctx.session_of(wc)
        return slice_timing_words(self.ctx.session_runs_of(sub, ses)[0])

    def _te_ref(self, wc: Any) -> str:
        """Echo time (s) of the reference's single echo (of the session's first run)."""
        sub, ses = self.ctx.session_of(wc)
        run = self.ctx.session_runs_of(sub, ses)[0]
        echo = int(self.config["single_echo"]["echo"])
        times = run.echo_times
        return f"{times[min(echo, len(times)) - 1]:.6g}"

    @staticmethod
    def run_label(run: Run) -> str:
        """A run's label in the trials tables (``1`` for a dataset without run labels)."""
        return run.label or "1"

    def _glm_inputs(self, wc: Any) -> dict[str, Any]:
        sub, ses = self.ctx.session_of(wc)
        runs = self.ctx.session_runs(wc)
        variant = Variant.of(wc.nordic, wc.combine)
        fit = self.glm.outputs(wc.nordic, wc.combine, sub, ses)
        return {
            "bold": [self.combine.outputs(wc.combine, r, wc.nordic)["bold"] for r in runs],
            "events": [str(r.events) for r in runs],
            "planted": [self.series(r, variant) for r in runs],
            "mask": self.glm.mask_path(sub, ses),
            **{f"fit_{k}": fit[k] for k in ("betas", "hrfindex", "fracridge", "mask", "summary")},
        }

    def _fit_args(self, wc: Any, input: Any) -> str:
        keys = ("betas", "hrfindex", "fracridge", "mask", "summary")
        return words(f"{k}={input['fit_' + k]}" for k in keys)

    @staticmethod
    def _glm_out(wc: Any, output: Any) -> str:
        """``betas=… betas_typeb=…`` (no sidecars: the stage writes them)."""
        return words(f"{k}={output[k]}" for k in ("betas", "betas_typeb"))

    # -----------------------------------------------------------------------------------------
    # what the comparison reads

    def entry_files(self, subject: str, session: str | None, variant: str) -> dict[str, Any]:
        """A comparison entry's planted files (empty where the session is not planted)."""
        if session not in self.sessions(subject):
            return {}
        nordic, combine = Variant(variant).parts()
        files = self.glm_outputs(nordic, combine, subject, session)
        out = {
            "planted_design": self.design_outputs(subject, session)["design"],
            "planted": files["betas"],
        }
        if variant == self.reference_variant(subject, session):
            out["planted_typeb"] = files["betas_typeb"]
        return out


__all__ = ["COMBINES", "PLANTED_DESIGN", "PLANTED_FOLDER", "PLANTED_GLM", "PlantedRules"]
