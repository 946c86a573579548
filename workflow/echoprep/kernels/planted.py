"""Responses planted into a session's own data: their patterns and their time courses.

The comparison measures each preprocessing variant against a truth planted into the user's own
raw echoes (docs/comparison.md, "Responses planted in your data"). The planted responses are a
small copy of the session's own:

- a reference fit (type-B betas of the visual ROI's source variant, plain least squares, each
  run's mean removed: :func:`run_centred`) gives per image two independent estimates of its
  response, the mean of its odd-numbered presentations (1st, 3rd, ...: half A) and of its
  even-numbered ones (2nd, 4th, ...: half B) (:func:`presentation_halves`, :func:`half_means`);
- half A of each image, times a small factor, is planted as a further response to that image
  at every presentation: the planted responses have the spatial pattern, dimensionality,
  smoothness, amplitude and the course over trials of the session's own, so every chain, run
  with the decisions it made on the data, treats them as it treats the data's own responses;
- with two or more comparison sessions that show the same images, each image's mean in the
  other sessions (:func:`image_sums`) is planted instead of half A: its noise is not that of the
  session's own presentations, which the chains' decisions saw;
- half B is the truth the planted responses are scored against: its noise is independent of
  half A's, so only the response half A shares with it counts (the noise planted along with
  half A is scored as noise, whatever a variant does to it). What the betas carry of the
  planted responses is read at the half-A presentations only: at a half-B presentation it
  would share the neighbouring trials' leakage with the truth, which the same trials made.

A planted response of amplitude ``b`` (% of the reference's signal at echo time ``te_ref``)
changes R2* by ``-b / (100 te_ref)`` at the peak of its time course (:func:`delta_r2star`),
which scales echo ``e`` by ``exp(-te_e dR2*)``: every stage sees it as BOLD.

Arrays: ``V`` voxels, ``I`` images, ``N`` trials, ``T`` volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from echoprep.kernels.glm.hrf import FINE_DT, convolve_boxcar, library_curves

#: Smallest and largest planting amplitude (a multiple of the half-A image means).
AMPLITUDE_RANGE = (0.1, 1.0)
#: Largest image mean, in absolute % signal change, of a voxel that receives a planted
#: response. A mean beyond the voxel's whole signal is no BOLD response: it comes from a run
#: whose baseline is near 0 in the voxel (the edge of a slab's coverage, a dropout) or from a
#: trial with almost none of its response in the run, and planted it would scale the echoes
#: by ``exp`` of tens (docs/comparison.md, "Voxels left out of the planting").
MAX_RESPONSE_PERCENT = 100.0


def presentation_numbers(labels: Sequence | np.ndarray) -> np.ndarray:
    """``(N,)`` int: how many times each trial's image was shown before it (0 for its first
    presentation), in trial order."""
    seen: dict = {}
    number = np.zeros(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        number[i] = seen.get(label, 0)
        seen[label] = number[i] + 1
    return number


def presentation_halves(labels: Sequence | np.ndarray) -> np.ndarray:
    """``(N,)`` bool: True for each image's odd-numbered presentations (1st, 3rd, ...: half
    A), False for its even-numbered ones (half B), in trial order."""
    return presentation_numbers(labels) % 2 == 0


def repeated_images(labels: Sequence | np.ndarray) -> np.ndarray:
    """``(J,)`` the images shown at least twice, sorted (labels as text): the images whose
    repeat-averaged betas the planted estimate is about."""
    images, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    return images[counts >= 2]


def first_presentations(labels: Sequence | np.ndarray) -> np.ndarray:
    """``(N,)`` bool: True for each image's first presentation, in trial order."""
    return presentation_numbers(labels) == 0


def read_presentations(
    labels: Sequence | np.ndarray, images: Sequence | np.ndarray, source: str
) -> np.ndarray:
    """``(N,)`` bool: the presentations of the planted ``images`` at which what a variant's
    betas carry of the planted responses is read: the first presentation of each where the
    planted responses come from the image's later presentations in other runs (``source``
    ``"other_runs"``, :func:`later_presentations`), else every odd-numbered one (half A)."""
    labels = np.asarray(labels)
    planted = image_columns(labels, images) >= 0
    if source == "other_runs":
        return first_presentations(labels) & planted
    return presentation_halves(labels) & planted


def later_presentations(
    betas: np.ndarray,
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    images: Sequence | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the mean of its odd-numbered presentations from the third on (3rd, 5th, ...)
    that lie in another run than its first presentation: an estimate of its response whose
    noise is neither the truth's (half B, the even-numbered presentations) nor that of the run
    it is read in (the first presentation's), so that no decision of that run's chains (NORDIC's
    kept components, tedana's) has seen it (docs/comparison.md, "Responses from your other
    runs").

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas of the session.
    labels, runs
        ``(N,)`` image label and run of each trial, in trial order.
    images
        ``(I,)`` the images wanted (labels compared as text).

    Returns
    -------
    means
        ``(V, I)`` float64 (each run's mean removed from the betas first, as in
        :func:`half_means`), 0 for an image without such a presentation.
    counts
        ``(I,)`` int: the presentations averaged.
    """
    labels = np.asarray(labels).astype(str)
    runs = np.asarray(runs).astype(str)
    number = presentation_numbers(labels)
    first_run = dict(zip(labels[number == 0], runs[number == 0], strict=True))
    other_run = runs != np.array([first_run[label] for label in labels])
    later = (number >= 2) & (number % 2 == 0) & other_run
    sums, counts = image_sums(betas, labels, runs, images, presentations=later)
    return sums / np.maximum(counts, 1), counts


def half_means(
    betas: np.ndarray, labels: Sequence | np.ndarray, runs: Sequence | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image means of the odd-numbered presentations and of the even-numbered ones.

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas.
    labels
        ``(N,)`` image label of each trial.
    runs
        ``(N,)`` run of each trial, or None. Given, each run's mean over its trials is removed
        from each voxel's betas first (as the published betas are centred per run): a run's
        offset (drift the fit left in its betas) is not an image's response, and an image's
        presentations lie in different runs, so offsets that differ between runs would enter
        the two halves as noise that is shared, with a negative sign where the runs' offsets
        sum to about 0 (docs/comparison.md, "Run offsets").

    Returns
    -------
    images
        ``(I,)`` the images shown at least twice, sorted.
    half_a, half_b
        ``(V, I)`` float64: the mean of each image's odd-numbered presentations (half A) and
        of its even-numbered ones (half B), centred over images per voxel.
    """
    labels = np.asarray(labels)
    betas = np.asarray(betas, np.float64)
    if runs is not None:
        betas = run_centred(betas, runs)
    odd = presentation_halves(labels)
    images, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    out = []
    for part in (odd, ~odd):
        total = np.zeros((betas.shape[0], images.size))
        np.add.at(total.T, inverse[part], betas[:, part].T)
        n = np.bincount(inverse[part], minlength=images.size)
        out.append(total / np.maximum(n, 1))
    keep = counts >= 2
    half_a, half_b = (m[:, keep] for m in out)
    half_a -= half_a.mean(axis=1, keepdims=True)
    half_b -= half_b.mean(axis=1, keepdims=True)
    return images[keep], half_a, half_b


def run_centred(betas: np.ndarray, runs: Sequence | np.ndarray) -> np.ndarray:
    """``(V, N)`` float64 copy of ``betas`` with each run's mean over its trials removed per
    voxel.

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas.
    runs
        ``(N,)`` run label of each trial (any hashable; compared as text).
    """
    runs = np.asarray(runs).astype(str)
    if runs.shape != (np.shape(betas)[1],):
        raise ValueError(f"runs: expected {np.shape(betas)[1]} labels; found {runs.shape}")
    out = np.array(betas, np.float64)
    _, inverse = np.unique(runs, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = np.bincount(inverse)
    sums = np.zeros((out.shape[0], n.size))
    np.add.at(sums.T, inverse, out.T)
    out -= (sums / n)[:, inverse]
    return out


def image_columns(labels: Sequence | np.ndarray, images: Sequence | np.ndarray) -> np.ndarray:
    """``(N,)`` column of each trial's image in ``images``, -1 for a trial of another image
    (labels compared as text)."""
    col = {str(lab): i for i, lab in enumerate(np.asarray(images))}
    return np.array([col.get(str(lab), -1) for lab in np.asarray(labels)], dtype=np.int64)


def image_sums(
    betas: np.ndarray,
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    images: Sequence | np.ndarray,
    presentations: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the sum of its presentations' betas (each run's mean removed first, as in
    :func:`half_means`) and their number: one session's part of an image's mean over other
    sessions (the planted responses from other sessions, docs/comparison.md, "Responses from
    your other sessions").

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas of one session.
    labels, runs
        ``(N,)`` image label and run of each trial.
    images
        ``(I,)`` the images wanted (labels compared as text).
    presentations
        ``(N,)`` bool: the trials summed (None: every trial). The runs' means are those of
        every trial either way.

    Returns
    -------
    sums
        ``(V, I)`` float64, 0 for an image the session does not show.
    counts
        ``(I,)`` int: its presentations.
    """
    centred = run_centred(betas, runs)
    n_images = len(images)
    where = image_columns(labels, images)
    hit = where >= 0
    if presentations is not None:
        hit &= np.asarray(presentations, dtype=bool)
    sums = np.zeros((centred.shape[0], n_images))
    np.add.at(sums.T, where[hit], centred[:, hit].T)
    return sums, np.bincount(where[hit], minlength=n_images)


def plausible_voxels(*means: np.ndarray, bound: float = MAX_RESPONSE_PERCENT) -> np.ndarray:
    """``(V,)`` bool: voxels whose image means are all finite and within ``bound``.

    Parameters
    ----------
    *means
        ``(V, I)`` image means (% signal change), e.g. half A and half B; every array must
        pass.
    bound
        Largest absolute mean, % signal change (default :data:`MAX_RESPONSE_PERCENT`).

    Returns
    -------
    ``(V,)`` bool, True where the voxel can be planted and scored.
    """
    if not means:
        raise ValueError("plausible_voxels needs at least one (V, I) array")
    ok = np.ones(np.shape(means[0])[0], bool)
    for m in means:
        ok &= (np.abs(np.asarray(m, np.float64)) <= bound).all(axis=1)  # NaN and inf fail
    return ok


def planting_amplitude(half_a: np.ndarray, half_b: np.ndarray) -> float:
    """The factor the half-A image means are planted with: the square root of the share of
    their variance that the session's responses explain (median over the given voxels), so
    that the planted series carry about as much response as the data, clipped to
    :data:`AMPLITUDE_RANGE`.

    Parameters
    ----------
    half_a, half_b
        ``(V, I)`` centred half means of the voxels that decide (the visual ROI).
    """
    shared = np.median(np.einsum("ij,ij->i", half_a, half_b))
    total = np.median(np.einsum("ij,ij->i", half_a, half_a))
    share = shared / total if total > 0 else 0.0
    lo, hi = AMPLITUDE_RANGE
    return float(np.clip(np.sqrt(max(share, 0.0)), lo, hi))


def consensus_hrf(indices: np.ndarray) -> np.ndarray:
    """``(V,)`` int: the median (rounded down) over fits of each voxel's library HRF index.

    Parameters
    ----------
    indices
        ``(F, V)`` HRF index (0-based, library order: early to late peak) of each fit.
    """
    a = np.sort(np.asarray(indices, np.int64), axis=0)
    return a[(a.shape[0] - 1) // 2]


def response_curves(stimdur: float) -> tuple[np.ndarray, np.ndarray]:
    """The library HRFs convolved with the stimulus duration, at 0.1 s, each with peak 1.

    Returns
    -------
    times
        ``(n,)`` s after onset.
    curves
        ``(n, H)`` float64.
    """
    curves = convolve_boxcar(library_curves(), stimdur)
    curves = curves / curves.max(axis=0)
    return np.arange(curves.shape[0]) * FINE_DT, curves


def delta_r2star(
    amplitudes: np.ndarray,
    onsets: np.ndarray,
    hrf: np.ndarray,
    slice_time: np.ndarray,
    n_volumes: int,
    tr: float,
    stimdur: float,
    te_ref: float,
    curves: np.ndarray | None = None,
) -> np.ndarray:
    """R2* change of planted responses at each volume's acquisition of each voxel.

    Parameters
    ----------
    amplitudes
        ``(V, n)`` planted response of each voxel to each trial of the run, % of the signal at
        ``te_ref`` (a beta of the reference fit).
    onsets
        ``(n,)`` trial onsets, s from the run's first volume.
    hrf
        ``(V,)`` index of each voxel's response curve (a column of ``curves``).
    slice_time
        ``(V,)`` acquisition time of each voxel's slice within the TR, s.
    n_volumes, tr, stimdur
        Run length, repetition time and stimulus duration (s).
    te_ref
        Echo time of the reference fit's betas, s.
    curves
        ``(n, H)`` response curves (to a trial, peak 1) every :data:`FINE_DT` s from the onset
        (:func:`echoprep.kernels.planted_shape.fit_shape`); None: the library's
        (:func:`response_curves` of ``stimdur``).

    Returns
    -------
    numpy.ndarray
        ``(V, T)`` float32, s^-1 (negative where the planted response raises the signal).
    """
    amplitudes = np.asarray(amplitudes, np.float64)
    onsets = np.asarray(onsets, np.float64)
    if curves is None:
        times, curves = response_curves(stimdur)
    else:
        curves = np.asarray(curves, np.float64)
        times = np.arange(curves.shape[0]) * FINE_DT
    out = np.zeros((amplitudes.shape[0], n_volumes), dtype=np.float32)
    if amplitudes.size == 0 or onsets.size == 0:
        return out
    keys = np.stack([np.asarray(hrf, np.int64), np.round(np.asarray(slice_time) * 1e6)], axis=1)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    acq = np.arange(n_volumes) * float(tr)
    for g, (h, st) in enumerate(groups):
        rows = np.flatnonzero(inverse == g)
        lag = (acq + st / 1e6)[:, None] - onsets[None, :]
        design = np.interp(lag, times, curves[:, int(h)], left=0.0, right=0.0)  # (T, n)
        out[rows] = (-(amplitudes[rows] @ design.T) / (100.0 * te_ref)).astype(np.float32)
    return out


def planted_magnitude(
    magnitude: np.ndarray, dr2star: np.ndarray, te: float, sign: float
) -> np.ndarray:
    """``(V, T)`` float32 magnitude with a planted R2* change: ``magnitude exp(-te sign dR2*)``.

    Parameters
    ----------
    magnitude
        ``(V, T)`` echo magnitude (the voxels that carry a planted response).
    dr2star
        ``(V, T)`` s^-1 (:func:`delta_r2star`).
    te
        Echo time, s.
    sign
        +1 or -1 (the two plantings of opposite sign).
    """
    scale = np.exp(-float(te) * float(sign) * np.asarray(dr2star, np.float64))
    return (np.asarray(magnitude, np.float64) * scale).astype(np.float32)


def optcom_weights(
    t2star: np.ndarray, good_echoes: np.ndarray, echo_times: Sequence[float]
) -> np.ndarray:
    """tedana's T2*-weighted combination weights (``combmode='t2s'``) of a run, frozen.

    ``w_e = TE_e exp(-TE_e / T2*)`` normalised over the echoes each voxel uses: the first
    ``max(2, n)`` echoes where the adaptive mask says ``n`` echoes are good, none where it says
    0 (tedana's ``make_optcom``). Applied to a series planted into the echoes this gives what
    the run's optimal combination contains of it (``tests/unit/test_planted.py`` checks the
    weights against tedana on the same maps).

    Parameters
    ----------
    t2star
        ``(V,)`` T2* of the run's optimal combination, s (tedana's full fit).
    good_echoes
        ``(V,)`` int: the adaptive mask (number of good echoes per voxel).
    echo_times
        ``(E,)`` s.

    Returns
    -------
    numpy.ndarray
        ``(V, E)`` float64 weights summing to 1 per voxel (0 outside the adaptive mask).
    """
    tes = np.asarray(echo_times, np.float64)
    t2 = np.asarray(t2star, np.float64)
    n = np.asarray(good_echoes).astype(np.int64)
    with np.errstate(divide="ignore", over="ignore"):
        w = tes[None, :] * np.exp(-tes[None, :] / np.where(t2 > 0, t2, np.inf)[:, None])
    used = np.arange(tes.size)[None, :] < np.where(n == 1, 2, n)[:, None]
    w = np.where(used & (n[:, None] > 0), w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def splat(values: np.ndarray, coords: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Values given at points of a grid's voxel space, spread onto its voxels (the adjoint of
    trilinear interpolation, normalised by the weights each voxel received).

    Planting into a run's own (native) grid a response defined on the functional grid: the
    native coordinates of each functional voxel in one volume (the run's transform chain)
    receive its value, so the native series carries the response where the head was.

    Parameters
    ----------
    values
        ``(P,)`` values at the points.
    coords
        ``(P, 3)`` point positions in voxel units of the target grid.
    shape
        ``(nx, ny, nz)`` of the target grid.

    Returns
    -------
    numpy.ndarray
        ``shape`` float32; 0 where no point lands within one voxel.
    """
    shape = tuple(int(s) for s in shape)
    c = np.asarray(coords, np.float64)
    v = np.asarray(values, np.float64)
    base = np.floor(c).astype(np.int64)
    frac = c - base
    total = np.zeros(int(np.prod(shape)))
    weight = np.zeros_like(total)
    for corner in range(8):
        offset = np.array([(corner >> k) & 1 for k in range(3)])
        idx = base + offset
        w = np.prod(np.where(offset == 1, frac, 1.0 - frac), axis=1)
        inside = np.all((idx >= 0) & (idx < np.array(shape)), axis=1) & (w > 0)
        flat = np.ravel_multi_index(tuple(idx[inside].T), shape)
        total += np.bincount(flat, weights=w[inside] * v[inside], minlength=total.size)
        weight += np.bincount(flat, weights=w[inside], minlength=weight.size)
    out = np.divide(total, weight, out=np.zeros_like(total), where=weight > 1e-3)
    return out.reshape(shape).astype(np.float32)


__all__ = [
    "AMPLITUDE_RANGE",
    "consensus_hrf",
    "delta_r2star",
    "first_presentations",
    "half_means",
    "image_columns",
    "image_sums",
    "optcom_weights",
    "planted_magnitude",
    "planting_amplitude",
    "presentation_halves",
    "presentation_numbers",
    "read_presentations",
    "repeated_images",
    "response_curves",
    "run_centred",
    "splat",
]
