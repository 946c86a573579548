"""Simulation presets: geometry, design and acquisition of the synthetic datasets."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    """One simulated acquisition (geometry, design, acquisition parameters).

    Attributes
    ----------
    name
        Preset name (``"tiny"``, ``"demo"``, ``"laion"``).
    shape
        Functional matrix ``(nx, ny, nz)``; ``nz`` must be divisible by ``multiband``.
    voxel_size
        Isotropic functional voxel size, mm.
    n_subjects, n_sessions, n_runs
        Defaults of :func:`echoprep.simulate.simulate_dataset`.
    n_volumes
        Volumes per run.
    image_trials_per_run, blank_trials_per_run
        Trials per run (each trial lasts ``trial_duration``).
    n_images
        Distinct images per session at the default ``n_runs``; each is shown 2 or 3 times in
        the session (scaled with the number of runs when ``runs`` is overridden).
    t1w_voxel_size
        Isotropic T1w voxel size, mm.
    motion, fieldmap
        Defaults for head motion and for writing fieldmaps (the BOLD is distorted by the B0
        field when fieldmaps are written, unless overridden).
    tr
        Repetition time, s.
    tes
        Echo times, s.
    multiband
        Simultaneous-multislice factor (slice timing).
    trial_duration, stim_duration
        Trial spacing and image duration, s.
    lead_in
        Baseline before the first trial, s.
    min_tail
        Minimal baseline after the last trial, s (checked).
    motion_max_mm, motion_max_deg
        Bounds of the simulated rigid head motion, per translation (mm) and rotation
        (degrees) parameter, relative to the motion-free head (2 mm, 2°).
    slab_top_mm
        World z (mm) of the top edge of the functional slab.
    noise_sigma
        Thermal noise SD per real/imaginary channel before the g-factor, in magnitude units
        (grey-matter S0 is about 3000).
    chunk_volumes
        Volumes generated at a time (bounds memory; part of the definition of the noise draws).
    """

    name: str
    shape: tuple[int, int, int]
    voxel_size: float
    n_subjects: int
    n_sessions: int
    n_runs: int
    n_volumes: int
    image_trials_per_run: int
    blank_trials_per_run: int
    n_images: int
    t1w_voxel_size: float
    motion: bool
    fieldmap: bool
    tr: float = 1.9
    tes: tuple[float, ...] = field(default=(0.011, 0.02882, 0.04662))
    multiband: int = 3
    trial_duration: float = 3.0
    stim_duration: float = 2.5
    lead_in: float = 4.0
    min_tail: float = 12.0
    motion_max_mm: float = 2.0
    motion_max_deg: float = 2.0
    slab_top_mm: float = 92.0
    noise_sigma: float = 30.0
    chunk_volumes: int = 8

    def __post_init__(self) -> None:
        if self.shape[2] % self.multiband:
            raise ValueError(
                f"preset {self.name!r}: nz={self.shape[2]} is not divisible by the multiband "
                f"factor {self.multiband}"
            )
        tail = self.n_volumes * self.tr - self.lead_in - self.trials_per_run * self.trial_duration
        if tail < self.min_tail:
            raise ValueError(
                f"preset {self.name!r}: only {tail:.1f} s of baseline after the last trial "
                f"(need {self.min_tail} s); use more volumes or fewer trials"
            )
        self.images_for_runs(self.n_runs)

    @property
    def trials_per_run(self) -> int:
        """Image plus blank trials per run."""
        return self.image_trials_per_run + self.blank_trials_per_run

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        """Field of view of the functional slab, mm."""
        nx, ny, nz = self.shape
        return (nx * self.voxel_size, ny * self.voxel_size, nz * self.voxel_size)

    def images_for_runs(self, n_runs: int) -> int:
        """Distinct images per session for ``n_runs`` runs (each shown 2 or 3 times).

        Raises
        ------
        ValueError
            When no image count gives 2–3 repeats for that many image trials.
        """
        total = n_runs * self.image_trials_per_run
        n = round(self.n_images * n_runs / self.n_runs)
        lo, hi = -(-total // 3), total // 2
        if lo > hi:
            raise ValueError(
                f"preset {self.name!r}: {total} image trials cannot be split into images "
                "shown 2 or 3 times each"
            )
        return min(max(n, lo), hi)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        shape=(20, 24, 18),
        voxel_size=8.0,
        n_subjects=1,
        n_sessions=1,
        n_runs=2,
        n_volumes=90,
        image_trials_per_run=46,
        blank_trials_per_run=4,
        n_images=46,
        t1w_voxel_size=4.0,
        motion=False,
        fieldmap=False,
    ),
    "demo": Preset(
        name="demo",
        shape=(40, 48, 36),
        voxel_size=4.0,
        n_subjects=2,
        n_sessions=1,
        n_runs=4,
        n_volumes=120,
        image_trials_per_run=64,
        blank_trials_per_run=6,
        n_images=100,
        t1w_voxel_size=2.0,
        motion=False,
        fieldmap=True,
    ),
    "regime": Preset(
        name="regime",
        shape=(32, 40, 30),
        voxel_size=4.0,
        n_subjects=1,
        n_sessions=1,
        n_runs=6,
        n_volumes=120,
        image_trials_per_run=64,
        blank_trials_per_run=6,
        n_images=150,
        t1w_voxel_size=2.0,
        motion=False,
        fieldmap=False,
    ),
    "laion": Preset(
        name="laion",
        shape=(90, 110, 72),
        voxel_size=1.8,
        n_subjects=1,
        n_sessions=1,
        n_runs=12,
        n_volumes=163,
        image_trials_per_run=88,
        blank_trials_per_run=8,
        n_images=440,
        t1w_voxel_size=1.0,
        motion=True,
        fieldmap=True,
    ),
}
