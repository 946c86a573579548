"""Fractional ridge regression (fracridge, Rokem & Kay 2020) batched over voxels, and autoscale.

With the projected design ``xt = U diag(s) W'`` (block-diagonal by run, so its SVD is the union
of the per-run SVDs), the OLS solution in the rotated basis is ``b = U' y / s`` and a ridge
penalty ``alpha`` scales component i by ``s_i² / (s_i² + alpha)``. Since ``W`` is orthogonal, the
norm of the ridge solution over all trials is ``|b * s²/(s² + alpha)|``. For a target fraction
``f`` of the OLS norm, ``alpha`` is found per voxel by linear interpolation of the norm ratio
against ``log(1 + alpha)`` on a grid ``{0} U {10^(0.2 j)}`` spanning ``1e-2 s_min²`` to
``1e4 s_max²``, as fracridge does; here all voxels and fractions are handled at once from one
``V x grid`` matrix of norm ratios.
"""

from __future__ import annotations

import math

import numpy as np

#: Grid limits relative to the smallest / largest squared singular value.
SMALL_BIAS = 1e-2
BIG_BIAS = 1e4
#: Grid step in log10(alpha).
LOG_STEP = 0.2


def alpha_grid(s2: np.ndarray) -> np.ndarray:
    """Candidate penalties: 0 and ``10^(0.2 j)`` from ``floor(log10(1e-2 min s²))`` up to (not
    including) ``ceil(log10(1e4 max s²))``.

    Parameters
    ----------
    s2
        Positive squared singular values.
    """
    s2 = s2[s2 > 0]
    lo = math.floor(math.log10(SMALL_BIAS * float(s2.min())))
    hi = math.ceil(math.log10(BIG_BIAS * float(s2.max())))
    n = round((hi - lo) / LOG_STEP)
    return np.concatenate([[0.0], 10.0 ** (lo + LOG_STEP * np.arange(n))])


def norm_ratios(s2: np.ndarray, b: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``(V, G)`` norm of the ridge solution at each grid alpha relative to OLS.

    Parameters
    ----------
    s2
        ``(n,)`` squared singular values (0 for dropped components).
    b
        ``(V, n)`` rotated OLS coefficients (0 for dropped components).
    grid
        ``(G,)`` penalties, ``grid[0] = 0``.

    Returns
    -------
    numpy.ndarray
        float64; NaN rows where the OLS solution is 0.
    """
    ok = s2 > 0
    s2k = s2[ok]
    shrink2 = (s2k / (s2k + grid[:, None])) ** 2  # (G, n')
    bk = b[:, ok].astype(np.float64)
    norms2 = (bk * bk) @ shrink2.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(norms2 / norms2[:, :1])


def fraction_alphas(s2: np.ndarray, b: np.ndarray, fracs: np.ndarray) -> np.ndarray:
    """Per-voxel ridge penalties reaching the requested norm fractions.

    Parameters
    ----------
    s2
        ``(n,)`` squared singular values of the stacked projected design (0 = dropped).
    b
        ``(V, n)`` rotated OLS coefficients.
    fracs
        ``(F,)`` fractions in (0, 1]; 1 gives alpha 0.

    Returns
    -------
    numpy.ndarray
        ``(V, F)`` float64 penalties (0 where the OLS solution is 0).
    """
    v = b.shape[0]
    out = np.zeros((v, len(fracs)))
    if not np.any(s2 > 0) or v == 0:
        return out
    grid = alpha_grid(s2)
    logs = np.log1p(grid)
    ratio = norm_ratios(s2, b, grid)
    valid = np.isfinite(ratio[:, 0])
    rows = np.arange(v)
    n_grid = grid.size
    for k, f in enumerate(np.asarray(fracs, dtype=np.float64)):
        if f >= 1.0:
            continue
        below = ratio < f
        has = below.any(axis=1)
        i1 = np.where(has, np.argmax(below, axis=1), n_grid - 1)
        i1 = np.clip(i1, 1, n_grid - 1)
        i0 = i1 - 1
        r0 = ratio[rows, i0]
        r1 = ratio[rows, i1]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(r0 != r1, (f - r0) / (r1 - r0), 0.0)
        la = logs[i0] + t * (logs[i1] - logs[i0])
        out[:, k] = np.where(valid, np.expm1(la), 0.0)
    return out


def shrinkage(s2: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``(V, n)`` ``s² / (s² + alpha)`` per voxel (0 for dropped components).

    Parameters
    ----------
    s2
        ``(n,)``.
    alpha
        ``(V,)`` penalties.
    """
    den = s2[None, :] + alpha[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, s2[None, :] / den, 0.0)
    return np.where(s2[None, :] > 0, out, 0.0)


def autoscale(b_ols: np.ndarray, b_ridge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel least-squares fit ``b_ols ~ scale * b_ridge + offset`` over trials.

    Closed form of the 2 x 2 normal equations. Where the scale is negative, or ``b_ridge`` is
    constant over trials (no unique fit), ``(1, 0)`` is used.

    Parameters
    ----------
    b_ols, b_ridge
        ``(V, N)`` unregularised and ridge betas.

    Returns
    -------
    scale, offset : numpy.ndarray
        ``(V,)`` float64 each.
    """
    x = b_ridge.astype(np.float64)
    y = b_ols.astype(np.float64)
    mx = x.mean(axis=1)
    my = y.mean(axis=1)
    xc = x - mx[:, None]
    var = np.einsum("ij,ij->i", xc, xc)
    cov = np.einsum("ij,ij->i", xc, y - my[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = cov / var
    offset = my - scale * mx
    bad = ~(var > 0) | ~np.isfinite(scale) | (scale < 0)
    scale = np.where(bad, 1.0, scale)
    offset = np.where(bad, 0.0, offset)
    return scale, offset
