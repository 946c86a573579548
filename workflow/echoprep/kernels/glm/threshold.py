"""Automatic tail threshold of the ON-OFF R² (default ``brainR2`` and ``pcR2cutoff``).

A two-component 1-D Gaussian mixture (k-means++ initialisation) is fitted to the finite values
(a seeded random subset of at most one million), with 3 seeded restarts. Its posterior is
evaluated on 500 points spanning the 1st to 99th percentile of the values, widened to include both
component means; walking down from the high end, the threshold is the first point where the
posterior of the component that dominates at the high end falls to 0.5 or below.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Largest number of values used for the mixture fit.
MAX_VALUES = 1_000_000
#: Points on which the posterior is evaluated.
N_POINTS = 500
#: Percentiles spanning the evaluation range.
RANGE_PERCENTILES = (1.0, 99.0)


def tail_threshold(values: np.ndarray, seed: int = 0) -> float:
    """Threshold separating the upper tail of a two-component mixture.

    Parameters
    ----------
    values
        Any shape; non-finite values are ignored (units of the values, here % R²).
    seed
        Seeds the subsampling and the mixture's initialisations.

    Returns
    -------
    float
        The threshold. If fewer than 2 distinct finite values exist, their maximum (or NaN when
        none). If the posterior never falls to 0.5, the bottom of the range, with a warning.
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    if x.min() == x.max():
        return float(x.max())
    rng = np.random.default_rng(seed)
    if x.size > MAX_VALUES:
        x = rng.choice(x, MAX_VALUES, replace=False)
    gmm = GaussianMixture(n_components=2, n_init=3, init_params="k-means++", random_state=int(seed))
    gmm.fit(x[:, None])
    means = gmm.means_.ravel()
    lo, hi = np.percentile(x, RANGE_PERCENTILES)
    lo = min(lo, means.min())
    hi = max(hi, means.max())
    grid = np.linspace(lo, hi, N_POINTS)
    post = gmm.predict_proba(grid[:, None])
    top = int(np.argmax(post[-1]))
    below = np.flatnonzero(post[::-1, top] <= 0.5)
    if below.size == 0:
        warnings.warn(
            "tail threshold: the mixture posterior never crosses 0.5 over the range of the "
            "values; using the bottom of the range (consider fixing brainR2/pcR2cutoff)",
            stacklevel=2,
        )
        return float(grid[0])
    return float(grid[::-1][below[0]])
