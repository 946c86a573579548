"""Tissue-class helpers: overlap scores, class ordering, probability maps → labels.

Pure array code (no file I/O): the anatomy stage (:mod:`echoprep.stages.anatomy`) calls these on
the outputs of ANTs Atropos, and the tests use :func:`dice` to score segmentations against the
simulator's truth.

Label convention (the BIDS "common image-derived labels"): 0 background, 1 GM, 2 WM, 3 CSF.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: dseg label → (BIDS name, BIDS abbreviation); the integer values are BIDS's standard ones.
DSEG_LABELS: dict[int, tuple[str, str]] = {
    0: ("Background", "BG"),
    1: ("Gray Matter", "GM"),
    2: ("White Matter", "WM"),
    3: ("Cerebrospinal Fluid", "CSF"),
}

#: Tissue order of the probability stacks the functions below take and return.
TISSUES: tuple[str, ...] = ("GM", "WM", "CSF")

#: Expected order of mean T1w intensity, darkest first (CSF < GM < WM on a T1w image).
T1W_INTENSITY_ORDER: tuple[str, ...] = ("CSF", "GM", "WM")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2|A∩B| / (|A|+|B|)`` of two masks.

    Parameters
    ----------
    a, b
        Arrays of the same shape; non-zero means inside.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty.

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"dice: shapes differ, {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def class_means(image: np.ndarray, probabilities: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Probability-weighted mean intensity of each class inside ``mask``.

    Parameters
    ----------
    image
        Intensities, shape (x, y, z).
    probabilities
        Class probabilities, shape (k, x, y, z), values in [0, 1].
    mask
        Voxels to use, shape (x, y, z); non-zero means inside.

    Returns
    -------
    numpy.ndarray
        Shape (k,), float64; NaN for a class with zero total probability in the mask.
    """
    image = np.asarray(image, dtype=np.float64)
    probs = np.asarray(probabilities, dtype=np.float64)
    inside = np.asarray(mask) != 0
    if probs.shape[1:] != image.shape or inside.shape != image.shape:
        raise ValueError(
            f"class_means: image {image.shape}, probabilities {probs.shape} and mask "
            f"{inside.shape} do not match"
        )
    values = image[inside]
    weights = probs[:, inside]
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ values / total, np.nan)


def order_by_intensity(
    image: np.ndarray,
    probabilities: np.ndarray,
    mask: np.ndarray,
    intensity_order: Sequence[str] = T1W_INTENSITY_ORDER,
    tissues: Sequence[str] = TISSUES,
) -> tuple[np.ndarray, np.ndarray]:
    """Name unlabelled classes (e.g. k-means clusters) by their mean intensity.

    Parameters
    ----------
    image
        Intensities, shape (x, y, z).
    probabilities
        Probabilities of ``len(tissues)`` unnamed classes, shape (k, x, y, z).
    mask
        Brain mask, shape (x, y, z).
    intensity_order
        Tissue names from darkest to brightest (T1w: CSF, GM, WM).
    tissues
        The order wanted in the output.

    Returns
    -------
    reordered
        ``probabilities`` permuted into ``tissues`` order, shape (k, x, y, z).
    permutation
        Indices into the input classes, shape (k,): ``reordered = probabilities[permutation]``.

    Raises
    ------
    ValueError
        When the class counts do not agree, or a class is empty (no ordering possible).
    """
    probs = np.asarray(probabilities)
    k = probs.shape[0]
    if k != len(intensity_order) or sorted(intensity_order) != sorted(tissues):
        raise ValueError(
            f"order_by_intensity: {k} classes, intensity order {list(intensity_order)}, "
            f"tissues {list(tissues)}: they must name the same classes"
        )
    means = class_means(image, probs, mask)
    if np.any(~np.isfinite(means)):
        raise ValueError(f"order_by_intensity: empty class (means {means.tolist()})")
    by_rank = np.argsort(means, kind="stable")  # darkest class first
    rank_of = {name: int(by_rank[i]) for i, name in enumerate(intensity_order)}
    permutation = np.array([rank_of[name] for name in tissues], dtype=int)
    return probs[permutation], permutation


def normalise_probabilities(probabilities: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], zero outside the mask, and make the classes sum to 1 inside it.

    Voxels of the mask where every class is 0 get equal shares (1/k each).

    Parameters
    ----------
    probabilities
        Shape (k, x, y, z).
    mask
        Shape (x, y, z); non-zero means inside.

    Returns
    -------
    numpy.ndarray
        float32, shape (k, x, y, z).
    """
    probs = np.clip(np.nan_to_num(np.asarray(probabilities, dtype=np.float32)), 0.0, 1.0)
    inside = np.asarray(mask) != 0
    total = probs.sum(axis=0)
    k = probs.shape[0]
    empty = inside & (total <= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = np.where(total > 0, probs / total, np.float32(0))
    probs[:, empty] = np.float32(1.0 / k)
    probs[:, ~inside] = 0
    return probs.astype(np.float32)


def probabilities_to_dseg(probabilities: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Most probable tissue per voxel, as BIDS labels (1 GM, 2 WM, 3 CSF; 0 outside).

    Parameters
    ----------
    probabilities
        Shape (3, x, y, z) in :data:`TISSUES` order (GM, WM, CSF).
    mask
        Brain mask, shape (x, y, z).

    Returns
    -------
    numpy.ndarray
        uint8, shape (x, y, z). Ties go to the first class in GM, WM, CSF order.
    """
    probs = np.asarray(probabilities)
    if probs.shape[0] != len(TISSUES):
        raise ValueError(
            f"probabilities_to_dseg: expected {len(TISSUES)} classes; got {probs.shape}"
        )
    labels = (np.argmax(probs, axis=0) + 1).astype(np.uint8)
    labels[np.asarray(mask) == 0] = 0
    return labels


def csf_prior(brain: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """CSF prior probability as what the brain holds beyond GM and WM: ``clip(brain-gm-wm)``.

    Parameters
    ----------
    brain
        Brain probability (or a smoothed brain mask), values in [0, 1], shape (x, y, z).
    gm, wm
        Grey- and white-matter probabilities, same shape.

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1], same shape.
    """
    out = np.asarray(brain, np.float32) - np.asarray(gm, np.float32) - np.asarray(wm, np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def volumes_ml(labels: np.ndarray, voxel_volume_mm3: float) -> dict[str, float]:
    """Volume of each tissue label in millilitres.

    Parameters
    ----------
    labels
        dseg array (0 BG, 1 GM, 2 WM, 3 CSF).
    voxel_volume_mm3
        Volume of one voxel, mm³.

    Returns
    -------
    dict
        ``{"GM": ml, "WM": ml, "CSF": ml}``.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=4)
    return {
        DSEG_LABELS[i][1]: round(float(counts[i]) * voxel_volume_mm3 / 1000.0, 3) for i in (1, 2, 3)
    }
