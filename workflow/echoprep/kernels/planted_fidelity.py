"""How faithfully a variant's betas follow responses planted into the session's own data.

Each variant's chain was run, with the run's own decisions, on the session's echoes with the
planted responses added and subtracted (:mod:`echoprep.stages.comparison.planting`); half their
difference, fitted with the variant's own frozen GLM, is what its published betas contain of
the planted responses (``recovered``), read at the half-A presentations. The planted response
of image ``i`` is a small copy of the session's own response to it measured at its odd-numbered
presentations (``planted``, half A); the truth it is scored against is the same response
measured at its even-numbered presentations (``truth``, half B), whose noise is independent
(:mod:`echoprep.kernels.planted`). Per voxel
of the comparison's ROI, with covariances over images smoothed over the ROI (a voxel's own are
too noisy: the response explains a few % of a single presentation's variance):

- the session's response variance ``S = smooth(cov(planted, truth))`` (in the reference fit's
  units: half A and half B share only the response);
- what the variant's betas carry of it, ``N = smooth(cov(recovered image means, truth))``, in
  the units of the published betas z-scored per run (attenuation, spatial mixing and the
  leakage of neighbouring trials all lower it; noise planted with half A does not count, as
  half B's noise is independent of it); ``N / S`` is the variant's gain;
- the estimated correlation of the variant's repeat-averaged betas (z-scored per run, as
  published and averaged) with the true image responses:
  ``r = N / (sqrt(S) g_ref sd(image means))``, the median over the ROI (``planted_r``), where
  ``g_ref`` is the reference fit's own gain for the planted responses (so that a shape of the
  response the library HRF misses counts the same in ``S`` and ``N``); for single trials the
  same with each trial against its image's truth and ``sd(betas)`` (``planted_trial_r``).
  Each voxel is read through its neighbourhood's covariances, so the median of these readings
  follows the mean of the voxels' own correlations rather than their median where those are
  skewed (docs/comparison.md, "The reading follows the mean over the voxels").

With ``r = cov(M, R) / (sd(M) sd(R))`` for image means ``M`` and true responses ``R``, and
``cov(M, R) = gain var(R)`` for a linear chain, this is the correlation itself; the planting
measures the gain on the session's own responses through the chains' own decisions, and
``sd(M)`` is the variant's, noise and all. docs/comparison.md, "Responses planted in your
data", gives the checks against simulated truth.

Image-bootstrap replicates resample the planted images (the same draw for every variant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from echoprep.kernels.fidelity import image_means
from echoprep.kernels.noiseceiling import zscore_within
from echoprep.kernels.planted import image_columns, read_presentations, repeated_images

#: Smoothing (Gaussian sigma, mm) of the covariances over the ROI.
SMOOTHING_MM = 6.0


class Smoother:
    """Gaussian smoothing of values given at some voxels of a grid, normalised by the voxels
    present (no value leaks in from outside them).

    Parameters
    ----------
    voxels
        ``(V, 3)`` int voxel indices in a grid of ``shape``.
    shape
        The grid.
    sigma_vox
        Gaussian sigma per axis, voxels (all 0: no smoothing).
    """

    def __init__(
        self, voxels: np.ndarray, shape: Sequence[int], sigma_vox: Sequence[float]
    ) -> None:
        self.index = tuple(np.asarray(voxels, np.int64).T)
        self.shape = tuple(int(s) for s in shape)
        self.sigma = [float(s) for s in sigma_vox]
        self.active = any(s > 0 for s in self.sigma)
        if self.active:
            present = np.zeros(self.shape)
            present[self.index] = 1.0
            self.weight = ndimage.gaussian_filter(present, self.sigma, mode="constant")[self.index]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """``(..., V)`` values smoothed over the voxels (each leading row apart)."""
        values = np.asarray(values, np.float64)
        if not self.active:
            return values.copy()
        flat = values.reshape(-1, values.shape[-1])
        out = np.empty_like(flat)
        grid = np.zeros(self.shape)
        for i, row in enumerate(flat):
            grid[self.index] = np.nan_to_num(row)
            smooth = ndimage.gaussian_filter(grid, self.sigma, mode="constant")[self.index]
            out[i] = np.divide(
                smooth, self.weight, out=np.zeros(row.size), where=self.weight > 1e-6
            )
        return out.reshape(values.shape)


@dataclass(frozen=True)
class PlantedTruth:
    """A session's planted responses over the comparison's voxels.

    Attributes
    ----------
    images
        ``(I,)`` labels of the images that received a planted response.
    planted
        ``(V, I)`` the response planted for each image (half A), in the reference fit's
        units.
    truth
        ``(V, I)`` the same image's half B (the truth scored against).
    factor
        The planting factor: the series carried ``factor * planted``.
    smoother
        Smoothing of per-voxel covariances over these voxels (:class:`Smoother`).
    reference_gain
        The reference fit's gain for the planted responses (:func:`reference_gain`; 1:
        unknown).
    source
        Where the planted responses come from (the design's ``source``): it sets the
        presentations they are read at (:func:`echoprep.kernels.planted.read_presentations`).
    """

    images: np.ndarray
    planted: np.ndarray
    truth: np.ndarray
    factor: float
    smoother: Smoother
    reference_gain: float = 1.0
    source: str = "session"


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
        ``(V,)`` per-voxel gain ``N / S`` (estimate).
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


def planted_columns(truth: PlantedTruth, labels: Sequence | np.ndarray) -> np.ndarray:
    """``(I,)`` the column of each planted image among the session's repeated images
    (:func:`echoprep.kernels.planted.repeated_images` of ``labels``), the images the weights of
    an image bootstrap are drawn over. ValueError if a planted image is not repeated."""
    scored = repeated_images(np.asarray(labels).astype(str))
    where = image_columns(np.asarray(truth.images).astype(str), scored)
    if (where < 0).any():
        raise ValueError("truth.images: every planted image must be shown at least twice")
    return where


def response_variance(truth: PlantedTruth, weights: np.ndarray) -> np.ndarray:
    """``(B + 1, V)`` the session's response variance ``S`` per voxel and replicate: the
    smoothed half-A/half-B covariance over the (weighted) images, in the reference fit's
    units."""
    return truth.smoother(_wcov(truth.planted, truth.truth, weights))


def reference_gain(recovered_means: np.ndarray, planted: np.ndarray, truth: np.ndarray) -> float:
    """The reference fit's gain for the planted responses, pooled over the voxels:
    ``sum cov(recovered, truth) / sum cov(planted, truth)`` (image means, ``(V, I)`` each)."""
    w = np.ones((1, planted.shape[1]))
    num = np.nansum(_wcov(recovered_means, truth, w))
    den = np.nansum(_wcov(planted, truth, w))
    return float(num / den) if den > 0 else float("nan")


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
    variance: np.ndarray | None = None,
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
        ``(B + 1, J)`` weights of the session's repeated images
        (:func:`echoprep.kernels.planted.repeated_images` of ``labels``; :func:`bootstrap_weights`):
        the planted images are some of them (all where half A is planted).
    bins
        Quantile bins of the binned planted-against-recovered curve.
    variance
        :func:`response_variance` of ``truth`` and the planted images' columns of ``weights``
        (computed when None; pass it to share it between a session's variants).
    """
    cols = image_columns(labels, truth.images)
    smooth = truth.smoother
    names = np.asarray(labels).astype(str)
    images = np.asarray(truth.images).astype(str)
    scored = repeated_images(names)
    if weights.shape[1] != scored.size:
        raise ValueError(
            f"weights: expected one column per repeated image ({scored.size}); found "
            f"{weights.shape[1]}"
        )
    # the spread of the repeat-averaged betas over every repeated image (the images the
    # correlation with the truth is about), whatever share of them is planted: planted images
    # that are shown more often than the rest would otherwise read every variant high, the
    # noisier ones most
    planted_w = weights[:, planted_columns(truth, names)]
    s = response_variance(truth, planted_w) if variance is None else variance
    z = zscore_within(np.asarray(betas, np.float64), np.asarray(runs).astype(str))
    rz = recovered_z(recovered, betas, runs, truth.factor)
    m = image_means(z, names, scored)
    # what the betas carry of the planted responses, read at the half-A presentations only
    # (at a half-B one it shares the neighbouring trials' leakage with the truth), or at the
    # first ones where the planted responses come from the later ones
    read = read_presentations(names, images, truth.source)
    g = image_means(rz[:, read], names[read], images)
    num = smooth(_wcov(g, truth.truth, planted_w))
    var_m = _wcov(m, m, weights)
    gain_ref = truth.reference_gain
    if not (np.isfinite(gain_ref) and gain_ref > 0):
        gain_ref = 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(s > 0, np.sqrt(np.clip(s, 0.0, None)), np.nan) * gain_ref
        r = num / (scale * np.sqrt(var_m))
        gain = num[0] / np.where(s[0] > 0, s[0], np.nan)
    # single trials (half-A presentations): each weighted by its image's bootstrap count
    planted_trials = read
    tw = planted_w[:, cols[planted_trials]]
    zt = z[:, planted_trials]
    rt = rz[:, planted_trials]
    qt = truth.truth[:, cols[planted_trials]]
    num_t = smooth(_wcov(rt, qt, tw))
    var_t = _wcov(zt, zt, tw)
    with np.errstate(divide="ignore", invalid="ignore"):
        trial_r = num_t / (scale * np.sqrt(var_t))
    return VariantFidelity(
        r=_median(r),
        trial_r=_median(trial_r),
        gain=gain,
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
    scored = repeated_images(np.asarray(labels).astype(str))
    weights = bootstrap_weights(scored.size, replicates, seed)
    variance = response_variance(truth, weights[:, planted_columns(truth, labels)])
    return {
        v: variant_fidelity(b, rec, labels, runs, truth, weights, variance=variance)
        for v, (b, rec) in variants.items()
    }


__all__ = [
    "SMOOTHING_MM",
    "PlantedTruth",
    "Smoother",
    "VariantFidelity",
    "binned_transfer",
    "bootstrap_weights",
    "planted_columns",
    "recovered_z",
    "reference_gain",
    "response_variance",
    "session_fidelity",
    "variant_fidelity",
]
