"""The multi-echo complex signal of one run, generated in volume chunks.

For voxel v, echo time TE and volume k (acquired at ``k*TR + slice_time(z)`` for the task):

``S = S0(v) (1 + dS0(v,k)) exp(-TE (R2*(v) + dR2*(v,k))) exp(i phi)``,
``phi = phi0(v) + 2 pi TE (df(v) + df_drift(v,k))``,

then complex Gaussian thermal noise of SD ``sigma * g(v)`` on the real and imaginary parts;
magnitude and phase of the noisy complex value are stored. Terms:

- ``dR2*`` = physiological noise (4 low-rank components: aliased cardiac and respiratory
  sinusoids, slow and faster smooth random courses; about 0.3 s^-1 SD in grey matter, i.e.
  ~0.9 % of the echo-2 signal, scaling with TE) minus the task response
  ``sum_trials beta(v, trial) h_v(t - onset)``.
- ``dS0`` = non-BOLD fluctuations (2 components, 0.3 % SD, TE-independent) plus a slow
  Legendre (order 1–2) drift of about 1 %.
- ``df_drift`` = a global linear frequency drift (~1 Hz SD over a run) and a respiratory
  frequency oscillation, larger in inferior slices.
- Head motion (optional): the parameter maps of each volume (S0, R2*, phase at TE 0 and the
  off-resonance, i.e. the head and its B0 field) are moved rigidly before the echoes are
  formed, with a cubic B-spline (:data:`MOTION_ORDER`; S0 and R2* clipped at 0). A volume's
  parameters ``(trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)`` (mm, rad) map a point ``x``
  of the motion-free head to ``c + R (x - c) + d`` in the scanner, ``c`` the centre of the
  functional grid, ``R = Rz Ry Rx`` (:func:`.geometry.rigid_matrix`); see
  :func:`motion_parameters` for their statistics. The evoked response of whatever lands in
  scanner slice ``z`` is formed at that slice's acquisition time (:class:`TaskTiming`): a head
  moved through the slices is imaged when each slice is excited, so the slice-timing
  correction of the pipeline (scanner slices, before realignment) stays right.
- EPI distortion (optional): the complex image of every echo is then displaced along the
  phase-encoding axis j by the voxel-shift map ``s = -TotalReadoutTime * f_B0`` of the static
  B0 field in the volume's head position (PE ``"j-"``; the field moves with the head; the
  slow frequency drift, a few Hz, shifts the phase only), with the magnitude divided by the
  Jacobian ``1 + ds/dj`` and the phase the magnitude-weighted mean of the sources'
  (:func:`.geometry.distort_signal`). The thermal noise is added after the distortion (it is
  white in the image).
- The single-band reference (:func:`reference_image`) is the fluctuation-free image in the
  head position of the run's first volume, distorted like the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage, sparse

from echoprep.simulate import seeds
from echoprep.simulate.acquisition import total_readout_time
from echoprep.simulate.anatomy import SubjectAnatomy, random_field
from echoprep.simulate.design import hrf_index, response_matrix, slice_timing
from echoprep.simulate.geometry import (
    distort_signal,
    distortion_operator,
    voxel_shift_map,
)
from echoprep.simulate.head_position import (
    moved,
    moved_task,
    voxel_coords,
    voxel_motion,
)
from echoprep.simulate.presets import Preset
from echoprep.simulate.response import ResponseModel, resolve
from echoprep.simulate.writer import quantize_magnitude, quantize_phase

#: Field dynamics (``build_run(field_dynamics=True)``): factor on the respiratory frequency
#: map (0.25-1.25 Hz -> 1.5-7.5 Hz, largest inferiorly; 7T breathing changes the field by a
#: few Hz, most near the lungs and sinuses), and the scanner-fixed field change per degree of
#: pitch at the frontal sinus position (Hz; MEDIC's data show changes of several Hz with head
#: motion there).
RESP_FIELD_SCALE = 6.0
MOTION_FIELD_HZ_PER_DEG = 8.0

#: SD of the physiological ΔR2* in pure grey matter, s^-1.
PHYSIO_SD = 0.3
#: SD of the non-BOLD S0 fluctuations (fraction).
S0_FLUCT_SD = 0.003
#: SD of the Legendre drift coefficients (fraction).
DRIFT_SD = 0.006
#: Peak fractional S0 change of the non-BOLD artefact (steps and spikes, as from small head
#: jerks or inflow) in CSF and at the brain edge; TE-independent, so tedana should reject it.
ARTIFACT_SD = 0.03


@dataclass
class TaskTiming:
    """The evoked response of the active voxels at any slice's acquisition time.

    Attributes
    ----------
    betas
        True single-trial betas (peak ΔR2* decrease, s^-1), shape (n_act, n_trials).
    hrf
        Position of each active voxel's library HRF in ``responses``' axis 1, shape (n_act,).
    responses
        Trial responses at the acquisitions of every volume, per distinct slice time and
        used library HRF, shape (n_times, n_hrf, T, n_trials) (:func:`.design.response_matrix`).
    slice_index
        Row of each slice's acquisition time in ``responses``, shape (nz,).
    """

    betas: np.ndarray
    hrf: np.ndarray
    responses: np.ndarray
    slice_index: np.ndarray

    def __post_init__(self) -> None:
        # voxels grouped by HRF once: contiguous rows, no copy per call
        self._order = np.argsort(self.hrf, kind="stable")
        self._sorted = np.ascontiguousarray(self.betas[self._order])
        hrfs, self._bounds = np.unique(self.hrf[self._order], return_index=True)
        self._hrfs = hrfs.tolist()
        self._bounds = [*self._bounds.tolist(), len(self.hrf)]

    def at(self, time: int, start: int, stop: int) -> np.ndarray:
        """Evoked ΔR2* decrease of every active voxel at the slice time ``time`` (row of
        ``responses``) for volumes ``start:stop``, s^-1, shape (n_act, stop - start) float32."""
        grouped = np.empty((len(self.betas), stop - start), np.float32)
        for i, h in enumerate(self._hrfs):
            a, b = self._bounds[i], self._bounds[i + 1]
            grouped[a:b] = self._sorted[a:b] @ self.responses[time, h, start:stop].T
        out = np.empty_like(grouped)
        out[self._order] = grouped
        return out


@dataclass
class RunModel:
    """Everything needed to generate one run, restricted to the head voxels.

    Attributes
    ----------
    shape
        Grid shape (nx, ny, nz).
    affine
        Grid affine.
    head_idx
        Flat (C-order) grid indices of the head voxels, shape (n_head,).
    s0, r2s, phase0, b0
        Static maps on the head voxels (magnitude units, s^-1, rad, Hz), shape (n_head,).
    r2_maps, r2_courses
        Physiological ΔR2* = ``r2_maps @ r2_courses``, shapes (n_head, K), (K, T), s^-1.
    s0_maps, s0_courses
        Fractional S0 change = ``s0_maps @ s0_courses``.
    df_maps, df_courses
        Frequency drift (Hz) = ``df_maps @ df_courses``.
    task_rows, task
        Rows of the active voxels in the head vector (n_act,) and their evoked ΔR2* decrease,
        s^-1, shape (n_act, T).
    noise_sd
        Thermal noise SD per real/imaginary channel on the grid, shape (nx, ny, nz).
    motion
        Rigid motion per volume (T, 6) (mm, rad) or None.
    field
        Static, head-fixed B0 off-resonance of the motion-free head on the grid, Hz,
        shape (nx, ny, nz).
    readout_time
        TotalReadoutTime (s) of the distortion; 0.0 for undistorted images.
    task_timing
        With motion: the evoked response at every slice time, to form it at the acquisition
        time of the scanner slice the moved content lands in; None without motion (``task``,
        at each voxel's own slice time, is then exact).
    gradient_points
        Gradient nonlinearity (:mod:`.gradient_coil`): the true scanner positions (world mm)
        imaged at every grid voxel, ``(3, nvox)`` float64 (C order); the maps of every volume
        are sampled there (motion composed), and the susceptibility shift uses the field of
        those true positions. None: a linear coil (always with ``motion``, zeros when the head
        does not move).
    motion_field
        Field dynamics (:func:`build_run` with ``field_dynamics``): the scanner-fixed field
        change per degree of pitch (``rot_x``), Hz, shape (nx, ny, nz); None: the field that
        distorts a volume is the static one in the volume's head position (the frequency
        drift then shifts the phase only). With it, the drift and respiration maps
        (``df_maps @ df_courses``) distort too, and this term is added in the scanner frame.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    head_idx: np.ndarray
    s0: np.ndarray
    r2s: np.ndarray
    phase0: np.ndarray
    b0: np.ndarray
    r2_maps: np.ndarray
    r2_courses: np.ndarray
    s0_maps: np.ndarray
    s0_courses: np.ndarray
    df_maps: np.ndarray
    df_courses: np.ndarray
    task_rows: np.ndarray
    task: np.ndarray
    noise_sd: np.ndarray
    motion: np.ndarray | None
    field: np.ndarray
    readout_time: float = 0.0
    task_timing: TaskTiming | None = None
    motion_field: np.ndarray | None = None
    gradient_points: np.ndarray | None = None

    @property
    def n_volumes(self) -> int:
        """Number of volumes T."""
        return self.r2_courses.shape[1]

    @property
    def distorted(self) -> bool:
        """Whether the images carry the EPI distortion."""
        return self.readout_time > 0

    @property
    def center(self) -> np.ndarray:
        """Rotation centre of the motion: world mm of the grid centre, shape (3,)."""
        a = self.affine
        return a[:3, :3] @ ((np.array(self.shape) - 1) / 2) + a[:3, 3]

    @property
    def dynamic(self) -> bool:
        """Whether the field that distorts each volume changes over the run."""
        return self.motion_field is not None

    def field_hz(self, volume: int | None = None, *, acquired: bool = False) -> np.ndarray:
        """Off-resonance (Hz) that distorts ``volume``, in the scanner frame: the static field
        of the motion-free head (None), or of the head position of ``volume`` (the field
        moved with the head), plus, with field dynamics, that volume's drift and respiration
        (head-fixed, moved with the head) and the pitch-dependent scanner-fixed change;
        shape (nx, ny, nz), float32. The value at a voxel is the field at that true scanner
        position; ``acquired`` (with gradient nonlinearity only): the field of the spin
        imaged at each voxel before its susceptibility shift (at :attr:`gradient_points`)."""
        field = self.field
        if volume is None:
            return field
        if self.dynamic:
            drift = np.zeros(int(np.prod(self.shape)), np.float32)
            drift[self.head_idx] = self.df_maps @ self.df_courses[:, volume]
            field = field + drift.reshape(self.shape)
        warped = acquired and self.gradient_points is not None
        if warped:
            coords = voxel_coords(self, volume)
            field = ndimage.map_coordinates(field, coords, order=1, mode="nearest")
            field = field.reshape(self.shape)
        elif self.motion is not None:
            mat, off = voxel_motion(self, self.motion[volume])
            field = ndimage.affine_transform(field, mat, off, order=1, mode="nearest")
        if self.motion is not None and self.motion_field is not None:
            pitch = np.float32(np.degrees(self.motion[volume, 3]))
            scanner = self._acquired_motion_field if warped else self.motion_field
            field = field + scanner * pitch
        return np.asarray(field, np.float32)

    @cached_property
    def _acquired_motion_field(self) -> np.ndarray:
        """The scanner-fixed :attr:`motion_field` at :attr:`gradient_points` (the same in every
        volume: computed once), shape (nx, ny, nz)."""
        inv = np.linalg.inv(self.affine)
        points = inv[:3, :3] @ self.gradient_points + inv[:3, 3:4]  # type: ignore[operator]
        field = ndimage.map_coordinates(self.motion_field, points, order=1, mode="nearest")
        return field.reshape(self.shape)

    def shift_map(self, volume: int | None = None, *, acquired: bool = False) -> np.ndarray:
        """Voxel shift along +j (voxels) of the field of :meth:`field_hz`, shape (nx, ny, nz),
        float32."""
        return voxel_shift_map(self.field_hz(volume, acquired=acquired), self.readout_time)


def _standardize(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / x.std()


def _smooth_noise(r: np.random.Generator, n: int, sigma_vols: float) -> np.ndarray:
    return _standardize(ndimage.gaussian_filter1d(r.standard_normal(n), sigma_vols, mode="reflect"))


def artifact_course(r: np.random.Generator, n: int) -> np.ndarray:
    """Time course of the non-BOLD artefact, shape (n,), unit SD: 2-4 slow-recovering steps
    and 3-6 single-volume spikes at random volumes."""
    x = np.zeros(n)
    for _ in range(int(r.integers(2, 5))):
        k = int(r.integers(1, n))
        x[k:] += r.choice([-1.0, 1.0]) * np.exp(-np.arange(n - k) / r.uniform(5, 20))
    spikes = r.choice(n, size=int(r.integers(3, 7)), replace=False)
    x[spikes] += r.choice([-2.0, 2.0], size=len(spikes))
    return _standardize(x)


def motion_parameters(preset: Preset, r: np.random.Generator, n: int) -> np.ndarray:
    """Random rigid motion of one run, shape (n, 6): 3 translations (mm), 3 rotations (rad).

    Each parameter is a run offset (up to 40 % of its bound, so runs differ in head position)
    plus a smoothed random walk starting at 0 (its extreme 20–50 % of the bound); then 1 or 2
    abrupt head jerks (steps of 5–15 % of each bound at random volumes). A parameter whose
    course would leave its bound is scaled down to 98 % of it, so always
    ``|trans| <= motion_max_mm`` and ``|rot| <= motion_max_deg``. Volume 0 is not the
    motion-free position (it is at the run offset).
    """
    limits = np.array([preset.motion_max_mm] * 3 + [np.deg2rad(preset.motion_max_deg)] * 3)
    out = np.empty((n, 6))
    for p in range(6):
        walk = ndimage.gaussian_filter1d(np.cumsum(r.standard_normal(n)), 1.5, mode="nearest")
        walk -= walk[0]
        walk *= r.uniform(0.2, 0.5) * limits[p] / max(np.abs(walk).max(), 1e-9)
        out[:, p] = r.uniform(-0.4, 0.4) * limits[p] + walk
    for _ in range(int(r.integers(1, 3))):
        k = int(r.integers(max(1, n // 10), max(2, n - n // 10)))
        out[k:] += r.choice([-1.0, 1.0], 6) * r.uniform(0.05, 0.15, 6) * limits
    peak = np.abs(out).max(axis=0)
    over = peak > limits
    out[:, over] *= 0.98 * limits[over] / peak[over]
    return out


def build_run(
    preset: Preset,
    anatomy: SubjectAnatomy,
    onsets: np.ndarray,
    betas: np.ndarray,
    *,
    seed: int,
    subject: int,
    session: int,
    run: int,
    motion: bool,
    distortion: bool = False,
    response: ResponseModel | str | None = None,
    field_dynamics: bool = False,
    gradient_points: np.ndarray | None = None,
) -> RunModel:
    """Draw the time courses of one run.

    Parameters
    ----------
    response
        Response model (:mod:`.response`): its ``thermal_scale`` multiplies the thermal noise
        SD and its ``physio_scale`` the physiological ΔR2*; default :data:`.response.DEFAULT`
        (both 1).
    motion
        Draw rigid head motion (:func:`motion_parameters`).
    distortion
        Distort the images along the phase-encoding axis by the B0 field (readout time
        :func:`.acquisition.total_readout_time`).
    field_dynamics
        Let the field change over the run (:data:`RESP_FIELD_SCALE`,
        :data:`MOTION_FIELD_HZ_PER_DEG`): the respiratory frequency map is scaled up and,
        with the linear drift, distorts the images as well as shifting their phase; with
        motion, a scanner-fixed change proportional to the pitch is added. No random draw is
        added, so every other quantity of the run is the same as without.
    gradient_points
        Gradient nonlinearity: the true positions imaged at the grid voxels
        (:func:`.gradient_coil.true_positions`), or None. Without ``motion`` the head then
        stays still through the motion path (zero parameters), which samples at them.
    onsets
        Onsets (s) of the run's image trials, shape (n_trials,).
    betas
        True single-trial betas of those trials on the active voxels, shape (n_act, n_trials),
        s^-1 (peak ΔR2* decrease).
    """
    r = seeds.rng(seed, subject, session, run, seeds.RUN)
    n = preset.n_volumes
    shape = anatomy.grid.shape
    head = anatomy.head_mask.ravel()
    head_idx = np.flatnonzero(head)
    fr = {k: v.ravel()[head_idx] for k, v in anatomy.fractions.items() if k != "mni"}
    mni = anatomy.fractions["mni"].reshape(-1, 3)[head_idx].astype(np.float64)
    t = np.arange(n) * preset.tr

    # physiological ΔR2*: cardiac and respiratory (aliased), slow and faster random courses
    courses = np.stack(
        [
            _standardize(np.sin(2 * np.pi * r.uniform(0.03, 0.24) * t + r.uniform(0, 2 * np.pi))),
            _standardize(np.sin(2 * np.pi * r.uniform(0.05, 0.25) * t + r.uniform(0, 2 * np.pi))),
            _smooth_noise(r, n, 8.0 / preset.tr),
            _smooth_noise(r, n, 2.5 / preset.tr),
        ]
    )
    offsets = np.array([0.3, 0.3, 1.0, 0.3])
    weight = fr["gm"] + 0.5 * fr["wm"] + 1.5 * fr["csf"] + 0.3 * fr["scalp"]
    model = resolve(response)
    physio = PHYSIO_SD if model.physio_scale == 1 else PHYSIO_SD * model.physio_scale
    norm = physio / np.sqrt(np.sum(offsets**2 + 1))
    r2_maps = np.stack([norm * weight * (o + random_field(r, 40.0)(mni)) for o in offsets], axis=1)

    # non-BOLD S0 fluctuations and drift
    legendre = np.stack([np.linspace(-1, 1, n), 0.5 * (3 * np.linspace(-1, 1, n) ** 2 - 1)])
    s0_courses = np.concatenate(
        [np.stack([_smooth_noise(r, n, 5.0 / preset.tr) for _ in range(2)]), legendre]
    )
    s0_maps = np.stack(
        [S0_FLUCT_SD / np.sqrt(2 * 1.25) * (0.5 + random_field(r, 60.0)(mni)) for _ in range(2)]
        + [r.normal(0, DRIFT_SD) * (1 + 0.5 * random_field(r, 100.0)(mni)) for _ in range(2)],
        axis=1,
    )

    # non-BOLD artefact: its own random stream, so the other quantities do not change with it
    ra = seeds.rng(seed, subject, session, run, seeds.ARTIFACT)
    art_map = (
        ARTIFACT_SD
        * np.clip(fr["csf"] + fr["scalp"], 0, 1)
        * (0.75 + 0.5 * random_field(ra, 50.0)(mni))
    )
    s0_courses = np.concatenate([s0_courses, artifact_course(ra, n)[None]])
    s0_maps = np.concatenate([s0_maps, art_map[:, None]], axis=1)

    # frequency drift (Hz)
    resp = np.sin(2 * np.pi * r.uniform(0.05, 0.25) * t + r.uniform(0, 2 * np.pi))
    df_courses = np.stack([legendre[0], resp])
    df_maps = np.stack(
        [
            np.full(len(head_idx), r.normal(0, 1.0)),
            0.5 * (1 + np.clip(-mni[:, 2] / 60.0, -0.5, 1.5)),
        ],
        axis=1,
    )
    motion_field = None
    if field_dynamics:
        df_maps[:, 1] *= RESP_FIELD_SCALE
        motion_field = _pitch_field(anatomy.grid.shape, anatomy.grid.affine)

    # evoked response at each slice's acquisition times, voxel-specific HRF
    act_idx = np.flatnonzero(anatomy.active.ravel())
    task_rows = np.searchsorted(head_idx, act_idx)
    z_of = np.unravel_index(act_idx, shape)[2]
    k_of = hrf_index(anatomy.hrf_peak.ravel()[act_idx])
    st = slice_timing(shape[2], preset.multiband, preset.tr)
    task = np.zeros((len(act_idx), n), np.float32)
    for z in np.unique(z_of):
        for k in np.unique(k_of[z_of == z]):
            sel = np.flatnonzero((z_of == z) & (k_of == k))
            task[sel] = betas[sel] @ response_matrix(preset, onsets, st[z], int(k)).T

    moves = (
        motion_parameters(preset, seeds.rng(seed, subject, session, run, seeds.MOTION), n)
        if motion
        else None
    )
    if moves is None and gradient_points is not None:
        moves = np.zeros((n, 6))
    timing = None
    if moves is not None:
        times, slice_index = np.unique(st, return_inverse=True)
        hrfs, hrf_pos = np.unique(k_of, return_inverse=True)
        responses = np.stack(
            [np.stack([response_matrix(preset, onsets, tm, int(k)) for k in hrfs]) for tm in times]
        ).astype(np.float32)
        timing = TaskTiming(
            np.asarray(betas, np.float32), hrf_pos, responses, slice_index.reshape(-1)
        )
    f32 = np.float32
    return RunModel(
        shape=shape,
        affine=anatomy.grid.affine,
        head_idx=head_idx,
        s0=anatomy.s0.ravel()[head_idx],
        r2s=anatomy.r2s.ravel()[head_idx],
        phase0=anatomy.phase0.ravel()[head_idx],
        b0=anatomy.b0_hz.ravel()[head_idx],
        r2_maps=r2_maps.astype(f32),
        r2_courses=courses.astype(f32),
        s0_maps=s0_maps.astype(f32),
        s0_courses=s0_courses.astype(f32),
        df_maps=df_maps.astype(f32),
        df_courses=df_courses.astype(f32),
        task_rows=task_rows,
        task=task,
        noise_sd=(thermal_sigma(preset, model) * anatomy.gfactor).astype(f32),
        motion=moves,
        field=anatomy.b0_hz.astype(f32),
        readout_time=total_readout_time(preset) if distortion else 0.0,
        task_timing=timing,
        motion_field=motion_field,
        gradient_points=gradient_points,
    )


def _pitch_field(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Scanner-fixed field change per degree of pitch, Hz: a Gaussian blob (SD 25 mm) of
    :data:`MOTION_FIELD_HZ_PER_DEG` at the frontal sinus position of the grid (anterior and
    inferior of its centre by 35 % of its half-extents), shape (nx, ny, nz) float32."""
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    xyz = affine[:3, :3] @ ijk + affine[:3, 3:4]
    lo, hi = xyz.min(axis=1), xyz.max(axis=1)
    centre = (lo + hi) / 2 + np.array([0.0, 0.35, -0.35]) * (hi - lo) / 2
    d2 = np.sum((xyz - centre[:, None]) ** 2, axis=0)
    blob = MOTION_FIELD_HZ_PER_DEG * np.exp(-d2 / (2 * 25.0**2))
    return blob.reshape(shape).astype(np.float32)


def thermal_sigma(preset: Preset, response: ResponseModel | str | None = None) -> float:
    """Thermal noise SD per real/imaginary channel before the g-factor, magnitude units: the
    preset's ``noise_sigma`` times the response model's ``thermal_scale``."""
    model = resolve(response)
    if model.thermal_scale == 1:
        return preset.noise_sigma
    return preset.noise_sigma * model.thermal_scale


def parameters(model: RunModel, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-varying signal parameters of volumes ``start:stop`` on the head voxels.

    Returns
    -------
    s0, r2s, freq
        Effective S0 (magnitude units), R2* (s^-1) and off-resonance (Hz), each
        (n_head, stop - start) float32.
    """
    sl = slice(start, stop)
    dr2 = model.r2_maps @ model.r2_courses[:, sl]
    dr2[model.task_rows] -= model.task[:, sl]
    s0 = model.s0[:, None] * (1 + model.s0_maps @ model.s0_courses[:, sl])
    freq = model.b0[:, None] + model.df_maps @ model.df_courses[:, sl]
    return s0, model.r2s[:, None] + dr2, freq


def noise_free(model: RunModel, te: float, start: int, stop: int) -> np.ndarray:
    """Noise-free, motion-free complex signal of volumes ``start:stop`` on the head voxels.

    Returns
    -------
    numpy.ndarray
        (n_head, stop - start) complex64, magnitude units.
    """
    s0, r2s, freq = parameters(model, start, stop)
    phase = model.phase0[:, None] + (2 * np.pi * te) * freq
    return (s0 * np.exp(-te * r2s) * np.exp(1j * phase)).astype(np.complex64)


def _distortion(model: RunModel, volume: int | None, sources: np.ndarray) -> sparse.csc_array:
    """The distortion operator of the head position of ``volume`` (None: motion-free)."""
    return distortion_operator(model.shift_map(volume, acquired=True), sources)


def reference_image(model: RunModel, te: float) -> np.ndarray:
    """Noise-free single-band reference magnitude at echo time ``te``, shape (nx, ny, nz).

    The image of the static maps (no physiological or task fluctuation) in the head position
    of volume 0 (with motion) and distorted like the run (with distortion); float32.
    """
    nvox = int(np.prod(model.shape))
    s0, r2s, idx = model.s0, model.r2s, model.head_idx
    if model.motion is not None:
        s0, r2s = (moved(model, m, 0, nonnegative=True) for m in (s0, r2s))
        idx = np.flatnonzero(s0 > 0)
        s0, r2s = s0[idx], r2s[idx]
    img = np.zeros(nvox, np.float32)
    img[idx] = s0 * np.exp(-te * r2s)
    if model.distorted:
        img = _distortion(model, None if model.motion is None else 0, idx) @ img
    return img.astype(np.float32, copy=False).reshape(model.shape)


def run_volumes(
    model: RunModel,
    tes: tuple[float, ...],
    rngs: list[np.random.Generator],
    chunk: int,
    *,
    phase: bool = True,
) -> Iterator[list[tuple[np.ndarray, np.ndarray | None]]]:
    """Stored (noisy) volumes of all echoes, chunk by chunk.

    Parameters
    ----------
    tes
        Echo times, s.
    rngs
        One generator per echo for the thermal noise, drawn in volume order with shape
        (n_chunk, 2, nx, ny, nz) per chunk (real, imaginary).
    chunk
        Volumes per chunk.

    Yields
    ------
    list of (magnitude, phase)
        Per echo, int16 arrays of shape (n_chunk, nx, ny, nz); phase is None when ``phase`` is
        False. With motion, the parameter maps (S0, R2*, phase at TE 0, off-resonance) of each
        volume are moved rigidly (:func:`moved`) before the echoes are formed; with distortion,
        the complex echo images are then distorted by the field in the volume's head position
        (one operator per volume, shared by the echoes).
    """
    nvox = int(np.prod(model.shape))
    static = (
        _distortion(model, None, model.head_idx)
        if model.distorted and model.motion is None and not model.dynamic
        else None
    )
    for start in range(0, model.n_volumes, chunk):
        stop = min(start + chunk, model.n_volumes)
        nb = stop - start
        s0, r2s, freq = parameters(model, start, stop)
        phase0 = np.broadcast_to(model.phase0[:, None], s0.shape)
        if model.motion is None:
            idx = model.head_idx
            maps = [s0.T, r2s.T, phase0.T, freq.T]
        else:
            idx = slice(None)
            timed = model.task_timing is not None
            if timed:  # the response is formed after the move, at the scanner slices' times
                r2s = r2s.copy()
                r2s[model.task_rows] += model.task[:, start:stop]
            maps = [
                np.stack([moved(model, m[:, k], start + k, nonnegative=pos) for k in range(nb)])
                for m, pos in ((s0, True), (r2s, not timed), (phase0, False), (freq, False))
            ]
            if timed:
                maps[1] = np.maximum(maps[1] - moved_task(model, start, stop), 0)
        s0_v, r2_v, ph0_v, f_v = maps
        if model.motion_field is not None and model.motion is not None:
            pitch = np.degrees(model.motion[start:stop, 3]).astype(np.float32)
            f_v = f_v + pitch[:, None] * model.motion_field.reshape(1, -1)
        ops: list[sparse.csc_array] = []
        if static is not None:
            ops = [static] * nb
        elif model.distorted and model.motion is None:
            ops = [_distortion(model, start + k, model.head_idx) for k in range(nb)]
        elif model.distorted:
            ops = [_distortion(model, start + k, np.flatnonzero(s0_v[k] > 0)) for k in range(nb)]
        out = []
        for te, rng in zip(tes, rngs, strict=True):
            mag = s0_v * np.exp(-te * r2_v)
            ph = ph0_v + (2 * np.pi * te) * f_v
            noise = rng.standard_normal((nb, 2, *model.shape), dtype=np.float32)
            noise *= model.noise_sd
            noise = noise.reshape(nb, 2, nvox)
            re, im = noise[:, 0], noise[:, 1]
            if ops:
                m_full = np.zeros(nvox, np.float32)
                p_full = np.zeros(nvox, np.float32)
                for k in range(nb):
                    m_full[idx], p_full[idx] = mag[k], ph[k]
                    m_k, p_k = distort_signal(m_full, p_full, ops[k])
                    re[k] += m_k * np.cos(p_k)
                    im[k] += m_k * np.sin(p_k)
            else:
                re[:, idx] += mag * np.cos(ph)
                im[:, idx] += mag * np.sin(ph)
            shape = (nb, *model.shape)
            out.append(
                (
                    quantize_magnitude(np.hypot(re, im)).reshape(shape),
                    quantize_phase(np.arctan2(im, re)).reshape(shape) if phase else None,
                )
            )
        yield out
