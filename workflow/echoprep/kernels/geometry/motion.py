"""Head-motion estimation: 6-dof rigid registration of every volume to a reference volume.

Engine: our own intensity-based least-squares rigid registration, Gauss–Newton in the
*inverse-compositional* form (Baker & Matthews 2004; the same model as SPM's realign: a
rigid body, a global intensity scale, sum of squared differences):

- the reference ("fixed") image is smoothed at each level of a coarse-to-fine schedule
  (:data:`DEFAULT_LEVELS`: a Gaussian of SD ``sigma_mm`` and a sampling stride in voxels);
  its gradient and the 6-column Jacobian ``[g, (x - c) × g]`` are computed **once** per level
  on a strided subset of the head voxels (reference > mean / 8, SPM's rule);
- per volume and iteration, only the moving image is sampled (trilinear) at the current
  transform; the update ``Δ = (JᵀJ)⁻¹ Jᵀ (s F(W x) − R(x))`` (``s``: ratio of means, the
  global intensity scale) is composed as ``M ← M E(Δ)⁻¹``; points that leave the moving
  field of view are dropped from the normal equations;
- every volume starts from the identity, so results do not depend on the order of volumes,
  ``n_threads`` or ``chunk_volumes``.

Chosen over ANTs by measurement (``benchmarks/motion.py``: LAION geometry 90×110×72×163 at
1.8 mm, motion <= 2 mm / 2 deg, 2 threads on a shared 2-core machine): this engine took 31 s
per run (0.19 s per volume, 7 iterations; mean error 0.008 mm / 0.007 deg, max 0.02 mm /
0.03 deg); ANTs ``Rigid`` per volume (``ants.registration``, Mattes, default schedule) was as
accurate (0.011 mm / 0.008 deg) but took 2.7 s per volume on an idle machine and 6.7 s under
the same load (7–18 min per run, 2.4–6× the 3-minute target).

Parameter convention (:mod:`echoprep.kernels.geometry.transforms`): for volume ``t`` the
world matrix ``vol_from_ref[t]`` takes a point of the reference head (world mm) to where that
tissue point is in volume ``t``; ``params[t] = (trans_x, trans_y, trans_z [mm], rot_x, rot_y,
rot_z [rad])`` with ``vol_from_ref = x -> c + R (x - c) + d``, ``R = Rz Ry Rx``, ``c`` the
centre of the functional grid (the simulator's motion convention). Resampling volume ``t``
onto the reference: sample it at ``vol_from_ref[t] @ x`` for reference-space points ``x``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from echoprep.kernels.geometry.transforms import (
    grid_center,
    rigid_params,
    rotation_matrix,
)
from echoprep.kernels.threads import blas_limits, n_workers

log = logging.getLogger(__name__)

#: Coarse-to-fine schedule of :func:`estimate_motion`: (Gaussian sigma in mm, sampling stride in
#: voxels) per level.
DEFAULT_LEVELS: tuple[tuple[float, int], ...] = ((4.0, 3), (2.0, 2), (1.0, 2))
#: Schedule of :func:`register_rigid` (run to run: larger offsets, so one coarser level).
REGISTRATION_LEVELS: tuple[tuple[float, int], ...] = ((8.0, 4), (4.0, 3), (2.0, 2), (1.0, 1))
#: Radius (mm) used to turn rotations into displacements: Power et al. 2012's head radius.
HEAD_RADIUS_MM = 50.0
#: Confound columns of :func:`motion_confounds` (fMRIPrep names).
CONFOUND_COLUMNS = (
    "trans_x",
    "trans_y",
    "trans_z",
    "rot_x",
    "rot_y",
    "rot_z",
    "framewise_displacement",
)


@dataclass(frozen=True)
class MotionResult:
    """Output of :func:`estimate_motion`.

    Attributes
    ----------
    params
        ``(t, 6)`` float64 ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (rad)
        of ``vol_from_ref`` about ``center`` (module docstring).
    vol_from_ref
        ``(t, 4, 4)`` float64 world matrices (reference head point → its position in volume t).
    framewise_displacement
        ``(t,)`` float64 Power FD (mm), ``fd[0] = 0``.
    reference
        ``(nx, ny, nz)`` float32 reference image the volumes were registered to (on the native
        grid; the natural "boldref" for the BOLD → T1w registration).
    reference_volumes
        Volumes the reference was built from (empty when an array was given).
    center
        ``(3,)`` rotation centre ``c`` (mm): the centre of the native grid.
    iterations
        ``(t,)`` total Gauss–Newton iterations per volume (all levels).
    converged
        ``(t,)`` True where the last level converged before ``max_iter``.
    """

    params: np.ndarray
    vol_from_ref: np.ndarray
    framewise_displacement: np.ndarray
    reference: np.ndarray
    reference_volumes: tuple[int, ...]
    center: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


@dataclass(frozen=True)
class RigidResult:
    """Output of :func:`register_rigid`.

    Attributes
    ----------
    moving_from_fixed
        ``(4, 4)`` world matrix: a point of the fixed image's head → the same tissue point in
        the moving image (sample the moving image at ``moving_from_fixed @ x`` to align it to
        the fixed image).
    iterations
        Gauss–Newton iterations (all levels).
    converged
        True when the last level converged before ``max_iter``.
    """

    moving_from_fixed: np.ndarray
    iterations: int
    converged: bool


# ---------------------------------------------------------------------------------------------
# the least-squares engine


@dataclass(frozen=True)
class _Level:
    """Precomputed fixed-image terms of one level."""

    sigma_vox: tuple[float, float, float]  # Gaussian sigma for the moving image, voxels
    stride: int
    points: np.ndarray  # (n, 3) world mm of the sample points
    values: np.ndarray  # (n,) smoothed fixed image at the points
    jac: np.ndarray  # (n, 6) d(fixed)/d(params) at identity
    hessian: np.ndarray  # (6, 6) jac.T @ jac
    radius: float  # max |x - c| over the points, mm


class RigidTarget:
    """Fixed-image side of the inverse-compositional Gauss–Newton registration.

    Built once per fixed image (the expensive part: smoothing, gradients, Jacobians); then
    :meth:`align` registers any number of moving images to it.

    Parameters
    ----------
    fixed
        ``(nx, ny, nz)`` real array, the fixed (reference) image.
    affine
        ``(4, 4)`` voxel → world (mm) affine of ``fixed``.
    levels
        ``(sigma_mm, stride)`` per level, coarse to fine.
    mask
        Optional ``(nx, ny, nz)`` boolean sample mask; default: smoothed fixed > its mean / 8.
    center
        ``(3,)`` centre (mm) of the rotation increments; default the grid centre.
    """

    def __init__(
        self,
        fixed: np.ndarray,
        affine: np.ndarray,
        levels: Sequence[tuple[float, int]] = DEFAULT_LEVELS,
        *,
        mask: np.ndarray | None = None,
        center: np.ndarray | None = None,
    ) -> None:
        fixed = np.asarray(fixed)
        if fixed.ndim != 3:
            raise ValueError(
                f"rigid registration: fixed image must be 3D; found shape {fixed.shape}"
            )
        _check_affine(affine, "fixed affine")
        if mask is not None and np.shape(mask) != fixed.shape:
            raise ValueError(
                f"rigid registration: mask shape {np.shape(mask)} != fixed shape {fixed.shape}"
            )
        if not levels:
            raise ValueError("rigid registration: at least one level is required")
        for sigma, stride in levels:
            if sigma < 0 or int(stride) < 1:
                raise ValueError(
                    f"rigid registration: levels need sigma_mm >= 0 and stride >= 1; found "
                    f"({sigma}, {stride})"
                )
        self.affine = np.asarray(affine, np.float64)
        self.shape = fixed.shape
        self.center = (
            grid_center(fixed.shape, self.affine)
            if center is None
            else np.asarray(center, np.float64)
        )
        vox = np.linalg.norm(self.affine[:3, :3], axis=0)
        f32 = fixed.astype(np.float32, copy=False)
        self.levels: list[_Level] = []
        for sigma_mm, stride in levels:
            sig = tuple(float(s) for s in sigma_mm / vox)
            sm = ndimage.gaussian_filter(f32, sig, mode="nearest") if sigma_mm > 0 else f32
            sel = mask if mask is not None else sm > sm.mean() / 8
            sub = np.zeros(fixed.shape, bool)
            sub[:: int(stride), :: int(stride), :: int(stride)] = True
            ijk = np.argwhere(np.asarray(sel, bool) & sub)
            if len(ijk) < 12:
                raise ValueError(
                    f"rigid registration: only {len(ijk)} sample points at level "
                    f"({sigma_mm} mm, stride {stride}); is the fixed image empty?"
                )
            grads = np.gradient(sm)
            g_vox = np.stack([g[tuple(ijk.T)] for g in grads], axis=1).astype(np.float64)
            # d/dx_world = inv(A3).T @ d/dijk
            g = g_vox @ np.linalg.inv(self.affine[:3, :3])
            pts = ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
            r = pts - self.center
            jac = np.concatenate([g, np.cross(r, g)], axis=1)
            self.levels.append(
                _Level(
                    sigma_vox=sig,  # type: ignore[arg-type]
                    stride=int(stride),
                    points=pts,
                    values=sm[tuple(ijk.T)].astype(np.float64),
                    jac=jac,
                    hessian=jac.T @ jac,
                    radius=float(np.sqrt((r * r).sum(1).max())),
                )
            )

    def align(
        self,
        moving: np.ndarray,
        moving_affine: np.ndarray | None = None,
        *,
        init: np.ndarray | None = None,
        max_iter: int = 30,
        tol_mm: float = 1e-3,
    ) -> RigidResult:
        """Register ``moving`` to the fixed image.

        Parameters
        ----------
        moving
            ``(mx, my, mz)`` real array (any grid; by default the fixed grid).
        moving_affine
            ``(4, 4)`` voxel → world affine of ``moving`` (default: the fixed affine).
        init
            ``(4, 4)`` initial ``moving_from_fixed`` (default identity).
        max_iter
            Gauss–Newton iterations per level.
        tol_mm
            Convergence: the largest displacement of an update over the sampled head
            (``|t| + |ω| r_max``) below ``tol_mm`` (mm) at the last level; coarser levels
            use ``tol_mm * stride``.

        Returns
        -------
        RigidResult
        """
        mov = np.asarray(moving)
        if mov.ndim != 3:
            raise ValueError(f"rigid registration: moving image must be 3D; found {mov.shape}")
        a_m = (
            self.affine if moving_affine is None else _check_affine(moving_affine, "moving affine")
        )
        vox_from_world = np.linalg.inv(a_m)
        m = np.eye(4) if init is None else np.array(init, np.float64)
        hi = np.asarray(mov.shape, np.float64) - 1
        vox = np.linalg.norm(a_m[:3, :3], axis=0)
        mov32 = mov.astype(np.float32, copy=False)
        total, converged = 0, False
        for li, lev in enumerate(self.levels):
            last = li == len(self.levels) - 1
            sig = tuple(
                s_f * v_f / v_m for s_f, v_f, v_m in zip(lev.sigma_vox, self._vox, vox, strict=True)
            )
            sm = ndimage.gaussian_filter(mov32, sig, mode="nearest") if max(sig) > 0 else mov32
            tol = tol_mm if last else tol_mm * lev.stride
            converged = False
            for _ in range(max_iter):
                total += 1
                q = vox_from_world @ m
                coords = (lev.points @ q[:3, :3].T + q[:3, 3]).T
                valid = np.all((coords >= 0) & (coords <= hi[:, None]), axis=0)
                if valid.sum() < 12:
                    raise ValueError(
                        "rigid registration: the moving image left the sampled region "
                        "(fewer than 12 overlapping points); check the initial transform"
                    )
                f = ndimage.map_coordinates(sm, coords, order=1, mode="nearest", prefilter=False)
                if valid.all():
                    jac, ref, hess = lev.jac, lev.values, lev.hessian
                else:
                    jac, ref, f = lev.jac[valid], lev.values[valid], f[valid]
                    hess = jac.T @ jac
                fm = float(f.mean())
                scale = float(ref.mean()) / fm if fm != 0 else 1.0
                err = scale * f.astype(np.float64) - ref
                delta = np.linalg.solve(hess, jac.T @ err)
                e = np.eye(4)
                e[:3, :3] = rotation_matrix(delta[3:])
                e[:3, 3] = delta[:3] + self.center - e[:3, :3] @ self.center
                m = m @ np.linalg.inv(e)
                step = float(np.linalg.norm(delta[:3]) + np.linalg.norm(delta[3:]) * lev.radius)
                if step < tol:
                    converged = True
                    break
        return RigidResult(moving_from_fixed=m, iterations=total, converged=converged)

    @property
    def _vox(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def register_rigid(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    *,
    init: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    levels: Sequence[tuple[float, int]] = REGISTRATION_LEVELS,
    max_iter: int = 50,
    tol_mm: float = 1e-3,
) -> RigidResult:
    """Rigid registration of two images of the **same contrast** (e.g. run ref → run-1 ref).

    Least squares with a global intensity scale (module docstring); for different contrasts
    use :func:`echoprep.kernels.geometry.registration.register_cross_modal`.

    Parameters
    ----------
    fixed, fixed_affine
        ``(nx, ny, nz)`` fixed image and its ``(4, 4)`` voxel → world affine.
    moving, moving_affine
        ``(mx, my, mz)`` moving image and its affine (any grid).
    init
        ``(4, 4)`` initial ``moving_from_fixed`` (default identity: the scanner frames agree).
    mask
        Optional fixed-grid boolean sample mask.
    levels, max_iter, tol_mm
        See :class:`RigidTarget` and :meth:`RigidTarget.align`.

    Returns
    -------
    RigidResult
        ``moving_from_fixed``. Runs aligned to run 1: ``fixed`` = run-1 reference, ``moving``
        = run-``r`` reference gives ``run_from_run1`` (run-1 head point → run-``r`` head
        point), so that ``ref_from_t1w`` of run ``r`` is ``run_from_run1 @ run1_from_t1w``.
    """
    target = RigidTarget(fixed, fixed_affine, levels, mask=mask)
    return target.align(moving, moving_affine, init=init, max_iter=max_iter, tol_mm=tol_mm)


# ---------------------------------------------------------------------------------------------
# head motion


def estimate_motion(
    series: np.ndarray,
    affine: np.ndarray,
    *,
    reference: str | int | np.ndarray = "robust",
    n_reference: int = 5,
    mask: np.ndarray | None = None,
    levels: Sequence[tuple[float, int]] = DEFAULT_LEVELS,
    max_iter: int = 30,
    tol_mm: float = 1e-3,
    n_threads: int | None = None,
    chunk_volumes: int = 32,
) -> MotionResult:
    """Rigid head motion of every volume of one 4D series (the reference echo) to a reference.

    Parameters
    ----------
    series
        ``(nx, ny, nz, t)`` real array, one echo (echo 2), native grid; any real dtype.
    affine
        ``(4, 4)`` voxel → world (mm) affine of the series.
    reference
        ``"robust"`` (default): the voxel-wise median of the ``n_reference`` volumes closest
        (mean squared difference over the head) to the series' voxel-wise temporal median —
        a low-noise image of the head at its typical position; an ``int``: that volume; an
        ``(nx, ny, nz)`` array: that image on the series grid (must have the series'
        contrast up to a global scale, e.g. the mean of a previous pass or the run's SBRef of
        the same echo, docs/registration.md; not an image of another contrast).
    n_reference
        Volumes averaged by ``"robust"`` (clipped to ``t``).
    mask
        Optional ``(nx, ny, nz)`` boolean sample mask (default: reference > mean / 8).
    levels, max_iter, tol_mm
        Coarse-to-fine schedule and convergence (see :class:`RigidTarget`).
    n_threads
        Worker threads (default: the CPUs available to the process); BLAS is limited to one
        thread meanwhile. The results do not depend on it.
    chunk_volumes
        Volumes converted to float32 and registered per batch; extra memory is about
        ``chunk_volumes`` float32 volumes plus one smoothed copy per thread.

    Returns
    -------
    MotionResult
        Parameters, ``vol_from_ref`` matrices, framewise displacement, reference image.

    Raises
    ------
    ValueError
        Bad shapes or values (non-4D series, fewer than 2 volumes, non-finite values, bad
        affine, reference index out of range or reference shape mismatch, ``n_threads < 1``,
        ``chunk_volumes < 1``, ``n_reference < 1``).
    """
    _check_series(series, affine)
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"estimate_motion: n_threads must be >= 1 or None; found {n_threads}")
    if chunk_volumes < 1:
        raise ValueError(f"estimate_motion: chunk_volumes must be >= 1; found {chunk_volumes}")
    nt = series.shape[3]
    ref_img, ref_vols = _reference(series, reference, n_reference)
    target = RigidTarget(ref_img, affine, levels, mask=mask)
    workers = n_workers(n_threads)
    mats = np.empty((nt, 4, 4))
    iters = np.empty(nt, np.int64)
    conv = np.empty(nt, bool)

    def one(t: int, vol: np.ndarray) -> None:
        r = target.align(vol, max_iter=max_iter, tol_mm=tol_mm)
        mats[t], iters[t], conv[t] = r.moving_from_fixed, r.iterations, r.converged

    n_chunks = -(-nt // chunk_volumes)
    with blas_limits(1), ThreadPoolExecutor(max_workers=workers) as pool:
        for ci, t0 in enumerate(range(0, nt, chunk_volumes)):
            t1 = min(nt, t0 + chunk_volumes)
            block = np.asarray(series[..., t0:t1], dtype=np.float32)
            list(pool.map(lambda k, b=block, s=t0: one(s + k, b[..., k]), range(t1 - t0)))
            log.info(
                "head motion: volumes %d-%d of %d (chunk %d of %d)",
                t0,
                t1 - 1,
                nt,
                ci + 1,
                n_chunks,
            )
    params = rigid_params(mats, target.center)
    return MotionResult(
        params=params,
        vol_from_ref=mats,
        framewise_displacement=framewise_displacement(params),
        reference=ref_img,
        reference_volumes=ref_vols,
        center=target.center,
        iterations=iters,
        converged=conv,
    )


def framewise_displacement(params: np.ndarray, radius_mm: float = HEAD_RADIUS_MM) -> np.ndarray:
    """Power et al. (2012) framewise displacement.

    ``fd[t] = sum |Δ trans| + radius_mm * sum |Δ rot|`` between volumes ``t - 1`` and ``t``;
    ``fd[0] = 0``.

    Parameters
    ----------
    params
        ``(t, 6)`` ``trans (mm), rot (rad)`` (the convention of :func:`estimate_motion`).
    radius_mm
        Head radius turning rotations (rad) into arc lengths (mm); 50 mm (Power).

    Returns
    -------
    numpy.ndarray
        ``(t,)`` float64, mm.
    """
    p = np.asarray(params, np.float64)
    if p.ndim != 2 or p.shape[1] != 6:
        raise ValueError(f"framewise_displacement: params must have shape (t, 6); found {p.shape}")
    d = np.abs(np.diff(p, axis=0))
    fd = np.zeros(len(p))
    fd[1:] = d[:, :3].sum(1) + radius_mm * d[:, 3:].sum(1)
    return fd


def motion_confounds(params: np.ndarray, fd: np.ndarray | None = None) -> pd.DataFrame:
    """Motion confounds table with fMRIPrep's column names.

    Parameters
    ----------
    params
        ``(t, 6)`` ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (rad).
    fd
        ``(t,)`` framewise displacement (mm); default :func:`framewise_displacement`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CONFOUND_COLUMNS`; ``framewise_displacement`` of the first row is NaN
        (no previous volume; written ``n/a`` in a BIDS TSV, as fMRIPrep does).
    """
    p = np.asarray(params, np.float64)
    if p.ndim != 2 or p.shape[1] != 6:
        raise ValueError(f"motion_confounds: params must have shape (t, 6); found {p.shape}")
    f = framewise_displacement(p) if fd is None else np.asarray(fd, np.float64).copy()
    if f.shape != (len(p),):
        raise ValueError(f"motion_confounds: fd must have shape ({len(p)},); found {f.shape}")
    f[0] = np.nan
    return pd.DataFrame(np.column_stack([p, f]), columns=list(CONFOUND_COLUMNS))


# ---------------------------------------------------------------------------------------------
# helpers


def _reference(
    series: np.ndarray, reference: str | int | np.ndarray, n_reference: int
) -> tuple[np.ndarray, tuple[int, ...]]:
    nt = series.shape[3]
    if isinstance(reference, str):
        if reference != "robust":
            raise ValueError(
                f"estimate_motion: reference must be 'robust', a volume index or an array; "
                f"found {reference!r}"
            )
        if n_reference < 1:
            raise ValueError(f"estimate_motion: n_reference must be >= 1; found {n_reference}")
        return robust_reference(series, n_reference)
    if isinstance(reference, (int, np.integer)):
        if not -nt <= int(reference) < nt:
            raise ValueError(
                f"estimate_motion: reference volume {reference} out of range for {nt} volumes"
            )
        k = int(reference) % nt
        return np.asarray(series[..., k], np.float32), (k,)
    ref = np.asarray(reference)
    if ref.shape != series.shape[:3]:
        raise ValueError(
            f"estimate_motion: reference image shape {ref.shape} != series volume shape "
            f"{series.shape[:3]}"
        )
    return ref.astype(np.float32), ()


def robust_reference(
    series: np.ndarray, n_reference: int = 5
) -> tuple[np.ndarray, tuple[int, ...]]:
    """A low-noise reference image of a series at its typical head position.

    The voxel-wise temporal median ``med`` is computed (x-slab by x-slab); the
    ``n_reference`` volumes with the smallest mean squared difference to ``med`` over the head
    (``med > mean(med) / 8``) are chosen; the reference is their voxel-wise median (ties broken
    by volume index, so the choice is deterministic).

    Parameters
    ----------
    series
        ``(nx, ny, nz, t)`` real array.
    n_reference
        Number of volumes (clipped to ``t``).

    Returns
    -------
    reference
        ``(nx, ny, nz)`` float32.
    volumes
        Sorted indices of the chosen volumes.
    """
    nx, _, _, nt = series.shape
    n = int(min(max(1, n_reference), nt))
    step = max(1, (32 * 2**20) // max(1, int(np.prod(series.shape[1:])) * 4))
    med = np.empty(series.shape[:3], np.float32)
    for i in range(0, nx, step):
        med[i : i + step] = np.median(np.asarray(series[i : i + step], np.float32), axis=-1)
    head = med > med.mean() / 8
    ssd = np.zeros(nt)
    for i in range(0, nx, step):
        blk = np.asarray(series[i : i + step], np.float32)[head[i : i + step]]
        ssd += ((blk - med[i : i + step][head[i : i + step]][:, None]) ** 2).sum(0)
    vols = tuple(sorted(int(v) for v in np.argsort(ssd, kind="stable")[:n]))
    ref = np.median(np.asarray(series[..., list(vols)], np.float32), axis=-1).astype(np.float32)
    return ref, vols


def _check_affine(affine: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(affine, np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a finite 4x4 matrix; found shape {a.shape}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-9:
        raise ValueError(f"{name} is singular")
    return a


def _check_series(series: np.ndarray, affine: np.ndarray) -> None:
    if not isinstance(series, np.ndarray) or series.ndim != 4:
        found = f"shape {series.shape}" if hasattr(series, "shape") else type(series).__name__
        raise ValueError(f"estimate_motion: series must be a 4D array (x, y, z, t); found {found}")
    if not np.issubdtype(series.dtype, np.number) or np.iscomplexobj(series):
        raise ValueError(f"estimate_motion: series must be real; found dtype {series.dtype}")
    if series.shape[3] < 2:
        raise ValueError(f"estimate_motion: at least 2 volumes are needed; found {series.shape[3]}")
    if np.issubdtype(series.dtype, np.floating):
        for t in range(series.shape[3]):
            if not np.all(np.isfinite(series[..., t])):
                raise ValueError(f"estimate_motion: series has non-finite values in volume {t}")
    _check_affine(affine, "estimate_motion: affine")
