"""Per-run chains: one job per run and NORDIC side runs its steps one after another.

A run's NORDIC side (``nordic``: NORDIC on) is one job of the rule ``nordic``: the run's
geometry when it hosts it (below), NORDIC on every echo, then (spatial preprocessing on) the
one-shot resampling of every echo, then the echo combinations that are *folded* into it. Its
raw side (NORDIC off, spatial preprocessing on) is one job of the rule ``spatial_resample``:
the resampling, then its folded combinations. Each step is the same ``python -m echoprep``
command a rule of its own would run, on the files the step before wrote, so the outputs are
those of separate jobs; the job saves the cluster a submission, a queue wait and a Snakemake
start-up per step, and the plan a job per step (the whole LAION-fMRI dataset is about one job
per ordinary run instead of four).

The run's geometry (head motion, distortion, alignment: ``spatial_run``) is the first step of
the *host* chain, :attr:`ChainPlan.spatial_host`: the first side whose chain runs in every
session (by the config). It reads the subject's reference boldref (rule
``spatial_reference``), never another run's geometry, so no chain waits for another run's.
The other side's chain reads the geometry the host wrote, so it reruns whenever the host does:
a changed NORDIC option reruns the raw side of the comparison sessions too (Snakemake reruns
whatever reads a rewritten file; its ``ancient()`` flag would stop that, but Snakemake then
also skips the raw chain's own parameter check, so an ``optcom`` option change would leave the
raw side stale).

A combination (``single``, ``optcom``) is folded into a side's chain when every session in
which that side's chain runs fits it (``variants.sessions: fitted``: the comparison sessions
fit every variant, the others ``glm.all_sessions_variants``; with ``all`` every configured
one): then the chain writes it wherever it runs and nothing is made that no session uses.
Otherwise its own rule (``single_echo``, ``optcom``, limited to the sides that do not fold it)
makes it where it is asked for. The choice follows from the config alone, never from the
sessions a dataset has: adding a session or a subject must not change the jobs of the others.
(Outside the fitted variants a chain may still run, e.g. for the visual ROI's raw-single fit
of a session that fits only nordic-optcom; it then also writes its folded combinations.)
tedana's ICA (``denoised``) is always its own job: another environment, a long job, and the
NORDIC side's ICA reads the raw side's.

The price of a chain: changing the options of one of its steps (``optcom``, ``single_echo``)
reruns the whole job, NORDIC and the resampling included, as Snakemake reruns jobs, not
steps. Settle those options before processing a whole dataset.

See ``docs/architecture.md`` ("Per-run chains").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from echoprep.io import outputs as reg
from echoprep.plan._base import Files, _words
from echoprep.plan.runs import RunPlan
from echoprep.variants import Variant

#: NORDIC side -> the rule of its per-run chain.
CHAIN_RULES: dict[str, str] = {"nordic": "nordic", "raw": "spatial_resample"}
#: Echo combination -> the step (and rule) that makes it.
COMBINE_STEPS: dict[str, str] = {"single": "single_echo", "optcom": "optcom"}
#: Output keys of the resampled echoes in a chain job (``preproc_echo2_bold``).
PREPROC_PREFIX = "preproc_"
#: Input and output keys of the geometry step, in its own rule and its host chain
#: (``spatial_xfm``).
SPATIAL_PREFIX = "spatial_"


class _SideWildcards:
    """A chain job's wildcards plus ``nordic`` (its side), for the run-level helpers that
    read ``wc.nordic``."""

    def __init__(self, wc: Any, side: str) -> None:
        self.run_prefix = wc.run_prefix
        self.nordic = side


class ChainPlan(RunPlan):
    """The per-run chains of :class:`echoprep.plan.Plan` (module docstring)."""

    # -----------------------------------------------------------------------------------------
    # what a chain does

    def chain_sides(self) -> list[str]:
        """NORDIC sides with a chain rule: ``nordic`` with NORDIC on; ``raw`` with spatial
        preprocessing on (without it the raw side has nothing to compute before combining)."""
        spatial = self.config["spatial"]["enabled"]
        return [s for s in self.nordic_variants if s == "nordic" or spatial]

    def folded_combines(self, side: str) -> tuple[str, ...]:
        """The echo combinations (``single``, ``optcom``, config order) the side's chain makes
        itself (module docstring); empty for a side without a chain."""
        return self._folded.get(side, ())

    @cached_property
    def _folded(self) -> dict[str, tuple[str, ...]]:
        combines = [c for c in self.config["variants"]["combine"] if c in COMBINE_STEPS]
        if self.config["variants"]["sessions"] == "all":
            return {side: tuple(combines) for side in self.chain_sides()}
        # From the config alone, never from the sessions the dataset has (adding a session must
        # not change the jobs of the others): the comparison sessions fit every variant; any
        # other session glm.all_sessions_variants, so a side whose chain runs there folds only
        # those.
        everywhere = [Variant(v) for v in self.config["glm"]["all_sessions_variants"]]
        raw_ica = self.config["tedana"]["nordic_tedpca"] == "raw_run"
        out = {}
        for side in self.chain_sides():
            if _runs(side, everywhere, raw_ica):
                out[side] = tuple(c for c in combines if Variant.of(side, c) in everywhere)
            else:  # only in the comparison sessions
                out[side] = tuple(combines)
        return out

    @cached_property
    def spatial_host(self) -> str | None:
        """The side whose chain also runs each run's geometry (head motion, distortion,
        alignment to the subject's reference: the ``spatial_run`` step, first), or None: then
        the rule ``spatial_run`` has a job per run. The host is the first side (``nordic``,
        then ``raw``) whose chain runs in every session, decided from the config alone as for
        the folded combinations: every run needs its geometry, wherever the GLM fits it."""
        if not self.config["spatial"]["enabled"]:
            return None
        everywhere = [Variant(v) for v in self.config["glm"]["all_sessions_variants"]]
        all_sessions = self.config["variants"]["sessions"] == "all"
        raw_ica = self.config["tedana"]["nordic_tedpca"] == "raw_run"
        for side in self.chain_sides():
            if all_sessions or _runs(side, everywhere, raw_ica):
                return side
        return None

    def separate_combine_sides(self, combine: str) -> list[str]:
        """NORDIC sides whose ``combine`` (``single``, ``optcom``) its own rule makes: those
        that do not fold it into their chain. Empty: the rule is not needed."""
        return [s for s in self.nordic_variants if combine not in self.folded_combines(s)]

    def chain_steps(self, side: str) -> tuple[str, ...]:
        """The steps of a side's chain job, in order: ``spatial_run`` (the host side,
        :attr:`spatial_host`), ``nordic``, ``spatial_resample``, ``single_echo``, ``optcom``
        (the ones that apply)."""
        steps = ["spatial_run"] if side == self.spatial_host else []
        if side == "nordic":
            steps.append("nordic")
        if self.config["spatial"]["enabled"]:
            steps.append("spatial_resample")
        steps += [COMBINE_STEPS[c] for c in self.folded_combines(side)]
        return tuple(steps)

    def rule_steps(self, rule: str) -> tuple[str, ...]:
        """The steps one job of ``rule`` runs (a chain's, or the rule itself): its resources
        are the most memory of one step and the sum of their run times."""
        for side, chain in CHAIN_RULES.items():
            if rule == chain and side in self.chain_sides():
                return self.chain_steps(side)
        if rule == "spatial_reference":  # the reference run's geometry step
            return ("spatial_run",)
        return (rule,)

    def _chain_env(self, side: str) -> str:
        """The conda env file (relative to the rule files) of a side's chain: the GPU env
        (tedana's plus torch) for the NORDIC side with ``nordic.device: cuda``, tedana's when
        it folds the optimal combination (tedana's T2* fit), else the core env (NORDIC, the
        resampling and the single echo need only NumPy/SciPy/nibabel)."""
        if side == "nordic" and self.config["nordic"]["device"] == "cuda":
            env = "gpu"
        else:
            env = "tedana" if "optcom" in self.folded_combines(side) else "echoprep"
        return f"../../envs/{env}.yaml"

    def _chain_message(self, side: str, echoes: int) -> str:
        """The job's console line: what it does to which run."""
        names = {
            "spatial_run": "head motion and distortion",
            "nordic": "NORDIC",
            "spatial_resample": "resample",
            "single_echo": "single echo",
            "optcom": "optimal combination",
        }
        steps = " + ".join(names[s] for s in self.chain_steps(side))
        return f"{steps[0].upper()}{steps[1:]} {{wildcards.run_prefix}} ({echoes} echoes, {side})"

    # -----------------------------------------------------------------------------------------
    # files

    def _chain_outputs(
        self, side: str, echoes: int, temp: Callable[[str], Any] | None = None
    ) -> dict[str, Any]:
        """Outputs of a side's chain job for runs with ``echoes`` echoes, as patterns: the run's
        geometry (``spatial_<key>``, the host side), NORDIC's per echo (``echo<E>_<key>``,
        NORDIC side), the resampled echoes (``preproc_echo<E>_...``, spatial preprocessing on;
        passed through ``temp`` unless ``spatial.keep_echoes``) and the folded combinations'
        (``<combine>_<key>``)."""
        files: dict[str, Any] = {}
        if side == self.spatial_host:
            files.update(self._geometry_step_outputs())
        if side == "nordic":
            files.update(self.nordic_run_outputs(echoes))
        if self.config["spatial"]["enabled"]:
            preproc = self.preproc_run_outputs(echoes, side)
            keep = temp is None or self.config["spatial"]["keep_echoes"]
            files.update(
                {PREPROC_PREFIX + k: (v if keep else temp(v)) for k, v in preproc.items()}  # type: ignore[misc]
            )
        for combine in self.folded_combines(side):
            files.update(self._combine_step_outputs(combine, nordic=side))
        return files

    def _geometry_step_outputs(self) -> Files:
        """Outputs of the geometry step (``spatial_run``), keys ``spatial_<key>`` (those of its
        own rule and of the chain that hosts it), as patterns."""
        return {SPATIAL_PREFIX + k: v for k, v in self.spatial_run_outputs().items()}

    def _geometry_step_inputs(self, wc: Any) -> dict[str, Any]:
        """Inputs of a run's geometry step, keys ``spatial_<key>`` (:meth:`_spatial_run_inputs`)."""
        return {SPATIAL_PREFIX + k: v for k, v in self._spatial_run_inputs(wc).items()}

    def _geometry_step_params(self) -> dict[str, Any]:
        """``params`` of the geometry step (``STEP_COMMANDS["spatial_run"]``), for its own rule
        and the chain that hosts it."""
        return {
            "spatial_args": lambda wc, input: self._spatial_run_params(wc, input, SPATIAL_PREFIX),
            "spatial_options": self.options("spatial"),
        }

    def _combine_step_outputs(self, combine: str, nordic: str = "{nordic}") -> Files:
        """Outputs of a combination step (``single``, ``optcom``), keys ``<combine>_<key>``
        (those of its own rule and of a chain that folds it)."""
        files = self.combine_outputs(combine, None, nordic)
        return {f"{combine}_{k}": v for k, v in files.items()}

    def _chain_inputs(self, side: str) -> Callable[[Any], dict[str, Any]]:
        """The input function of a side's chain: the geometry step's (host side, keys
        ``spatial_<key>``), NORDIC's raw magnitude (and phase), or the raw echoes; with spatial
        preprocessing the run's geometry (unless the chain makes it) and the output grid."""

        def inputs(wc: Any) -> dict[str, Any]:
            files: dict[str, Any] = {}
            host = side == self.spatial_host
            if host:
                files.update(self._geometry_step_inputs(wc))
            if side == "nordic":
                files.update(self._nordic_inputs(wc))
            if self.config["spatial"]["enabled"]:
                run = self.run_of(wc)
                if side == "raw":  # (the NORDIC side resamples the chain's own outputs)
                    files["echo"] = self.resample_sources(run, side)
                files.update(self.resample_grid_inputs(run))
                if host:  # (the chain's own output)
                    del files["geometry"]
            return files

        return inputs

    def _chain_params(self, side: str) -> dict[str, Any]:
        """``params`` of a side's chain: each step's arguments (``STEP_COMMANDS`` of the rule
        files), only those of its steps (Snakemake evaluates every function once per job;
        values that do not depend on the job are plain strings)."""
        steps = self.chain_steps(side)
        params: dict[str, Any] = {}
        if "spatial_run" in steps:
            params.update(self._geometry_step_params())
        if "nordic" in steps:
            params["nordic_args"] = self._nordic_params
            params["nordic_out"] = self._nordic_out_args
            params["nordic_options"] = self.options("nordic")
            params["seed"] = self.config["seed"]
        if "spatial_resample" in steps:
            params.update(self._resample_params(side))
        combines = [s for s in steps if s in ("single_echo", "optcom")]
        if combines:
            params["combine_echo"] = lambda wc: _words(self._echo_inputs(_SideWildcards(wc, side)))
            params["combine_args"] = lambda wc: self._combine_params(_SideWildcards(wc, side))
        for step in combines:
            params[f"{step}_options"] = self.options(step)
        if "optcom" in combines:
            params["work"] = self.combine_work_dir(side)
        return params

    def _resample_params(self, side: str) -> dict[str, Any]:
        def echo(wc: Any) -> str:
            return _words(self.resample_sources(self.run_of(wc), side))

        def args(wc: Any, input: Any) -> str:
            return self._spatial_resample_params(_SideWildcards(wc, side), input)

        def out(wc: Any, output: Any) -> str:
            return self._spatial_resample_out_args(wc, output, PREPROC_PREFIX)

        def geometry(wc: Any) -> str:
            return _words([self.spatial_run_outputs(self.run_of(wc))["xfm"]])

        return {
            "resample_geometry": geometry,
            "resample_echo": echo,
            "resample_args": args,
            "resample_out": out,
            "spatial_options": self.options("spatial"),
        }

    def combine_work_dir(self, side: str) -> str:
        """tedana's scratch folder of the optimal combination (``<work_dir>/tmp/combine-...``)."""
        return str(Path(self.config["work_dir"]) / "tmp" / reg.folder_name("combine", nordic=side))

    def _combine_rule_params(self, combine: str) -> dict[str, Any]:
        """``params`` of a combination's own rule (``single_echo``, ``optcom``): the same
        arguments as in a chain, from the rule's inputs."""
        step = COMBINE_STEPS[combine]
        params: dict[str, Any] = {
            "combine_echo": lambda wc: _words(self._echo_inputs(wc)),
            "combine_args": self._combine_params,
            f"{step}_options": self.options(step),
        }
        if combine == "optcom":
            params["work"] = lambda wc: self.combine_work_dir(wc.nordic)
        return params


def _runs(side: str, variants: list[Variant], raw_ica: bool) -> bool:
    """Whether a session with these fitted variants runs the side's chain (its variants' need,
    and the raw ICA the NORDIC ICA reads with ``tedana.nordic_tedpca: raw_run``)."""
    if any(v.nordic == side for v in variants):
        return True
    return side == "raw" and raw_ica and Variant("nordic-denoised") in variants


__all__ = ["CHAIN_RULES", "COMBINE_STEPS", "PREPROC_PREFIX", "SPATIAL_PREFIX", "ChainPlan"]
