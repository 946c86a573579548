"""Held-out fidelity: how well a variant's single-trial betas follow the true image responses,
estimated from the data alone.

Why not the noise ceiling
-------------------------
The noise ceiling (NC) and split-half reliability measure how much the repeats of an image agree
with each other. A low-rank projection (NORDIC's patch-wise hard threshold, GLMdenoise PCs that
carry stimulus-locked signal) changes *both* the noise and the signal of every repeat in the same
way, so repeats can agree more while agreeing less with the truth (``docs/comparison.md``).

The held-out fidelity
---------------------
The runs of a session are split into two halves, A and B (alternating in chronological order).
For every voxel, the variant's image means from half A (betas z-scored per run, repeats averaged)
are correlated across images with the *reference's* image means from half B, and vice versa; the
two correlations are averaged. The reference is a variant without any cross-voxel or low-rank
processing (raw data, GLMsingle type-B betas: per-voxel HRF, ordinary least squares, no
GLMdenoise PCs, no ridge). Its half-B betas are ``truth_B + e_B`` with errors ``e_B`` that are
independent of everything computed from half A, so

``cov(variant_A, reference_B) = cov(variant_A, truth)``

and, because the reference is the same for every variant, the held-out correlation ranks the
variants as their correlation with the true image responses does (up to a per-voxel factor
common to all variants). What a variant shares across its own repeats but not with the truth
(a projection, an imprint of the noise pool) cannot raise it. It needs images shown in both
halves and a reference whose half-B image means carry some signal; its precision is reported
(image bootstrap) so that a margin can be read against its noise.

Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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


def _weighted_correlation(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(B, V)`` correlation of rows of ``x`` and ``y`` (``(V, I)``) under image weights
    ``w`` ``(B, I)`` (bootstrap counts)."""
    n = w.sum(axis=1)[:, None]
    sx, sy = w @ x.T, w @ y.T
    sxx, syy, sxy = w @ (x * x).T, w @ (y * y).T, w @ (x * y).T
    cov = sxy - sx * sy / n
    vx = sxx - sx * sx / n
    vy = syy - sy * sy / n
    den = np.sqrt(np.clip(vx, 0, None) * np.clip(vy, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, cov / den, np.nan)


@dataclass(frozen=True)
class HeldoutFidelity:
    """Result of :func:`heldout_fidelity`.

    Attributes
    ----------
    r
        ``(V,)`` held-out correlation per voxel (mean of the A→B and B→A correlations; NaN
        where undefined).
    median
        Median of ``r`` over the voxels where it is defined.
    n_images
        Images with trials in both halves (the correlations run over these).
    bootstrap
        ``(n_boot,)`` medians of ``r`` over image-resampled replicates (the same replicates
        for every variant given the same ``seed``, so differences between variants are paired).
    """

    r: np.ndarray
    median: float
    n_images: int
    bootstrap: np.ndarray = field(default_factory=lambda: np.empty(0))


def shared_images(labels: Sequence | np.ndarray, half_a: np.ndarray) -> np.ndarray:
    """Sorted images with at least one trial in each half."""
    labels = np.asarray(labels)
    return np.intersect1d(labels[half_a], labels[~half_a])


def heldout_fidelity(
    variant: np.ndarray,
    reference: np.ndarray,
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    *,
    n_boot: int = 0,
    seed: int = 0,
) -> HeldoutFidelity:
    """Held-out correlation of a variant's image means with an independent reference.

    Parameters
    ----------
    variant, reference
        ``(V, N)`` single-trial betas of the same voxels and trials (the variant's and the
        reference's); any units (each is z-scored within runs first).
    labels
        ``(N,)`` image label of each trial.
    runs
        ``(N,)`` run label of each trial (trials in chronological order).
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
    half_a = split_halves(runs)
    images = shared_images(labels, half_a)
    if images.size < 3:
        raise ValueError(
            "held-out fidelity: expected at least 3 images shown in both halves of the runs; "
            f"found {images.size}. Fix: the comparison needs images repeated across runs"
        )
    zv = zscore_within(variant, runs)
    zr = zscore_within(reference, runs)
    pairs = []
    for mine, other in ((half_a, ~half_a), (~half_a, half_a)):
        x = image_means(zv[:, mine], labels[mine], images)
        y = image_means(zr[:, other], labels[other], images)
        pairs.append((x, y))
    r = np.nanmean(np.stack([rowwise_correlation(x, y) for x, y in pairs]), axis=0)
    median = float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
    boot = np.empty(0)
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        w = rng.multinomial(images.size, np.full(images.size, 1.0 / images.size), size=n_boot)
        w = w.astype(np.float64)
        rb = np.nanmean(np.stack([_weighted_correlation(x, y, w) for x, y in pairs]), axis=0)
        boot = np.nanmedian(rb, axis=1)
    return HeldoutFidelity(r=r, median=median, n_images=int(images.size), bootstrap=boot)


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
    "HeldoutFidelity",
    "heldout_fidelity",
    "image_means",
    "rowwise_correlation",
    "shared_images",
    "split_half_reliability",
    "split_halves",
    "truth_fidelity",
]
