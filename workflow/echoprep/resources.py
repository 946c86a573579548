"""Memory and runtime of each rule's jobs, from the size of the data they read.

The figures are calibrated on a measured LAION-fMRI-size session (90 x 110 x 72 voxels, 163
volumes, 3 echoes, 12 runs; ``benchmarks/laion_session.py``, table in
``benchmarks/laion_session.json``; ``tests/unit/test_resources_measured.py`` checks every
request against it): memory models give about 1.5 x the measured peak at that size and scale
with the data; runtimes are about 3 x the measured wall time on 2 cores, scaled up (never down)
by the data a job reads relative to that session.

Pure functions of image sizes (voxels, volumes, trials, echoes) and the retry ``attempt``:
each rule's definition (:class:`echoprep.plan.rule.RuleDef`, in its family's module) names its
memory model, threads and minutes; :class:`echoprep.plan.Plan` reads the sizes from the
discovered dataset (image headers, events files) and hands each rule a ``mem_mb`` and a
``runtime`` callable (:meth:`echoprep.plan.Plan.mem_mb`, :meth:`echoprep.plan.Plan.runtime`).
Every value grows with ``attempt``, so that a job killed for memory or time asks for more when
it is retried. See ``docs/architecture.md`` ("Resources").
"""

from __future__ import annotations

from dataclasses import dataclass


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


def run_mb(size: RunSize, copies: float) -> int:
    """``copies`` float32 copies of all echoes of a run, plus 500 MB (MB)."""
    return int(500 + copies * size.echoes * size.voxels * size.volumes * 4 / 1e6)


def nordic_mb(size: RunSize, attempt: int) -> int:
    """One echo's complex series with the patch-SVD workspace: 15 float32 copies (MB; measured
    4.45 GiB at LAION size, about 10 copies). A job denoises its run's echoes one after
    another, so this is its peak whatever the number of echoes."""
    return run_mb(size, 15 / size.echoes) * attempt


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


__all__ = [
    "LAION_RUN",
    "LAION_SESSION_VOXEL_VOLUMES",
    "RunSize",
    "SessionSize",
    "analysis_mask_mb",
    "betas_mb",
    "diagnostics_mb",
    "framewise_mb",
    "glm_mb",
    "nordic_mb",
    "report_mb",
    "run_mb",
    "spatial_mb",
]
