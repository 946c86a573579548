"""Data-quality measures of 4D series: drift removal, temporal SNR, spatial smoothness.

Used by the ground-truth tests, the benchmarks and the report. Pure array code: no file I/O.
"""

from __future__ import annotations

import math

import numpy as np


def legendre_basis(n: int, order: int = 3) -> np.ndarray:
    """Legendre polynomials of degree ``0..order`` on ``n`` equally spaced points of [-1, 1].

    Parameters
    ----------
    n
        Number of time points.
    order
        Highest degree.

    Returns
    -------
    numpy.ndarray
        ``(n, order + 1)`` float64.
    """
    t = np.linspace(-1, 1, n)
    return np.stack([np.polynomial.legendre.Legendre.basis(d)(t) for d in range(order + 1)], axis=1)


def detrend(x: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Residuals of a least-squares fit of ``design`` to each row of ``x``.

    Parameters
    ----------
    x
        ``(..., n)`` time series (time last).
    design
        ``(n, p)`` regressors (e.g. :func:`legendre_basis`).

    Returns
    -------
    numpy.ndarray
        ``(..., n)`` float64 residuals.
    """
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1, x.shape[-1])
    beta = np.linalg.lstsq(design, flat.T, rcond=None)[0]
    return (flat - (design @ beta).T).reshape(x.shape)


def drift_basis(n: int, order: int = 3) -> np.ndarray:
    """Orthonormal basis of the Legendre drift of degree ``1..order`` (constant left out):
    ``(n, order)`` float64 columns spanning :func:`legendre_basis` ``(n, order)`` less its
    constant, orthonormal and orthogonal to a constant."""
    q, _ = np.linalg.qr(legendre_basis(n, order))
    return q[:, 1:]


def tsnr(x: np.ndarray, order: int = 3) -> np.ndarray:
    """Temporal SNR: mean over SD of the residual after Legendre drift removal.

    The residual sum of squares is the centred series' sum of squares less that of its
    projection on the orthonormal drift basis (:func:`drift_basis`): the least-squares
    residual of :func:`detrend` without forming it (float64 throughout).

    Parameters
    ----------
    x
        ``(..., n)`` time series (time last), e.g. ``(voxels, volumes)``.
    order
        Degree of the drift polynomials removed before the SD.

    Returns
    -------
    numpy.ndarray
        ``(...)`` float64; 0 where the residual SD is 0 (to rounding: at most ``1e-12`` of
        the mean's magnitude).
    """
    x = np.asarray(x)
    n = x.shape[-1]
    flat = x.reshape(-1, n).astype(np.float64)
    mean = flat.mean(axis=1)
    flat -= mean[:, None]
    ss = np.einsum("ij,ij->i", flat, flat)
    proj = flat @ drift_basis(n, order)
    ss -= np.einsum("ij,ij->i", proj, proj)
    sd = np.sqrt(np.maximum(ss, 0.0) / n)
    out = np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 1e-12 * np.abs(mean))
    return out.reshape(x.shape[:-1])


def neighbours(axis: int, start: int) -> tuple[slice, ...]:
    """Index (a view, not a copy) of every voxel but the last (``start`` 0) or the first (1)
    along ``axis``: ``a[neighbours(k, 0)]`` and ``a[neighbours(k, 1)]`` pair each voxel with
    its next neighbour along axis ``k`` (any trailing axes, e.g. time, kept whole)."""
    cut = slice(1, None) if start else slice(None, -1)
    return tuple(cut if ax == axis else slice(None) for ax in range(axis + 1))


def fwhm_classic(res: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Smoothness per axis in voxels, AFNI "classic" (Gaussian ACF) from first differences.

    ``rho = 1 - var(r(v + e) - r(v)) / (2 var(r))`` over neighbour pairs with both voxels in
    ``mask`` and all volumes; ``FWHM = sqrt(-2 ln 2 / ln rho)``; 0 where ``rho <= 0``.

    Parameters
    ----------
    res
        ``(x, y, z, t)`` residual series (or ``(x, y, z)``).
    mask
        ``(x, y, z)`` bool.

    Returns
    -------
    numpy.ndarray
        ``(3,)`` FWHM along x, y, z in voxels.
    """
    res = np.asarray(res, np.float64)
    mask = np.asarray(mask, bool)
    out = []
    for axis in range(3):
        lo, hi = neighbours(axis, 0), neighbours(axis, 1)
        both = mask[lo] & mask[hi]
        diff = (res[hi] - res[lo])[both]
        rho = 1 - diff.var() / (2 * res[mask].var())
        out.append(math.sqrt(-2 * math.log(2) / math.log(rho)) if 0 < rho < 1 else 0.0)
    return np.array(out)


def neighbour_correlation(res: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Correlation of neighbouring voxels' time courses along ``axis``.

    Pairs with both voxels in ``mask``; each voxel's temporal mean is removed first.

    Parameters
    ----------
    res
        ``(x, y, z, t)`` series.
    mask
        ``(x, y, z)`` bool.
    axis
        0, 1 or 2.

    Returns
    -------
    float
        Pooled Pearson correlation over all pairs and volumes.
    """
    lo, hi = neighbours(axis, 0), neighbours(axis, 1)
    mask = np.asarray(mask, bool)
    both = mask[lo] & mask[hi]
    a = res[lo][both].astype(np.float64)
    b = res[hi][both].astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
