"""How faithfully a variant's betas follow responses planted into the session's own data.

Each variant's chain was run on the session's echoes with the planted responses added and
subtracted (:mod:`echoprep.stages.planted`); half their difference, fitted with the variant's
own frozen GLM, is what its published betas contain of the planted responses (``recovered``).
The planted response of image ``i`` is the session's own response to another image measured at
its first presentation (``planted``, half A); the truth it is scored against is the same
response measured at the later presentations (``truth``, half B), whose noise is independent
(:mod:`echoprep.kernels.planted`). Per voxel of the comparison's ROI:

- the **gain** of the variant for responses like the session's,
  ``kappa = cov(recovered image means, truth) / cov(planted, truth)`` (attenuation, spatial
  mixing and the leakage of neighbouring trials all lower it; noise planted with half A does
  not count, as half B's noise is independent of it);
- the **amplitude** of the session's responses, ``s``: the half-A/half-B covariance of the
  reference fit (plain least squares), smoothed over the ROI, divided by the reference fit's
  own gain for the planted responses (so that a shape of the response the library HRF misses
  counts the same in both);
- the estimated correlation of the variant's repeat-averaged betas (z-scored per run, as
  published and averaged) with the true image responses: ``r = kappa s / sd(image means)``,
  the median over the ROI (``planted_r``); for single trials ``kappa_trial s / sd(betas)``
  (``planted_trial_r``).

With ``r = cov(M, S) / (sd(M) sd(S))`` for image means ``M`` and true responses ``S``, and
``cov(M, S) = kappa var(S)`` for a linear chain, this is the correlation itself; the planting
measures ``kappa`` on responses with the session's own spatial structure, and ``sd(M)`` is the
variant's, noise and all. docs/comparison.md, "Responses planted in your data", gives the
checks against simulated truth.

Image-bootstrap replicates resample the planted images (the same draw for every variant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from echoprep.kernels.noiseceiling import zscore_within

#: Smoothing (Gaussian sigma, mm) of the response amplitude over the ROI: the per-voxel
#: half-A/half-B covariance is too noisy to take voxel by voxel.
SMOOTHING_MM = 6.0


@dataclass(frozen=True)
class PlantedTruth:
    """A session's planted responses over the comparison's voxels.

    Attributes
    ----------
    images
        ``(I,)`` labels of the images that received a planted response.
    planted
        ``(V, I)`` the response planted for each image (half A of its source image), in the
        reference fit's units.
    truth
        ``(V, I)`` the same source image's half B (the truth scored against).
    amplitude
        ``(V,)`` the session's response amplitude ``s`` in the same units (module docstring).
    factor
        The planting factor: the series carried ``factor * planted``.
    """

    images: np.ndarray
    planted: np.ndarray
    truth: np.ndarray
    amplitude: np.ndarray
    factor: float


@dataclass
class VariantFidelity:
    """One variant's planted estimates (:func:`variant_fidelity`).

    Attributes
    ----------
    r, trial_r
        ``(B + 1,)`` median over the voxels of the estimated correlation with the true image
        responses, for repeat averages and single trials; entry 0 the estimate, 1..B the image
        bootstrap.
    gain
        ``(V,)`` per-voxel gain ``kappa`` (estimate).
    binned
        ``(K, 2)`` the planted truth against the recovered image responses, each standardised
        per voxel, averaged in K quantile bins of the truth (the report's figure).
    """

    r: np.ndarray
    trial_r: np.ndarray
    gain: np.ndarray
    binned: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))


def _wcov(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted covariance of rows of ``x`` and ``y`` over columns, for each weight row.

    ``x``, ``y``: ``(V, I)``; ``w``: ``(B, I)`` non-negative. Returns ``(B, V)``.
    """
    sw = w.sum(axis=1, keepdims=True)
    mx = (w @ x.T) / sw
    my = (w @ y.T) / sw
    return (w @ (x * y).T) / sw - mx * my


def smooth_in_mask(
    values: np.ndarray, voxels: np.ndarray, shape: Sequence[int], sigma_vox: Sequence[float]
) -> np.ndarray:
    """Gaussian smoothing of values given at some voxels, normalised by the voxels present
    (no value leaks in from outside them).

    Parameters
    ----------
    values
        ``(V,)``.
    voxels
        ``(V, 3)`` int voxel indices in a grid of ``shape``.
    sigma_vox
        Gaussian sigma per axis, voxels (0: no smoothing along it).
    """
    idx = tuple(np.asarray(voxels, np.int64).T)
    grid = np.zeros(tuple(int(s) for s in shape))
    present = np.zeros_like(grid)
    grid[idx] = values
    present[idx] = 1.0
    num = ndimage.gaussian_filter(grid, sigma_vox, mode="constant")
    den = ndimage.gaussian_filter(present, sigma_vox, mode="constant")
    return np.divide(num[idx], den[idx], out=np.zeros(len(values)), where=den[idx] > 1e-6)


def response_amplitude(
    planted: np.ndarray,
    truth: np.ndarray,
    reference_gain: float,
    voxels: np.ndarray,
    shape: Sequence[int],
    voxel_size_mm: Sequence[float],
    smoothing_mm: float = SMOOTHING_MM,
) -> np.ndarray:
    """``(V,)`` the session's response amplitude per voxel: the half-A/half-B covariance over
    images, smoothed over the voxels given, clipped at 0, square root, divided by the
    reference fit's gain for the planted responses (1: unknown)."""
    shared = (planted * truth).mean(axis=1) - planted.mean(axis=1) * truth.mean(axis=1)
    sigma = [smoothing_mm / float(s) if smoothing_mm > 0 else 0.0 for s in voxel_size_mm]
    smooth = smooth_in_mask(shared, voxels, shape, sigma)
    gain = reference_gain if np.isfinite(reference_gain) and reference_gain > 0 else 1.0
    return np.sqrt(np.clip(smooth, 0.0, None)) / gain


def reference_gain(recovered_means: np.ndarray, planted: np.ndarray, truth: np.ndarray) -> float:
    """The reference fit's gain for the planted responses, pooled over the voxels:
    ``sum cov(recovered, truth) / sum cov(planted, truth)`` (image means, ``(V, I)`` each)."""
    w = np.ones((1, planted.shape[1]))
    num = np.nansum(_wcov(recovered_means, truth, w))
    den = np.nansum(_wcov(planted, truth, w))
    return float(num / den) if den > 0 else float("nan")


def image_columns(labels: Sequence | np.ndarray, images: np.ndarray) -> np.ndarray:
    """``(N,)`` column of each trial's image in ``images``, -1 for a trial of another image."""
    col = {str(lab): i for i, lab in enumerate(images)}
    return np.array([col.get(str(lab), -1) for lab in labels], dtype=np.int64)


def recovered_z(
    recovered: np.ndarray, betas: np.ndarray, runs: Sequence | np.ndarray, factor: float
) -> np.ndarray:
    """The recovered planted betas in the units of the published betas z-scored per run: each
    run divided by the SD of that run's betas (the z-scoring's scale), its mean removed (the
    z-scoring's centring), and divided by the planting factor (``(V, N)``)."""
    runs = np.asarray(runs).astype(str)
    out = np.empty(recovered.shape, dtype=np.float64)
    for r in np.unique(runs):
        c = runs == r
        sd = np.asarray(betas, np.float64)[:, c].std(axis=1, keepdims=True)
        d = np.divide(
            recovered[:, c], sd, out=np.zeros((recovered.shape[0], c.sum())), where=sd > 0
        )
        out[:, c] = d - d.mean(axis=1, keepdims=True)
    return out / float(factor)


def _means(x: np.ndarray, cols: np.ndarray, n_images: int) -> np.ndarray:
    """``(V, I)`` mean of the trials of each image (columns ``cols``; -1 left out)."""
    keep = cols >= 0
    total = np.zeros((x.shape[0], n_images))
    np.add.at(total.T, cols[keep], x[:, keep].T)
    n = np.bincount(cols[keep], minlength=n_images)
    return total / np.maximum(n, 1)


def bootstrap_weights(n_images: int, replicates: int, seed: int) -> np.ndarray:
    """``(B + 1, I)`` image weights: row 0 all ones (the estimate), rows 1..B multinomial
    counts of an image bootstrap (the same for every variant of a session)."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=replicates)
    return np.vstack([np.ones((1, n_images)), draws]).astype(np.float64)


def variant_fidelity(
    betas: np.ndarray,
    recovered: np.ndarray,
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    truth: PlantedTruth,
    weights: np.ndarray,
    bins: int = 15,
) -> VariantFidelity:
    """The planted estimates of one variant (module docstring).

    Parameters
    ----------
    betas
        ``(V, N)`` the variant's published single-trial betas over the comparison's voxels.
    recovered
        ``(V, N)`` what they contain of the planted responses (half the difference of the
        fits with the responses added and subtracted), same units.
    labels, runs
        ``(N,)`` image and run label of each trial.
    truth
        The session's planted truth over the same voxels.
    weights
        ``(B + 1, I)`` image weights (:func:`bootstrap_weights`).
    bins
        Quantile bins of the binned planted-against-recovered curve.
    """
    cols = image_columns(labels, truth.images)
    n_img = len(truth.images)
    z = zscore_within(np.asarray(betas, np.float64), np.asarray(runs).astype(str))
    rz = recovered_z(recovered, betas, runs, truth.factor)
    m = _means(z, cols, n_img)
    g = _means(rz, cols, n_img)
    den = _wcov(truth.planted, truth.truth, weights)  # (B+1, V)
    num = _wcov(g, truth.truth, weights)
    var_m = _wcov(m, m, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = num / den
        r = gain * truth.amplitude[None, :] / np.sqrt(var_m)
    # single trials: each trial weighted by its image's bootstrap count
    planted_trials = cols >= 0
    tw = weights[:, cols[planted_trials]]
    zt = z[:, planted_trials]
    rt = rz[:, planted_trials]
    qt = truth.truth[:, cols[planted_trials]]
    num_t = _wcov(rt, qt, tw)
    var_t = _wcov(zt, zt, tw)
    with np.errstate(divide="ignore", invalid="ignore"):
        trial_r = (num_t / den) * truth.amplitude[None, :] / np.sqrt(var_t)
    return VariantFidelity(
        r=_median(r),
        trial_r=_median(trial_r),
        gain=gain[0],
        binned=binned_transfer(g, truth.truth, bins),
    )


def _median(values: np.ndarray) -> np.ndarray:
    """Row-wise median over finite values (NaN for a row without any)."""
    out = np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        ok = np.isfinite(row)
        if ok.any():
            out[i] = float(np.median(row[ok]))
    return out


def binned_transfer(recovered_means: np.ndarray, truth: np.ndarray, bins: int) -> np.ndarray:
    """``(K, 2)``: the planted truth (half B) and the recovered image responses, each
    standardised per voxel over images, averaged within ``K`` quantile bins of the truth over
    every voxel and image. The slope is the correlation of what the betas carry of the planted
    responses with them (1: nothing lost to attenuation-free distortion, mixing or leakage)."""

    def standardised(x: np.ndarray) -> np.ndarray:
        sd = x.std(axis=1, keepdims=True)
        return np.divide(
            x - x.mean(axis=1, keepdims=True), sd, out=np.full(x.shape, np.nan), where=sd > 0
        )

    x = standardised(truth).ravel()
    y = standardised(recovered_means).ravel()
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size < bins:
        return np.empty((0, 2))
    edges = np.quantile(x, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    keep = counts > 0
    bx = np.bincount(which, weights=x, minlength=bins)[keep] / counts[keep]
    by = np.bincount(which, weights=y, minlength=bins)[keep] / counts[keep]
    return np.column_stack([bx, by])


def session_fidelity(
    variants: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: Sequence | np.ndarray,
    runs: Sequence | np.ndarray,
    truth: PlantedTruth,
    replicates: int,
    seed: int,
) -> dict[str, VariantFidelity]:
    """:func:`variant_fidelity` of every variant of a session with one image bootstrap.

    Parameters
    ----------
    variants
        variant -> ``(betas, recovered)``, each ``(V, N)`` over the same voxels and trials.
    """
    weights = bootstrap_weights(len(truth.images), replicates, seed)
    return {
        v: variant_fidelity(b, rec, labels, runs, truth, weights)
        for v, (b, rec) in variants.items()
    }


__all__ = [
    "SMOOTHING_MM",
    "PlantedTruth",
    "VariantFidelity",
    "binned_transfer",
    "bootstrap_weights",
    "image_columns",
    "recovered_z",
    "reference_gain",
    "response_amplitude",
    "session_fidelity",
    "smooth_in_mask",
    "variant_fidelity",
]
