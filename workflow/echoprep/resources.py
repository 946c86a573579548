"""Memory and runtime of each rule's jobs, from the size of the data they read.

Pure functions of image sizes (voxels, volumes, trials, echoes) and the retry ``attempt``:
:class:`echoprep.plan.Plan` reads the sizes from the discovered dataset (image headers, events
files) and hands each rule a ``mem_mb`` and a ``runtime`` callable through
:meth:`echoprep.plan.Plan.mem_mb` and :meth:`echoprep.plan.Plan.runtime`. Every value grows
with ``attempt``, so that a job killed for memory or time asks for more when it is retried.
See ``docs/architecture.md`` ("Resources").
"""

from __future__ import annotations

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
    "spatial_subject": 3000,
    "anatomy": 6000,
}

#: Runtime (min) at the first attempt, for the rules without a size model.
MINUTES: dict[str, int] = {
    "nordic": 30,
    "single_echo": 10,
    "optcom": 20,
    "tedana": 60,
    "tedana_nordic": 60,
    "glm_analysis_mask": 15,
    "noiseceiling_session": 15,
    "noiseceiling_subject": 30,
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
    "nordic_diagnostics": 20,
    "spatial_run": 20,
    "spatial_subject": 20,
    "spatial_resample": 20,
    "anatomy": 60,
}

#: float32 copies of all echoes of a run held by the per-run rules (before dividing by the
#: number of echoes where the rule reads one echo).
RUN_COPIES: dict[str, float] = {
    "single_echo": 0.5,
    "optcom": 3,
    "tedana": 6,
    "tedana_nordic": 6,
}


@dataclass(frozen=True)
class RunSize:
    """Size of one run: ``voxels`` per volume, ``volumes``, ``echoes``."""

    voxels: int
    volumes: int
    echoes: int


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
        return sum(self.volumes)

    @property
    def max_volumes(self) -> int:
        return max(self.volumes) if self.volumes else 0


def run_mb(size: RunSize, copies: float) -> int:
    """``copies`` float32 copies of all echoes of a run, plus 500 MB (MB)."""
    return int(500 + copies * size.echoes * size.voxels * size.volumes * 4 / 1e6)


def nordic_mb(size: RunSize, attempt: int) -> int:
    """One echo's complex series with the patch-SVD workspace: 12 float32 copies (MB)."""
    return run_mb(size, 12 / size.echoes) * attempt


def combine_mb(rule: str, size: RunSize, attempt: int) -> int:
    """Echo handling (single echo, optcom, tedana): :data:`RUN_COPIES` copies (MB)."""
    return run_mb(size, RUN_COPIES[rule]) * attempt


def spatial_mb(size: RunSize, attempt: int) -> int:
    """One echo in float32 four times (input, slice timing, output) + 1 GB (MB)."""
    return int((1000 + run_mb(size, 4 / size.echoes) - 500) * attempt)


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


def glm_minutes(size: SessionSize, attempt: int) -> int:
    """20 min + about 5 min per 10^9 fitted voxel-volumes."""
    return int((20 + 0.6 * size.voxels * size.total_volumes / 2e8) * attempt)


def betas_mb(size: SessionSize, copies: float, base: int, attempt: int) -> int:
    """``copies`` float32 copies of the 4D betas (one volume per trial) + ``base`` MB."""
    return int((base + copies * 4 * size.voxels * size.trials / 1e6) * attempt)


def diagnostics_mb(size: SessionSize | None, attempt: int) -> int:
    """A session's 4D betas three times or one run's series twice (float32), plus 1 GB (MB)."""
    if size is None:
        return 1000 * attempt
    vols = size.max_volumes
    return int((1000 + 4 * size.voxels * max(3 * size.trials, 2 * vols) / 1e6) * attempt)


def report_mb(size: RunSize, attempt: int) -> int:
    """Two float32 copies of one run's 4D series (tSNR) + 1 GB (MB)."""
    return int((1000 + 2 * 4 * size.voxels * size.volumes / 1e6) * attempt)


def fixed_mb(rule: str, attempt: int) -> int:
    """:data:`FIXED_MB` of a rule, times ``attempt``."""
    return FIXED_MB[rule] * attempt


def minutes(rule: str, attempt: int) -> int:
    """:data:`MINUTES` of a rule, times ``attempt``."""
    return MINUTES[rule] * attempt


__all__ = [
    "FIXED_MB",
    "MINUTES",
    "RUN_COPIES",
    "RunSize",
    "SessionSize",
    "analysis_mask_mb",
    "betas_mb",
    "combine_mb",
    "diagnostics_mb",
    "fixed_mb",
    "glm_mb",
    "glm_minutes",
    "minutes",
    "nordic_mb",
    "report_mb",
    "run_mb",
    "spatial_mb",
]
