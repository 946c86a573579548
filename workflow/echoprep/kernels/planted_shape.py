"""The time course of a session's own responses, estimated from its data, for the planted
responses (docs/comparison.md, "The shape of the planted responses").

A planted response is scored by how much of it each variant's chain keeps, and how much of a
response the chains keep depends on its time course, in details a cosine hardly sees (on a kept
case the simulator's mean curve, planted in every voxel, halved the estimate's error). So the
planted responses take the shape of the session's responses, one curve estimated from the
reference fit's series over the ROI's voxels:

- each trial's response amplitude in a voxel is known, up to noise, from the image's *other*
  presentations (the mean of its even-numbered presentations for an odd-numbered one, and
  the reverse: :func:`cross_amplitudes`), so the amplitudes share no noise with the trial's
  own samples;
- the data are described by cubic B-splines (:func:`spline_basis`, knots every
  :data:`KNOT_STEP` s from the onset; 0 at the onset) with coefficients shared by the voxels:
  ``y_v(t) = sum_i a_vi h(t - onset_i) + drift + evoked + noise``, where the drift (the GLM's
  polynomials per run) and each voxel's own response common to all trials (``evoked``: the
  same splines summed over the trials, free per voxel) are projected out
  (:func:`shape_moments`); the normal equations are summed over the voxels and runs;
- the curve (:func:`fit_shape`) is, by default (``"warped"``), the library curve delayed and
  stretched in time (:data:`SHIFTS`, :data:`STRETCHES`: latency and width, the two ways HRFs
  differ most between voxels and people) that explains the most of the data, searched over
  every library curve (:func:`warp_candidates`: the library's curves differ in their
  undershoot, which neither warp changes); ``"free"``, the splines' own least-squares curve,
  follows any shape but is noisier; a fit that does not look like a response (no positive
  peak, a peak outside 1-15 s) keeps the library curves.

One curve per session, not one per library HRF: grouping the voxels by the HRF GLMsingle chose
selects them by the same data's noise, so each group's curve bends towards its own library
curve in every part of the runs alike (on six kept two-session cases the choices correlated
0.09-0.31 with the simulator's HRFs over the ROI, yet on one of them the groups' fitted peaks
spread over 5.2-7.4 s, in one session in reverse library order; docs/comparison.md).

Errors in the amplitudes (noise of the other presentations) shrink the fitted curve as a whole
(the trials' true and noise amplitudes are both uncorrelated from trial to trial, so they enter
the normal equations through the same matrix); the shape, which is all that is kept (the curve
is scaled to peak 1), is unbiased.

Arrays: ``V`` voxels, ``N`` trials of a run, ``T`` volumes, ``K`` splines, ``n`` samples at
:data:`echoprep.kernels.glm.hrf.FINE_DT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.interpolate import BSpline

from echoprep.kernels.glm.design import default_maxpolydeg, polynomial_basis
from echoprep.kernels.glm.hrf import FINE_DT

#: Spacing of the splines' knots, s.
KNOT_STEP = 1.5
#: Length of the estimated response curve, s (the library HRFs' responses end by then).
CURVE_SECONDS = 30.0
#: The peak of a fitted curve must lie in this window (s after onset) to be used.
PEAK_WINDOW = (1.0, 15.0)
#: Fewest contributing voxels behind a group's curve.
MIN_VOXELS = 50


def spline_basis(
    step: float = KNOT_STEP, seconds: float = CURVE_SECONDS, dt: float = FINE_DT
) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-splines on uniform knots from the onset, sampled every ``dt``.

    Returns
    -------
    times
        ``(n,)`` s after onset.
    basis
        ``(n, K)`` float64: the splines whose support lies in ``[0, seconds]`` (each is 0 at
        the onset, so every curve they make starts at 0).
    """
    times = np.arange(round(seconds / dt) + 1) * dt
    starts = np.arange(0.0, seconds - 4 * step + 1e-9, step)
    cols = []
    for s in starts:
        element = BSpline.basis_element(s + step * np.arange(5), extrapolate=False)
        cols.append(np.nan_to_num(element(times)))
    return times, np.stack(cols, axis=1)


def cross_amplitudes(
    labels: Sequence | np.ndarray,
    odd: np.ndarray,
    images: np.ndarray,
    half_a: np.ndarray,
    half_b: np.ndarray,
) -> np.ndarray:
    """``(V, N)`` each trial's amplitude from the image's other presentations: half B's mean
    for an odd-numbered presentation (half A), half A's for an even-numbered one; 0 for an
    image shown once.

    Parameters
    ----------
    labels
        ``(N,)`` image label of each trial (the session's trials, in order).
    odd
        ``(N,)`` bool, :func:`echoprep.kernels.planted.presentation_halves`.
    images, half_a, half_b
        :func:`echoprep.kernels.planted.half_means`.
    """
    column = {str(lab): i for i, lab in enumerate(images)}
    cols = np.array([column.get(str(lab), -1) for lab in labels], dtype=np.int64)
    out = np.zeros((half_a.shape[0], len(cols)))
    known = cols >= 0
    a_rows = known & odd
    b_rows = known & ~odd
    out[:, a_rows] = half_b[:, cols[a_rows]]
    out[:, b_rows] = half_a[:, cols[b_rows]]
    return out


def _lagged(basis: np.ndarray, lags: np.ndarray, dt: float) -> np.ndarray:
    """``(..., K)`` the splines at ``lags`` (s; 0 outside the curve), linear between samples."""
    pos = lags / dt
    i0 = np.floor(pos).astype(np.int64)
    w = (pos - i0)[..., None]
    inside = (i0 >= 0) & (i0 < basis.shape[0] - 1)
    i0 = np.clip(i0, 0, basis.shape[0] - 2)
    out = basis[i0] * (1.0 - w) + basis[i0 + 1] * w
    return np.where(inside[..., None], out, 0.0)


def shape_moments(
    series: np.ndarray,
    offsets: np.ndarray,
    tr: float,
    onsets: np.ndarray,
    amplitudes: np.ndarray,
    basis: np.ndarray,
    *,
    dt: float = FINE_DT,
    chunk_voxels: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """One run's normal equations of the shared response curve, per voxel.

    Parameters
    ----------
    series
        ``(V, T)`` the run's samples.
    offsets
        ``(V,)`` time of each voxel's sample within the TR, s (its slice's acquisition time,
        or the slice-timing correction's reference time).
    tr
        Sampling interval of ``series``, s.
    onsets
        ``(N,)`` trial onsets, s from the run's first volume.
    amplitudes
        ``(V, N)`` each trial's response amplitude (:func:`cross_amplitudes`).
    basis
        ``(n, K)`` :func:`spline_basis`.
    chunk_voxels
        Voxels per block (memory ``chunk_voxels x T x K`` float64).

    Returns
    -------
    moments
        ``(V, K, K)`` ``X'X`` of each voxel's spline regressors after the drift and the voxel's
        evoked response are projected out.
    cross
        ``(V, K)`` ``X'y``.
    """
    y = np.asarray(series, np.float64)
    n_vox, n_vol = y.shape
    k = basis.shape[1]
    moments = np.zeros((n_vox, k, k))
    cross = np.zeros((n_vox, k))
    onsets = np.asarray(onsets, np.float64)
    if onsets.size == 0 or n_vox == 0:
        return moments, cross
    drift = polynomial_basis(n_vol, default_maxpolydeg(n_vol, tr))
    keys, inverse = np.unique(np.round(np.asarray(offsets, np.float64) * 1e6), return_inverse=True)
    inverse = inverse.reshape(-1)
    amps = np.asarray(amplitudes, np.float64)
    for g, key in enumerate(keys):
        rows = np.flatnonzero(inverse == g)
        lags = (np.arange(n_vol) * float(tr) + key / 1e6)[:, None] - onsets[None, :]
        lagged = _lagged(basis, lags, dt)  # (T, N, K)
        nuisance = np.concatenate([drift, lagged.sum(axis=1)], axis=1)
        q, _ = np.linalg.qr(nuisance)
        for start in range(0, rows.size, chunk_voxels):
            block = rows[start : start + chunk_voxels]
            x = np.einsum("tnk,vn->vtk", lagged, amps[block], optimize=True)
            x -= np.einsum("tp,vpk->vtk", q, np.einsum("tp,vtk->vpk", q, x), optimize=True)
            moments[block] = np.einsum("vtk,vtl->vkl", x, x, optimize=True)
            cross[block] = np.einsum("vtk,vt->vk", x, y[block], optimize=True)
    return moments, cross


#: Shifts (s) and time stretches of a library curve tried by the warped fit.
SHIFTS = np.arange(-3.0, 3.01, 0.25)
STRETCHES = np.arange(0.7, 1.61, 0.05)


def warped(curve: np.ndarray, shift: float, stretch: float, length: int, dt: float) -> np.ndarray:
    """``(length,)`` ``curve(t)`` (sampled every ``dt``) delayed by ``shift`` s and stretched
    in time by ``stretch`` about the onset: ``curve((t - shift) / stretch)``, 0 before it."""
    t = np.arange(length) * dt
    src = np.arange(curve.shape[0]) * dt
    return np.interp((t - shift) / stretch, src, curve, left=0.0, right=0.0)


def warp_candidates(library: np.ndarray, length: int, dt: float = FINE_DT) -> np.ndarray:
    """``(length, H x S x W)`` every library curve (``library`` ``(m, H)``) delayed by each of
    :data:`SHIFTS` and stretched by each of :data:`STRETCHES` (:func:`warped`); candidate
    ``(h * S + s) * W + w`` is curve ``h``, shift ``s``, stretch ``w``."""
    return np.stack(
        [
            warped(library[:, h], d, s, length, dt)
            for h in range(library.shape[1])
            for d in SHIFTS
            for s in STRETCHES
        ],
        axis=1,
    )


def explained(coef: np.ndarray, m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(C,)`` the data's sum of squares explained by each curve (spline coefficients
    ``coef`` ``(K, C)``) with its amplitude fitted, ``(b'w)^2 / w'Mw``; 0 for a curve the
    data follow with a negative amplitude (or not at all)."""
    num = b @ coef
    den = np.einsum("kc,kl,lc->c", coef, m, coef)
    ok = (num > 0) & (den > 0)
    return np.where(ok, num**2 / np.where(ok, den, 1.0), 0.0)


def _checked(curve: np.ndarray, dt: float) -> str | None:
    """Why ``curve`` does not look like a response (None: it does)."""
    peak = int(np.argmax(curve))
    lo, hi = PEAK_WINDOW
    if not np.all(np.isfinite(curve)) or curve[peak] <= 0:
        return "no positive response"
    if not lo <= peak * dt <= hi:
        return f"peak at {peak * dt:.1f} s, outside {lo:g}-{hi:g} s"
    if -curve.min() > curve[peak]:
        return "a larger negative than positive lobe"
    return None


def fit_shape(
    moments: np.ndarray,
    cross: np.ndarray,
    basis: np.ndarray,
    library: np.ndarray,
    *,
    min_voxels: int = MIN_VOXELS,
    method: str = "warped",
    dt: float = FINE_DT,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The session's response curve, from the normal equations summed over the voxels.

    Parameters
    ----------
    moments, cross
        ``(V, K, K)``, ``(V, K)`` of the voxels whose data enter the fit (the visual ROI),
        summed over runs (:func:`shape_moments`).
    basis
        ``(n, K)`` :func:`spline_basis`.
    library
        ``(m, H)`` the library's response curves (peak 1, at ``dt``).
    min_voxels
        Fewest voxels behind a fit.
    method
        ``"warped"``: of every library curve delayed by each of :data:`SHIFTS` and stretched
        by each of :data:`STRETCHES` (:func:`warp_candidates`), the one that explains the most
        of the data; ``"free"``: the splines' least-squares curve.

    Returns
    -------
    curve
        ``(n',)`` float64, ``n' = max(n, m)``, peak 1; None where it is not estimated.
    record
        ``Voxels``, ``Estimated``, ``PeakSeconds`` (where estimated), ``LibraryIndex``,
        ``ShiftSeconds`` and ``Stretch`` (``warped``), or ``Reason``.
    """
    if method not in ("warped", "free"):
        raise ValueError(f"method must be 'warped' or 'free'; found {method!r}")
    length = max(basis.shape[0], library.shape[0])
    record: dict[str, Any] = {"Voxels": int(moments.shape[0])}
    if moments.shape[0] < min_voxels:
        return None, record | {"Estimated": False, "Reason": f"fewer than {min_voxels} voxels"}
    m, b = moments.sum(axis=0), cross.sum(axis=0)
    if method == "warped":
        cands = warp_candidates(library, length, dt)
        coef = np.linalg.lstsq(basis, cands[: basis.shape[0]], rcond=None)[0]
        score = explained(coef, m, b)
        best = int(np.argmax(score))
        if score[best] <= 0:  # no curve the data follow with a positive amplitude
            return None, record | {"Estimated": False, "Reason": "no positive response"}
        curve = cands[:, best]
        h, rest = divmod(best, SHIFTS.size * STRETCHES.size)
        record |= {
            "LibraryIndex": int(h),
            "ShiftSeconds": round(float(SHIFTS[rest // STRETCHES.size]), 2),
            "Stretch": round(float(STRETCHES[rest % STRETCHES.size]), 2),
        }
    else:
        ridge = 1e-8 * max(float(np.trace(m)), 1e-300) / m.shape[0]
        curve = np.zeros(length)
        curve[: basis.shape[0]] = basis @ np.linalg.solve(m + ridge * np.eye(m.shape[0]), b)
    reason = _checked(curve, dt)
    if reason is not None:
        return None, {"Voxels": record["Voxels"], "Estimated": False, "Reason": reason}
    record |= {"Estimated": True, "PeakSeconds": round(int(np.argmax(curve)) * dt, 2)}
    return curve / curve.max(), record


__all__ = [
    "CURVE_SECONDS",
    "KNOT_STEP",
    "MIN_VOXELS",
    "PEAK_WINDOW",
    "SHIFTS",
    "STRETCHES",
    "cross_amplitudes",
    "explained",
    "fit_shape",
    "shape_moments",
    "spline_basis",
    "warp_candidates",
    "warped",
]
