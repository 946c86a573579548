"""ROIs on the functional grid (:mod:`echoprep.stages.rois`): the visual ROI from a GLM
(``rois_visual``), the user's ROI files brought onto the grid (``rois_mask``) and a table per
fitted session and variant (``rois_table``)."""

from __future__ import annotations

from typing import Any, cast

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.outputs import folder_name
from echoprep.io.rois import (
    VISUAL_CATEGORY,
    VISUAL_LABEL,
    SurfaceRoiFile,
    find_roi_files,
    find_surface_roi_files,
    res_label,
)
from echoprep.io.rule_logs import SESSION_KEY
from echoprep.plan.context import Files, PlanContext, PlanError, strip_label, words
from echoprep.plan.families.anatomy import AnatomyRules
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.families.noiseceiling import NoiseCeilingRules
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.families.surface import SurfaceRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import Family, RuleDef, RuleFiles, fixed_mb
from echoprep.variants import Variant

_ROIS = folder_name("rois")


def _visual_mb(family: Any, wc: Any, attempt: int) -> int:
    """4.5 float32 copies of the betas of the visual ROI's source session + 500 MB."""
    _, _, session = family.visual_source(wc.subject)
    runs = family.dataset.runs_of(wc.subject, session)
    return res.betas_mb(family.ctx.runs_size(runs), 4.5, 500, attempt)


ROIS_VISUAL = RuleDef(
    name="rois_visual",
    doc="The subject's data-driven visually responsive ROI (image-vs-blank test across runs, FDR)",
    level="subject",
    log=(_ROIS, ("", "sub-{subject}_res-{roi_res}"), "visual"),
    command=(
        "python -m echoprep rois visual --betas {input.betas:q} --trials {input.trials:q}"
        " --summary {input.summary:q} --onoff-r2 {input.onoff_r2:q} --brain-mask {input.mask:q}"
        " --analysis-mask {input.analysis:q} --options-json {params.options:q}"
        " --variant {params.variant:q} --out mask={output.mask:q}"
    ),
    message="Visual ROI sub-{wildcards.subject} res-{wildcards.roi_res}",
    memory=_visual_mb,
    minutes=10,
)
ROIS_MASK = RuleDef(
    name="rois_mask",
    doc="One of your ROI masks (rois.dir) resampled onto the subject's functional grid",
    level="subject",
    log=(_ROIS, ("", "sub-{subject}_{roi_category}_{roi_label}_res-{roi_res}"), ""),
    command=(
        "python -m echoprep rois mask --mask {input.mask:q} --reference {input.reference:q}"
        " {params.args} --out mask={output.mask:q}"
    ),
    message=(
        "ROI {wildcards.roi_category}/{wildcards.roi_label} sub-{wildcards.subject}"
        " res-{wildcards.roi_res}"
    ),
    memory=fixed_mb(2000),
    minutes=10,
    env="spatial",
)
ROIS_TABLE = RuleDef(
    name="rois_table",
    doc="ROI table of one session and variant: voxels, median and mean noise ceiling, median R2",
    level="session",
    log=(folder_name("glm"), SESSION_KEY, "rois"),
    command=(
        "python -m echoprep rois table --nc {input.nc:q} --r2 {input.r2:q} --masks {input.masks:q}"
        " --variant {params.variant:q} {params.surface} --out tsv={output.tsv:q}"
    ),
    message="ROI table {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})",
    # a light local rule (one thread next to Snakemake): a few tables
    memory=fixed_mb(1000),
    minutes=5,
    local=True,
)


class RoiRules(Family):
    """The ROI rules and the ROI files of each subject (module docstring)."""

    RULES = (ROIS_VISUAL, ROIS_MASK, ROIS_TABLE)

    def __init__(
        self,
        ctx: PlanContext,
        fitted: FittedVariants,
        anatomy: AnatomyRules,
        spatial: SpatialRules,
        glm: GlmRules,
        nc: NoiseCeilingRules,
        surface: SurfaceRules,
    ) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.anatomy = anatomy
        self.spatial = spatial
        self.glm = glm
        self.nc = nc
        self.surface = surface

    def folders(self) -> list[str]:
        """``rois/`` when the GLM runs."""
        return [_ROIS] if self.fitted.rois_enabled() else []

    # -----------------------------------------------------------------------------------------
    # rules

    def rois_visual(self) -> RuleFiles:
        return RuleFiles(
            self._visual_inputs,
            self.mask_outputs(visual=True),
            {"options": self.ctx.options("rois"), "variant": self._visual_variant},
        )

    def rois_mask(self) -> RuleFiles:
        return RuleFiles(
            self._user_inputs,
            self.mask_outputs(),
            {"args": self._user_params},
            # the visual ROI's label is reserved (rois_visual writes it)
            wildcard_constraints={
                "roi_label": r"(?!visuallyResponsive(?![A-Za-z0-9]))[A-Za-z0-9]+"
            },
        )

    def rois_table(self) -> RuleFiles:
        return RuleFiles(
            self._table_inputs,
            self.table_path(),
            {"variant": lambda wc: f"{wc.nordic}-{wc.combine}", "surface": self._surface_args},
        )

    # -----------------------------------------------------------------------------------------
    # the visual ROI's source and the grid

    def visual_source(self, subject: str) -> tuple[str, str, str | None]:
        """(nordic, combine, session) whose GLM outputs define the subject's visual ROI."""
        produced = self.fitted.glm_variants()
        variant = self.config["rois"]["visual"]["variant"] or next(iter(produced), None)
        if variant not in produced:
            raise PlanError(
                f"rois.visual.variant: expected a variant this config produces "
                f"({', '.join(produced)}); found {variant!r}. Fix: choose one of them (the "
                "default raw-single needs nordic-off outputs and the single-echo variant)."
            )
        wanted = self.config["rois"]["visual"]["session"]
        sessions = self.fitted.comparison_sessions(subject) or self.dataset.sessions(subject)
        session = strip_label(wanted, "ses") if wanted else sessions[0]
        if session not in self.dataset.sessions(subject):
            raise PlanError(
                f"rois.visual.session: sub-{subject} has no session {wanted!r}; it has "
                f"{self.dataset.sessions(subject)}"
            )
        if (subject, session) not in self.fitted.glm_variant_sessions().get(variant, []):
            raise PlanError(
                f"rois.visual: {variant} is not fitted for sub-{subject} ses-{session}. Fix: use "
                "a comparison session (comparison.sessions) or add the variant to "
                "glm.all_sessions_variants."
            )
        nordic, combine = Variant(variant).parts()
        return nordic, combine, session

    def visual_glm(self, subject: str) -> Files:
        """The GLM outputs the visual ROI of a subject is computed from."""
        nordic, combine, session = self.visual_source(subject)
        return self.glm.outputs(nordic, combine, subject, session)

    def _visual_variant(self, wc: Any) -> str:
        nordic, combine, _ = self.visual_source(wc.subject)
        return Variant.of(nordic, combine)

    def grid(self, subject: str) -> str:
        """The functional grid of a subject: spatial's T1w-aligned reference, else the GLM
        mask the visual ROI comes from (same grid as every GLM output)."""
        return self.spatial.func_grid(subject) or self.visual_glm(subject)["mask"]

    def brain_mask(self, subject: str) -> str:
        """Brain mask on the functional grid (d' outside = brain - ROI): spatial's, else the
        GLM mask of the visual ROI's source."""
        return self.spatial.func_brain_mask(subject) or self.visual_glm(subject)["mask"]

    def res(self, subject: str) -> str:
        """res label of the subject's ROI masks: rois.res, else the functional voxel size
        (spatial.voxel_size for a T1w-aligned grid when set, else the raw BOLD's)."""
        if self.config["rois"]["res"]:
            return self.config["rois"]["res"]
        size = self.config["spatial"]["voxel_size"] if self.spatial.func_grid(subject) else None
        if size is None:
            import nibabel
            from nibabel.spatialimages import SpatialImage

            run = self.dataset.first_run(subject)
            bold = cast(SpatialImage, nibabel.load(run.echoes[0].mag))  # NIfTI (discovery)
            size = bold.header.get_zooms()[:3]
        return res_label(size)

    # -----------------------------------------------------------------------------------------
    # masks and tables

    def user_rois(self, subject: str) -> dict[tuple[str, str], Any]:
        """The user ROI files of a subject (rois.dir), by (category, label)."""
        try:
            found = find_roi_files(self.config["rois"]["dir"], subject)
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        return {(f.category, f.label): f for f in found}

    def mask_path(
        self,
        subject: str = "{subject}",
        category: str = "{roi_category}",
        label: str = "{roi_label}",
        res: str = "{roi_res}",
    ) -> str:
        """A ROI mask on the functional grid, as a pattern or for a subject and ROI."""
        o = reg.get("rois.mask")
        key = o.subject_key(subject, category=category)
        return str(o.path(self.ctx.out, key, space=self.ctx.space(), res=res, label=label))

    def mask_outputs(self, visual: bool = False) -> Files:
        """The outputs (mask and sidecar) of the rois_mask / rois_visual rule."""
        path = (
            self.mask_path(category=VISUAL_CATEGORY, label=VISUAL_LABEL)
            if visual
            else self.mask_path()
        )
        files = reg.with_sidecars({"mask": path}, {"mask": reg.get("rois.mask")})
        return {"mask": files["mask"], "json": files["mask_json"]}

    def masks(self, subject: str) -> list[str]:
        """Every ROI mask of a subject on its functional grid (visual ROI first)."""
        res = self.res(subject)
        masks = [self.mask_path(subject, VISUAL_CATEGORY, VISUAL_LABEL, res)]
        for category, label in self.user_rois(subject):
            masks.append(self.mask_path(subject, category, label, res))
        return masks

    def visual_roi(self, subject: str) -> str:
        return self.masks(subject)[0]

    def _user_inputs(self, wc: Any) -> Files:
        found = self.user_rois(wc.subject).get((wc.roi_category, wc.roi_label))
        if found is None:
            raise PlanError(
                f"no ROI {wc.roi_category}/{wc.roi_label} for sub-{wc.subject} in rois.dir "
                f"({self.config['rois']['dir']})"
            )
        files = {"mask": str(found.path), "reference": self.grid(wc.subject)}
        if found.space != "T1w":
            files["xfm"] = self.anatomy.outputs(wc.subject)["xfm_from_template"]
        return files

    def _user_params(self, wc: Any, input: Any) -> str:
        found = self.user_rois(wc.subject)[(wc.roi_category, wc.roi_label)]
        args = ["--space", found.space, "--category", wc.roi_category]
        args += ["--grid-space", self.ctx.space() or "native"]
        if "xfm" in input.keys():
            args += ["--xfm-from-template", input.xfm]
        return words(args)

    def _visual_inputs(self, wc: Any) -> Files:
        glm = self.visual_glm(wc.subject)
        files = {k: glm[k] for k in ("betas", "trials", "summary", "onoff_r2")}
        nordic, combine, session = self.visual_source(wc.subject)
        if self.config["rois"]["visual"]["method"] != "blank_trials":
            # the run-level test needs least-squares betas (type D's ridge and autoscale
            # offset make the runs look alike): the type-B betas of the source
            reference = self.glm.reference_outputs(nordic, combine, wc.subject, session)
            files["betas"] = reference["betas_typeb"]
        files["mask"] = self.brain_mask(wc.subject)
        # the ROI lies inside the analysis mask of its source session
        files["analysis"] = self.glm.mask_path(wc.subject, session)
        return files

    def table_path(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """The ROI table (and sidecar) of a session and variant, as patterns or for one."""
        key = self.ctx.session_key(subject, session)
        outs = {"tsv": reg.get("rois.table")}
        files = self.ctx.paths(outs, key, nordic=nordic, combine=combine)
        return {"tsv": files["tsv"], "json": files["tsv_json"]}

    def surface_rois(self, subject: str) -> list[SurfaceRoiFile]:
        """The user's surface ROI files of a subject (rois.dir), when it has surfaces."""
        if not self.surface.surfaces.has(subject):
            return []
        try:
            return find_surface_roi_files(self.config["rois"]["dir"], subject)
        except ValueError as exc:
            raise PlanError(str(exc)) from None

    def _table_inputs(self, wc: Any) -> dict[str, Any]:
        sub, ses = self.ctx.session_of(wc)
        files: dict[str, Any] = {
            "nc": self.nc.session_outputs(wc.nordic, wc.combine, sub, ses)["nc"],
            "r2": self.glm.outputs(wc.nordic, wc.combine, sub, ses)["r2"],
            "masks": self.masks(sub),
        }
        found = self.surface_rois(sub)
        if found:
            maps = self.surface.session_outputs(wc.nordic, wc.combine, sub, ses)
            for hemi in ("L", "R"):
                files[f"surface_nc_{hemi}"] = maps[f"nc_{hemi}_fsnative"]
                files[f"surface_r2_{hemi}"] = maps[f"r2_{hemi}_fsnative"]
            files["surface_rois"] = [str(f.path) for f in found]
        return files

    def _surface_args(self, wc: Any, input: Any) -> str:
        """``--surface-nc``, ``--surface-r2`` and ``--surface-rois`` when the session's subject
        has surface ROIs, else nothing."""
        if "surface_rois" not in input.keys():
            return ""
        sub, _ = self.ctx.session_of(wc)
        args: list[str] = []
        for what in ("nc", "r2"):
            args += [f"--surface-{what}", *(f"{h}={input[f'surface_{what}_{h}']}" for h in "LR")]
        args += ["--surface-rois", *(f"{f.category}={f.path}" for f in self.surface_rois(sub))]
        return words(args)

    def targets(self) -> list[str]:
        """ROI masks of every subject and the ROI table of every fitted session and variant."""
        if not self.fitted.rois_enabled():
            return []
        targets = []
        for sub in self.dataset.subjects():
            targets.extend(self.masks(sub))
        for variant, pairs in self.fitted.glm_variant_sessions().items():
            nordic, combine = Variant(variant).parts()
            for sub, ses in pairs:
                targets.extend(self.table_path(nordic, combine, sub, ses).values())
        return targets


__all__ = ["ROIS_MASK", "ROIS_TABLE", "ROIS_VISUAL", "RoiRules"]
