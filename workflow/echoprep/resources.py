"""Memory and runtime of each rule's jobs, from the size of the data they read.

The figures are calibrated on a measured LAION-fMRI-size session (90 x 110 x 72 voxels, 163
volumes, 3 echoes, 12 runs; ``benchmarks/laion_session.py``, table in
``benchmarks/laion_session.json``; ``tests/unit/test_resources_measured.py`` checks every
request against it): memory models give about 1.5 x the measured peak at that size and scale
with the data; runtimes are about 3 x the measured wall time on 2 cores, scaled up (never down)
by the data a job reads relative to that session.

Pure functions of image sizes (voxels, volumes, trials, echoes) and the retry ``attempt``:
:class:`echoprep.plan.Plan` reads the sizes from the discovered dataset (image headers, events
files) and hands each rule a ``mem_mb`` and a ``runtime`` callable through
:meth:`echoprep.plan.Plan.mem_mb` and :meth:`echoprep.plan.Plan.runtime`. Every value grows
with ``attempt``, so that a job killed for memory or time asks for more when it is retried.
See ``docs/architecture.md`` ("Resources").

The tables below are keyed by the rule (or chain step) whose spec a job takes: the jobs of
``use rule tedana as tedana_nordic`` take tedana's spec, so tedana's rows, and a row of their
own would be read by nothing (``tests/unit/test_specs.py`` fails on a row no job reads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Fixed memory (MB) of the rules whose needs do not depend on the data size.
FIXED_MB: dict[str, int] = {
    # light local rules (one thread next to Snakemake): a 3D map or a few tables each
    "noiseceiling_repeats": 500,
    "roi_table": 1000,
    "comparison": 1000,
    "roi_mask": 2000,
    # links or copies (streamed), the mask reads one 3D map
    "publish_session": 1000,
    "publish_subject": 1000,
    "publish_repeats": 1000,
    "publish_roi": 1000,
    # measured at LAION size (benchmarks/laion_session.json): 0.56 GiB; 2.19 GiB (1 mm T1w)
    "spatial_subject": 1500,
    "anatomy": 5000,
}

#: Runtime (min) of each rule's job at the first attempt for a LAION-fMRI session (about 3 x
#: the wall time measured on 2 cores, benchmarks/laion_session.json); :func:`minutes` scales
#: it up for larger data. For :data:`ECHO_RULES` the figure is per echo (they were measured
#: one job per echo) and a job asks for it times its run's echoes.
MINUTES: dict[str, int] = {
    "nordic": 5,
    "single_echo": 5,
    "optcom": 5,
    "tedana": 15,
    "glm_analysis_mask": 20,
    "glm": 20,
    "glm_reference": 20,
    # every half of 2 splits: about two full fits
    "glm_heldout": 40,
    "noiseceiling_session": 15,
    "noiseceiling_subject": 10,
    "noiseceiling_repeats": 5,
    "roi_visual": 10,
    "roi_mask": 10,
    "roi_table": 5,
    "publish_session": 10,
    "publish_subject": 5,
    "publish_repeats": 5,
    "publish_roi": 5,
    "comparison_subject": 30,
    "comparison": 10,
    "subject_report": 15,
    "nordic_diagnostics": 25,
    "spatial_run": 5,
    "spatial_subject": 5,
    # per echo: 1.3 min for a LAION run's 3 echoes (2026-11-25)
    "spatial_resample": 2,
    "anatomy": 25,
}

#: Threads of each rule's job (1 where not listed): what the scheduler reserves AND what the
#: job computes with, whatever the machine's cores (``--cores 1`` scales Snakemake's own
#: ``{threads}`` down, which changed ANTs's, BLAS's and torch's results): same inputs, same
#: config, same outputs.
THREADS: dict[str, int] = {
    "anatomy": 2,
    "nordic": 2,
    "spatial_reference": 2,
    "spatial_run": 2,
    "spatial_resample": 2,
    "tedana": 2,
    "glm": 2,
    "glm_reference": 2,
    "glm_heldout": 2,
}

#: float32 copies of all echoes of a run held by the per-run rules (before dividing by the
#: number of echoes where the rule reads one echo).
RUN_COPIES: dict[str, float] = {
    # one echo's float32 when it is decoded and written (an input that is not float32); the
    # copy of a float32 echo needs almost nothing (64 MB measured)
    "single_echo": 1 / 3,
    "optcom": 5,
    "tedana": 6,
}


@dataclass(frozen=True)
class RunSize:
    """Size of one run: ``voxels`` per volume, ``volumes``, ``echoes``."""

    voxels: int
    volumes: int
    echoes: int

    @property
    def voxel_volumes(self) -> int:
        """Voxels x volumes of one echo."""
        return self.voxels * self.volumes


@dataclass(frozen=True)
class SessionSize:
    """Size of a set of runs (a session, a subject's sessions).

    Attributes
    ----------
    voxels
        Voxels per volume (of the first run: runs of a session share the grid).
    volumes
        Volumes per run.
    trials
        Trials (rows of the events files) over the runs.
    """

    voxels: int
    volumes: tuple[int, ...]
    trials: int

    @property
    def total_volumes(self) -> int:
        """Volumes over all runs."""
        return sum(self.volumes)

    @property
    def max_volumes(self) -> int:
        """Volumes of the longest run."""
        return max(self.volumes) if self.volumes else 0


#: The LAION-fMRI run the figures were measured on (per echo: 90 x 110 x 72 voxels, 163 volumes).
LAION_RUN = RunSize(voxels=90 * 110 * 72, volumes=163, echoes=3)
#: Voxel-volumes of one echo over a 12-run LAION-fMRI session.
LAION_SESSION_VOXEL_VOLUMES = 12 * LAION_RUN.voxel_volumes
#: Rules with one job per run (runtime scaled by the run's voxel-volumes).
RUN_RULES = frozenset(
    {
        "nordic",
        "spatial_run",
        "spatial_resample",
        "single_echo",
        "optcom",
        "tedana",
    }
)
#: Rules (and steps of a per-run chain, :mod:`echoprep.plan.chains`) with one job per run (and
#: NORDIC variant) that treat the run's echoes one after another in one process: memory of one
#: echo (the models below), runtime of one echo (:data:`MINUTES`) times the echoes. A chain job
#: asks for the most memory of one of its steps and the sum of their minutes
#: (:meth:`echoprep.plan.Plan.mem_mb`, :meth:`echoprep.plan.Plan.runtime`).
ECHO_RULES = frozenset({"nordic", "spatial_resample"})
#: Rules with one job per session (runtime scaled by the session's voxel-volumes).
SESSION_RULES = frozenset(
    {"glm", "glm_reference", "glm_heldout", "glm_analysis_mask", "noiseceiling_session"}
)


def run_mb(size: RunSize, copies: float) -> int:
    """``copies`` float32 copies of all echoes of a run, plus 500 MB (MB)."""
    return int(500 + copies * size.echoes * size.voxels * size.volumes * 4 / 1e6)


def nordic_mb(size: RunSize, attempt: int) -> int:
    """One echo's complex series with the patch-SVD workspace: 15 float32 copies (MB; measured
    4.45 GiB at LAION size, about 10 copies). A job denoises its run's echoes one after
    another, so this is its peak whatever the number of echoes."""
    return run_mb(size, 15 / size.echoes) * attempt


def combine_mb(rule: str, size: RunSize, attempt: int) -> int:
    """Echo handling (single echo, optcom, tedana): :data:`RUN_COPIES` copies (MB)."""
    return run_mb(size, RUN_COPIES[rule]) * attempt


def spatial_mb(size: RunSize, attempt: int) -> int:
    """One echo in float32 four times (input, slice timing, output) + 1 GB (MB); the
    resampling job treats its echoes one after another."""
    return int((1000 + run_mb(size, 4 / size.echoes) - 500) * attempt)


def framewise_mb(size: RunSize, attempt: int) -> int:
    """The geometry step with frame-wise distortion correction: every echo as complex64 (two
    float32 copies each), the per-volume fields and their change (two more float32 copies of
    one echo, three with the float64 principal components) on top of :func:`spatial_mb`
    (MB)."""
    return int(spatial_mb(size, 1) + run_mb(size, 2 + 3 / size.echoes) - 500) * attempt


def analysis_mask_mb(size: SessionSize, n_variants: int, attempt: int) -> int:
    """One run read in float32 three times (data, finite flags, reductions), one flag byte per
    voxel, run and variant (twice), plus 1 GB (MB)."""
    n_flags = 2 * len(size.volumes) * n_variants
    nbytes = 3 * 4 * size.voxels * size.max_volumes + n_flags * size.voxels
    return int((1000 + nbytes / 1e6) * attempt)


def glm_mb(size: SessionSize, chunklen: int, attempt: int) -> int:
    """A GLMsingle fit: the masked data (<= 60 % of the grid, float32), one run read in float32
    twice, three single-trial arrays of the engine and two full-grid copies of the betas when
    written, the engine's chunk temporaries, plus 1 GB (MB)."""
    trials = size.trials or size.total_volumes
    chunk = min(chunklen, size.voxels)
    fitted = 0.6 * size.voxels
    nbytes = 4 * (
        fitted * size.total_volumes
        + 2 * size.voxels * size.max_volumes
        + 3 * fitted * trials
        + 2 * size.voxels * trials
        + 4 * chunk * size.total_volumes
        + 2 * chunk * len(size.volumes) * 20
    )
    return int((1000 + nbytes / 1e6) * attempt)


def betas_mb(size: SessionSize, copies: float, base: int, attempt: int) -> int:
    """``copies`` float32 copies of the 4D betas (one volume per trial) + ``base`` MB."""
    return int((base + copies * 4 * size.voxels * size.trials / 1e6) * attempt)


def diagnostics_mb(size: SessionSize | None, attempt: int) -> int:
    """A session's 4D betas 4.5 times (measured 10.4 GiB at LAION size) or one run's series
    twice (float32), plus 1 GB (MB)."""
    if size is None:
        return 1000 * attempt
    vols = size.max_volumes
    return int((1000 + 4 * size.voxels * max(4.5 * size.trials, 2 * vols) / 1e6) * attempt)


def report_mb(size: RunSize, attempt: int) -> int:
    """Two float32 copies of one run's 4D series (tSNR) + 1 GB (MB)."""
    return int((1000 + 2 * 4 * size.voxels * size.volumes / 1e6) * attempt)


def fixed_mb(rule: str, attempt: int) -> int:
    """:data:`FIXED_MB` of a rule, times ``attempt``."""
    return FIXED_MB[rule] * attempt


def minutes(rule: str, attempt: int, scale: float = 1.0, echoes: int = 1) -> int:
    """:data:`MINUTES` of a rule times ``max(1, scale)`` (the job's data relative to the LAION
    run or session, per echo) times ``echoes`` (the echoes a job of :data:`ECHO_RULES` treats
    one after another; 1 for the others), rounded up, times ``attempt``."""
    return math.ceil(MINUTES[rule] * echoes * max(1.0, scale)) * attempt


__all__ = [
    "ECHO_RULES",
    "FIXED_MB",
    "LAION_RUN",
    "LAION_SESSION_VOXEL_VOLUMES",
    "MINUTES",
    "RUN_COPIES",
    "RUN_RULES",
    "SESSION_RULES",
    "RunSize",
    "SessionSize",
    "analysis_mask_mb",
    "betas_mb",
    "combine_mb",
    "diagnostics_mb",
    "fixed_mb",
    "framewise_mb",
    "glm_mb",
    "minutes",
    "nordic_mb",
    "report_mb",
    "run_mb",
    "spatial_mb",
]
