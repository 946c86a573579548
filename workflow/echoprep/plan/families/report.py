"""The NORDIC diagnostics (``diagnostics``: tSNR and GLM fits with NORDIC off and on,
:mod:`echoprep.stages.diagnostics`) and one self-contained HTML report per subject
(``subject_report``, :mod:`echoprep.stages.report`; ``snakemake --report`` shows it)."""

from __future__ import annotations

from typing import Any

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.bids_model import label_order
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import SUBJECT_KEY
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.echo_files import nordic_outputs
from echoprep.plan.families.anatomy import AnatomyRules
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.comparison import ComparisonRules
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.families.noiseceiling import NoiseCeilingRules
from echoprep.plan.families.rois import RoiRules
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.families.surface import SurfaceRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import Family, RuleDef, RuleFiles
from echoprep.variants import Variant

_REPORTS = folder_name("report")


def _diagnostics_mb(family: Any, wc: Any, attempt: int) -> int:
    """A session's 4D betas 4.5 times or one run's series twice
    (:func:`echoprep.resources.diagnostics_mb`), over the sessions the diagnostics read."""
    sessions = {ses for ses, _ in family.diagnostics_pairs(wc.subject)}
    runs = [r for ses in sessions for r in family.dataset.runs_of(wc.subject, ses)]
    return res.diagnostics_mb(family.ctx.runs_size(runs) if runs else None, attempt)


def _report_mb(family: Any, wc: Any, attempt: int) -> int:
    """Two float32 copies of the first run of the report session."""
    runs = family.dataset.runs_of(wc.subject, family.fitted.report_session(wc.subject))
    return res.report_mb(family.ctx.run_size(runs[0]), attempt)


DIAGNOSTICS = RuleDef(
    name="diagnostics",
    doc="NORDIC diagnostics of a subject: tSNR gain, evoked amplitude, FWHM, what NORDIC removed",
    level="subject",
    log=(_REPORTS, SUBJECT_KEY, "diagnostics"),
    command=(
        "python -m echoprep diagnostics --subject {wildcards.subject} --roi {input.roi:q}"
        " --brain {input.brain:q} {params.args} --out tsv={output.tsv:q}"
    ),
    message="NORDIC diagnostics sub-{wildcards.subject}",
    memory=_diagnostics_mb,
    minutes=25,
)
SUBJECT_REPORT = RuleDef(
    name="subject_report",
    doc="A subject's self-contained HTML report (the verdict first)",
    level="subject",
    log=(_REPORTS, SUBJECT_KEY, ""),
    command=(
        "python -m echoprep report {params.args} --config-file {input.config:q}"
        " --options-json {params.options:q} --out html={output:q}"
    ),
    message="HTML report sub-{wildcards.subject}",
    memory=_report_mb,
    minutes=15,
    env="report",
)


class ReportRules(Family):
    """The diagnostics and report rules (module docstring)."""

    RULES = (DIAGNOSTICS, SUBJECT_REPORT)

    def __init__(
        self,
        ctx: PlanContext,
        fitted: FittedVariants,
        *,
        anatomy: AnatomyRules,
        spatial: SpatialRules,
        combine: CombineRules,
        glm: GlmRules,
        nc: NoiseCeilingRules,
        rois: RoiRules,
        comparison: ComparisonRules,
        surface: SurfaceRules,
    ) -> None:
        super().__init__(ctx)
        self.fitted = fitted
        self.anatomy = anatomy
        self.spatial = spatial
        self.combine = combine
        self.glm = glm
        self.nc = nc
        self.rois = rois
        self.comparison = comparison
        self.surface = surface

    def folders(self) -> list[str]:
        """``reports/`` with the report on."""
        return [_REPORTS] if self.config["report"]["enabled"] else []

    # -----------------------------------------------------------------------------------------
    # rules

    def diagnostics(self) -> RuleFiles:
        return RuleFiles(
            self._diagnostics_inputs, self.diagnostics_outputs(), {"args": self._diagnostics_args}
        )

    def subject_report(self) -> RuleFiles:
        config = self.ctx.config_file()

        def inputs(wc: Any) -> dict[str, Any]:
            return {**self._report_inputs(wc), "config": config}

        html: Any = self.report_path()
        report = self.ctx.hooks.in_report
        if report is not None:  # the report in `snakemake --report`
            html = report(
                html, caption=f"{self.ctx.hooks.captions}/subject.rst", category="Subject reports"
            )
        return RuleFiles(
            inputs,
            {"html": html},
            {"args": self._report_args, "options": self.ctx.options("report")},
        )

    # -----------------------------------------------------------------------------------------
    # the NORDIC diagnostics

    def diagnostics_pairs(self, subject: str) -> list[tuple[str | None, str]]:
        """(session, combine) of the subject's comparison sessions where both the NORDIC-off
        and the NORDIC-on GLM of that echo handling are fitted (empty: no diagnostics)."""
        nordic_variants = self.ctx.nordic_variants
        if "nordic" not in nordic_variants or not self.fitted.rois_enabled():
            return []
        fitted = self.fitted.glm_variant_sessions()
        return [
            (ses, combine)
            for ses in self.fitted.comparison_sessions(subject)
            for combine in self.config["variants"]["combine"]
            if all(
                (subject, ses) in fitted.get(Variant.of(n, combine), []) for n in nordic_variants
            )
        ]

    def diagnostics_outputs(self, subject: str = "{subject}") -> Files:
        """The NORDIC diagnostics table of a subject (and its sidecar)."""
        o = reg.get("diagnostics.tsv")
        files = self.ctx.paths({"tsv": o}, o.subject_key(subject, self.ctx.task()))
        return {"tsv": files["tsv"], "json": files["tsv_json"]}

    def _diagnostics_items(self, subject: str) -> tuple[list, list, list]:
        """(tsnr, glm, echoes) argument tuples of a subject's diagnostics (echoes: session
        label, NORDIC's sidecar and its image, per echo of every run)."""
        tsnr, glm, echoes = [], [], []
        pairs = self.diagnostics_pairs(subject)
        for ses, combine in pairs:
            label = ses or "n/a"
            for run in self.dataset.runs_of(subject, ses):
                raw, nordic = (
                    self.combine.outputs(combine, run, n)["bold"] for n in self.ctx.nordic_variants
                )
                tsnr.append((label, combine, raw, nordic))
            for n in self.ctx.nordic_variants:
                g = self.glm.outputs(n, combine, subject, ses)
                glm.append((label, combine, n, g["betas"], g["trials"], g["mask"]))
        for ses in sorted({s for s, _ in pairs}, key=label_order):
            for run in self.dataset.runs_of(subject, ses):
                for e in run.echoes:
                    files = nordic_outputs(self.ctx, run, str(e.echo))
                    echoes.append((ses or "n/a", files["bold_json"], files["bold"]))
        return tsnr, glm, echoes

    def _diagnostics_inputs(self, wc: Any) -> dict[str, Any]:
        """Echo-handling outputs with NORDIC off and on, their GLM fits, NORDIC's echoes
        (whose sidecars it reads: written by the same jobs, not declared) and the subject's
        visual ROI and brain mask."""
        tsnr, glm, echoes = self._diagnostics_items(wc.subject)
        return {
            "roi": self.rois.visual_roi(wc.subject),
            "brain": self.rois.brain_mask(wc.subject),
            "bold": [p for item in tsnr for p in item[2:]],
            "glm": [p for item in glm for p in item[3:]],
            "nordic": [item[2] for item in echoes],
        }

    def _diagnostics_args(self, wc: Any, input: Any) -> str:
        """``--tsnr``, ``--glm`` and ``--nordic-json`` arguments of the subject's diagnostics."""
        tsnr, glm, echoes = self._diagnostics_items(wc.subject)
        args: list[Any] = [w for t in tsnr for w in ("--tsnr", *t)]
        args += [w for g in glm for w in ("--glm", *g)]
        args += [w for j in echoes for w in ("--nordic-json", *j[:2])]
        return words(args)

    # -----------------------------------------------------------------------------------------
    # the subject's report

    def report_path(self, subject: str = "{subject}") -> str:
        """A subject's HTML report."""
        return str(reg.get("report.html").path(self.ctx.out, reg.group_key(), subject=subject))

    def _report_variants(self, subject: str) -> tuple[list[str], str | None]:
        """The variants the report shows for the subject's report session, and the one whose
        R² map it shows (NORDIC optcom when fitted, LAION-fMRI's choice)."""
        ses = self.fitted.report_session(subject)
        fitted = self.fitted.glm_variant_sessions()
        shown = [v for v in self.fitted.glm_variants() if (subject, ses) in fitted.get(v, [])]
        top = ("nordic-optcom" if "nordic-optcom" in shown else shown[-1]) if shown else None
        return shown, top

    def _report_inputs(self, wc: Any) -> dict[str, Any]:
        """Every input the subject's report shows that this config produces."""
        sub = wc.subject
        ses = self.fitted.report_session(sub)
        runs = self.dataset.runs_of(sub, ses)
        combines = self.config["variants"]["combine"]
        files: dict[str, Any] = {}
        if "nordic" in self.ctx.nordic_variants:
            shown = "single" if "single" in combines else combines[0]
            files["bold_raw"] = self.combine.outputs(shown, runs[0], "raw")["bold"]
            files["bold_nordic"] = self.combine.outputs(shown, runs[0], "nordic")["bold"]
        if "optcom" in combines:
            files["t2star"] = self.combine.outputs("optcom", runs[0], self.ctx.nordic_variants[-1])[
                "t2star"
            ]
        if self.config["spatial"]["enabled"]:  # motion is estimated for T1w and native output
            files["confounds"] = [self.spatial.run_outputs(r)["confounds"] for r in runs]
            geometry = self.spatial.run_outputs(runs[0])
            files["sdc_run"] = [
                str(self.ctx.reference_echo(runs[0]).mag),
                geometry["boldref"],
                geometry["xfm"],
            ]
        grid = self.spatial.func_grid(sub)
        if grid:
            files["underlay"] = (
                self.anatomy.outputs(sub)["preproc"] if sub in self.dataset.t1w else grid
            )
        shown, top = self._report_variants(sub)
        if top is not None:  # some variant is shown
            nordic, combine = Variant(top).parts()
            files["r2"] = self.glm.outputs(nordic, combine, sub, ses)["r2"]
            pairs = [Variant(v).parts() for v in shown]
            files["nc"] = [self.nc.session_outputs(n, c, sub, ses)["nc"] for n, c in pairs]
            files["roi_tables"] = [self.rois.table_path(n, c, sub, ses)["tsv"] for n, c in pairs]
            files.update(self._surface_inputs(sub, ses, nordic, combine))
            # the subject's own comparison (a new subject must not rerun the others' reports)
            if self.comparison.entries(sub):
                own = self.comparison.subject_paths(sub)
                files["comparison_table"] = own["tsv"]
                files["comparison_bootstrap"] = own["bootstrap"]
                files["comparison_planted"] = own["planted"]
                files["comparison_transfer"] = own["transfer"]
        if self.diagnostics_pairs(sub):
            files["diagnostics"] = self.diagnostics_outputs(sub)["tsv"]
        return files

    def _surface_inputs(
        self, sub: str, ses: str | None, nordic: str, combine: str
    ) -> dict[str, str]:
        """The shown variant's session noise ceiling on fsnative and the inflated surfaces
        (FreeSurfer's, else the midthickness) of a subject with surfaces (docs/surface.md)."""
        surfaces = self.surface.surfaces
        if not surfaces.has(sub):
            return {}
        maps = self.surface.session_outputs(nordic, combine, sub, ses)
        inflated = surfaces.subjects[sub].inflated
        anat = self.surface.anatomy_outputs(sub)
        files = {f"surface_nc_{h}": maps[f"nc_{h}_fsnative"] for h in ("L", "R")}
        for h in ("L", "R"):
            files[f"surface_mesh_{h}"] = (
                str(inflated[h]) if h in inflated else anat[f"midthickness_{h}"]
            )
        return files

    def _report_args(self, wc: Any, input: Any) -> str:
        """Command-line arguments for the report inputs present."""
        sub = wc.subject
        ses = self.fitted.report_session(sub)
        shown, top = self._report_variants(sub)
        keys = input.keys()
        args: list[Any] = ["--subject", sub] + (["--session", ses] if ses else [])
        for key, flag in (
            ("bold_raw", "--bold-raw"),
            ("bold_nordic", "--bold-nordic"),
            ("t2star", "--t2star"),
            ("underlay", "--underlay"),
            ("r2", "--r2"),
        ):
            if key in keys:
                args += [flag, input[key]]
        if "underlay" in keys:
            args += [
                "--underlay-kind",
                "T1w" if sub in self.dataset.t1w else "functional reference",
            ]
        if "confounds" in keys:
            args += ["--confounds", *input.confounds]
        if "sdc_run" in keys:
            args += ["--sdc-run", *input.sdc_run]
        if "r2" in keys:
            args += ["--r2-variant", top]
        if "nc" in keys:
            args += ["--nc", *(f"{v}={p}" for v, p in zip(shown, input.nc, strict=True))]
            args += [
                "--roi-table",
                *(f"{v}={p}" for v, p in zip(shown, input.roi_tables, strict=True)),
            ]
        if "comparison_table" in keys:
            args += ["--comparison-table", input.comparison_table]
            args += ["--comparison-bootstrap", input.comparison_bootstrap]
            args += ["--comparison-planted", input.comparison_planted]
            args += ["--comparison-transfer", input.comparison_transfer]
            args += ["--rank-by", self.config["comparison"]["rank_by"]]
        if "diagnostics" in keys:
            args += ["--diagnostics", input.diagnostics]
        if "surface_nc_L" in keys:
            for what in ("nc", "mesh"):
                args += [
                    f"--surface-{what}",
                    *(f"{h}={input[f'surface_{what}_{h}']}" for h in "LR"),
                ]
        return words(args)

    def targets(self) -> list[str]:
        """The comparison outputs and one HTML report per subject, with the diagnostics."""
        if not self.config["report"]["enabled"]:
            return []
        targets = [self.report_path(sub) for sub in self.dataset.subjects()]
        for sub in self.dataset.subjects():
            if self.diagnostics_pairs(sub):
                targets.extend(self.diagnostics_outputs(sub).values())
        if self.fitted.rois_enabled() and self.comparison.entries():
            targets.extend(self.comparison.paths().values())
        return targets


__all__ = ["DIAGNOSTICS", "SUBJECT_REPORT", "ReportRules"]
