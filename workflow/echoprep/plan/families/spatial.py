"""Spatial preprocessing: the subject's reference boldref (``spatial_reference``), each run's
geometry (``spatial_run``: head motion, distortion, alignment; the first step of the per-run
chain that hosts it, else its own job), the functional grid per subject (``spatial_subject``),
the one-shot resampling of every echo (a step of each side's chain,
:mod:`echoprep.plan.families.chains`) and the confounds beside each series (``confounds``)."""

from __future__ import annotations

import json
from typing import Any

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.bids import Run
from echoprep.io.confounds import copy_confounds
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import RUN_KEY, SUBJECT_KEY
from echoprep.plan.chains import SPATIAL_PREFIX, ChainChoice
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.echo_files import echo_out_words, per_echo
from echoprep.plan.families.anatomy import AnatomyRules
from echoprep.plan.gradients import Gradients
from echoprep.plan.rule import NO_JOBS, Family, RuleDef, RuleFiles, fixed_mb
from echoprep.plan.slice_timing import slice_timing_args

#: A run's file stem (run entities only): keeps subject-level names such as
#: ``sub-01_space-T1w_boldref`` from matching the per-run patterns of the spatial rules.
RUN_STEM_PATTERN = (
    r"sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+"
    r"(_(acq|ce|rec|dir|run)-[A-Za-z0-9]+)*"
)


def geometry_mb(family: Any, wc: Any, attempt: int) -> int:
    """Memory of a run's geometry step: :func:`echoprep.resources.framewise_mb` with
    frame-wise distortion correction, else :func:`echoprep.resources.spatial_mb`."""
    run = family.ctx.job_run(wc)
    size = family.ctx.run_size(run)
    if family.ctx.sdc_method(run) == "phase-framewise":
        return res.framewise_mb(size, attempt)
    return res.spatial_mb(size, attempt)


SPATIAL_RUN = RuleDef(
    name="spatial_run",
    doc="A run's geometry: slice timing, head motion, distortion, transform to the reference",
    level="run",
    log=(folder_name("spatial"), RUN_KEY, "run"),
    command=(
        "python -m echoprep spatial run --echo {input.spatial_echo:q} {params.spatial_args}"
        " --options-json {params.spatial_options:q} --threads {params.threads}"
        " --out confounds={output.spatial_confounds:q} boldref={output.spatial_boldref:q}"
        " xfm={output.spatial_xfm:q}"
    ),
    message="Head motion and distortion {wildcards.run_prefix}",
    memory=geometry_mb,
    minutes=5,
    threads=2,
    scale="run",
    env="spatial",
    grouped="spatial_resample",
    subshell=True,
    label="head motion and distortion",
)
SPATIAL_REFERENCE = RuleDef(
    name="spatial_reference",
    doc="The subject's reference boldref (its first run's geometry), to which every run is aligned",
    level="subject",
    log=(folder_name("spatial"), SUBJECT_KEY, "reference"),
    command=(
        "python -m echoprep spatial run --echo {input.echo:q} {params.args}"
        " --options-json {params.options:q} --threads {params.threads}"
        " --out boldref={output.boldref:q}"
    ),
    message=(
        "Reference boldref sub-{wildcards.subject} (head motion and distortion of its first run)"
    ),
    memory=geometry_mb,  # the reference run's geometry step
    minutes=5,
    threads=2,
    scale="run",
    env="spatial",
    grouped="spatial_reference",
)
SPATIAL_SUBJECT = RuleDef(
    name="spatial_subject",
    doc="The subject's functional grid: boldref-to-T1w registration, grid and brain mask",
    level="subject",
    log=(folder_name("spatial"), SUBJECT_KEY, "subject"),
    command=(
        "python -m echoprep spatial subject --boldref {input.boldref:q} --t1w {input.t1w:q}"
        " --mask {input.mask:q} {params.args} --options-json {params.options:q}"
        " --seed {params.seed} --threads {params.threads} --out boldref={output.boldref:q}"
        " brain_mask={output.brain_mask:q} xfm={output.xfm:q}"
    ),
    message="Functional grid sub-{wildcards.subject} (boldref to T1w)",
    # measured 0.56 GiB at LAION size (benchmarks/laion_session.json)
    memory=fixed_mb(1500),
    minutes=5,
    env="spatial",
)
CONFOUNDS = RuleDef(
    name="confounds",
    doc="A run's confounds table copied beside each of its series (fMRIPrep's name, for nilearn)",
    level="run",
    log=(folder_name("combine"), RUN_KEY, "confounds"),
    command="",
    message="Confounds beside the series {wildcards.run_prefix} ({wildcards.nordic})",
    memory=None,
    local=True,
)


def _copy(input: Any, output: Any, params: Any, log: Any) -> None:
    """The confounds rule, in the Snakemake process: spatial/'s table copied beside the series
    of a NORDIC variant, with a sidecar naming it (:mod:`echoprep.io.confounds`)."""
    copy_confounds(input.confounds, dict(output.items()), log[0])


class SpatialRules(Family):
    """The spatial rules, the geometry step's files and the resampling step's (module
    docstring)."""

    RULES = (SPATIAL_REFERENCE, SPATIAL_RUN, SPATIAL_SUBJECT, CONFOUNDS)

    def __init__(
        self, ctx: PlanContext, chains: ChainChoice, anatomy: AnatomyRules, gradients: Gradients
    ) -> None:
        super().__init__(ctx)
        self.chains = chains
        self.anatomy = anatomy
        self.gradients = gradients

    def folders(self) -> list[str]:
        """``spatial/`` and ``preproc-<nordic>/`` of each NORDIC variant, with spatial
        preprocessing."""
        if not self.config["spatial"]["enabled"]:
            return []
        name = reg.folder_name
        return [name("spatial"), *(name("preproc", nordic=n) for n in self.ctx.nordic_variants)]

    # -----------------------------------------------------------------------------------------
    # rules

    def spatial_reference(self) -> RuleFiles:
        return RuleFiles(
            self._reference_inputs,
            self.reference_outputs(),
            {"args": self._reference_params, "options": self.ctx.options("spatial")},
        )

    def spatial_run(self) -> RuleFiles:
        # jobs only when no chain hosts the geometry (spatial_host is None); they go with the
        # run's resampling job under a profile that groups it
        pattern = RUN_STEM_PATTERN if self.chains.spatial_host is None else NO_JOBS
        return RuleFiles(
            self.geometry_step_inputs,
            self.geometry_step_outputs(),
            self.geometry_step_params(),
            wildcard_constraints={"run_prefix": pattern},
        )

    def spatial_subject(self) -> RuleFiles:
        return RuleFiles(
            self._subject_inputs,
            self.subject_outputs(),
            {
                "options": self.ctx.options("spatial"),
                "seed": self.ctx.seed(),
                "args": self._subject_params,
            },
        )

    def confounds(self) -> RuleFiles:
        # a local copy written inside the Snakemake process: no benchmark, no resources
        spatial = self.run_outputs()
        return RuleFiles(
            {"confounds": spatial["confounds"]},  # (its sidecar beside it, not declared)
            self.confounds_outputs(),
            wildcard_constraints={"run_prefix": RUN_STEM_PATTERN},
            run=_copy,
        )

    # -----------------------------------------------------------------------------------------
    # outputs

    def run_outputs(self, run: Run | None = None) -> Files:
        """Per-run geometry outputs (and sidecars), as patterns or for a run."""
        return self.ctx.files("spatial", self.ctx.run_key(run))

    def subject_outputs(self, subject: str = "{subject}") -> Files:
        """Per-subject grid outputs (and sidecars), as patterns or for a subject."""
        return self.ctx.subject_files("spatial_subject", subject)

    def reference_outputs(self, subject: str = "{subject}") -> Files:
        """The subject's reference boldref (and sidecar): the reference run's motion
        reference, the target every run (the reference run too) and the grid are aligned to,
        as a pattern or for a subject."""
        key = reg.get("spatial_reference.boldref").subject_key(subject)
        return self.ctx.files("spatial_reference", key)

    def confounds_outputs(self, run: Run | None = None, nordic: str = "{nordic}") -> Files:
        """The run's confounds (and sidecars) beside its series of a NORDIC variant, as
        patterns or for a run: in ``combine-<nordic>/``, and in ``preproc-<nordic>/`` when the
        resampled echoes are kept (:mod:`echoprep.io.confounds`)."""
        files = self.ctx.files("confounds", self.ctx.run_key(run), nordic=nordic)
        if not self.config["spatial"]["keep_echoes"]:
            files = {k: v for k, v in files.items() if not k.startswith("preproc")}
        return files

    def preproc_echo(
        self, run: Run | None = None, echo: Any = "{echo}", nordic: str = "{nordic}"
    ) -> str:
        """A resampled echo of a run (preproc-<nordic>/), as a pattern or for a run."""
        return self.ctx.file("preproc.bold", self.ctx.run_key(run), echo=echo, nordic=nordic)

    def preproc_run_outputs(self, echoes: int, nordic: str = "{nordic}") -> Files:
        """The resampled echoes of a run with ``echoes`` echoes in a NORDIC variant, as
        patterns: every echo's series (and sidecar), keys prefixed ``echo<E>_`` (a chain job
        marks them temporary unless spatial.keep_echoes)."""
        key = self.ctx.run_key(None)
        return per_echo(
            {e: self.ctx.files("preproc", key, echo=e, nordic=nordic) for e in range(1, echoes + 1)}
        )

    def func_grid(self, subject: str) -> str | None:
        """The subject's functional grid image (space-T1w boldref), or None (spatial disabled
        or native output)."""
        return self.subject_outputs(subject)["boldref"] if self.ctx.space() else None

    def func_brain_mask(self, subject: str) -> str | None:
        """The anatomy brain mask on the subject's functional grid, or None."""
        return self.subject_outputs(subject)["brain_mask"] if self.ctx.space() else None

    def noise_volumes(self, nordic: str) -> int:
        """Trailing noise volumes dropped from the echoes of a NORDIC variant (NORDIC removes
        its own unless keep_noise_volumes)."""
        n = self.config["nordic"]["noise_volumes"]
        return n if nordic == "raw" or self.config["nordic"]["keep_noise_volumes"] else 0

    def targets(self) -> list[str]:
        """Anatomy and spatial outputs that are targets by themselves (the echoes are pulled
        in by the echo-handling rules)."""
        if not self.config["spatial"]["enabled"]:
            return []
        targets: list[str] = []
        for sub in self.dataset.subjects():
            targets.extend(self.reference_outputs(sub).values())
            if self.ctx.space():
                targets.extend(self.anatomy.outputs(sub).values())
                targets.extend(self.subject_outputs(sub).values())
        for run in self.dataset.runs:
            targets.extend(self.run_outputs(run).values())
        return sorted(set(targets))

    # -----------------------------------------------------------------------------------------
    # the geometry step (its own rule, or the first step of the hosting chain)

    def geometry_step_outputs(self) -> Files:
        """Outputs of the geometry step, keys ``spatial_<key>`` (those of its own rule and of
        the chain that hosts it), as patterns."""
        return {SPATIAL_PREFIX + k: v for k, v in self.run_outputs().items()}

    def geometry_step_inputs(self, wc: Any) -> dict[str, Any]:
        """Inputs of a run's geometry step, keys ``spatial_<key>``: the raw reference echo,
        the fieldmap files and (every run but the reference run) the subject's reference
        boldref."""
        files = self.geometry_inputs(self.ctx.run_of(wc))
        return {SPATIAL_PREFIX + k: v for k, v in files.items()}

    def geometry_step_params(self) -> dict[str, Any]:
        """``params`` of the geometry step, for its own rule and the chain that hosts it."""
        return {
            "spatial_args": lambda wc, input: self.geometry_args(
                self.ctx.run_of(wc), input.get(SPATIAL_PREFIX + "reference")
            ),
            "spatial_options": self.ctx.options("spatial"),
        }

    def geometry_inputs(self, run: Run, reference: bool = True) -> dict[str, Any]:
        files: dict[str, Any] = {"echo": str(self.ctx.reference_echo(run).mag)}
        if run.sbref is not None:  # found only when spatial.motion_reference uses it
            files["sbref"] = str(run.sbref)
        method = self.ctx.sdc_method(run)
        if method in ("fieldmap", "pepolar") and run.fieldmap is not None:
            files["fieldmap"] = [str(p) for p in run.fieldmap.files]
        elif method == "phase-framewise":
            files["framewise"] = [
                str(p) for e in run.echoes if e.phase is not None for p in (e.mag, e.phase)
            ]
        if reference and self.ctx.reference_run(run.subject) is not run:
            files["reference"] = self.reference_outputs(run.subject)["boldref"]
        gradient = self.gradients.choice(run).coefficients
        if gradient is not None:
            files["gradient"] = gradient
        return files

    def geometry_args(self, run: Run, reference: str | None) -> str:
        """The geometry step's arguments that depend on the run (and the reference boldref)."""
        args: list[Any] = ["--tr", str(run.repetition_time)]
        args += ["--drop-volumes", str(self.config["nordic"]["noise_volumes"])]
        args += slice_timing_args(run)
        method = self.ctx.sdc_method(run)
        if method in ("fieldmap", "pepolar") and run.fieldmap is not None:
            args += ["--fieldmap-json", json.dumps(run.fieldmap.as_spec(), sort_keys=True)]
        elif method == "phase-framewise":
            echoes = [
                [str(e.mag), str(e.phase), e.echo_time] for e in run.echoes if e.phase is not None
            ]
            args += ["--framewise-json", json.dumps(echoes)]
        if method != "none":  # every method turns its field into shifts along the PE axis
            if run.pe_direction:
                args += ["--pe-direction", run.pe_direction]
            if run.total_readout_time:
                args += ["--readout-time", f"{run.total_readout_time:.8g}"]
        if reference:
            args += ["--reference-boldref", reference]
        gradient = self.gradients.choice(run).spec()
        if gradient is not None:  # docs/gradients.md
            args += ["--gradient-json", json.dumps(gradient, sort_keys=True)]
        if run.sbref is not None:  # the motion reference (docs/registration.md)
            args += ["--sbref", str(run.sbref)]
        return words(args)

    def _reference_inputs(self, wc: Any) -> dict[str, Any]:
        """The reference run's raw reference echo and fieldmap files."""
        return self.geometry_inputs(self.ctx.reference_run(wc.subject), reference=False)

    def _reference_params(self, wc: Any) -> str:
        """The geometry arguments of the subject's reference run."""
        return self.geometry_args(self.ctx.reference_run(wc.subject), None)

    def _subject_inputs(self, wc: Any) -> Files:
        """The subject's reference boldref, the anatomy's T1w and brain mask and, when it is the
        registration target, the subject's raw T2w (and, when the T2w is corrected for
        gradient nonlinearity, its scanner's coefficient file, ``t2w_gradient``)."""
        anat = self.anatomy.outputs(wc.subject)
        files = {
            "boldref": self.reference_outputs(wc.subject)["boldref"],
            "t1w": anat["preproc"],
            "mask": anat["brain_mask"],
        }
        t2w = self.dataset.t2w.get(wc.subject)  # found only when registration_target uses it
        if t2w is not None:
            files["t2w"] = str(t2w)
            gradient = self.gradients.image_choice(t2w).coefficients
            if gradient is not None:
                files["t2w_gradient"] = gradient
        return files

    def _subject_params(self, wc: Any, input: Any) -> str:
        """``--t2w`` when the subject's T2w is the registration target, and
        ``--t2w-gradient-json`` when it is corrected (``input.t2w_gradient``)."""
        if "t2w" not in input.keys():
            return ""
        args = ["--t2w", input.t2w]
        if "t2w_gradient" in input.keys():
            spec = self.gradients.image_choice(input.t2w).spec()
            args += ["--t2w-gradient-json", json.dumps(spec, sort_keys=True)]
        return words(args)

    # -----------------------------------------------------------------------------------------
    # the resampling step (of each side's chain)

    def resample_grid_inputs(self, run: Run) -> dict[str, Any]:
        """What the resampling of a run reads besides its echoes: the run's geometry, the
        output grid (+ its transform)."""
        files: dict[str, Any] = {"geometry": self.run_outputs(run)["xfm"]}
        if self.ctx.space():
            grid = self.subject_outputs(run.subject)
            files["grid"] = grid["boldref"]
            files["xfm"] = grid["xfm"]
        else:
            files["grid"] = self.reference_outputs(run.subject)["boldref"]
        return files

    def resample_args(self, wc: Any, input: Any, nordic: str) -> str:
        """Command-line arguments of a resampling step that depend on the job: the echo
        times, the noise volumes to drop, the grid's transform."""
        args: list[Any] = ["--te", *[f"{t:.6g}" for t in self.ctx.run_of(wc).echo_times]]
        args += ["--drop-volumes", str(self.noise_volumes(nordic))]
        if "xfm" in input.keys():
            args += ["--ref-xfm", input.xfm]
        return words(args)

    def resample_out_args(self, wc: Any, output: Any, prefix: str = "") -> str:
        """``--out`` words of a resampling step: ``bold=…`` per echo, in the order of
        ``--echo`` (the run's echoes by echo time); output keys ``<prefix>echo<E>_bold``."""
        return echo_out_words(output, self.ctx.run_of(wc), reg.stage_outputs("preproc"), prefix)


__all__ = [
    "CONFOUNDS",
    "RUN_STEM_PATTERN",
    "SPATIAL_REFERENCE",
    "SPATIAL_RUN",
    "SPATIAL_SUBJECT",
    "SpatialRules",
]
