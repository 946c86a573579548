"""Which voxels a GLM fits: bright-voxel rule, voxels without data, mask <-> volume layout.

Pure array code used by the GLM stage and the session analysis mask (numpy in, numpy out).
Shapes: ``(X, Y, Z, T)`` images, ``(V, T)`` voxel rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def brainthresh_mask(mean: np.ndarray, brainthresh: Sequence[float]) -> np.ndarray:
    """GLMsingle's bright-voxel rule: ``mean > frac x percentile(mean, p)`` (NaN = outside).

    Parameters
    ----------
    mean
        Mean image over all volumes of all runs, any shape.
    brainthresh
        ``(p, frac)``: percentile (0-100) and fraction (config ``glm.brainthresh``).

    Returns
    -------
    np.ndarray
        Bool, the shape of ``mean``.
    """
    finite = np.isfinite(mean)
    if not finite.any():
        return np.zeros(mean.shape, bool)
    thr = float(brainthresh[1]) * float(np.percentile(mean[finite], float(brainthresh[0])))
    out = np.zeros(mean.shape, bool)
    out[finite] = mean[finite] > thr
    return out


def finite_sums(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum (float64) and count (int) over time of the finite values of ``(X, Y, Z, T)`` data."""
    finite = np.isfinite(arr)
    total = np.where(finite, arr, 0.0).sum(axis=3, dtype=np.float64)
    return total, finite.sum(axis=3)


def finite_mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``total / count`` where ``count > 0``, else NaN (sums from :func:`finite_sums`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def nonfinite_voxels(data: np.ndarray) -> np.ndarray:
    """``(V,)`` bool: voxels (rows of ``(V, T)``) with any NaN/Inf."""
    return ~np.isfinite(data.sum(axis=-1, dtype=np.float64))


def constant_voxels(data: np.ndarray) -> np.ndarray:
    """``(V,)`` bool: rows of ``(V, T)`` whose finite values are all equal (e.g. all 0).

    A row with no finite value counts as constant too; callers that treat NaN/Inf separately
    mask those rows out first.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        top = np.nanmax(data, axis=-1) if data.shape[-1] else np.zeros(data.shape[:-1])
        low = np.nanmin(data, axis=-1) if data.shape[-1] else np.zeros(data.shape[:-1])
    return ~(top > low)


def run_without_data(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of one ``(X, Y, Z, T)`` run without usable data.

    Reduced along time in place (no reshaped copy of the run: nibabel's arrays are
    Fortran-ordered, where a voxel-by-time reshape would copy the whole run).

    Parameters
    ----------
    arr
        ``(X, Y, Z, T)`` series. NaN/Inf are found from each voxel's float64 sum over time
        (not finite exactly when a value is NaN or +-Inf).

    Returns
    -------
    nonfinite, constant
        ``(X, Y, Z)`` bool: some NaN/Inf; finite but constant (e.g. all 0 outside another
        tool's mask of that run).
    """
    bad = ~np.isfinite(arr.sum(axis=3, dtype=np.float64))
    if not arr.shape[3]:
        return bad, ~bad
    # fmax/fmin skip NaN as nanmax/nanmin do; an all-NaN voxel is NaN and so not "varying"
    top = np.fmax.reduce(arr, axis=3)
    low = np.fmin.reduce(arr, axis=3)
    return bad, ~(top > low) & ~bad


def scatter(
    values: np.ndarray, mask: np.ndarray, fill: float = 0.0, dtype: type = np.float32
) -> np.ndarray:
    """``(V, ...)`` mask-voxel values -> ``(X, Y, Z, ...)`` volume, ``fill`` outside and for
    NaN/Inf."""
    values = np.asarray(values)
    out = np.full(mask.shape + values.shape[1:], fill, dtype=dtype)
    v = np.nan_to_num(values.astype(dtype), nan=fill, posinf=fill, neginf=fill)
    out[mask] = v
    return out


__all__ = [
    "brainthresh_mask",
    "constant_voxels",
    "finite_mean",
    "finite_sums",
    "nonfinite_voxels",
    "run_without_data",
    "scatter",
]
