"""GLMdenoise noise regressors: the noise pool and per-run principal components.

Noise pool: voxels that are bright (``meanvol > brainthresh[1] * percentile(meanvol,
brainthresh[0])``), task-unresponsive (``onoffR2 < brainR2``) and not excluded
(``brainexclude``: True = exclude).

Per run, separately: the pool's time series with the run's polynomials removed are scaled to unit
L2 norm (all-zero series contribute nothing); the PCs are the leading eigenvectors of the
``T_r x T_r`` matrix ``sum over pool voxels of n n'`` (the left singular vectors of the
normalised ``T_r x N_pool`` matrix), accumulated chunk by chunk so memory does not depend on the
pool size. Each PC is scaled to unit sample SD (ddof 1); its sign is fixed so that its largest
absolute entry is positive (the sign has no effect on any fit).
"""

from __future__ import annotations

import numpy as np


def noise_pool(
    meanvol: np.ndarray,
    onoff_r2: np.ndarray,
    brainthresh: tuple[float, float],
    brain_r2: float,
    exclude: np.ndarray,
) -> np.ndarray:
    """``(V,)`` bool noise-pool mask.

    Parameters
    ----------
    meanvol
        ``(V,)`` raw mean signal.
    onoff_r2
        ``(V,)`` ON-OFF R² (%); NaN never enters the pool.
    brainthresh
        ``(percentile, fraction)``.
    brain_r2
        ON-OFF R² (%) below which voxels may enter.
    exclude
        ``(V,)`` bool, True = never in the pool.
    """
    pct, frac = brainthresh
    bright = meanvol > frac * np.percentile(meanvol, pct)
    with np.errstate(invalid="ignore"):
        quiet = onoff_r2 < brain_r2
    return bright & quiet & ~exclude


def normalised_rows(yw: np.ndarray) -> np.ndarray:
    """``(V, T)`` float64 rows scaled to unit L2 norm (all-zero rows stay 0)."""
    y = yw.astype(np.float64)
    nrm = np.sqrt(np.einsum("ij,ij->i", y, y))
    ok = nrm > 0
    y[ok] /= nrm[ok, None]
    y[~ok] = 0.0
    return y


def principal_components(gram: np.ndarray, n_keep: int) -> np.ndarray:
    """Leading eigenvectors of a run's pool matrix as regressors.

    Parameters
    ----------
    gram
        ``(T, T)`` sum of ``n n'`` over the pool.
    n_keep
        Number of components (at most ``T``).

    Returns
    -------
    numpy.ndarray
        ``(T, n_keep)`` float64, descending eigenvalue order, each column with unit sample SD
        (ddof 1) and its largest absolute entry positive.
    """
    t = gram.shape[0]
    n_keep = min(int(n_keep), t)
    _, vecs = np.linalg.eigh((gram + gram.T) / 2.0)
    pcs = vecs[:, ::-1][:, :n_keep].copy()
    for k in range(n_keep):
        v = pcs[:, k]
        if v[np.argmax(np.abs(v))] < 0:
            v *= -1.0
        sd = v.std(ddof=1) if t > 1 else 0.0
        if sd > 0:
            v /= sd
    return pcs
