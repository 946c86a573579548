"""The cortical surface (:mod:`echoprep.stages.surface`, docs/surface.md): a subject's
FreeSurfer surfaces aligned to its T1w (``surface_anatomy``), each GLM fit's betas, noise
ceiling and R² on fsnative and fsaverage (``surface_session``), the subject's cross-session
noise ceiling and mean R² (``surface_subject``) and, with ``surface.bold``, every
echo-handling series (``surface_bold``). Jobs only for the subjects with a FreeSurfer folder
(:class:`echoprep.plan.surfaces.Surfaces`)."""

from __future__ import annotations

from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.bids import Run
from echoprep.io.freesurfer import HEMIS
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import RUN_KEY, SESSION_KEY, SUBJECT_DIR_KEY, SUBJECT_KEY
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.families.anatomy import AnatomyRules
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.families.noiseceiling import NoiseCeilingRules
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import NO_JOBS, Family, RuleDef, RuleFiles, fixed_mb
from echoprep.plan.surfaces import Surfaces
from echoprep.variants import Variant

_GLM = folder_name("glm")
#: The GLM maps sampled per session and per subject: registry name -> ``--map`` name.
SESSION_MAPS = ("betas", "nc", "r2")
SUBJECT_MAPS = ("allrep", "r2mean")
#: The surfaces ``surface_anatomy`` writes per hemisphere (registry names).
SURFACES = ("white", "pial", "midthickness", "sphere")


#: The wildcard that keys each sampling rule's jobs (by its first map), and what follows the
#: subject in it.
_KEYS = {
    "betas": ("ses_prefix", r"(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+"),
    "allrep": ("sub_prefix", r"_task-[A-Za-z0-9]+"),
    "bold": ("run_prefix", r"(_[a-z]+-[A-Za-z0-9]+)*"),
}


def _session_mb(family: Any, wc: Any, attempt: int) -> int:
    """The session's betas on every vertex of both hemispheres three times (fsnative, the
    template, the chunk being encoded), 64 volumes of the grid and 1.5 GB (MB): 5.7 GB at
    LAION size against 3.17 GiB measured (benchmarks/surface.py)."""
    sub, _ = family.ctx.session_of(wc)
    size = family.ctx.runs_size(family.ctx.session_runs(wc))
    vertices = sum(family.surfaces.subjects[sub].vertices.values())
    return int((1500 + 4 * (3 * vertices * size.trials + 2 * 64 * size.voxels) / 1e6) * attempt)


def _bold_mb(family: Any, wc: Any, attempt: int) -> int:
    """The run's series on every vertex three times, 64 volumes of the grid and 1.5 GB (MB)."""
    run = family.ctx.run_of(wc)
    vertices = sum(family.surfaces.subjects[run.subject].vertices.values())
    size = family.ctx.run_size(run)
    return int((1500 + 4 * (3 * vertices + 2 * size.voxels) * size.volumes / 1e6) * attempt)


SURFACE_ANATOMY = RuleDef(
    name="surface_anatomy",
    doc="A subject's FreeSurfer surfaces aligned to its preprocessed T1w (rigid fit of orig.mgz)",
    level="subject",
    log=(folder_name("anatomy"), SUBJECT_KEY, "surface"),
    command=(
        "python -m echoprep surface anatomy --orig {input.orig:q} --surf {params.surf}"
        " --t1w {input.t1w:q} --brain-mask {input.brain_mask:q} --options-json {params.options:q}"
        " --seed {params.seed} --threads {params.threads} --out {params.out}"
    ),
    message="Surfaces sub-{wildcards.subject}: FreeSurfer to T1w",
    # orig.mgz (256³ float32), a 1 mm T1w and ANTs's pyramid: 1.07 GiB measured at LAION size
    # (benchmarks/surface.py)
    memory=fixed_mb(3000),
    minutes=15,
    # Mattes mutual information is reproducible on one thread only (echoprep.adapters.ants)
    threads=1,
    env="spatial",
)
SURFACE_SESSION = RuleDef(
    name="surface_session",
    doc=(
        "A session's betas, noise ceiling and R² sampled through the cortical ribbon to fsnative"
        " and fsaverage"
    ),
    level="session",
    log=(_GLM, SESSION_KEY, "surface"),
    command=(
        "python -m echoprep surface sample --map {params.maps} --mask {input.mask:q}"
        " --surfaces {params.surfaces} {params.template} {params.template_spheres}"
        " --options-json {params.options:q}"
        " --threads {params.threads} --out {params.out}"
    ),
    message="Surface maps {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})",
    memory=_session_mb,
    minutes=20,
    scale="session",
)
SURFACE_SUBJECT = RuleDef(
    name="surface_subject",
    doc="A subject's across-session noise ceilings and mean R² on fsnative and fsaverage",
    level="subject",
    log=(_GLM, SUBJECT_DIR_KEY, "surface"),
    command=SURFACE_SESSION.command,
    message=(
        "Surface maps {wildcards.sub_prefix}, all sessions ({wildcards.nordic}-{wildcards.combine})"
    ),
    memory=fixed_mb(3000),
    minutes=10,
)
SURFACE_BOLD = RuleDef(
    name="surface_bold",
    doc="A run's echo-handling series sampled to the surfaces (surface.bold)",
    level="run",
    log=(folder_name("combine"), RUN_KEY, "surface{combine}"),
    command=SURFACE_SESSION.command,
    message="Surface series {wildcards.run_prefix} ({wildcards.nordic}-{wildcards.combine})",
    memory=_bold_mb,
    minutes=10,
    scale="run",
)


class SurfaceRules(Family):
    """The surface rules, their files and targets (module docstring)."""

    RULES = (SURFACE_ANATOMY, SURFACE_SESSION, SURFACE_SUBJECT, SURFACE_BOLD)

    def __init__(
        self,
        ctx: PlanContext,
        fitted: FittedVariants,
        surfaces: Surfaces,
        anatomy: AnatomyRules,
        families: tuple[SpatialRules, CombineRules, GlmRules, NoiseCeilingRules],
    ) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.surfaces = surfaces
        self.anatomy = anatomy
        self.spatial, self.combine, self.glm, self.nc = families

    # -----------------------------------------------------------------------------------------
    # rules

    def surface_anatomy(self) -> RuleFiles:
        pattern = self.surfaces.subject_pattern()
        return RuleFiles(
            self._anatomy_inputs,
            self.anatomy_outputs(),
            {
                "surf": self._surf_args,
                "options": self.ctx.options("surface"),
                "seed": self.ctx.seed(),
                "out": self._out_args,
            },
            wildcard_constraints={"subject": pattern or NO_JOBS},
        )

    def surface_session(self) -> RuleFiles:
        return self._sample_rule(self._session_inputs, self.session_outputs(), SESSION_MAPS)

    def surface_subject(self) -> RuleFiles:
        return self._sample_rule(self._subject_inputs, self.subject_outputs(), SUBJECT_MAPS)

    def surface_bold(self) -> RuleFiles:
        on = self.config["surface"]["bold"]
        return self._sample_rule(self._bold_inputs, self.bold_outputs(), ("bold",), on)

    def _sample_rule(
        self, inputs: Any, outputs: Files, maps: tuple[str, ...], on: bool = True
    ) -> RuleFiles:
        """A ``surface sample`` rule of ``maps``, its jobs keyed to the subjects with surfaces
        (none when ``on`` is false)."""
        wildcard, rest = _KEYS[maps[0]]
        pattern = self.surfaces.subject_pattern()
        constraint = f"sub-(?:{pattern}){rest}" if on and pattern is not None else NO_JOBS
        return RuleFiles(
            inputs,
            outputs,
            self._sample_params(maps),
            wildcard_constraints={wildcard: constraint},
        )

    # -----------------------------------------------------------------------------------------
    # files

    def anatomy_outputs(self, subject: str = "{subject}") -> Files:
        """The alignment and the GIFTI surfaces (and sidecars) of a subject, as patterns or for
        one: ``xfm``, ``<surface>_<L|R>``."""
        files: Files = {}
        for name in ("xfm", *SURFACES):
            o = reg.get(f"surface_anatomy.{name}")
            key = o.subject_key(subject)
            for hemi in HEMIS if name != "xfm" else (None,):
                tag = name if hemi is None else f"{name}_{hemi}"
                path = o.path(self.ctx.out, key, hemi=hemi)
                files.update(reg.with_sidecars({tag: path}, {tag: o}))
        return files

    def _maps_outputs(self, maps: tuple[str, ...], key: tuple[str, str], **values: Any) -> Files:
        files: Files = {}
        for name in maps:
            o = reg.get(f"surface.{name}")
            for hemi in HEMIS:
                for space in self.surfaces.spaces():
                    tag = f"{name}_{hemi}_{space}"
                    path = o.path(self.ctx.out, key, hemi=hemi, surface_space=space, **values)
                    files.update(reg.with_sidecars({tag: path}, {tag: o}))
        return files

    def session_outputs(
        self,
        nordic: str = "{nordic}",
        combine: str = "{combine}",
        subject: str | None = None,
        session: str | None = None,
    ) -> Files:
        """A GLM fit's maps on the surfaces (and sidecars), keys ``<map>_<L|R>_<space>``."""
        key = self.ctx.session_key(subject, session)
        return self._maps_outputs(SESSION_MAPS, key, nordic=nordic, combine=combine)

    def subject_outputs(
        self, nordic: str = "{nordic}", combine: str = "{combine}", subject: str | None = None
    ) -> Files:
        """A subject's cross-session maps on the surfaces (and sidecars)."""
        key = (
            ("{sub_dir}", "{sub_prefix}")
            if subject is None
            else reg.subject_key(subject, self.ctx.task())
        )
        return self._maps_outputs(SUBJECT_MAPS, key, nordic=nordic, combine=combine)

    def bold_outputs(
        self, run: Run | None = None, nordic: str = "{nordic}", combine: str = "{combine}"
    ) -> Files:
        """A run's echo-handling series on the surfaces (and sidecars), as patterns or for one
        (``surface.bold``)."""
        key = self.ctx.run_key(run)
        return self._maps_outputs(("bold",), key, nordic=nordic, combine=combine)

    def _bold_inputs(self, wc: Any) -> Files:
        run = self.ctx.run_of(wc)
        series = self.combine.outputs(wc.combine, run, wc.nordic)["bold"]
        mask = self.spatial.func_brain_mask(run.subject)
        assert mask is not None  # surfaces need the T1w-aligned grid (Surfaces.requested)
        return {"map_bold": series, "mask": mask, **self._surface_inputs(run.subject)}

    def _anatomy_inputs(self, wc: Any) -> Files:
        fs = self.surfaces.subjects[wc.subject]
        anat = self.anatomy.outputs(wc.subject)
        files = {"orig": str(fs.orig), "t1w": anat["preproc"], "brain_mask": anat["brain_mask"]}
        for hemi, prefix in HEMIS.items():
            for name in ("white", "pial", "sphere.reg"):
                files[f"{prefix}.{name}"] = str(fs.surface(hemi, name))
        return files

    def _surf_args(self, wc: Any, input: Any) -> str:
        return words(
            f"{p}.{n}={input[f'{p}.{n}']}"
            for p in HEMIS.values()
            for n in ("white", "pial", "sphere.reg")
        )

    def _out_args(self, wc: Any, output: Any) -> str:
        keys = [k for k in self.anatomy_outputs() if not k.endswith("_json")]
        return words(f"{k}={output[k]}" for k in keys)

    def _surface_inputs(self, subject: str) -> Files:
        anat = self.anatomy_outputs(subject)
        files = {
            f"surf_{name}_{hemi}": anat[f"{name}_{hemi}"]
            for name in ("white", "pial", "sphere")
            for hemi in HEMIS
        }
        template = self.surfaces.template
        if template is not None:
            files.update({f"template_{h}": template.spheres[h] for h in HEMIS})
        return files

    def _session_inputs(self, wc: Any) -> Files:
        sub, ses = self.ctx.session_of(wc)
        fit = self.glm.outputs(wc.nordic, wc.combine, sub, ses)
        nc = self.nc.session_outputs(wc.nordic, wc.combine, sub, ses)
        maps = {"map_betas": fit["betas"], "map_nc": nc["nc"], "map_r2": fit["r2"]}
        return {**maps, "mask": fit["mask"], **self._surface_inputs(sub)}

    def _subject_inputs(self, wc: Any) -> dict[str, Any]:
        sub = self.ctx.subject_of(wc)
        maps = self.nc.subject_outputs(wc.nordic, wc.combine, sub)
        # the subject maps are 0 outside the intersection of the sessions' fitted masks: every
        # session's mask (the stage samples within their intersection)
        masks = [
            self.glm.outputs(wc.nordic, wc.combine, sub, ses)["mask"]
            for ses in self.dataset.sessions(sub)
        ]
        files: dict[str, Any] = {f"map_{k}": maps[k] for k in SUBJECT_MAPS}
        return {**files, "mask": masks, **self._surface_inputs(sub)}

    def _sample_params(self, maps: tuple[str, ...]) -> dict[str, Any]:
        def map_args(wc: Any, input: Any) -> str:
            return words(f"{k}={input[f'map_{k}']}" for k in maps)

        def surface_args(wc: Any, input: Any) -> str:
            return words(
                f"{n}_{h}={input[f'surf_{n}_{h}']}"
                for n in ("white", "pial", "sphere")
                for h in HEMIS
            )

        def template_arg(wc: Any) -> str:
            template = self.surfaces.template
            return "" if template is None else words(["--template", template.space])

        def template_spheres(wc: Any, input: Any) -> str:
            if self.surfaces.template is None:
                return ""
            return words(["--template-sphere", *(f"{h}={input[f'template_{h}']}" for h in HEMIS)])

        def out_args(wc: Any, output: Any) -> str:
            return words(f"{k}={output[k]}" for k in output.keys() if not k.endswith("_json"))

        return {
            "maps": map_args,
            "surfaces": surface_args,
            "template": template_arg,
            "template_spheres": template_spheres,
            "options": self.ctx.options("surface"),
            "out": out_args,
        }

    def targets(self) -> list[str]:
        """The surfaces of every subject with a FreeSurfer folder, the surface maps of each of
        its GLM fits and its cross-session maps."""
        if not self.surfaces.subjects:
            return []
        targets: list[str] = []
        for sub in self.surfaces.subjects:
            targets.extend(self.anatomy_outputs(sub).values())
        everywhere = set(self.config["glm"]["all_sessions_variants"])
        for variant, pairs in self.fitted.glm_variant_sessions().items():
            nordic, combine = Variant(variant).parts()
            subjects = sorted({s for s, _ in pairs if self.surfaces.has(s)})
            for sub, ses in pairs:
                if self.surfaces.has(sub):
                    targets.extend(self.session_outputs(nordic, combine, sub, ses).values())
            if variant in everywhere:
                for sub in subjects:
                    targets.extend(self.subject_outputs(nordic, combine, sub).values())
        if self.config["surface"]["bold"]:
            for run, nordic, combine in self.combine.series():
                if self.surfaces.has(run.subject):
                    targets.extend(self.bold_outputs(run, nordic, combine).values())
        return targets


__all__ = ["SURFACE_ANATOMY", "SURFACE_BOLD", "SURFACE_SESSION", "SURFACE_SUBJECT", "SurfaceRules"]
