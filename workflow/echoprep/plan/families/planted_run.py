"""A comparison run's chains on its echoes with the planted responses added and subtracted
(``planted_run``, :mod:`echoprep.stages.comparison.planting`): one job per run of a planted
session (:class:`~echoprep.plan.families.planted.PlantedRules`), a chain of stage commands
that send the planted echoes through the run's real chains with the run's own decisions: the
planted echoes, NORDIC with the decisions it made on the run's raw echoes, each side's half
difference of its two plantings resampled once (the run's transforms; every step from here on
is linear), then each variant's planted series with the run's frozen optimal combination and
ICA denoising (one command per side writes its variants' series to the work folder,
temporary), then the job's private folder removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echoprep import resources as res
from echoprep.io.rule_logs import RUN_KEY
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.families.planted import (
    COMBINES,
    PLANTED_FOLDER,
    PlantedRules,
    slice_timing_words,
)
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.rule import Family, RuleDef, RuleFiles
from echoprep.variants import Variant


def _run_mb(family: Any, wc: Any, attempt: int) -> int:
    """NORDIC's memory of one echo 2.5 times (the raw echo with its two planted series as
    companions: 11.5 GiB at LAION size against 4.49 GiB alone, 2.56 times the measured peak,
    ``benchmarks/planted_cost.json``; :func:`~echoprep.resources.nordic_mb` holds about 1.6
    times the measured peak, so this is about 1.5 times the companions' peak), or six float32
    copies of the echoes (a side's two signed echo sets and their optimal combination),
    whichever is larger."""
    size = family.ctx.job_run_size(wc)
    return max(int(2.5 * res.nordic_mb(size, 1)), res.run_mb(size, 6)) * attempt


PLANTED_RUN = RuleDef(
    name="planted_run",
    doc=(
        "A comparison run's own chains on its echoes with the planted responses added and "
        "subtracted: each variant's planted series"
    ),
    level="run",
    log=(PLANTED_FOLDER, RUN_KEY, "run"),
    # the default config's chain (the family builds it for the config: PlantedRules._steps)
    command=(
        "mkdir -p {params.tmp:q} && python -m echoprep planted echoes ... && python -m echoprep"
        " nordic --companions ... && python -m echoprep planted half ... && python -m echoprep"
        " spatial resample ... && python -m echoprep planted difference ... && rm -rf"
        " {params.tmp:q}"
    ),
    message="Planted responses {wildcards.run_prefix}",
    memory=_run_mb,
    # NORDIC per echo with two companions, one resampling per side, linear maps
    minutes=40,
    threads=2,
    scale="run",
    env="tedana",
    subshell=True,
)
#: The two plantings and their names in the work folder.
SIGNS = {"+": "plus", "-": "minus"}


class PlantedRunRules(Family):
    """The planted run rule (module docstring)."""

    RULES = (PLANTED_RUN,)

    def __init__(
        self,
        ctx: PlanContext,
        planted: PlantedRules,
        combine: CombineRules,
        spatial: SpatialRules,
        glm: GlmRules,
    ) -> None:
        super().__init__(ctx)
        self.planted = planted
        self.combine = combine
        self.spatial = spatial
        self.glm = glm

    def planted_run(self) -> RuleFiles:
        return RuleFiles(
            self._run_inputs,
            self._run_outputs(),
            {
                "tmp": self._tmp,
                "echo_times": lambda wc: words(f"{t:.6g}" for t in self.ctx.run_of(wc).echo_times),
                "tr": lambda wc: self.ctx.run_of(wc).repetition_time,
                "slice_timing": self._slice_timing,
                "noise_volumes": self.spatial.noise_volumes("raw"),
                "run_label": lambda wc: self.planted.run_label(self.ctx.run_of(wc)),
                "phase": self._phase,
                "ref_xfm": self._ref_xfm,
                "single_echo": self.config["single_echo"]["echo"],
                "nordic_options": self.ctx.options("nordic"),
                "nordic_plus": lambda wc: words(self._echo_paths(wc, "nordic-plus")),
                "nordic_minus": lambda wc: words(self._echo_paths(wc, "nordic-minus")),
                "spatial_options": self.ctx.options("spatial"),
                "seed": self.ctx.seed(),
                **self._side_params(),
            },
            env="tedana",
            command=" && ".join(self._steps()),
        )

    def _sides(self) -> list[str]:
        """The sides the comparison fits (NORDIC off and, when enabled, on)."""
        return list(self.ctx.nordic_variants)

    def _combines(self) -> list[str]:
        return [c for c in self.config["variants"]["combine"] if c in COMBINES]

    def _steps(self) -> list[str]:
        """The job's commands for this config: the planted echoes (half their difference, and
        both signs when NORDIC runs), NORDIC with the raw echoes' decisions and the half
        difference of its two outputs, each side's resampling of its difference, each
        side's variants' planted series (frozen optimal combination and ICA denoising: one
        command per side), the cleanup.

        Every step after NORDIC is linear in the echoes (the resampling's interpolation and
        slice timing, the frozen combinations), so a side's half difference is resampled once
        instead of each signed set."""
        spatial = self.config["spatial"]["enabled"]
        nordic = "nordic" in self._sides()
        grid = " --geometry {input.geometry:q} --grid {input.grid:q} {params.ref_xfm}"
        signed = " --plus {params.raw_plus} --minus {params.raw_minus}" if nordic else ""
        steps = [
            "mkdir -p {params.tmp:q}",
            "python -m echoprep planted echoes --mag {input.mag:q} --te {params.echo_times}"
            " --tr {params.tr} {params.slice_timing} --noise-volumes {params.noise_volumes}"
            " --design {input.design:q} --trials {input.trials:q} --run-label"
            " {params.run_label}" + (grid if spatial else "") + " --difference"
            " {params.raw_diff}" + signed,
        ]
        if nordic:
            steps += [
                "python -m echoprep nordic --mag {input.mag:q} {params.phase} --companions"
                " {params.raw_plus} {params.raw_minus} --out-companions {params.nordic_plus}"
                " {params.nordic_minus} --options-json {params.nordic_options:q} --seed"
                " {params.seed} --threads {params.threads} --companion-map"
                " $(python -m echoprep planted map --design {input.design:q})",
                "python -m echoprep planted half --plus {params.nordic_plus} --minus"
                " {params.nordic_minus} --out {params.nordic_diff}",
            ]
        for side in self._sides() if spatial else ():
            steps.append(
                f"python -m echoprep spatial resample --echo {{params.{side}_diff}}"
                + grid
                + f" --te {{params.echo_times}} --drop-volumes {{params.{side}_noise}}"
                " --options-json {params.spatial_options:q} --threads {params.threads}"
                f" --out {{params.{side}_diff_grid_out}}"
            )
        combines = self._combines()
        for side in self._sides() if combines else ():
            frozen = ""
            if {"optcom", "denoised"} & set(combines):
                frozen = (
                    f" --t2star {{input.{side}_t2star:q}} --good-echoes {{input.{side}_mask:q}}"
                )
            if "denoised" in combines:
                frozen += (
                    f" --mixing {{input.{side}_mixing:q}} --metrics {{input.{side}_metrics:q}}"
                )
            outs = " ".join(f"{c}={{output.{side}_{c}:q}}" for c in combines)
            steps.append(
                f"python -m echoprep planted difference --side {side}"
                f" --echoes {{params.{side}_diff_final}}"
                " --te {params.echo_times} --single-echo {params.single_echo}"
                f" --drop-volumes {{params.{side}_drop}}{frozen} --design {{input.design:q}}"
                f" --out {outs}"
            )
        steps.append("rm -rf {params.tmp:q}")
        return steps

    def _tmp(self, wc: Any) -> str:
        """The job's private folder for its signed series (removed at its end)."""
        return str(Path(self.config["work_dir"]) / "tmp" / PLANTED_FOLDER / wc.run_prefix)

    def _echo_paths(self, wc: Any, folder: str) -> list[str]:
        n = len(self.ctx.run_of(wc).echoes)
        return [str(Path(self._tmp(wc)) / folder / f"echo-{e}.nii") for e in range(1, n + 1)]

    def _side_params(self) -> dict[str, Any]:
        """The raw side's two signed echo sets (``raw_plus``, ``raw_minus``: NORDIC's
        companions) and NORDIC's outputs for them; per side its half difference in the run's
        grid (``<side>_diff``), on the functional grid (``<side>_diff_final``), the ``--out``
        words of its resampling, its noise volumes and its combine step's drop."""
        spatial = self.config["spatial"]["enabled"]
        params: dict[str, Any] = {}

        def paths(folder: str) -> Any:
            return lambda wc: words(self._echo_paths(wc, folder))

        def out(folder: str) -> Any:
            return lambda wc: words(f"bold={p}" for p in self._echo_paths(wc, folder))

        for sign in SIGNS.values():
            params[f"raw_{sign}"] = paths(f"raw-{sign}")
        for side in self._sides():
            params[f"{side}_diff"] = paths(f"{side}-diff")
            final = f"{side}-diff-grid" if spatial else f"{side}-diff"
            params[f"{side}_diff_final"] = paths(final)
            if spatial:
                params[f"{side}_diff_grid_out"] = out(final)
            params[f"{side}_noise"] = self.spatial.noise_volumes(side)
            params[f"{side}_drop"] = 0 if spatial else self.spatial.noise_volumes(side)
        return params

    def _run_inputs(self, wc: Any) -> dict[str, Any]:
        run = self.ctx.run_of(wc)
        sub, ses = run.subject, run.session
        ref = Variant(self.planted.reference_variant(sub, ses))
        files: dict[str, Any] = {
            "mag": [str(e.mag) for e in run.echoes],
            "design": self.planted.design_outputs(sub, ses)["design"],
            "trials": self.glm.outputs(ref.nordic, ref.combine, sub, ses)["trials"],
        }
        phases = [e.phase for e in run.echoes]
        if not self.config["nordic"]["magnitude_only"] and all(p is not None for p in phases):
            files["phase"] = [str(p) for p in phases]
        combines = self._combines()
        for side in self._sides():
            if "optcom" in combines or "denoised" in combines:
                opt = self.combine.outputs("optcom", run, side)
                files[f"{side}_t2star"] = opt["t2star"]
                files[f"{side}_mask"] = opt["mask"]
            if "denoised" in combines:
                ica = self.combine.outputs("denoised", run, side)
                files[f"{side}_mixing"] = ica["mixing"]
                files[f"{side}_metrics"] = ica["metrics"]
        if self.config["spatial"]["enabled"]:
            files.update(self.spatial.resample_grid_inputs(run))
        return files

    def _phase(self, wc: Any, input: Any) -> str:
        """``--phase`` with the run's raw phase (NORDIC's complex mode), or nothing."""
        return words(["--phase", *input.phase]) if "phase" in input.keys() else ""

    def _ref_xfm(self, wc: Any, input: Any) -> str:
        """``--ref-xfm`` with the grid's transform (T1w output), or nothing."""
        return words(["--ref-xfm", input.xfm]) if "xfm" in input.keys() else ""

    def _slice_timing(self, wc: Any) -> str:
        """``--slice-timing`` with the run's SliceTiming (and ``--slice-axis`` when the slices
        are not along the third axis), or nothing."""
        return slice_timing_words(self.ctx.run_of(wc))

    def _run_outputs(self) -> Files:
        """Every variant's planted series of a run, as patterns (keys ``<nordic>_<combine>``);
        temporary: the planted betas are what the comparison reads."""
        temp = self.ctx.hooks.temp
        out: Files = {}
        for side in self._sides():
            for combine in self._combines():
                path = self.planted.series(None, Variant.of(side, combine))
                out[f"{side}_{combine}"] = temp(path) if temp is not None else path
        return out


__all__ = ["PLANTED_RUN", "SIGNS", "PlantedRunRules"]
