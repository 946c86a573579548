"""The LAION-fMRI loader layout (``publish.laion``): one variant under the loader's names.

Snakemake rules have a fixed list of outputs, while a subject's published files depend on its
sessions, repeat counts and ROIs; so there is one rule per published unit: per session
(``publish_session``: betas, noise ceiling, trials), per subject (``publish_subject``: the
meanR2gt15mask and the all-repeats noise ceiling), per subject and repeat count
(``publish_repeats``), per subject and ROI (``publish_roi``), per session of a subject with
surfaces (``publish_surface``: the betas and noise ceiling on fsnative and fsaverage,
docs/surface.md). Each is a few links (or copies) by one command, ``python -m echoprep
publish``.
"""

from __future__ import annotations

from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.outputs import folder_name
from echoprep.io.rois import VISUAL_CATEGORY, VISUAL_LABEL
from echoprep.io.rule_logs import SESSION_KEY, SUBJECT_KEY
from echoprep.options import section_defaults
from echoprep.plan.context import Files, PlanContext, PlanError, words
from echoprep.plan.families.noiseceiling import NoiseCeilingRules
from echoprep.plan.families.rois import RoiRules
from echoprep.plan.families.surface import SurfaceRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import NO_JOBS, Family, RuleDef, RuleFiles, fixed_mb, without_sidecars
from echoprep.variants import Variant

#: Published session files and the registry outputs they come from.
_SESSION_SOURCES = {"betas": "glm.betas", "nc": "noiseceiling.nc", "trials": "glm.trials"}
_LAION = folder_name("laion")
_COMMAND = "python -m echoprep publish {params.args} --options-json {params.options:q}"


def _publish(name: str, doc: str, level: str, log: Any, message: str, minutes: int = 5) -> RuleDef:
    """A publish rule: links or copies (streamed), the mask reads one 3D map; run in the
    Snakemake process."""
    return RuleDef(
        name=name,
        doc=doc,
        level=level,
        log=log,
        command=_COMMAND,
        message=message,
        memory=fixed_mb(1000),
        minutes=minutes,
        local=True,
    )


PUBLISH_SESSION = _publish(
    "publish_session",
    "A session's betas, noise ceiling and trials in the LAION-fMRI loader's layout",
    "session",
    (_LAION, SESSION_KEY, "publish"),
    "Publish LAION layout {wildcards.ses_prefix}",
    minutes=10,
)
PUBLISH_SUBJECT = _publish(
    "publish_subject",
    "A subject's meanR2gt15mask and all-repeat noise ceiling in the LAION-fMRI loader's layout",
    "subject",
    (_LAION, SUBJECT_KEY, "publish"),
    "Publish LAION layout sub-{wildcards.subject}: meanR2gt15mask, noise ceiling",
)
PUBLISH_REPEATS = _publish(
    "publish_repeats",
    "A subject's N-repeat noise ceiling in the LAION-fMRI loader's layout",
    "subject",
    (_LAION, ("", "sub-{subject}_nc{nrep}rep"), "publish"),
    "Publish LAION layout sub-{wildcards.subject}: {wildcards.nrep}-repeat noise ceiling",
)
PUBLISH_SURFACE = _publish(
    "publish_surface",
    "A session's betas and noise ceiling on the surfaces in the LAION-fMRI loader's layout",
    "session",
    (_LAION, SESSION_KEY, "surface"),
    "Publish LAION layout {wildcards.ses_prefix}: betas and noise ceiling on the surfaces",
)
PUBLISH_ROI = _publish(
    "publish_roi",
    "A subject's ROI mask in the LAION-fMRI loader's layout",
    "subject",
    (folder_name("atlases"), ("", "sub-{subject}_{laion_roi}"), "publish"),
    "Publish LAION layout sub-{wildcards.subject}: ROI {wildcards.laion_roi}",
)


class PublishRules(Family):
    """The publish rules and what they publish (module docstring)."""

    RULES = (PUBLISH_SESSION, PUBLISH_SUBJECT, PUBLISH_REPEATS, PUBLISH_ROI, PUBLISH_SURFACE)

    def __init__(
        self,
        ctx: PlanContext,
        fitted: FittedVariants,
        nc: NoiseCeilingRules,
        rois: RoiRules,
        surface: SurfaceRules,
    ) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.nc = nc
        self.rois = rois
        self.surface = surface

    # -----------------------------------------------------------------------------------------
    # rules

    def _rule(self, inputs: Any, output: Files, **fields: Any) -> RuleFiles:
        params = {"args": self._publish_args, "options": self.ctx.options("publish")}
        return RuleFiles(inputs, output, params, **fields)

    def publish_session(self) -> RuleFiles:
        return self._rule(self._publish_session_inputs, self.publish_session_outputs())

    def publish_subject(self) -> RuleFiles:
        return self._rule(self._publish_subject_inputs, self.publish_subject_outputs())

    def publish_repeats(self) -> RuleFiles:
        return self._rule(self._publish_repeats_inputs, self.publish_repeats_output())

    def publish_surface(self) -> RuleFiles:
        pattern = self.surface.surfaces.subject_pattern()
        prefix = f"sub-(?:{pattern})(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+" if pattern else NO_JOBS
        return self._rule(
            self._publish_surface_inputs,
            self.publish_surface_outputs(),
            wildcard_constraints={"ses_prefix": prefix},
        )

    def publish_roi(self) -> RuleFiles:
        return self._rule(
            self._publish_roi_inputs,
            self.publish_roi_output(),
            wildcard_constraints={"laion_roi": r"[A-Za-z0-9]+"},
        )

    # -----------------------------------------------------------------------------------------
    # what is published

    def publish_enabled(self) -> bool:
        """publish.laion is on, the GLM stage runs and the variant is produced.

        The default variant (nordic-optcom) not produced by this config (NORDIC off, no optcom)
        is not an error: nothing is published and :meth:`publish_warning` says why. A variant
        chosen explicitly must be produced (:meth:`publish_variant` raises).
        """
        return (
            bool(self.config["publish"]["laion"])
            and bool(self.fitted.glm_variant_sessions())
            and self.publish_warning() is None
        )

    def publish_warning(self) -> str | None:
        """Why the LAION layout is skipped although publish.laion is on, or None."""
        if not self.config["publish"]["laion"] or not self.fitted.glm_variant_sessions():
            return None
        if self.config["publish"]["variant"] != section_defaults("publish")["variant"]:
            return None  # chosen explicitly: publish_variant() refuses it if not produced
        try:
            self.publish_variant()
        except PlanError as exc:
            return f"publish.laion: nothing is published: {exc}"
        return None

    def publish_variant(self) -> tuple[str, str]:
        """(nordic, combine) of publish.variant, checked: the config must produce it and fit
        it on every session (the subject-level maps and the mask need every session).

        Raises
        ------
        PlanError
            Naming the key, what the config produces and the two ways out.
        """
        variant = self.config["publish"]["variant"]
        produced = self.fitted.glm_variants()
        everywhere = [v for v in self.config["glm"]["all_sessions_variants"] if v in produced]
        if variant not in produced:
            raise PlanError(
                f"publish.variant: expected a variant this config produces "
                f"({', '.join(produced) or 'none'}); found {variant!r} (NORDIC side "
                f"{'on' if 'nordic' in self.ctx.nordic_variants else 'off'}, variants.combine "
                f"{list(self.config['variants']['combine'])}). Fix: set publish.variant to one "
                "of the produced variants fitted on every session (glm.all_sessions_variants), "
                "or publish.laion: false."
            )
        if variant not in everywhere:
            raise PlanError(
                f"publish.variant: {variant!r} is fitted only for the comparison sessions; the "
                "LAION layout needs it on every session (its mean R² mask and subject noise "
                f"ceilings). Fix: add {variant!r} to glm.all_sessions_variants, set "
                f"publish.variant to one of {everywhere or 'glm.all_sessions_variants'}, or "
                "publish.laion: false."
            )
        nordic, combine = Variant(variant).parts()
        return nordic, combine

    def folders(self) -> list[str]:
        """:meth:`publish_folders`."""
        return self.publish_folders()

    def publish_folders(self) -> list[str]:
        """The LAION layout's folders this config writes (each gets a dataset description)."""
        return [reg.LAION_GLM, reg.LAION_ATLASES] if self.publish_enabled() else []

    def _published_session_key(self, subject: str | None, session: str | None) -> tuple[str, str]:
        return reg.session_key(subject, session, self.ctx.task())

    def _published_subject_key(self, subject: str) -> tuple[str, str]:
        return reg.get("publish.mask").subject_key(subject, self.ctx.task())

    # -----------------------------------------------------------------------------------------
    # per session: betas, noise ceiling, trials

    def publish_session_outputs(
        self, subject: str | None = None, session: str | None = None
    ) -> Files:
        """The published session files (with sidecars), as patterns or for one session."""
        outs = {k: reg.get(f"publish.{k}") for k in _SESSION_SOURCES}
        return self.ctx.paths(outs, self._published_session_key(subject, session))

    def _publish_session_inputs(self, wc: Any) -> Files:
        """The published variant's originals of a session (each standing for its sidecar,
        whose content the publish stage carries into the published file's)."""
        nordic, combine = self.publish_variant()
        sub, ses = self.ctx.session_of(wc)
        key = self.ctx.session_key(sub, ses)
        outs = {k: reg.get(name) for k, name in _SESSION_SOURCES.items()}
        return without_sidecars(self.ctx.paths(outs, key, nordic=nordic, combine=combine))

    def publish_surface_outputs(
        self, subject: str | None = None, session: str | None = None
    ) -> Files:
        """The published session maps on the surfaces (with sidecars), keys
        ``<betas|nc>_<L|R>_<space>`` as the surface rule's, as patterns or for one session."""
        key = self._published_session_key(subject, session)
        files: Files = {}
        for name in ("betas", "nc"):
            o = reg.get(f"publish.surface_{name}")
            for hemi in ("L", "R"):
                for space in self.surface.surfaces.spaces():
                    tag = f"{name}_{hemi}_{space}"
                    path = o.path(self.ctx.out, key, hemi=hemi, surface_space=space)
                    files.update(reg.with_sidecars({tag: path}, {tag: o}))
        return files

    def _publish_surface_inputs(self, wc: Any) -> Files:
        """The published variant's maps of the session on the surfaces."""
        nordic, combine = self.publish_variant()
        sub, ses = self.ctx.session_of(wc)
        maps = self.surface.session_outputs(nordic, combine, sub, ses)
        return without_sidecars({k: v for k, v in maps.items() if not k.startswith("r2_")})

    # -----------------------------------------------------------------------------------------
    # per subject: the mask and the all-repeats noise ceiling; per repeat count

    def publish_subject_outputs(self, subject: str = "{subject}") -> Files:
        """The subject's meanR2gt15mask and all-repeats noise ceiling (with sidecars)."""
        outs = {k: reg.get(f"publish.{k}") for k in ("mask", "allrep")}
        return self.ctx.paths(outs, self._published_subject_key(subject))

    def _publish_subject_inputs(self, wc: Any) -> Files:
        """The published variant's mean R² and all-repeats noise ceiling of the subject."""
        nordic, combine = self.publish_variant()
        maps = self.nc.subject_outputs(nordic, combine, wc.subject)
        return {k: maps[k] for k in ("r2mean", "allrep")}

    def publish_repeats_output(self, subject: str = "{subject}", n: Any = "{nrep}") -> Files:
        """The subject's published noise ceiling of n repeats (with sidecar)."""
        nrep = n if n == "{nrep}" else int(n)
        files = self.ctx.paths(
            {"nc": reg.get("publish.nrep")}, self._published_subject_key(subject), nrep=nrep
        )
        return files

    def _publish_repeats_inputs(self, wc: Any) -> Files:
        nordic, combine = self.publish_variant()
        return without_sidecars(self.nc.repeats_output(nordic, combine, wc.subject, wc.nrep))

    # -----------------------------------------------------------------------------------------
    # ROIs: atlases/sub-X/rois/<label>.nii.gz

    def publish_rois(self, subject: str) -> dict[str, str]:
        """``ROI label -> mask`` of every ROI of the subject (the visual ROI, then the user
        ROIs): the published name is the ROI's label.

        Raises
        ------
        PlanError
            Two categories with the same label (the published names would collide).
        """
        res = self.rois.res(subject)
        masks: dict[str, str] = {}
        for category, label in [(VISUAL_CATEGORY, VISUAL_LABEL), *self.rois.user_rois(subject)]:
            path = self.rois.mask_path(subject, category, label, res)
            if label in masks:
                published = reg.get("publish.roi")
                name = published.path("", published.subject_key(subject), roi=label)
                raise PlanError(
                    f"publish.laion: sub-{subject} has two ROIs labelled {label!r} ({masks[label]} "
                    f"and {path}); the LAION layout names a ROI by its label alone "
                    f"({name}). Fix: rename one of them in "
                    "rois.dir, or publish.laion: false."
                )
            masks[label] = path
        return masks

    def publish_roi_output(self, subject: str = "{subject}", roi: str = "{laion_roi}") -> Files:
        """A published ROI (with sidecar), as a pattern or for one ROI."""
        o = reg.get("publish.roi")
        files = self.ctx.paths({"roi": o}, o.subject_key(subject), roi=roi)
        return files

    def _publish_roi_inputs(self, wc: Any) -> Files:
        masks = self.publish_rois(wc.subject)
        if wc.laion_roi not in masks:
            raise PlanError(
                f"no ROI {wc.laion_roi!r} for sub-{wc.subject}; its ROIs: {sorted(masks)}"
            )
        return {"roi": masks[wc.laion_roi]}

    # -----------------------------------------------------------------------------------------
    # arguments and targets

    def _publish_args(self, wc: Any, input: Any, output: Any) -> str:
        """``--source KEY=PATH ... [--r2mean PATH] --out KEY=PATH ...`` of a publish job (no
        sidecars: the stage writes them)."""
        published = [k for k in output.keys() if k != "mask" and not k.endswith("_json")]
        sources = [f"{k}={input[k]}" for k in published]
        outs = [f"{k}={v}" for k, v in output.items() if not k.endswith("_json")]
        args: list[Any] = ["--source", *sources] if sources else []
        if "mask" in output.keys():
            args += ["--r2mean", input["r2mean"]]
        return words([*args, "--out", *outs])

    def targets(self) -> list[str]:
        """Every published file of every subject and session (none when publish.laion is off
        or no GLM runs)."""
        if not self.publish_enabled():
            return []
        self.publish_variant()  # the check, before any path is built
        targets: list[str] = []
        for sub in self.dataset.subjects():
            for ses in self.dataset.sessions(sub):
                targets.extend(self.publish_session_outputs(sub, ses).values())
                if self.surface.surfaces.has(sub):
                    targets.extend(self.publish_surface_outputs(sub, ses).values())
            targets.extend(self.publish_subject_outputs(sub).values())
            for n in self.nc.subject_repeat_counts(sub):
                targets.extend(self.publish_repeats_output(sub, n).values())
            for label in self.publish_rois(sub):
                targets.extend(self.publish_roi_output(sub, label).values())
        return targets


__all__ = [
    "PUBLISH_REPEATS",
    "PUBLISH_ROI",
    "PUBLISH_SESSION",
    "PUBLISH_SUBJECT",
    "PUBLISH_SURFACE",
    "PublishRules",
]
