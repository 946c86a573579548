"""Noise backgrounds of T1w images (MP2RAGE UNI) and the mask of the voxels with signal.

Pure array code (no file I/O); the anatomy stage (:mod:`echoprep.stages.anatomy.background`)
decides when to use it. Method and measured effect: docs/anatomy.md.

An MP2RAGE ``UNI`` image is the ratio ``Re(S1 conj(S2)) / (|S1|^2 + |S2|^2)`` of two
inversion images. Where neither has signal (air, most of the skull) it is the ratio of two
independent noises: **uniform over the whole intensity range**, each voxel unrelated to its
neighbours (salt and pepper), as bright on average as the brain. Smoothing plus an intensity
threshold (Otsu, ``ants.get_mask``) cannot separate it from the head; what separates it is how
unlike its neighbours each voxel is. :func:`roughness` measures that: the median of the six
absolute differences to the face neighbours, relative to the image's 99th percentile. Uniform
noise gives about 0.29 (the median of ``|X - Y|`` for independent uniform ``X, Y`` is
``1 - 1/sqrt(2)``); tissue gives about 0.05 (noise, and edges in at most a few directions).

* :func:`background_statistics` / :func:`looks_like_noise_background`: the border of the field
  of view (the outer :data:`BORDER_FRACTION` of every axis, mostly air in a head image) is
  bright and rough in a UNI, dark and smooth in an MPRAGE.
* :func:`signal_mask`: the voxels with signal: rough voxels (the 3×3×3 median of the roughness
  above :data:`ROUGH_THRESHOLD`; only for a noise background) and dark voxels are out, then a
  morphological opening, the connected pieces of at least :data:`MIN_PIECE_FRACTION` of the
  largest, and holes smaller than :data:`MAX_HOLE_ML` filled. Where the skull is thick enough
  to be more than a voxel or two of noise it stays out; a thinner noisy skull is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

#: Roughness (3×3×3 median) above which a voxel is noise (tissue ≈ 0.05, uniform noise ≈ 0.29).
ROUGH_THRESHOLD = 0.15
#: Smoothed intensity below this fraction of the 99th percentile is "no signal" (dark air).
DARK_FRACTION = 0.05
#: Outer fraction of every axis taken as the field of view's border.
BORDER_FRACTION = 0.06
#: A noise background: border median roughness and median intensity (fraction of the 99th
#: percentile) at or above these.
NOISE_ROUGHNESS, NOISE_BRIGHTNESS = 0.12, 0.15
#: Pieces of the signal mask smaller than this fraction of the largest are dropped.
MIN_PIECE_FRACTION = 0.01
#: Holes of the signal mask smaller than this (ml) are filled (ventricles, noisy specks in
#: tissue); larger ones (the skull between brain and scalp) stay out.
MAX_HOLE_ML = 5.0


def _scale(image: np.ndarray) -> float:
    """The 99th percentile of the non-zero voxels (1.0 for an empty image)."""
    values = image[image > 0]
    return float(np.percentile(values, 99)) if values.size else 1.0


def roughness(image: np.ndarray, scale: float | None = None) -> np.ndarray:
    """How unlike its face neighbours each voxel is.

    Parameters
    ----------
    image
        Intensities, shape (x, y, z).
    scale
        Divisor (intensity units); None: the 99th percentile of the non-zero voxels.

    Returns
    -------
    numpy.ndarray
        float32, shape (x, y, z): the median of the 6 absolute differences to the face
        neighbours (edge voxels repeat themselves) divided by ``scale``.
    """
    x = np.asarray(image, np.float32)
    scale = _scale(x) if scale is None else float(scale)
    padded = np.pad(x, 1, mode="edge")
    inner = [slice(1, 1 + n) for n in x.shape]
    diffs = np.empty((6, *x.shape), np.float32)
    for i, (axis, start) in enumerate((a, s) for a in range(3) for s in (0, 2)):
        window = list(inner)
        window[axis] = slice(start, start + x.shape[axis])
        np.abs(padded[tuple(window)] - x, out=diffs[i])
    diffs.partition(2, axis=0)
    diffs[3:].partition(0, axis=0)  # the 3rd and 4th smallest of six: the median's two values
    return ((diffs[2] + diffs[3]) / (2.0 * max(scale, 1e-12))).astype(np.float32)


def _border(shape: tuple[int, ...]) -> np.ndarray:
    border = np.ones(shape, bool)
    k = [max(2, round(BORDER_FRACTION * n)) for n in shape]
    border[k[0] : -k[0], k[1] : -k[1], k[2] : -k[2]] = False
    return border


def background_statistics(image: np.ndarray) -> dict[str, float]:
    """Statistics of the border of the field of view (mostly air in a head image).

    Parameters
    ----------
    image
        Intensities, shape (x, y, z), each axis at least 5 voxels.

    Returns
    -------
    dict
        ``BorderRoughness``: median :func:`roughness` of the border voxels (uniform noise about
        0.29, dark air below 0.02); ``BorderBrightness``: their median intensity over the
        image's 99th percentile (uniform noise about 0.5, air below 0.05);
        ``BorderBrightFraction``: the fraction of them above 20 % of that percentile.
    """
    x = np.asarray(image, np.float32)
    scale = _scale(x)
    border = _border(x.shape)
    values = x[border]
    return {
        "BorderRoughness": round(float(np.median(roughness(x, scale)[border])), 4),
        "BorderBrightness": round(float(np.median(values)) / scale, 4),
        "BorderBrightFraction": round(float(np.mean(values > 0.2 * scale)), 4),
    }


def looks_like_noise_background(stats: dict[str, float]) -> bool:
    """Whether :func:`background_statistics` describe a UNI-like noise background (both the
    roughness and the brightness at or above :data:`NOISE_ROUGHNESS`, :data:`NOISE_BRIGHTNESS`)."""
    return (
        stats["BorderRoughness"] >= NOISE_ROUGHNESS
        and stats["BorderBrightness"] >= NOISE_BRIGHTNESS
    )


def signal_mask(
    image: np.ndarray, voxel_volume_mm3: float, noise: bool = True
) -> tuple[np.ndarray, dict[str, Any]]:
    """The voxels of a T1w with signal (head tissue), leaving out noise and dark air.

    Parameters
    ----------
    image
        Intensities, shape (x, y, z).
    voxel_volume_mm3
        Volume of one voxel, mm³ (for :data:`MAX_HOLE_ML`).
    noise
        Whether the background is noise (:func:`looks_like_noise_background`): only then are
        rough voxels left out (an MPRAGE's brain edge against dark bone is rough at 4 mm,
        and there is no noise to remove).

    Returns
    -------
    mask
        bool, shape (x, y, z).
    record
        ``RoughThreshold`` (None without ``noise``), ``DarkFraction``, ``Pieces`` (kept
        connected pieces), ``SignalVoxels``, ``SignalFraction`` (of the field of view).
    """
    x = np.asarray(image, np.float32)
    scale = _scale(x)
    smooth = ndimage.uniform_filter(x, size=3, mode="nearest")
    mask = smooth >= DARK_FRACTION * scale
    if noise:
        rough = ndimage.median_filter(roughness(x, scale), size=3, mode="nearest")
        mask &= rough <= ROUGH_THRESHOLD
    mask = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1))
    labels, n = ndimage.label(mask)
    pieces = 0
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= MIN_PIECE_FRACTION * sizes.max()) + 1
        pieces = int(keep.size)
        mask = np.isin(labels, keep)
        holes, n_holes = ndimage.label(~mask)
        if n_holes:
            hole_sizes = np.bincount(holes.ravel())
            small = hole_sizes * voxel_volume_mm3 / 1000.0 < MAX_HOLE_ML
            small[0] = False
            mask |= small[holes]
    record = {
        "RoughThreshold": ROUGH_THRESHOLD if noise else None,
        "DarkFraction": DARK_FRACTION,
        "Pieces": pieces,
        "SignalVoxels": int(mask.sum()),
        "SignalFraction": round(float(mask.mean()), 4),
    }
    return mask, record


__all__ = [
    "BORDER_FRACTION",
    "DARK_FRACTION",
    "MAX_HOLE_ML",
    "MIN_PIECE_FRACTION",
    "NOISE_BRIGHTNESS",
    "NOISE_ROUGHNESS",
    "ROUGH_THRESHOLD",
    "background_statistics",
    "looks_like_noise_background",
    "roughness",
    "signal_mask",
]
