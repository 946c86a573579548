"""The time course of a session's own responses, estimated from its data, for the planted
responses (docs/comparison.md, "The shape of the planted responses").

A planted response is scored by how much of it each variant's chain keeps; a chain that adapts
to the data (NORDIC keeps, in each patch, the temporal subspace of the data's responses; tedana's
components follow them) keeps less of a response whose time course is not the data's own. So
the planted responses take the shape of the session's responses, estimated per group of voxels
(those GLMsingle gave the same library HRF) from the reference fit's series:

- each trial's response amplitude in a voxel is known, up to noise, from the image's *other*
  presentations (the mean of its even-numbered presentations for an odd-numbered one, and
  the reverse: :func:`cross_amplitudes`), so the amplitudes share no noise with the trial's
  own samples;
- the data are described by cubic B-splines (:func:`spline_basis`, knots every
  :data:`KNOT_STEP` s from the onset; 0 at the onset) with coefficients shared by the voxels
  of a group: ``y_v(t) = sum_i a_vi h(t - onset_i) + drift + evoked + noise``, where the drift
  (the GLM's polynomials per run) and each voxel's own response common to all trials
  (``evoked``: the same splines summed over the trials, free per voxel) are projected out
  (:func:`shape_moments`); the normal equations are summed over the voxels and runs of each
  group (a group with too few voxels borrows its neighbours in library order);
- the group's curve (:func:`fit_shapes`) is, by default (``"warped"``), the group's library
  curve delayed and stretched in time (:data:`SHIFTS`, :data:`STRETCHES`: latency and width,
  the two ways HRFs differ most between voxels and people) to explain the most of the data: two
  parameters per group, so a few dozen voxels give a stable shape (``"free"``, the splines'
  own least-squares curve, follows any shape but is noisier: on the kept benchmark case its
  curves were no closer to the simulator's than the library's, the warped ones were); a fit
  that does not look like a response (no positive peak, a peak outside 1-15 s) keeps the
  library curve.

Errors in the amplitudes (noise of the other presentations) shrink the fitted curve as a whole
(the trials' true and noise amplitudes are both uncorrelated from trial to trial, so they enter
the normal equations through the same matrix); the shape, which is all that is kept (each curve
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


def _best_warp(
    curve: np.ndarray, basis: np.ndarray, m: np.ndarray, b: np.ndarray, dt: float, length: int
) -> np.ndarray:
    """The shifted and stretched copy of ``curve`` (:data:`SHIFTS` x :data:`STRETCHES`) that
    explains most of the data, ``(b'w)^2 / w'Mw`` for its spline coefficients ``w`` (the
    data's sum of squares explained by it); zeros where none fits with a positive amplitude."""
    cands = np.stack([warped(curve, d, s, length, dt) for d in SHIFTS for s in STRETCHES], axis=1)
    w, *_ = np.linalg.lstsq(basis, cands[: basis.shape[0]], rcond=None)
    num = b @ w
    den = np.einsum("kc,kl,lc->c", w, m, w)
    score = np.where((num > 0) & (den > 0), num**2 / np.where(den > 0, den, 1.0), -np.inf)
    best = int(np.argmax(score))
    return cands[:, best] if np.isfinite(score[best]) else np.zeros(length)


def fit_shapes(
    moments: np.ndarray,
    cross: np.ndarray,
    groups: np.ndarray,
    basis: np.ndarray,
    library: np.ndarray,
    *,
    wanted: np.ndarray | None = None,
    min_voxels: int = MIN_VOXELS,
    method: str = "warped",
    dt: float = FINE_DT,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The response curve of each group (library HRF index), from the summed normal equations.

    Parameters
    ----------
    moments, cross
        ``(V, K, K)``, ``(V, K)`` of the voxels whose data enter the fits (the visual ROI),
        summed over runs (:func:`shape_moments`).
    groups
        ``(V,)`` int: each of these voxels' library HRF index (its group).
    wanted
        The groups to fit (those of every voxel that receives a planted response); None: those
        in ``groups``.
    basis
        ``(n, K)`` :func:`spline_basis`.
    library
        ``(m, H)`` the library's response curves (peak 1, at ``dt``): the curve of a group
        whose fit is not used.
    min_voxels
        Fewest contributing voxels per fit; a group with fewer adds its neighbours in library
        order, nearest first.
    method
        ``"warped"``: the group's library curve delayed and stretched (:func:`warped`) to
        explain the most of the data; ``"free"``: the splines' least-squares curve.

    Returns
    -------
    curves
        ``(n', H)`` float64, ``n' = max(n, m)``: column ``h`` is group ``h``'s curve, peak 1
        (the library's where not estimated; 0-padded to a common length).
    record
        One entry per wanted group: ``LibraryIndex``, ``Voxels`` (contributing
        voxels behind the fit), ``Estimated``, ``PeakSeconds``, and ``Reason`` where the
        library's curve is kept.
    """
    if method not in ("warped", "free"):
        raise ValueError(f"method must be 'warped' or 'free'; found {method!r}")
    n_lib = library.shape[1]
    length = max(basis.shape[0], library.shape[0])
    curves = np.zeros((length, n_lib))
    curves[: library.shape[0]] = library
    groups = np.asarray(groups, np.int64)
    present = np.unique(groups if wanted is None else np.asarray(wanted, np.int64))
    counts = np.bincount(groups, minlength=n_lib)
    m_sum = np.zeros((n_lib, *moments.shape[1:]))
    b_sum = np.zeros((n_lib, cross.shape[1]))
    np.add.at(m_sum, groups, moments)
    np.add.at(b_sum, groups, cross)
    record = []
    for h in present:
        order = np.argsort(np.abs(np.arange(n_lib) - h), kind="stable")
        taken = np.cumsum(counts[order])
        n_take = int(np.searchsorted(taken, min_voxels) + 1)
        chosen = order[: min(n_take, n_lib)]
        entry: dict[str, Any] = {"LibraryIndex": int(h), "Voxels": int(counts[chosen].sum())}
        reason = None
        if entry["Voxels"] < min_voxels:
            reason = f"fewer than {min_voxels} voxels in the ROI"
        else:
            m = m_sum[chosen].sum(axis=0)
            b = b_sum[chosen].sum(axis=0)
            if method == "warped":
                curve = _best_warp(library[:, h], basis, m, b, dt, length)
            else:
                ridge = 1e-8 * np.trace(m) / m.shape[0]
                coef = np.linalg.solve(m + ridge * np.eye(m.shape[0]), b)
                curve = np.zeros(length)
                curve[: basis.shape[0]] = basis @ coef
            peak = int(np.argmax(curve))
            lo, hi = PEAK_WINDOW
            if not np.all(np.isfinite(curve)) or curve[peak] <= 0:
                reason = "no positive response"
            elif not lo <= peak * dt <= hi:
                reason = f"peak at {peak * dt:.1f} s, outside {lo:g}-{hi:g} s"
            elif -curve.min() > curve[peak]:
                reason = "a larger negative than positive lobe"
            else:
                curves[:, h] = curve / curve[peak]
                entry["PeakSeconds"] = round(peak * dt, 2)
        entry["Estimated"] = reason is None
        if reason is not None:
            entry["Reason"] = reason
            entry["PeakSeconds"] = round(float(np.argmax(library[:, h])) * dt, 2)
        record.append(entry)
    return curves, record


__all__ = [
    "CURVE_SECONDS",
    "KNOT_STEP",
    "MIN_VOXELS",
    "PEAK_WINDOW",
    "SHIFTS",
    "STRETCHES",
    "cross_amplitudes",
    "fit_shapes",
    "shape_moments",
    "spline_basis",
    "warped",
]
