"""Noise ceilings (:mod:`echoprep.stages.noiseceiling`): per session and variant
(``noiseceiling_session``), per subject over its sessions (``noiseceiling_subject``) and for
an average of n repeats (``noiseceiling_repeats``, one job per repeat count the subject's
stimuli have when the counts are mixed)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.events import mixed_repeat_counts, stimulus_counts
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import SESSION_KEY, SUBJECT_DIR_KEY
from echoprep.plan.context import Files, PlanContext, PlanError, words
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import Family, RuleDef, RuleFiles, fixed_mb
from echoprep.variants import Variant

_GLM = folder_name("glm")


def _session_mb(family: Any, wc: Any, attempt: int) -> int:
    """Three float32 copies of the session's betas + 500 MB."""
    return res.betas_mb(family.ctx.runs_size(family.ctx.session_runs(wc)), 3, 500, attempt)


def _subject_mb(family: Any, wc: Any, attempt: int) -> int:
    """Three float32 copies of the betas of every session of the subject + 500 MB."""
    runs = family.dataset.subject_runs(family.ctx.subject_of(wc))
    return res.betas_mb(family.ctx.runs_size(runs), 3, 500, attempt)


NOISECEILING_SESSION = RuleDef(
    name="noiseceiling_session",
    doc="Noise ceiling of one session and variant (betas z-scored per run)",
    level="session",
    log=(_GLM, SESSION_KEY, "noiseceiling"),
    command=(
        "python -m echoprep noiseceiling session --betas {input.betas:q} --trials {input.trials:q}"
        " --mask {input.mask:q} {params.space} --out nc={output.nc:q}"
    ),
    message="Noise ceiling {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})",
    memory=_session_mb,
    minutes=15,
    scale="session",
)
NOISECEILING_SUBJECT = RuleDef(
    name="noiseceiling_subject",
    doc="Noise ceiling of a subject over its sessions (z-scored per session), mean R2 and ncsnr",
    level="subject",
    log=(_GLM, SUBJECT_DIR_KEY, "noiseceiling"),
    command=(
        "python -m echoprep noiseceiling subject --betas {input.betas:q} --trials {input.trials:q}"
        " --mask {input.mask:q} --r2 {input.r2:q} {params.space} --out allrep={output.allrep:q}"
        " r2mean={output.r2mean:q} ncsnr={output.ncsnr:q}"
    ),
    message=(
        "Noise ceiling {wildcards.sub_prefix}, all sessions"
        " ({wildcards.nordic}-{wildcards.combine})"
    ),
    memory=_subject_mb,
    minutes=10,
    scale="subject",
)
NOISECEILING_REPEATS = RuleDef(
    name="noiseceiling_repeats",
    doc="Noise ceiling for N averaged repeats, from the subject's ncsnr (mixed repeat counts)",
    level="subject",
    log=(_GLM, SUBJECT_DIR_KEY, "nc{nrep}rep"),
    command=(
        "python -m echoprep noiseceiling repeats --ncsnr {input.ncsnr:q} --repeats {wildcards.nrep}"
        " {params.space} --out nc={output.nc:q}"
    ),
    message=(
        "Noise ceiling for {wildcards.nrep} repeats {wildcards.sub_prefix}"
        " ({wildcards.nordic}-{wildcards.combine})"
    ),
    # a light local rule (one thread next to Snakemake): a 3D map
    memory=fixed_mb(500),
    minutes=5,
    local=True,
)


class NoiseCeilingRules(Family):
    """The noise-ceiling rules, their files and the targets of every fit (module docstring)."""

    RULES = (NOISECEILING_SESSION, NOISECEILING_SUBJECT, NOISECEILING_REPEATS)

    def __init__(self, ctx: PlanContext, fitted: FittedVariants, glm: GlmRules) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.glm = glm

    # -----------------------------------------------------------------------------------------
    # rules

    def noiseceiling_session(self) -> RuleFiles:
        fit = self.glm.outputs()
        return RuleFiles(
            {k: fit[k] for k in ("betas", "trials", "mask")},
            self.session_outputs(),
            {"space": self.space_args},
        )

    def noiseceiling_subject(self) -> RuleFiles:
        return RuleFiles(self._subject_inputs, self.subject_outputs(), {"space": self.space_args})

    def noiseceiling_repeats(self) -> RuleFiles:
        return RuleFiles(
            {"ncsnr": self.subject_outputs()["ncsnr"]},
            self.repeats_output(),
            {"space": self.space_args},
        )

    # -----------------------------------------------------------------------------------------
    # files

    def session_outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """The session noise-ceiling map (and sidecar), as a pattern or for a session."""
        outs = {"nc": reg.get("noiseceiling.nc")}
        key = self.ctx.session_key(subject, session)
        return self.ctx.paths(outs, key, nordic=nordic, combine=combine)

    def _subject_key(self, subject: str | None) -> tuple[str, str]:
        if subject is None:
            return "{sub_dir}", "{sub_prefix}"
        return reg.subject_key(subject, self.ctx.task())

    def subject_outputs(
        self, nordic: str = "{nordic}", combine: str = "{combine}", subject: str | None = None
    ) -> Files:
        """A subject's cross-session maps (allrep, r2mean, ncsnr), as patterns or for one."""
        outs = {n: reg.get(f"noiseceiling.{n}") for n in ("allrep", "r2mean", "ncsnr")}
        key = self._subject_key(subject)
        return self.ctx.paths(outs, key, nordic=nordic, combine=combine)

    def repeats_output(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        n: Any = "{nrep}",
    ) -> Files:
        """The ceiling map for an average of n repeats (and sidecar) of a subject."""
        outs = {"nc": reg.get("noiseceiling.nrep")}
        nrep = n if n == "{nrep}" else int(n)
        key = self._subject_key(subject)
        return self.ctx.paths(outs, key, nordic=nordic, combine=combine, nrep=nrep)

    def _subject_inputs(self, wc: Any) -> dict[str, list[str]]:
        """Betas, trials, masks and R² of every session of the subject for the variant."""
        sub = self.ctx.subject_of(wc)
        outs = [
            self.glm.outputs(wc.nordic, wc.combine, sub, ses) for ses in self.dataset.sessions(sub)
        ]
        return {k: [o[k] for o in outs] for k in ("betas", "trials", "mask", "r2")}

    def space_args(self, wc: Any = None) -> str:
        """``--space <label>`` when the functional grid has a space, else nothing."""
        return words(["--space", self.ctx.space()]) if self.ctx.space() else ""

    @cached_property
    def _repeat_counts(self) -> dict[str, list[int]]:
        return {}

    def subject_repeat_counts(self, subject: str) -> list[int]:
        """Distinct repeat counts (>= 2) of the subject's stimuli over its sessions, when they
        are mixed (else []). Reads every events file of the subject once per plan."""
        if subject not in self._repeat_counts:
            self._repeat_counts[subject] = self._read_repeat_counts(subject)
        return self._repeat_counts[subject]

    def _read_repeat_counts(self, subject: str) -> list[int]:
        events = [r.events for r in self.dataset.subject_runs(subject) if r.events]
        try:
            counts = stimulus_counts(
                events,
                label_column=self.config["glm"]["label_column"] or self.dataset.label_column,
                blank_trial_types=self.config["glm"]["blank_trial_types"],
            )
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        return mixed_repeat_counts(counts)

    def targets(self) -> list[str]:
        """Every GLMsingle output and noise-ceiling map the config asks for, the analysis masks
        of the fitted sessions and the comparison's held-out fits."""
        targets: list[str] = []
        everywhere = set(self.config["glm"]["all_sessions_variants"])
        variant_sessions = self.fitted.glm_variant_sessions()
        fitted = sorted({p for pairs in variant_sessions.values() for p in pairs}, key=str)
        for sub, ses in fitted:
            targets.extend(self.ctx.files("analysis_mask", self.ctx.session_key(sub, ses)).values())
        targets.extend(self.glm.heldout_targets())
        for variant, pairs in variant_sessions.items():
            nordic, combine = Variant(variant).parts()
            for sub, ses in pairs:
                targets.extend(self.glm.outputs(nordic, combine, sub, ses).values())
                targets.extend(self.session_outputs(nordic, combine, sub, ses).values())
            if variant not in everywhere:
                continue
            for sub in sorted({s for s, _ in pairs}):
                targets.extend(self.subject_outputs(nordic, combine, sub).values())
                for n in self.subject_repeat_counts(sub):
                    targets.extend(self.repeats_output(nordic, combine, sub, n).values())
        return targets


__all__ = [
    "NOISECEILING_REPEATS",
    "NOISECEILING_SESSION",
    "NOISECEILING_SUBJECT",
    "NoiseCeilingRules",
]
