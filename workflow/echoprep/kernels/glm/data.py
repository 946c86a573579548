"""Data of the GLMsingle engine: layout checks, voxel chunks and the polynomial projection.

The data are a list of ``R`` arrays, ``X x Y x Z x T_r`` (volume) or ``V x T_r`` (surface,
2-D), in raw scanner units. Voxels are numbered in C order of the spatial axes; a chunk is a
contiguous range of that numbering (a slab along X for volumes), so only one chunk of one run is
ever copied (as float32) at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoxelData:
    """The caller's data runs with their common spatial layout (no copies).

    Attributes
    ----------
    runs
        The input arrays, ``(X, Y, Z, T_r)`` or ``(V, T_r)``, any real dtype.
    spatial_shape
        ``(X, Y, Z)`` or ``(V,)``.
    """

    runs: tuple[np.ndarray, ...]
    spatial_shape: tuple[int, ...]

    @property
    def n_voxels(self) -> int:
        return math.prod(self.spatial_shape)

    @property
    def run_lengths(self) -> tuple[int, ...]:
        return tuple(int(a.shape[-1]) for a in self.runs)

    def chunks(self, chunklen: int) -> list[tuple[int, int]]:
        """``ceil(V / chunklen)`` nearly equal contiguous voxel ranges ``(v0, v1)``."""
        v = self.n_voxels
        n = max(1, math.ceil(v / int(chunklen)))
        edges = [(v * k) // n for k in range(n + 1)]
        return [(edges[k], edges[k + 1]) for k in range(n)]

    def read(self, run: int, v0: int, v1: int) -> np.ndarray:
        """Voxels ``v0:v1`` of one run as a fresh C-contiguous ``(v1 - v0, T_r)`` float32 array."""
        a = self.runs[run]
        t = a.shape[-1]
        if a.ndim == 2:
            return np.array(a[v0:v1], dtype=np.float32, order="C")
        plane = a.shape[1] * a.shape[2]
        x0, x1 = v0 // plane, -(-v1 // plane)
        block = a[x0:x1].reshape(-1, t)
        off = x0 * plane
        return np.array(block[v0 - off : v1 - off], dtype=np.float32, order="C")


def as_voxel_data(data: object, run_lengths: Sequence[int]) -> VoxelData:
    """Check the data runs against the design and return them as :class:`VoxelData`.

    Raises
    ------
    ValueError
        Not a list of arrays, run count or time length differing from the design, 3-D arrays,
        differing spatial shapes, non-real dtypes.
    """
    if isinstance(data, np.ndarray):
        runs = [data]
    elif isinstance(data, Sequence) and not isinstance(data, str):
        runs = [np.asarray(a) for a in data]
    else:
        raise ValueError(
            f"data must be a list of arrays (one per run), X x Y x Z x T or V x T; got "
            f"{type(data).__name__}"
        )
    if len(runs) != len(run_lengths):
        raise ValueError(
            f"data has {len(runs)} runs but design has {len(run_lengths)}; pass one data array "
            "per design matrix, in the same order"
        )
    for r, a in enumerate(runs):
        if a.ndim == 3:
            raise ValueError(
                f"data run {r} is 3-D {a.shape}, which is ambiguous (X x Y x T or X x Y x Z?); "
                "pass X x Y x Z x T (add a singleton axis for one slice) or V x T"
            )
        if a.ndim not in (2, 4):
            raise ValueError(f"data run {r} has shape {a.shape}; expected X x Y x Z x T or V x T")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(
                f"data run {r} has dtype {a.dtype}; expected real numbers (float or int)"
            )
        if a.shape[-1] != run_lengths[r]:
            raise ValueError(
                f"data run {r} has {a.shape[-1]} volumes but design run {r} has "
                f"{run_lengths[r]} rows; data and design must share one time grid (trim the "
                "longer one, or fix the design's number of volumes)"
            )
    shapes = {a.shape[:-1] for a in runs}
    if len(shapes) > 1:
        raise ValueError(
            f"data runs have different spatial shapes {[a.shape[:-1] for a in runs]}; all runs "
            "must be in the same grid"
        )
    spatial = tuple(int(s) for s in runs[0].shape[:-1])
    if math.prod(spatial) == 0:
        raise ValueError(f"data have no voxels (spatial shape {spatial})")
    return VoxelData(runs=tuple(runs), spatial_shape=spatial)


def check_finite(vox: VoxelData, chunklen: int) -> None:
    """Raise ``ValueError`` naming every run with NaN/Inf and its number of affected voxels."""
    counts = []
    for r, a in enumerate(vox.runs):
        n_bad = 0
        if np.issubdtype(a.dtype, np.floating):
            for v0, v1 in vox.chunks(chunklen):
                y = vox.read(r, v0, v1)
                s = y.sum(axis=1, dtype=np.float64)
                if not np.isfinite(s).all():
                    n_bad += int((~np.isfinite(y).all(axis=1)).sum())
        counts.append(n_bad)
    raise_nonfinite(counts)


def raise_nonfinite(counts: Sequence[int]) -> None:
    """Raise :func:`check_finite`'s ``ValueError`` when any run has voxels with NaN/Inf.

    Parameters
    ----------
    counts
        ``(R,)`` number of voxels with some NaN/Inf, per run.
    """
    bad_runs = [f"run {r}: {n} voxels" for r, n in enumerate(counts) if n]
    if bad_runs:
        raise ValueError(
            "data contain NaN or Inf values (" + "; ".join(bad_runs) + "); NaNs are not "
            "supported: mask these voxels out or replace their time series (e.g. by 0) before "
            "fitting"
        )


def project_polynomials(y: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Remove the polynomial drift basis from voxel time series, in place.

    The constant term is removed in float64 (the voxel means), the higher degrees by a float32
    projection.

    Parameters
    ----------
    y
        ``(V, T)`` float32, modified in place.
    basis
        ``(T, d + 1)`` orthonormal polynomial basis whose first column is constant.

    Returns
    -------
    numpy.ndarray
        ``(V,)`` float64 voxel means (before projection).
    """
    mean = y.mean(axis=1, dtype=np.float64)
    m32 = mean.astype(np.float32)
    y -= m32[:, None]  # exact where y and the mean are within a factor 2 of each other
    y -= (mean - m32).astype(np.float32)[:, None]  # float32 rounding of the mean itself
    if basis.shape[1] > 1:
        b = np.ascontiguousarray(basis[:, 1:], dtype=np.float32)
        y -= (y @ b) @ b.T
    return mean


def sum_squares(y: np.ndarray) -> np.ndarray:
    """``(V,)`` float64 sum of squares of each row of ``y`` (float64 accumulation)."""
    return np.einsum("ij,ij->i", y, y, dtype=np.float64)
