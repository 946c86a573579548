"""Off-resonance field from a pair of EPI images with reversed phase encoding ("PEPOLAR").

Two EPI images of the same head, one phase-encoded along ``+axis`` and one along ``-axis``
(BIDS ``PhaseEncodingDirection`` ``"j"`` and ``"j-"``, say), are distorted by the same field in
opposite directions. With the convention of :mod:`echoprep.kernels.geometry.distortion` a spin
at true position ``p`` along the phase-encoding line appears at ``y_a = p + sign_a f(p) T_a``
in image ``a`` and at ``y_b = p - sign_a f(p) T_b`` in image ``b`` (``f`` in Hz, ``T`` the
``TotalReadoutTime`` of each image, s), and distortion conserves the signal along the line.

So the fraction ``c`` of a line's signal that lies before ``p`` in the true image lies before
``y_a`` in image ``a`` and before ``y_b`` in image ``b``: inverting the two cumulative
profiles at the same ``c`` gives ``y_a`` and ``y_b`` of one true position, hence

    ``p = (T_b y_a + T_a y_b) / (T_a + T_b)``,  ``f(p) = (y_a - y_b) / (sign_a (T_a + T_b))``.

This is the method of Chang and Fitzpatrick (IEEE Trans Med Imaging 1992, 11:319-329):
exact for noise-free images that differ only by the distortion, one pass, no iterations, every
line independent (vectorised over all lines here). Where a line carries little signal the
inversion is ill-conditioned, so the result comes with a mask of reliable voxels; the caller
smooths the field inside it and fills the rest (``smooth_fieldmap``). Noise is reduced by a
small Gaussian blur of both images before the inversion (the same for both, so the
correspondence is kept).

Pure array code; docs/distortion.md says when to use it and how it was validated.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def pepolar_field(
    image_a: np.ndarray,
    image_b: np.ndarray,
    axis: int,
    sign_a: int,
    readout_times: tuple[float, float],
    *,
    blur_voxels: float = 1.0,
    levels_per_voxel: int = 4,
    min_signal: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Off-resonance field (Hz) from two EPI images with opposite phase encoding.

    Parameters
    ----------
    image_a, image_b
        ``(nx, ny, nz)`` magnitude images on the same grid (average volumes first), phase
        encoded along ``axis`` in opposite directions; negative values count as 0.
    axis
        Array axis of the phase encoding (0, 1 or 2).
    sign_a
        +1 when ``image_a`` is encoded along ``+axis`` (``"i"``, ``"j"``, ``"k"``), -1 for
        ``"i-"``, ``"j-"``, ``"k-"``; ``image_b`` has the other sign.
    readout_times
        ``(T_a, T_b)``: ``TotalReadoutTime`` of each image, s (> 0).
    blur_voxels
        SD (voxels) of the Gaussian blur of both images before the inversion; 0: none.
    levels_per_voxel
        Signal fractions sampled per voxel of a line (the inversion's resolution).
    min_signal
        Reliable voxels: the blurred mean image above this fraction of its 98th percentile.

    Returns
    -------
    field
        ``(nx, ny, nz)`` float32 off-resonance, Hz, on the undistorted grid (0 where a line
        gives no estimate).
    reliable
        ``(nx, ny, nz)`` bool: voxels with signal where the estimate holds.

    Raises
    ------
    ValueError
        Shapes differ or are not 3D, ``axis`` or ``sign_a`` out of range, readout times not
        positive.
    """
    a = np.asarray(image_a, np.float64)
    b = np.asarray(image_b, np.float64)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(
            f"pepolar_field: expected two 3D images of one shape; found {a.shape} and {b.shape}"
        )
    if axis not in (0, 1, 2) or sign_a not in (1, -1):
        raise ValueError(f"pepolar_field: axis in 0..2 and sign ±1; found {axis}, {sign_a}")
    t_a, t_b = (float(t) for t in readout_times)
    if not (t_a > 0 and t_b > 0):
        raise ValueError(f"pepolar_field: readout times must be > 0 s; found {readout_times}")
    a = np.clip(a, 0, None)
    b = np.clip(b, 0, None)
    if blur_voxels > 0:
        a = ndimage.gaussian_filter(a, blur_voxels, mode="nearest")
        b = ndimage.gaussian_filter(b, blur_voxels, mode="nearest")
    mean = 0.5 * (a + b)
    top = float(np.percentile(mean, 98)) if mean.size else 0.0
    reliable = mean > min_signal * top if top > 0 else np.zeros(mean.shape, bool)

    la = np.moveaxis(a, axis, -1)
    lb = np.moveaxis(b, axis, -1)
    shape = la.shape
    n = shape[-1]
    la = la.reshape(-1, n)
    lb = lb.reshape(-1, n)
    levels = (np.arange(levels_per_voxel * n) + 0.5) / (levels_per_voxel * n)
    y_a = _inverse_cumulative(la, levels)
    y_b = _inverse_cumulative(lb, levels)
    p = (t_b * y_a + t_a * y_b) / (t_a + t_b)
    f = (y_a - y_b) / (sign_a * (t_a + t_b))
    field = _interp_lines(p, f, np.arange(n, dtype=np.float64))
    line_signal = (la.sum(axis=1) > 0) & (lb.sum(axis=1) > 0)  # lines both images reach
    field[~line_signal] = 0.0
    has_signal = np.moveaxis(
        np.broadcast_to(line_signal[:, None], field.shape).reshape(shape), -1, axis
    )
    field = np.moveaxis(field.reshape(shape), -1, axis)
    return field.astype(np.float32), reliable & has_signal


def _inverse_cumulative(lines: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Position (voxel units, centres at 0..n-1) where each line's normalised cumulative
    signal reaches each level; ``(L, n)`` lines, ``(K,)`` levels in (0, 1) -> ``(L, K)``.

    Voxel ``i`` spans ``[i - 1/2, i + 1/2]`` with its signal spread uniformly over it. A tiny
    floor (1e-6 of the line's largest value) keeps every profile strictly increasing."""
    n_lines, n = lines.shape
    floor = 1e-6 * np.maximum(lines.max(axis=1, keepdims=True), 1e-30)
    cum = np.zeros((n_lines, n + 1))
    np.cumsum(lines + floor, axis=1, out=cum[:, 1:])
    cum /= cum[:, -1:]
    edges = np.arange(n + 1, dtype=np.float64) - 0.5
    return _interp_lines(cum, np.broadcast_to(edges, cum.shape), levels)


def _interp_lines(xp: np.ndarray, fp: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise ``np.interp(x, xp[i], fp[i])`` for ``(L, m)`` non-decreasing ``xp``, at the
    same ``(K,)`` points ``x`` for every row (ends held constant) -> ``(L, K)``."""
    n_lines, m = xp.shape
    span = max(float(np.max(xp) - np.min(xp)), float(np.max(x) - np.min(x)), 1.0) + 1.0
    offset = (np.arange(n_lines, dtype=np.float64) * 2 * span)[:, None]
    flat = (xp + offset).ravel()
    q = x[None, :] + offset
    idx = np.searchsorted(flat, q.ravel(), side="right").reshape(q.shape) - 1
    row0 = (np.arange(n_lines) * m)[:, None]
    idx = np.clip(idx, row0, row0 + m - 2)
    x0, x1 = flat[idx], flat[idx + 1]
    y0, y1 = fp.ravel()[idx], fp.ravel()[idx + 1]
    w = np.clip(np.divide(q - x0, x1 - x0, out=np.zeros_like(q), where=x1 > x0), 0.0, 1.0)
    return y0 + w * (y1 - y0)


__all__ = ["pepolar_field"]
