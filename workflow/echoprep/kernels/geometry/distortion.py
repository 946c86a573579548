"""Fieldmap → voxel-shift map (VSM) for susceptibility distortion correction (SDC).

Sign convention (the single source of truth; :func:`pe_axis_sign`):

    A spin at true voxel position ``p`` along the phase-encoding (PE) axis appears at
    ``p + s(p)`` in the distorted EPI, with ``s(p) = sign * Δf(p) * T_ro`` voxels, where
    ``Δf`` is the off-resonance in Hz (positive: precessing faster than the scanner's
    reference frequency), ``T_ro`` the ``TotalReadoutTime`` (s), and ``sign = +1`` for BIDS
    ``PhaseEncodingDirection`` ``"i"``, ``"j"``, ``"k"`` and ``-1`` for ``"i-"``, ``"j-"``,
    ``"k-"``. Axes ``i, j, k`` are the array axes 0, 1, 2 of the BOLD image as stored (voxel
    index order, independent of the affine).

This is the convention of FSL (fugue/topup) and SDCFlows. The exact per-voxel shift is
``Δf * EffectiveEchoSpacing * N_pe``; ``TotalReadoutTime = EES * (N_pe - 1)`` underestimates it
by ``1 / N_pe`` (0.9 % for 110 lines); pass ``EES * N_pe`` as ``readout_time`` for the exact
value. Signal is conserved along the PE line, so the distorted intensity is
``I_d(p + s(p)) = I(p) / J(p)`` with the Jacobian ``J = 1 + ∂s/∂p``; correction samples the
distorted image at ``p + s(p)`` and multiplies by ``J(p)``.

Phase differences are not unwrapped: ``Δf = Δφ / (2 π ΔTE)`` is valid for
``|Δf| < 1 / (2 ΔTE)`` (490 Hz for ΔTE = 1.02 ms).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: BIDS ``PhaseEncodingDirection`` → (array axis, sign).
PE_DIRECTIONS: dict[str, tuple[int, int]] = {
    "i": (0, 1),
    "i-": (0, -1),
    "j": (1, 1),
    "j-": (1, -1),
    "k": (2, 1),
    "k-": (2, -1),
}
#: Scale of Siemens phase images: ``rad = value * pi / 4096``.
SIEMENS_PHASE_MAX = 4096.0


def pe_axis_sign(direction: str) -> tuple[int, int]:
    """Array axis and shift sign of a BIDS ``PhaseEncodingDirection`` (module docstring).

    Parameters
    ----------
    direction
        ``"i"``, ``"i-"``, ``"j"``, ``"j-"``, ``"k"`` or ``"k-"``.

    Returns
    -------
    tuple of int
        ``(axis, sign)``: ``axis`` in 0–2, ``sign`` +1 or -1.

    Raises
    ------
    ValueError
        Unknown direction (e.g. ``"y-"``, ``"AP"``).
    """
    if direction not in PE_DIRECTIONS:
        raise ValueError(
            f"unknown PhaseEncodingDirection {direction!r}; expected one of "
            f"{list(PE_DIRECTIONS)} (BIDS voxel-axis notation)"
        )
    return PE_DIRECTIONS[direction]


def siemens_phase_to_radians(values: np.ndarray) -> np.ndarray:
    """Siemens integer phase (``[-4096, 4095]``) → rad (``value * pi / 4096``), float32."""
    return (np.asarray(values, np.float32) * np.float32(np.pi / SIEMENS_PHASE_MAX)).astype(
        np.float32
    )


def phasediff_to_hz(phasediff: np.ndarray, delta_te: float) -> np.ndarray:
    """Off-resonance (Hz) from a GRE phase difference.

    Parameters
    ----------
    phasediff
        ``(...)`` phase of echo 2 minus echo 1, rad, in ``[-pi, pi]``.
    delta_te
        ``EchoTime2 - EchoTime1``, s (> 0; 1.02e-3 for LAION).

    Returns
    -------
    numpy.ndarray
        ``(...)`` float32 ``Δf = Δφ / (2 π ΔTE)``, Hz.
    """
    if not (np.isfinite(delta_te) and delta_te > 0):
        raise ValueError(f"phasediff_to_hz: delta_te must be > 0 s; found {delta_te}")
    ph = np.asarray(phasediff, np.float64)
    if not np.all(np.isfinite(ph)):
        raise ValueError("phasediff_to_hz: phasediff has non-finite values")
    if np.abs(ph).max(initial=0) > np.pi + 1e-3:
        raise ValueError(
            f"phasediff_to_hz: phasediff must be in radians within [-pi, pi]; found max "
            f"|value| {np.abs(ph).max():.4g} (scanner units? use siemens_phase_to_radians)"
        )
    return (ph / (2 * np.pi * delta_te)).astype(np.float32)


def smooth_fieldmap(
    hz: np.ndarray,
    mask: np.ndarray | None,
    voxel_size: tuple[float, float, float] | np.ndarray,
    fwhm_mm: float = 4.0,
) -> np.ndarray:
    """Masked Gaussian smoothing (normalised convolution) of a fieldmap, filling outside the mask.

    ``out = G * (hz m) / G * m`` with ``m`` the mask; voxels where ``G * m < 1e-3`` (far from
    the mask) are 0 Hz. With ``fwhm_mm = 0`` the map is only masked-and-filled by its
    nearest values in the mask (no smoothing inside).

    Parameters
    ----------
    hz
        ``(nx, ny, nz)`` fieldmap, Hz.
    mask
        ``(nx, ny, nz)`` boolean reliable-phase mask (e.g. brain), or None (all voxels).
    voxel_size
        ``(3,)`` voxel sizes of the fieldmap grid, mm.
    fwhm_mm
        Gaussian FWHM, mm (>= 0).

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float32, Hz.
    """
    f = np.asarray(hz, np.float64)
    if f.ndim != 3:
        raise ValueError(f"smooth_fieldmap: fieldmap must be 3D; found shape {f.shape}")
    m = np.ones(f.shape) if mask is None else np.asarray(mask, bool).astype(np.float64)
    if m.shape != f.shape:
        raise ValueError(f"smooth_fieldmap: mask shape {m.shape} != fieldmap shape {f.shape}")
    if m.sum() == 0:
        raise ValueError("smooth_fieldmap: the mask is empty")
    if fwhm_mm < 0:
        raise ValueError(f"smooth_fieldmap: fwhm_mm must be >= 0; found {fwhm_mm}")
    vs = np.asarray(voxel_size, np.float64).reshape(3)
    if fwhm_mm == 0:
        idx = ndimage.distance_transform_edt(
            m == 0, sampling=vs, return_distances=False, return_indices=True
        )
        return f[tuple(idx)].astype(np.float32)
    sigma = fwhm_mm / np.sqrt(8 * np.log(2)) / vs
    num = ndimage.gaussian_filter(f * m, sigma, mode="nearest")
    den = ndimage.gaussian_filter(m, sigma, mode="nearest")
    out = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)
    return out.astype(np.float32)


def fieldmap_to_grid(
    hz: np.ndarray,
    fmap_affine: np.ndarray,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    fmap_from_target: np.ndarray | None = None,
    order: int = 1,
) -> np.ndarray:
    """Resample a fieldmap (Hz) onto another grid (the BOLD reference's native grid).

    Target voxel ``v`` is at world ``x = affine @ v``; the fieldmap is sampled at fieldmap voxel
    ``inv(fmap_affine) @ fmap_from_target @ x`` (nearest edge value outside the fieldmap FOV).

    Parameters
    ----------
    hz
        ``(fx, fy, fz)`` fieldmap on its own grid, Hz.
    fmap_affine
        ``(4, 4)`` voxel → world affine of the fieldmap.
    shape, affine
        Target grid ``(nx, ny, nz)`` and its voxel → world affine.
    fmap_from_target
        ``(4, 4)`` world matrix taking a head point of the target (BOLD reference) to the same
        point in the fieldmap acquisition (head moved between the two); default identity
        (same head position).
    order
        Spline order (1: trilinear, the default; 3: cubic).

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float32, Hz (Δf at the *true* position of each BOLD voxel).
    """
    f = np.asarray(hz, np.float32)
    if f.ndim != 3:
        raise ValueError(f"fieldmap_to_grid: fieldmap must be 3D; found shape {f.shape}")
    m = np.eye(4) if fmap_from_target is None else np.asarray(fmap_from_target, np.float64)
    if (
        m.shape != (4, 4)
        or np.asarray(fmap_affine).shape != (4, 4)
        or np.asarray(affine).shape != (4, 4)
    ):
        raise ValueError("fieldmap_to_grid: affines and fmap_from_target must be 4x4 matrices")
    vox = np.linalg.inv(np.asarray(fmap_affine, np.float64)) @ m @ np.asarray(affine, np.float64)
    return ndimage.affine_transform(
        f, vox[:3, :3], vox[:3, 3], output_shape=tuple(shape), order=order, mode="nearest"
    ).astype(np.float32)


def combine_fieldmaps(
    fields: Sequence[np.ndarray],
    affines: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    weights: Sequence[float],
    shape: tuple[int, int, int],
    affine: np.ndarray,
    fmap_from_target: Sequence[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fieldmaps acquired at different times (and head positions) combined on one grid.

    Each map is filled outside its mask with its nearest values inside (so that the
    interpolation at the mask's edge does not mix in the noise phase of the background),
    resampled onto the target grid through its head transform (trilinear,
    :func:`fieldmap_to_grid`) and weighted: ``sum_k w_k f_k / sum_k w_k``. The result's mask is
    the intersection of the resampled masks. Used for a run between two fieldmaps of its
    session, weighted linearly in time (docs/distortion.md, "Several fieldmaps per session").

    Parameters
    ----------
    fields
        ``K`` fieldmaps, each ``(fx, fy, fz)`` on its own grid, Hz.
    affines
        ``K`` ``(4, 4)`` voxel → world affines of the fieldmaps.
    masks
        ``K`` boolean reliable masks on the fieldmaps' grids, or None (all voxels).
    weights
        ``K`` weights (> 0 in sum).
    shape, affine
        Target grid ``(nx, ny, nz)`` (the registration target's) and its ``(4, 4)`` affine.
    fmap_from_target
        ``K`` ``(4, 4)`` world matrices (a head point of the target → the same point in
        fieldmap ``k``, from a rigid registration of the magnitudes), or None (identity).

    Returns
    -------
    hz
        ``(nx, ny, nz)`` float32, Hz.
    mask
        ``(nx, ny, nz)`` bool, or None when no map had a mask.
    """
    k = len(fields)
    moves = list(fmap_from_target) if fmap_from_target is not None else [None] * k
    w = np.asarray(weights, np.float64)
    if k == 0 or not (len(affines) == len(masks) == len(moves) == w.size == k):
        raise ValueError("combine_fieldmaps: give as many affines, masks, weights as fields")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
        raise ValueError(f"combine_fieldmaps: weights must be >= 0 with a positive sum; {w}")
    total = np.zeros(tuple(shape), np.float64)
    mask: np.ndarray | None = None
    for f, a, m, move, wk in zip(fields, affines, masks, moves, w, strict=True):
        f = np.asarray(f, np.float32)
        if m is not None:
            vox = np.linalg.norm(np.asarray(a, np.float64)[:3, :3], axis=0)
            f = smooth_fieldmap(f, m, vox, 0.0)  # filled outside the mask, unchanged inside
            inside = fieldmap_to_grid(
                np.asarray(m, np.float32), a, shape, affine, fmap_from_target=move
            )
            mask = inside > 0.5 if mask is None else mask & (inside > 0.5)
        total += wk * fieldmap_to_grid(f, a, shape, affine, fmap_from_target=move)
    return (total / w.sum()).astype(np.float32), mask


def voxel_shift_map(
    hz: np.ndarray, readout_time: float, pe_direction: str
) -> tuple[np.ndarray, int]:
    """Voxel shift map ``s = sign * Δf * T_ro`` (voxels along the PE axis; module docstring).

    Parameters
    ----------
    hz
        ``(nx, ny, nz)`` off-resonance on the BOLD native grid (true positions), Hz.
    readout_time
        ``TotalReadoutTime`` (s, > 0), or ``EffectiveEchoSpacing * N_pe`` for the exact shift.
    pe_direction
        BIDS ``PhaseEncodingDirection``.

    Returns
    -------
    vsm
        ``(nx, ny, nz)`` float32 shift, voxels: true ``p`` appears at ``p + vsm`` along ``axis``.
    axis
        PE array axis (0–2).
    """
    axis, sign = pe_axis_sign(pe_direction)
    if not (np.isfinite(readout_time) and readout_time > 0):
        raise ValueError(f"voxel_shift_map: readout_time must be > 0 s; found {readout_time}")
    f = np.asarray(hz, np.float32)
    if f.ndim != 3:
        raise ValueError(f"voxel_shift_map: fieldmap must be 3D; found shape {f.shape}")
    return (f * np.float32(sign * readout_time)).astype(np.float32), axis


def shift_jacobian(vsm: np.ndarray, axis: int) -> np.ndarray:
    """Intensity Jacobian ``J = 1 + ∂s/∂p`` of a voxel shift map (central differences).

    Parameters
    ----------
    vsm
        ``(nx, ny, nz)`` shift, voxels.
    axis
        PE array axis.

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float32; ``J <= 0`` marks folding (the distortion is not invertible).
    """
    s = np.asarray(vsm, np.float32)
    if s.ndim != 3 or axis not in (0, 1, 2):
        raise ValueError(f"shift_jacobian: vsm must be 3D and axis 0-2; found {s.shape}, {axis}")
    return (1.0 + np.gradient(s, axis=axis)).astype(np.float32)


def distorted_positions(vsm: np.ndarray, axis: int, n_iter: int = 50) -> np.ndarray:
    """True PE position ``p`` of every distorted grid position ``q`` (solves ``p + s(p) = q``).

    Fixed-point iteration ``p <- q - s(p)`` along each PE line (``s`` linearly interpolated);
    converges where ``|∂s/∂p| < 1``. The forward model used by tests and simulators:
    the distorted image is ``I_d(q) = I(p(q)) / J(p(q))``.

    Parameters
    ----------
    vsm
        ``(nx, ny, nz)`` shift, voxels.
    axis
        PE array axis.
    n_iter
        Iterations.

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float64 true positions ``p`` (voxel index along ``axis``).
    """
    s = np.moveaxis(np.asarray(vsm, np.float64), axis, -1)
    n = s.shape[-1]
    q = np.broadcast_to(np.arange(n, dtype=np.float64), s.shape)
    p = q - s
    lines = s.reshape(-1, n)
    for _ in range(n_iter):
        pf = np.clip(p.reshape(-1, n), 0, n - 1)
        i0 = (
            np.minimum(np.floor(pf).astype(np.int64), n - 2)
            if n > 1
            else np.zeros_like(pf, np.int64)
        )
        w = pf - i0
        rows = np.arange(lines.shape[0])[:, None]
        sp = lines[rows, i0] * (1 - w) + lines[rows, np.minimum(i0 + 1, n - 1)] * w
        p_new = q - sp.reshape(s.shape)
        done = np.max(np.abs(p_new - p), initial=0) < 1e-9
        p = p_new
        if done:
            break
    return np.moveaxis(p, -1, axis)
