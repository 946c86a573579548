"""Echo handling per run: the single-echo baseline (``single_echo``), tedana's optimal
combination (``optcom``) and tedana's ICA denoising (``tedana``, ``tedana_nordic``).

The single echo and the optimal combination are steps of a side's per-run chain where it
folds them (:mod:`echoprep.plan.chains`); their own rules have jobs only for the sides that do
not (in the default config, the NORDIC side's single echo of the comparison sessions). The
ICA is always a job of its own; NORDIC-on runs have their own rule, ``tedana_nordic``: their
component count comes from the NORDIC-off run's ICA (``tedana.nordic_tedpca: raw_run``), and
Snakemake's ``--until`` cannot follow a rule whose jobs depend on jobs of the same rule.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.bids import Run
from echoprep.io.outputs import folder_name
from echoprep.io.paths import sidecar_path
from echoprep.io.rule_logs import RUN_KEY
from echoprep.options import options_json
from echoprep.plan.chains import COMBINE_STEPS, ChainChoice
from echoprep.plan.context import Files, PlanContext, words
from echoprep.plan.echo_files import source_echoes
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.fitted import FittedVariants
from echoprep.plan.rule import NO_JOBS, Family, RuleDef, RuleFiles, run_copies_mb
from echoprep.variants import Variant

SINGLE_ECHO = RuleDef(
    name="single_echo",
    doc="The single-echo baseline of a run (one echo unchanged), where no per-run chain folds it",
    level="run",
    log=(folder_name("combine"), RUN_KEY, "single"),
    command=(
        "python -m echoprep combine single --echo {params.combine_echo} {params.combine_args}"
        " --options-json {params.single_echo_options:q} --out bold={output.single_bold:q}"
    ),
    message="Single echo {wildcards.run_prefix} ({wildcards.nordic})",
    # one echo's float32 when it is decoded and written (an input that is not float32); the
    # copy of a float32 echo needs almost nothing (64 MB measured)
    memory=run_copies_mb(1 / 3),
    minutes=5,
    scale="run",
    subshell=True,
    label="single echo",
)
OPTCOM = RuleDef(
    name="optcom",
    doc=(
        "tedana's T2*-weighted optimal combination of a run's echoes, where no per-run chain "
        "folds it"
    ),
    level="run",
    log=(folder_name("combine"), RUN_KEY, "optcom"),
    # on one thread, as its own job did
    command=(
        "python -m echoprep combine optcom --echo {params.combine_echo} {params.combine_args}"
        " --options-json {params.optcom_options:q} --work-dir {params.work:q} --threads 1"
        " --out bold={output.optcom_bold:q} t2star={output.optcom_t2star:q}"
        " s0={output.optcom_s0:q} mask={output.optcom_mask:q}"
    ),
    message="Optimal combination {wildcards.run_prefix} ({wildcards.nordic})",
    memory=run_copies_mb(5),
    minutes=5,
    scale="run",
    env="tedana",
    subshell=True,
    label="optimal combination",
)
TEDANA = RuleDef(
    name="tedana",
    doc=(
        "tedana ICA denoising of a NORDIC-off run (component count estimated, capped at "
        "tedana.max_components)"
    ),
    level="run",
    log=(folder_name("combine"), RUN_KEY, "tedana"),
    command=(
        "python -m echoprep combine denoised --echo {input.echoes:q} --te {params.echo_times}"
        " --tr {params.tr} --drop-volumes {params.drop_volumes}"
        " --options-json {params.options:q} {params.nordic_flag} {params.raw_components}"
        " --seed {params.seed}"
        " --work-dir {params.work:q} --threads {params.threads}"
        " --out bold={output.bold:q} metrics={output.metrics:q} mixing={output.mixing:q}"
        " rejected={output.rejected:q}"
    ),
    message="tedana ICA denoising {wildcards.run_prefix} ({wildcards.nordic})",
    memory=run_copies_mb(6),
    minutes=15,
    threads=2,
    scale="run",
    env="tedana",
)
#: tedana's ICA of the NORDIC-on runs: tedana's definition under another name (module
#: docstring).
TEDANA_NORDIC = replace(
    TEDANA,
    name="tedana_nordic",
    doc=(
        "tedana ICA denoising of a NORDIC run, with the component count of the same run"
        " without NORDIC"
    ),
)


class CombineRules(Family):
    """The echo-handling rules and the combination steps' files (module docstring)."""

    RULES = (SINGLE_ECHO, OPTCOM, TEDANA, TEDANA_NORDIC)

    def __init__(
        self,
        ctx: PlanContext,
        chains: ChainChoice,
        fitted: FittedVariants,
        spatial: SpatialRules,
    ) -> None:
        super().__init__(ctx)
        self.chains = chains
        self.fitted = fitted
        self.spatial = spatial

    def folders(self) -> list[str]:
        """``combine-<nordic>/`` of each NORDIC variant."""
        return [reg.folder_name("combine", nordic=n) for n in self.ctx.nordic_variants]

    # -----------------------------------------------------------------------------------------
    # rules

    def _step_rule(self, combine: str) -> RuleFiles:
        sides = self.chains.separate_combine_sides(combine)
        return RuleFiles(
            {"echoes": self.echo_inputs},
            self.step_outputs(combine),
            self._rule_params(combine),
            wildcard_constraints={"nordic": "|".join(sides) or NO_JOBS},
        )

    def single_echo(self) -> RuleFiles:
        return self._step_rule("single")

    def optcom(self) -> RuleFiles:
        return self._step_rule("optcom")

    def tedana(self, nordic: str = "raw") -> RuleFiles:
        return RuleFiles(
            self._tedana_inputs,
            self.outputs("denoised"),
            {
                "echo_times": self._echo_times_param,
                "tr": self._tr_param,
                "drop_volumes": self._drop_volumes_param,
                "options": self._tedana_options,
                "nordic_flag": self._nordic_flag,
                "raw_components": self._raw_components,
                "seed": self.ctx.seed(),
                "work": lambda wc: self.work_dir(wc.nordic),
            },
            wildcard_constraints={"nordic": nordic},
        )

    def tedana_nordic(self) -> RuleFiles:
        return self.tedana("nordic")

    # -----------------------------------------------------------------------------------------
    # files

    def outputs(self, variant: str, run: Run | None = None, nordic: str = "{nordic}") -> Files:
        """Outputs (and sidecars) of a combine variant, as patterns or for a run."""
        return self.ctx.files("combine", self.ctx.run_key(run), variant, nordic=nordic)

    def step_outputs(self, combine: str, nordic: str = "{nordic}") -> Files:
        """Outputs of a combination step (``single``, ``optcom``), keys ``<combine>_<key>``
        (those of its own rule and of a chain that folds it)."""
        files = self.outputs(combine, None, nordic)
        return {f"{combine}_{k}": v for k, v in files.items()}

    def work_dir(self, side: str) -> str:
        """tedana's scratch folder (``<work_dir>/tmp/combine-...``)."""
        return str(Path(self.config["work_dir"]) / "tmp" / reg.folder_name("combine", nordic=side))

    def echo_inputs(self, wc: Any) -> list[str]:
        """Magnitude image per echo of the run (echo-time order) for the NORDIC variant."""
        run = self.ctx.run_of(wc)
        if self.config["spatial"]["enabled"]:  # the spatially preprocessed echoes
            return [self.spatial.preproc_echo(run, e.echo, wc.nordic) for e in run.echoes]
        return source_echoes(self.ctx, run, wc.nordic)

    def noise_volumes_to_drop(self, wc: Any) -> int:
        """Trailing noise volumes the combine stage drops (NORDIC removes its own by default;
        with spatial preprocessing the spatial stage dropped them)."""
        if self.config["spatial"]["enabled"]:
            return 0
        return self.spatial.noise_volumes(wc.nordic)

    def echo_times(self, wc: Any) -> list[str]:
        """The run's echo times (s), as an echo-handling job's ``--te`` gives them."""
        return [f"{t:.6g}" for t in self.ctx.run_of(wc).echo_times]

    def series_tr(self, wc: Any) -> float:
        """The repetition time (s) of the series an echo-handling job reads: the run's, or
        ``spatial.tr_out`` when the echoes were resampled in time."""
        spatial = self.config["spatial"]
        if spatial["enabled"] and spatial["slice_timing"] and spatial["tr_out"]:
            return spatial["tr_out"]
        return self.ctx.run_of(wc).repetition_time

    def combine_args(self, wc: Any) -> str:
        """``--te``, ``--tr`` and ``--drop-volumes`` of a combination step (in a per-run chain
        its steps share one ``params``, so the three stay one ``combine_args``)."""
        return words(
            [
                "--te",
                *self.echo_times(wc),
                "--tr",
                self.series_tr(wc),
                "--drop-volumes",
                self.noise_volumes_to_drop(wc),
            ]
        )

    def _rule_params(self, combine: str) -> dict[str, Any]:
        """``params`` of a combination's own rule: the same arguments as in a chain, from the
        rule's inputs."""
        step = COMBINE_STEPS[combine]
        params: dict[str, Any] = {
            "combine_echo": lambda wc: words(self.echo_inputs(wc)),
            "combine_args": self.combine_args,
            f"{step}_options": self.ctx.options(step),
        }
        if combine == "optcom":
            params["work"] = lambda wc: self.work_dir(wc.nordic)
        return params

    def _tedana_inputs(self, wc: Any) -> dict[str, Any]:
        """Echoes of the ICA-denoised job; on NORDIC runs with ``tedana.nordic_tedpca: raw_run``
        also the same run's NORDIC-off ICA mixing matrix, whose sidecar (written with it, not
        declared) gives the component count it uses."""
        files: dict[str, Any] = {"echoes": self.echo_inputs(wc)}
        if wc.nordic == "nordic" and self.config["tedana"]["nordic_tedpca"] == "raw_run":
            raw = self.outputs("denoised", self.ctx.run_of(wc), "raw")
            files["raw_mixing"] = raw["mixing"]
        return files

    def _tedana_options(self, wc: Any) -> str:
        """The tedana section, without nordic_tedpca for NORDIC-off runs (changing it reruns
        only the NORDIC runs' jobs)."""
        opts = dict(self.config["tedana"])
        if wc.nordic != "nordic":
            opts.pop("nordic_tedpca", None)
        return options_json(opts)

    def _echo_times_param(self, wc: Any) -> str:
        """The run's echo times in s (``--te``)."""
        return words(self.echo_times(wc))

    def _tr_param(self, wc: Any) -> str:
        """The repetition time in s of the series tedana reads (``--tr``)."""
        return words([self.series_tr(wc)])

    def _drop_volumes_param(self, wc: Any) -> str:
        """Trailing noise volumes to drop (``--drop-volumes``)."""
        return words([self.noise_volumes_to_drop(wc)])

    @staticmethod
    def _nordic_flag(wc: Any) -> str:
        """``--nordic`` on NORDIC runs (the stage then applies ``tedana.nordic_tedpca``)."""
        return "--nordic" if wc.nordic == "nordic" else ""

    @staticmethod
    def _raw_components(wc: Any, input: Any) -> str:
        """``--raw-components`` with the NORDIC-off run's ICA sidecar, whose component count
        a NORDIC run uses (``tedana.nordic_tedpca: raw_run``); empty otherwise."""
        if wc.nordic != "nordic" or "raw_mixing" not in input.keys():
            return ""
        return words(["--raw-components", sidecar_path(input.raw_mixing)])

    def series(self) -> list[tuple[Run, str, str]]:
        """``(run, nordic, combine)`` of every echo-handling series the config asks for: with
        ``variants.sessions: fitted`` the variants fitted for the run's session, with ``all``
        every configured variant of every run."""
        every = self.config["variants"]["sessions"] == "all"
        fitted = self.fitted.session_variants
        found: list[tuple[Run, str, str]] = []
        for nordic in self.ctx.nordic_variants:
            for run in self.dataset.runs:
                wanted = None if every else fitted(run.subject, run.session)
                found += [
                    (run, nordic, c)
                    for c in self.config["variants"]["combine"]
                    if wanted is None or Variant.of(nordic, c) in wanted
                ]
        return found

    def targets(self) -> list[str]:
        """Every echo-handling output of :meth:`series` (their upstream jobs are pulled in by
        those), each run's confounds after its series."""
        targets: list[str] = []
        series = self.series()
        for i, (run, nordic, combine) in enumerate(series):
            targets.extend(self.outputs(combine, run, nordic).values())
            last = i + 1 == len(series) or series[i + 1][:2] != (run, nordic)
            if last and self.config["spatial"]["enabled"]:
                targets.extend(self.spatial.confounds_outputs(run, nordic).values())
        return targets


__all__ = ["OPTCOM", "SINGLE_ECHO", "TEDANA", "TEDANA_NORDIC", "CombineRules"]
