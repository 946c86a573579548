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
the *host* chain, :attr:`ChainChoice.spatial_host`: the first side whose chain runs in every
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

This module decides what the chains do, from the config alone; the chain rules' files and
commands are :mod:`echoprep.plan.families.chains`. See ``docs/architecture.md`` ("Per-run
chains").
"""

from __future__ import annotations

from functools import cached_property

from echoprep.plan.context import PlanContext
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


class ChainChoice:
    """What each side's per-run chain does under the config (module docstring)."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        self.config = ctx.config

    def chain_sides(self) -> list[str]:
        """NORDIC sides with a chain rule: ``nordic`` with NORDIC on; ``raw`` with spatial
        preprocessing on (without it the raw side has nothing to compute before combining)."""
        spatial = self.config["spatial"]["enabled"]
        return [s for s in self.ctx.nordic_variants if s == "nordic" or spatial]

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
        that do not fold it into their chain. Empty: the rule has no jobs."""
        return [s for s in self.ctx.nordic_variants if combine not in self.folded_combines(s)]

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
        return (rule,)


def _runs(side: str, variants: list[Variant], raw_ica: bool) -> bool:
    """Whether a session with these fitted variants runs the side's chain (its variants' need,
    and the raw ICA the NORDIC ICA reads with ``tedana.nordic_tedpca: raw_run``)."""
    if any(v.nordic == side for v in variants):
        return True
    return side == "raw" and raw_ica and Variant("nordic-denoised") in variants


__all__ = ["CHAIN_RULES", "COMBINE_STEPS", "PREPROC_PREFIX", "SPATIAL_PREFIX", "ChainChoice"]
