"""Held-out fidelity: how well a variant's repeat-averaged betas follow the true image
responses, estimated from the data alone.

Why not the noise ceiling
-------------------------
The noise ceiling (NC) and split-half reliability measure how much the repeats of an image agree
with each other. A low-rank projection (NORDIC's patch-wise hard threshold, GLMdenoise PCs that
carry stimulus-locked signal) changes *both* the noise and the signal of every repeat in the same
way, so repeats can agree more while agreeing less with the truth (``docs/comparison.md``).

The held-out fidelity
---------------------
The runs of a session are split into two halves, A and B, in one or more balanced ways
(:func:`run_splits`). Every variant, and the reference, is fitted on each half separately, so
each half's image means (betas z-scored per run, repeats averaged) are the truth plus errors
from that half's data only. With ``x`` the variant's and ``y`` the reference's image means, per
voxel and split::

    rho = 1/2 [cov(x_A, y_B) + cov(x_B, y_A)] / sqrt(var(x_all) var(y_all))

where ``x_all``, ``y_all`` are the image means over all runs (the fits the user publishes). The
errors of ``x_A`` and ``y_B`` are independent, so the numerator estimates ``k cov(x_all, truth)``
with a factor ``k`` (the reference's scale) common to all variants, and dividing by the spread of
the ALL-repeat image means makes ``rho`` proportional to ``corr(x_all, truth)``: the fidelity of
what users average and publish, not of half the repeats. A projection that makes a variant's
repeats agree with each other but not with the truth cannot raise it.

The common factor is the reference's own all-repeat fidelity ``c``, estimated from its halves:
``c^2 = median over voxels of cov(y_A, y_B) / var(y_all)``; ``median(rho) / c`` is on the scale of a
correlation with the truth (``truth_scale``), which turns margins into truth-equivalent units
(over 144 simulated sessions: correlation 0.99 with the true median r, mean bias +0.01; the
median of per-voxel square roots was biased upwards at low SNR).
**Single trials.** The betas are z-scored per run, so every variant's single trials have unit
variance, and the covariance over trials of a half's single-trial betas with the other half's
reference image means is the covariance of the image means (trial-count weighted; equal with
equal repeats). ``rho_trial = 1/2 [cov(x_A, y_B) + cov(x_B, y_A)] / sd(y_all)`` is therefore
proportional to the correlation of the SINGLE-TRIAL betas with the true image responses
(``corr(b_trial, truth_image)``), with the same common factor; ``median(rho_trial) / c`` is on
the scale of that correlation. What a trial adds to its image's response (trial-to-trial
variability) is never repeated, so no data-only measure can tell it from noise: this is the
single trials' fidelity to the image responses, what decoding or encoding of single trials
relies on.

Its precision comes from an image bootstrap (the same resampled images for every variant given
the same seed, so differences between variants are paired).

Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from echoprep.kernels.noiseceiling import zscore_within


def split_halves(runs: Sequence | np.ndarray) -> np.ndarray:
    """``(N,)`` bool: True for trials in half A (1st, 3rd, 5th, ... run in order of appearance).

    Parameters
    ----------
    runs
        ``(N,)`` run label of each trial, trials in chronological order.

    Raises
    ------
    ValueError
        Fewer than 2 runs.
    """
    runs = np.asarray(runs)
    labels, first = np.unique(runs, return_index=True)
    order = labels[np.argsort(first)]
    if len(order) < 2:
        raise ValueError(
            f"held-out fidelity: expected at least 2 runs to split; found {len(order)}"
        )
    half_a = set(order[0::2].tolist())
    return np.array([r in half_a for r in runs.tolist()], bool)


def image_means(
    betas: np.ndarray, labels: Sequence | np.ndarray, images: Sequence | np.ndarray
) -> np.ndarray:
    """``(V, I)`` mean of each image's trials (NaN for an image without trials).

    Parameters
    ----------
    betas
        ``(V, N)`` betas.
    labels
        ``(N,)`` image label of each trial.
    images
        ``(I,)`` the images (columns of the result), in that order.
    """
    betas = np.asarray(betas, np.float64)
    labels = np.asarray(labels)
    images = np.asarray(images)
    index = {v: i for i, v in enumerate(images.tolist())}
    col = np.array([index.get(v, -1) for v in labels.tolist()], int)
    keep = col >= 0
    onehot = np.zeros((len(images), betas.shape[1]))
    onehot[col[keep], np.flatnonzero(keep)] = 1.0
    counts = onehot.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (betas @ onehot.T) / counts


def rowwise_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(V,)`` Pearson correlation of each row of ``x`` with the same row of ``y``.

    NaN where a row has zero variance. ``x`` and ``y`` are ``(V, I)``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=1) / den, np.nan)


#: Patterns of the balanced run splits, tried in this order (A: half A, B: half B; repeated
#: over the runs in chronological order): alternating runs, then ABBA, then pairs.
SPLIT_PATTERNS: tuple[str, ...] = ("AB", "ABBA", "AABB")


def run_splits(n_runs: int, max_splits: int = 2) -> list[np.ndarray]:
    """Balanced splits of ``n_runs`` runs (in chronological order) into halves A and B.

    The patterns of :data:`SPLIT_PATTERNS`, repeated over the runs; a pattern is used when its
    halves differ by at most one run and it is not a split already chosen (or its mirror).

    Parameters
    ----------
    n_runs
        Runs of the session (>= 2).
    max_splits
        Most splits returned (>= 1).

    Returns
    -------
    list of numpy.ndarray
        ``(n_runs,)`` bool per split, True for the runs of half A (the first run is in A).

    Raises
    ------
    ValueError
        Fewer than 2 runs or ``max_splits`` < 1.
    """
    if n_runs < 2:
        raise ValueError(f"held-out fidelity: expected at least 2 runs to split; found {n_runs}")
    if max_splits < 1:
        raise ValueError(f"held-out fidelity: expected max_splits >= 1; found {max_splits}")
    out: list[np.ndarray] = []
    for pattern in SPLIT_PATTERNS:
        half_a = np.array([pattern[i % len(pattern)] == "A" for i in range(n_runs)])
        if abs(2 * int(half_a.sum()) - n_runs) > 1 or half_a.all():
            continue
        if any(np.array_equal(half_a, s) or np.array_equal(~half_a, s) for s in out):
            continue
        out.append(half_a)
        if len(out) == max_splits:
            break
    return out


@dataclass(frozen=True)
class SplitMeans:
    """Image means of one variant for one split of the runs.

    Attributes
    ----------
    a, b
        ``(V, I)`` image means from the fit on half A and on half B.
    full
        ``(V, I)`` image means of the same images from the fit on all runs.
    images
        ``(I,)`` the images (columns), when known.
    """

    a: np.ndarray
    b: np.ndarray
    full: np.ndarray
    images: np.ndarray | None = None


@dataclass(frozen=True)
class HeldoutFidelity:
    """Result of :func:`heldout_fidelity`.

    Attributes
    ----------
    r
        ``(V,)`` held-out fidelity per voxel (``rho`` of the module doc, averaged over splits;
        NaN where undefined).
    median
        Median of ``r`` over the voxels where it is defined.
    reliability
        ``sqrt(median over voxels of cov(y_A, y_B) / var(y_all))`` (averaged over splits): the
        reference's all-repeat fidelity in the ROI (NaN when that median is not positive).
    truth_scale
        ``median / reliability``: the held-out fidelity on the scale of a correlation with the
        truth (NaN when the reference carries no signal).
    trial_r
        ``(V,)`` the single-trial fidelity ``rho_trial`` per voxel (averaged over splits).
    trial_median, trial_truth_scale
        Its median and ``trial_median / reliability``.
    trial_bootstrap
        ``(n_boot,)`` medians of ``trial_r`` over the same replicates as ``bootstrap``.
    n_images
        Images in both halves, summed over splits.
    n_splits
        Splits averaged.
    bootstrap
        ``(n_boot,)`` medians of ``r`` over image-resampled replicates (the same replicates for
        every variant given the same ``seed``, so differences between variants are paired).
    """

    r: np.ndarray
    median: float
    reliability: float
    truth_scale: float
    trial_r: np.ndarray
    trial_median: float
    trial_truth_scale: float
    n_images: int
    n_splits: int
    bootstrap: np.ndarray = field(default_factory=lambda: np.empty(0))
    trial_bootstrap: np.ndarray = field(default_factory=lambda: np.empty(0))


def shared_images(labels: Sequence | np.ndarray, half_a: np.ndarray) -> np.ndarray:
    """Sorted images with at least one trial in each half."""
    labels = np.asarray(labels)
    return np.intersect1d(labels[half_a], labels[~half_a])


def _moments(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(B, V)`` covariance over images of rows of ``x`` and ``y`` (``(V, I)``) under image
    weights ``w`` ``(B, I)`` (each row summing to the number of images)."""
    n = w.sum(axis=1)[:, None]
    return (w @ (x * y).T) / n - (w @ x.T) * (w @ y.T) / (n * n)


def _split_terms(
    variant: SplitMeans, reference: SplitMeans, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B, V)`` rho, c^2 and rho_trial of one split under image weights ``w`` ``(B, I)``."""
    cross = 0.5 * (_moments(w, variant.a, reference.b) + _moments(w, variant.b, reference.a))
    vx = np.clip(_moments(w, variant.full, variant.full), 0, None)
    vy = np.clip(_moments(w, reference.full, reference.full), 0, None)
    own = _moments(w, reference.a, reference.b)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where((vx > 0) & (vy > 0), cross / np.sqrt(vx * vy), np.nan)
        c2 = np.where(vy > 0, own / vy, np.nan)
        trial = np.where(vy > 0, cross / np.sqrt(vy), np.nan)
    return rho, c2, trial


def quiet_nanmedian(x: np.ndarray, axis: int | None = None) -> Any:
    """:func:`numpy.nanmedian` without warnings for all-NaN slices (NaN there)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=axis)


def heldout_fidelity(
    variant: Sequence[SplitMeans],
    reference: Sequence[SplitMeans],
    *,
    n_boot: int = 0,
    seed: int = 0,
) -> HeldoutFidelity:
    """Held-out fidelity of a variant's all-repeat image means against an independent
    reference (module doc).

    Parameters
    ----------
    variant, reference
        One :class:`SplitMeans` per split, of the same voxels and images (split by split).
    n_boot
        Image-bootstrap replicates of the median (0: none).
    seed
        Seed of the bootstrap.

    Returns
    -------
    HeldoutFidelity

    Raises
    ------
    ValueError
        No split, splits that differ in number or shape, or fewer than 3 images in a split.
    """
    if not variant or len(variant) != len(reference):
        raise ValueError(
            "held-out fidelity: expected the same splits (at least one) for the variant and the "
            f"reference; found {len(variant)} and {len(reference)}"
        )
    for i, (v, ref) in enumerate(zip(variant, reference, strict=True)):
        shapes = {np.shape(m) for m in (v.a, v.b, v.full, ref.a, ref.b, ref.full)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(
                f"held-out fidelity: split {i + 1}: expected image means of one shape (voxels, "
                f"images); found {sorted(shapes)}"
            )
        if np.shape(v.a)[1] < 3:
            raise ValueError(
                f"held-out fidelity: split {i + 1}: expected at least 3 images shown in both "
                f"halves of the runs; found {np.shape(v.a)[1]}. Fix: the comparison needs "
                "images repeated across runs"
            )
    rhos, cs, trials, boots, tboots = [], [], [], [], []
    rng = np.random.default_rng(seed)
    for v, ref in zip(variant, reference, strict=True):
        n_img = np.shape(v.a)[1]
        v64 = SplitMeans(*(np.asarray(m, np.float64) for m in (v.a, v.b, v.full)), v.images)
        r64 = SplitMeans(*(np.asarray(m, np.float64) for m in (ref.a, ref.b, ref.full)), None)
        rho, c, trial = _split_terms(v64, r64, np.ones((1, n_img)))
        rhos.append(rho[0])
        cs.append(c[0])
        trials.append(trial[0])
        if n_boot > 0:
            w = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=n_boot).astype(float)
            brho, _, btrial = _split_terms(v64, r64, w)
            boots.append(brho)
            tboots.append(btrial)

    def over_splits(per_split: list[np.ndarray]) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack(per_split), axis=0)

    def median_of(x: np.ndarray) -> float:
        return float(quiet_nanmedian(x)) if np.isfinite(x).any() else math.nan

    def boot_medians(per_split: list[np.ndarray]) -> np.ndarray:
        if not per_split:
            return np.empty(0)
        return np.asarray(quiet_nanmedian(over_splits(per_split), axis=1), np.float64)

    r, c, trial_r = over_splits(rhos), over_splits(cs), over_splits(trials)
    median, trial_median, c2_med = median_of(r), median_of(trial_r), median_of(c)
    c_med = math.sqrt(c2_med) if math.isfinite(c2_med) and c2_med > 0 else math.nan
    return HeldoutFidelity(
        r=r,
        median=median,
        reliability=c_med,
        truth_scale=median / c_med if math.isfinite(c_med) else math.nan,
        trial_r=trial_r,
        trial_median=trial_median,
        trial_truth_scale=trial_median / c_med if math.isfinite(c_med) else math.nan,
        n_images=int(sum(np.shape(v.a)[1] for v in variant)),
        n_splits=len(variant),
        bootstrap=boot_medians(boots),
        trial_bootstrap=boot_medians(tboots),
    )


def split_means(
    betas: np.ndarray,
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    *,
    max_splits: int = 2,
) -> list[SplitMeans]:
    """:class:`SplitMeans` of every split from ONE set of single-trial betas (halves taken from
    the same fit rather than fitted apart): for betas whose processing acts run by run, as in
    the tests and benchmarks; the workflow fits each half separately (``echoprep glm-heldout``).

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas, trials in chronological order.
    labels, runs
        ``(N,)`` image and run label of each trial.
    max_splits
        Most splits (:func:`run_splits`).
    """
    labels = np.asarray(labels)
    runs = np.asarray(runs)
    order = list(dict.fromkeys(runs.tolist()))
    z = zscore_within(betas, runs)
    out = []
    for half_runs in run_splits(len(order), max_splits):
        in_a = {r for r, a in zip(order, half_runs, strict=True) if a}
        half_a = np.array([r in in_a for r in runs.tolist()], bool)
        images = shared_images(labels, half_a)
        out.append(
            SplitMeans(
                image_means(z[:, half_a], labels[half_a], images),
                image_means(z[:, ~half_a], labels[~half_a], images),
                image_means(z, labels, images),
                images,
            )
        )
    return out


def heldout_from_betas(
    variant: np.ndarray,
    reference: np.ndarray,
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    *,
    max_splits: int = 2,
    n_boot: int = 0,
    seed: int = 0,
) -> HeldoutFidelity:
    """:func:`heldout_fidelity` of two sets of single-trial betas ``(V, N)`` of the same voxels
    and trials, halves from the same fits (:func:`split_means`).

    Raises
    ------
    ValueError
        Shapes that differ, fewer than 2 runs, or fewer than 3 images shown in both halves.
    """
    variant = np.asarray(variant)
    reference = np.asarray(reference)
    if variant.shape != reference.shape or variant.ndim != 2:
        raise ValueError(
            "held-out fidelity: expected variant and reference betas of one shape (voxels, "
            f"trials); found {variant.shape} and {reference.shape}"
        )
    labels = np.asarray(labels)
    runs = np.asarray(runs)
    if labels.shape != (variant.shape[1],) or runs.shape != labels.shape:
        raise ValueError(
            f"held-out fidelity: expected one label and run per trial ({variant.shape[1]}); "
            f"found {labels.shape[0]} labels and {runs.shape[0]} runs"
        )
    return heldout_fidelity(
        split_means(variant, labels, runs, max_splits=max_splits),
        split_means(reference, labels, runs, max_splits=max_splits),
        n_boot=n_boot,
        seed=seed,
    )


def split_half_reliability(
    betas: np.ndarray, labels: Sequence | np.ndarray, runs: Sequence | np.ndarray
) -> np.ndarray:
    """``(V,)`` correlation of a variant's half-A image means with its own half-B image means.

    A repeat-agreement measure like the noise ceiling (it rises when a projection makes the
    repeats agree, whether or not with the truth); shown for contrast.
    """
    labels = np.asarray(labels)
    runs = np.asarray(runs)
    half_a = split_halves(runs)
    images = shared_images(labels, half_a)
    z = zscore_within(betas, runs)
    return rowwise_correlation(
        image_means(z[:, half_a], labels[half_a], images),
        image_means(z[:, ~half_a], labels[~half_a], images),
    )


def truth_fidelity(
    betas: np.ndarray,
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    true_means: np.ndarray,
    true_images: Sequence | np.ndarray,
) -> np.ndarray:
    """``(V,)`` correlation of the repeat-averaged betas (z-scored per run) with the true image
    means (simulations only: the benchmarks' ground truth).

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas.
    labels, runs
        ``(N,)`` image and run label of each trial.
    true_means
        ``(V, I)`` true mean response of each voxel to each image.
    true_images
        ``(I,)`` the images of the columns of ``true_means`` (same label type as ``labels``).
    """
    labels = np.asarray(labels)
    true_images = np.asarray(true_images)
    z = zscore_within(betas, runs)
    shown = np.isin(true_images, labels)
    means = image_means(z, labels, true_images[shown])
    return rowwise_correlation(means, np.asarray(true_means, np.float64)[:, shown])


__all__ = [
    "SPLIT_PATTERNS",
    "HeldoutFidelity",
    "SplitMeans",
    "heldout_fidelity",
    "heldout_from_betas",
    "image_means",
    "quiet_nanmedian",
    "rowwise_correlation",
    "run_splits",
    "shared_images",
    "split_half_reliability",
    "split_halves",
    "split_means",
    "truth_fidelity",
]
