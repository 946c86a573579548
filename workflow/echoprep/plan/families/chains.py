"""The per-run chains: rule ``nordic`` (a run's NORDIC side) and rule ``spatial_resample``
(its NORDIC-off side with spatial preprocessing), one job per run and side running its steps
one after another (what each chain runs: :mod:`echoprep.plan.chains`).

Each step is the command its own rule would run (the geometry step of
:mod:`~echoprep.plan.families.spatial`, NORDIC below, the resampling, the combinations of
:mod:`~echoprep.plan.families.combine`), on the files the step before wrote. A chain's outputs
are per echo, so there is one rule per echo count of the dataset (usually one, named
``nordic``; ``nordic_<n>echoes`` when subjects differ, grouped like ``nordic``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.bids import Run
from echoprep.io.outputs import folder_name
from echoprep.io.rule_logs import RUN_KEY
from echoprep.plan.chains import PREPROC_PREFIX, ChainChoice
from echoprep.plan.context import Files, PlanContext, PlanError, words
from echoprep.plan.echo_files import echo_out_words, nordic_outputs, per_echo, source_echoes
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.spatial import RUN_STEM_PATTERN, SpatialRules
from echoprep.plan.rule import NO_JOBS, Family, RuleDef, RuleFiles

NORDIC = RuleDef(
    name="nordic",
    doc=(
        "A run's NORDIC chain: geometry (where it hosts it), NORDIC of every echo, their one "
        "resampling and the folded echo combinations"
    ),
    level="run",
    log=(folder_name("nordic"), RUN_KEY, ""),
    command=(
        "python -m echoprep nordic --mag {input.mag:q} {params.nordic_args}"
        " --options-json {params.nordic_options:q} --seed {params.seed} --threads {params.threads}"
        " --out {params.nordic_out}"
    ),
    message="NORDIC {wildcards.run_prefix}",
    # one echo after another: the memory of one echo
    memory=lambda family, wc, attempt: res.nordic_mb(family.ctx.job_run_size(wc), attempt),
    minutes=5,
    threads=2,
    scale="run",
    per_echo=True,
    grouped="nordic",
    subshell=True,
    label="NORDIC",
)
SPATIAL_RESAMPLE = RuleDef(
    name="spatial_resample",
    doc=(
        "A run's NORDIC-off chain: every raw echo resampled once into the output grid, then the"
        " folded single echo and optimal combination"
    ),
    level="run",
    log=(folder_name("preproc", nordic="raw"), RUN_KEY, ""),
    command=(
        "python -m echoprep spatial resample --echo {params.resample_echo}"
        " --geometry {params.resample_geometry} --grid {input.grid:q} {params.resample_args}"
        " --options-json {params.spatial_options:q} --threads {params.threads}"
        " --out {params.resample_out}"
    ),
    message="Resample {wildcards.run_prefix}",
    memory=lambda family, wc, attempt: res.spatial_mb(family.ctx.job_run_size(wc), attempt),
    # per echo: 1.3 min for a LAION run's 3 echoes (2026-11-25)
    minutes=2,
    threads=2,
    scale="run",
    per_echo=True,
    env="spatial",
    grouped="spatial_resample",
    subshell=True,
    label="resample",
)


class _SideWildcards:
    """A chain job's wildcards plus ``nordic`` (its side), for the run-level helpers that
    read ``wc.nordic``."""

    def __init__(self, wc: Any, side: str) -> None:
        self.run_prefix = wc.run_prefix
        self.nordic = side


class ChainRules(Family):
    """The per-run chain rules and NORDIC's step (module docstring)."""

    RULES = (NORDIC, SPATIAL_RESAMPLE)

    def __init__(
        self,
        ctx: PlanContext,
        chains: ChainChoice,
        spatial: SpatialRules,
        combine: CombineRules,
        steps: Callable[[str], RuleDef],
    ) -> None:
        super().__init__(ctx)
        self.chains = chains
        self.spatial = spatial
        self.combine = combine
        self.steps = steps

    def folders(self) -> list[str]:
        """``nordic/`` with NORDIC on (the folders of the other steps are their families')."""
        return [reg.folder_name("nordic")] if "nordic" in self.ctx.nordic_variants else []

    # -----------------------------------------------------------------------------------------
    # rules

    def nordic(self, echoes: int) -> RuleFiles:
        files = self._chain("nordic", echoes)
        if self.config["nordic"]["device"] != "cuda":
            return files
        # the patch algebra on a GPU (docs/nordic.md, "GPU"): the SLURM plugin's --gpus=1
        return replace(files, resources={"gpu": 1})

    def spatial_resample(self, echoes: int) -> RuleFiles:
        return self._chain("raw", echoes)

    def _chain(self, side: str, echoes: int) -> RuleFiles:
        steps = self.side_steps(side)
        constraints = self.ctx.echo_constraints(echoes, RUN_STEM_PATTERN)
        if side not in self.chains.chain_sides():
            constraints = {"run_prefix": NO_JOBS}
        commands = [self.steps(s).command for s in steps]
        return RuleFiles(
            self._inputs(side),
            self._outputs(side, echoes, steps),
            self._params(side, steps),
            wildcard_constraints=constraints,
            env=self._env(side),
            message=self._message(side, echoes, steps),
            command=" && ".join(commands),
        )

    def side_steps(self, side: str) -> tuple[str, ...]:
        """The steps of a side's chain job (:meth:`echoprep.plan.chains.ChainChoice
        .chain_steps`); a side without a chain (no jobs under the config), its own step."""
        own = "nordic" if side == "nordic" else "spatial_resample"
        return self.chains.chain_steps(side) or (own,)

    def _env(self, side: str) -> str:
        """The conda env of a side's chain: the GPU env (tedana's plus torch) for the NORDIC
        side with ``nordic.device: cuda``, tedana's when it folds the optimal combination
        (tedana's T2* fit), else the core env (NORDIC, the resampling and the single echo need
        only NumPy/SciPy/nibabel)."""
        if side == "nordic" and self.config["nordic"]["device"] == "cuda":
            return "gpu"
        return "tedana" if "optcom" in self.chains.folded_combines(side) else "echoprep"

    def _message(self, side: str, echoes: int, steps: tuple[str, ...]) -> str:
        """The job's console line: what it does to which run."""
        line = " + ".join(self.steps(s).label for s in steps)
        return f"{line[0].upper()}{line[1:]} {{wildcards.run_prefix}} ({echoes} echoes, {side})"

    # -----------------------------------------------------------------------------------------
    # files

    def _outputs(self, side: str, echoes: int, steps: tuple[str, ...]) -> dict[str, Any]:
        """Outputs of a side's chain job for runs with ``echoes`` echoes, as patterns: the run's
        geometry (``spatial_<key>``, the host side), NORDIC's per echo (``echo<E>_<key>``,
        NORDIC side), the resampled echoes (``preproc_echo<E>_...``, spatial preprocessing on;
        temporary unless ``spatial.keep_echoes``) and the folded combinations'
        (``<combine>_<key>``)."""
        temp = self.ctx.hooks.temp
        files: dict[str, Any] = {}
        if "spatial_run" in steps:
            files.update(self.spatial.geometry_step_outputs())
        if "nordic" in steps:
            files.update(self.nordic_run_outputs(echoes))
        if "spatial_resample" in steps:
            preproc = self.spatial.preproc_run_outputs(echoes, side)
            keep = temp is None or self.config["spatial"]["keep_echoes"]
            files.update(
                {PREPROC_PREFIX + k: (v if keep else temp(v)) for k, v in preproc.items()}  # type: ignore[misc]
            )
        for combine in self.chains.folded_combines(side):
            files.update(self.combine.step_outputs(combine, nordic=side))
        return files

    def _inputs(self, side: str) -> Callable[[Any], dict[str, Any]]:
        """The input function of a side's chain: the geometry step's (host side, keys
        ``spatial_<key>``), NORDIC's raw magnitude (and phase), or the raw echoes; with spatial
        preprocessing the run's geometry (unless the chain makes it) and the output grid."""

        def inputs(wc: Any) -> dict[str, Any]:
            files: dict[str, Any] = {}
            host = side == self.chains.spatial_host
            if host:
                files.update(self.spatial.geometry_step_inputs(wc))
            if side == "nordic":
                files.update(self._nordic_inputs(wc))
            if self.config["spatial"]["enabled"]:
                run = self.ctx.run_of(wc)
                if side == "raw":  # (the NORDIC side resamples the chain's own outputs)
                    files["echo"] = self.resample_sources(run, side)
                files.update(self.spatial.resample_grid_inputs(run))
                if host:  # (the chain's own output)
                    del files["geometry"]
            return files

        return inputs

    def _params(self, side: str, steps: tuple[str, ...]) -> dict[str, Any]:
        """``params`` of a side's chain: each step's arguments, only those of its steps
        (Snakemake evaluates every function once per job; values that do not depend on the
        job are plain strings)."""
        params: dict[str, Any] = {}
        if "spatial_run" in steps:
            params.update(self.spatial.geometry_step_params())
        if "nordic" in steps:
            params["nordic_args"] = self._nordic_params
            params["nordic_out"] = self._nordic_out_args
            params["nordic_options"] = self.ctx.options("nordic")
            params["seed"] = self.config["seed"]
        if "spatial_resample" in steps:
            params.update(self._resample_params(side))
        combines = [s for s in steps if s in ("single_echo", "optcom")]
        if combines:
            params["combine_echo"] = lambda wc: words(
                self.combine.echo_inputs(_SideWildcards(wc, side))
            )
            params["combine_args"] = lambda wc: self.combine.combine_args(_SideWildcards(wc, side))
        for step in combines:
            params[f"{step}_options"] = self.ctx.options(step)
        if "optcom" in combines:
            params["work"] = self.combine.work_dir(side)
        return params

    def _resample_params(self, side: str) -> dict[str, Any]:
        def echo(wc: Any) -> str:
            return words(self.resample_sources(self.ctx.run_of(wc), side))

        def args(wc: Any, input: Any) -> str:
            return self.spatial.resample_args(wc, input, side)

        def out(wc: Any, output: Any) -> str:
            return self.spatial.resample_out_args(wc, output, PREPROC_PREFIX)

        def geometry(wc: Any) -> str:
            return words([self.spatial.run_outputs(self.ctx.run_of(wc))["xfm"]])

        return {
            "resample_geometry": geometry,
            "resample_echo": echo,
            "resample_args": args,
            "resample_out": out,
            "spatial_options": self.ctx.options("spatial"),
        }

    def resample_sources(self, run: Run, nordic: str) -> list[str]:
        """The echoes the resampling reads for a NORDIC variant (:func:`source_echoes`)."""
        return source_echoes(self.ctx, run, nordic)

    # -----------------------------------------------------------------------------------------
    # NORDIC's step: every echo of the run, one after another

    def nordic_outputs(self, run: Run | None = None, echo: Any = "{echo}") -> Files:
        """NORDIC outputs (and sidecars) of one echo, as patterns or for a run."""
        return nordic_outputs(self.ctx, run, echo)

    def nordic_run_outputs(self, echoes: int) -> Files:
        """Outputs of NORDIC's step for a run with ``echoes`` echoes, as patterns: every
        echo's :meth:`nordic_outputs`, keys prefixed ``echo<E>_`` (``echo2_bold``)."""
        return per_echo({e: self.nordic_outputs(None, e) for e in range(1, echoes + 1)})

    def _nordic_inputs(self, wc: Any) -> dict[str, list[str]]:
        """Magnitude of every echo of the run (echo-time order) and, unless
        ``nordic.magnitude_only``, their phase (discovery: every echo has one, or none)."""
        echoes = self.ctx.run_of(wc).echoes
        files = {"mag": [str(e.mag) for e in echoes]}
        phases = [e.phase for e in echoes]
        if not self.config["nordic"]["magnitude_only"] and any(p is not None for p in phases):
            if any(p is None for p in phases):
                raise PlanError(
                    f"{wc.run_prefix}: expected a part-phase image for every echo or for none; "
                    "found some. Fix: add the missing phase images, or remove all of the "
                    "run's phase images to process it magnitude-only"
                )
            files["phase"] = [str(p) for p in phases]
        return files

    def _nordic_params(self, wc: Any, input: Any) -> str:
        """``--phase`` (when given), ``--te`` per echo and ``--tr`` of a NORDIC step."""
        run = self.ctx.run_of(wc)
        args = ["--phase", *input.phase] if "phase" in input.keys() else []
        args += ["--te", *run.echo_times, "--tr", run.repetition_time]
        return words(args)

    def _nordic_out_args(self, wc: Any, output: Any) -> str:
        """``--out`` words of a NORDIC step: ``bold=… gfactor=… removed=…`` per echo, in the
        order of ``--mag`` (the run's echoes by echo time)."""
        return echo_out_words(output, self.ctx.run_of(wc), reg.stage_outputs("nordic"))


__all__ = ["NORDIC", "SPATIAL_RESAMPLE", "ChainRules"]
