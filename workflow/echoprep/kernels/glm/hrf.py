"""HRFs of the GLMsingle engine: the 20-curve library and the canonical HRF.

Both are SPM-style double gammas (``spm_hrf``) sampled every 0.1 s, regenerated from the
parameter table :data:`LIBRARY_PARAMS` (docs/glm.md §5; fitted to the published curves; they match
them to <= 3.1e-5 of peak for the library and 0.3 % for the canonical HRF). For use, a 0.1-s
curve is convolved with a boxcar of ``round(stimdur / 0.1)`` samples (``stimdur = 0`` counts as
one sample), resampled at ``0, tr, 2 tr, ...`` up to the end of the convolved curve with monotone
cubic (PCHIP) interpolation, and scaled to a peak of 1.

Units: time in seconds; the returned HRFs are dimensionless (peak 1), one sample per TR,
sample 0 at the trial onset.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.stats import gamma

#: Sampling interval of the stored curves (s).
FINE_DT = 0.1

#: Library HRFs, early to late peak: (delay of response, delay of undershoot, dispersion of
#: response, dispersion of undershoot, ratio response:undershoot, onset), seconds.
LIBRARY_PARAMS: tuple[tuple[float, float, float, float, float, float], ...] = (
    (3.91731, 6.85367, 1.09251, 0.463096, 1.75231, -9e-06),
    (4.04269, 6.93061, 1.03883, 0.525835, 1.83639, -1.1e-05),
    (4.30131, 6.89901, 1.01753, 0.662786, 1.78226, 8.1e-05),
    (4.03995, 6.04744, 0.750475, 1.30821, 1.66627, 0.000113),
    (3.78021, 8.2487, 0.600846, 2.74609, 2.19675, 6.4e-05),
    (3.87866, 10.8178, 0.579288, 4.50669, 2.30119, -9e-06),
    (4.05778, 13.6222, 0.586965, 6.56752, 2.2036, -3.9e-05),
    (4.26462, 16.8226, 0.623849, 10.0281, 2.05678, 2e-05),
    (4.46959, 19.7561, 0.584654, 5.86839, 2.5389, -3.7e-05),
    (4.66988, 20.4342, 0.580304, 3.2408, 3.1405, -1e-05),
    (4.8516, 20.7428, 0.604335, 1.99421, 3.92052, 0.063962),
    (4.6823, 20.6079, 0.715193, 1.43386, 4.94865, 0.539617),
    (4.49172, 20.4042, 0.870598, 1.15946, 6.32795, 1.07806),
    (4.41125, 20.2634, 1.05639, 0.967901, 8.76595, 1.53811),
    (4.32719, 20.1623, 1.26532, 0.912837, 12.3871, 2.0329),
    (4.18033, 20.1098, 1.52456, 0.930342, 18.635, 2.62123),
    (4.11522, 21.3524, 1.82896, 1.19882, 35.6603, 3.14843),
    (4.12779, 4.21776, 2.12635, 40.0, 7084.2, 3.60176),
    (4.05488, 3.93906, 2.74007, 5.8952, 22672.4, 4.26017),
    (4.22822, 6.36491, 3.15488, 39.9992, 99618.3, 4.5925),
)
#: Samples of each library curve at 0.1 s (0-50 s).
LIBRARY_SAMPLES = 501
#: Canonical HRF (``hrftoassume``) parameters, as :data:`LIBRARY_PARAMS`.
CANONICAL_PARAMS: tuple[float, float, float, float, float, float] = (
    6.9314,
    12.5858,
    1.84809,
    3.76091,
    2.41503,
    -0.001499,
)
#: Samples of the canonical curve at 0.1 s (0-48.9 s).
CANONICAL_SAMPLES = 490


def spm_double_gamma(
    params: tuple[float, float, float, float, float, float], n_samples: int, dt: float = FINE_DT
) -> np.ndarray:
    """SPM double-gamma HRF sampled every ``dt`` seconds, normalised to unit sum.

    ``h(t) = Gamma(t - p6; shape p1/p3, scale p3) - Gamma(t - p6; shape p2/p4, scale p4) / p5``
    for ``t = 0, dt, ..., (n_samples - 1) dt`` (``spm_hrf``: the fine grid of ``dt / 16`` is
    evaluated at every 16th point, i.e. exactly at these times), then divided by its sum.

    Parameters
    ----------
    params
        ``(p1, ..., p6)`` as in :data:`LIBRARY_PARAMS` (seconds; p5 dimensionless).
    n_samples
        Number of samples (``floor(length / dt) + 1`` in SPM).
    dt
        Sampling interval (s).

    Returns
    -------
    numpy.ndarray
        ``(n_samples,)`` float64, unit sum.
    """
    p1, p2, p3, p4, p5, p6 = (float(p) for p in params)
    t = np.arange(n_samples) * dt - p6
    h = gamma.pdf(t, p1 / p3, scale=p3) - gamma.pdf(t, p2 / p4, scale=p4) / p5
    h = np.where(t > 0, h, 0.0)
    return h / h.sum()


def library_curves() -> np.ndarray:
    """The 20 library HRFs at 0.1 s for a 0.1-s event.

    Returns
    -------
    numpy.ndarray
        ``(501, 20)`` float64, each column with unit sum; columns ordered from early to late
        peak (2.7 s to 5.7 s).
    """
    return np.stack([spm_double_gamma(p, LIBRARY_SAMPLES) for p in LIBRARY_PARAMS], axis=1)


def canonical_curve() -> np.ndarray:
    """The canonical HRF at 0.1 s for a 0.1-s event: ``(490,)`` float64, unit sum."""
    return spm_double_gamma(CANONICAL_PARAMS, CANONICAL_SAMPLES)


def boxcar_samples(stimdur: float) -> int:
    """Boxcar length in 0.1-s samples: ``round(stimdur / 0.1)`` (half up), at least 1."""
    return max(1, math.floor(float(stimdur) / FINE_DT + 0.5 + 1e-9))


def convolve_boxcar(curves: np.ndarray, stimdur: float) -> np.ndarray:
    """Full convolution of 0.1-s curves (along axis 0) with a ``stimdur`` boxcar of ones.

    Parameters
    ----------
    curves
        ``(n,)`` or ``(n, k)`` curves sampled at 0.1 s.
    stimdur
        Event duration (s); 0 is treated as 0.1 s.

    Returns
    -------
    numpy.ndarray
        ``(n + m - 1,)`` or ``(n + m - 1, k)`` float64 with ``m = boxcar_samples(stimdur)``.
    """
    c = np.asarray(curves, dtype=np.float64)
    box = np.ones(boxcar_samples(stimdur))
    if c.ndim == 1:
        return np.convolve(c, box)
    return np.stack([np.convolve(col, box) for col in c.T], axis=1)


def resample_at_tr(curves: np.ndarray, tr: float, dt: float = FINE_DT) -> np.ndarray:
    """PCHIP resampling of curves sampled every ``dt`` at ``0, tr, 2 tr, ...``.

    The last sample is the last multiple of ``tr`` not after the end of the curve
    (``(n - 1) dt``).

    Parameters
    ----------
    curves
        ``(n,)`` or ``(n, k)``.
    tr
        Output sampling interval (s).

    Returns
    -------
    numpy.ndarray
        ``(m,)`` or ``(m, k)`` float64 with ``m = floor((n - 1) dt / tr) + 1``.
    """
    c = np.asarray(curves, dtype=np.float64)
    t_fine = np.arange(c.shape[0]) * dt
    n_out = math.floor(t_fine[-1] / float(tr) + 1e-9) + 1
    t_out = np.arange(n_out) * float(tr)
    return PchipInterpolator(t_fine, c, axis=0)(t_out)


def prepare_hrf(curves: np.ndarray, stimdur: float, tr: float) -> np.ndarray:
    """Boxcar convolution, PCHIP resampling at TR and peak normalisation (per column).

    Parameters
    ----------
    curves
        ``(n,)`` or ``(n, k)`` 0.1-s curves.
    stimdur, tr
        Event duration and sampling interval (s).

    Returns
    -------
    numpy.ndarray
        ``(m,)`` or ``(m, k)`` float64, each column with maximum 1.
    """
    out = resample_at_tr(convolve_boxcar(curves, stimdur), tr)
    return out / out.max(axis=0)


def hrf_library(stimdur: float, tr: float) -> np.ndarray:
    """The default ``hrflibrary``: ``(m, 20)`` float64, each column peak 1, one row per TR.

    Example: ``tr = 1.9``, ``stimdur = 3`` gives 28 rows.
    """
    return prepare_hrf(library_curves(), stimdur, tr)


def canonical_hrf(stimdur: float, tr: float) -> np.ndarray:
    """The default ``hrftoassume``: ``(m,)`` float64, peak 1, one sample per TR."""
    return prepare_hrf(canonical_curve(), stimdur, tr)
