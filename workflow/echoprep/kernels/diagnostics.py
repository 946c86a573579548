"""NORDIC diagnostics on the user's own data, and plausibility checks of noise-ceiling maps.

Vizioli et al. 2021 (Nat Commun 12:5181) report that NORDIC raises tSNR while leaving the
evoked amplitude and the point-spread unchanged. These measures let a user check that on
their data, NORDIC on against NORDIC off for the same runs and GLM:

- :func:`tsnr_map` / :func:`median_ratio`: temporal SNR gain in a brain mask;
- :func:`evoked_amplitude`: mean single-trial beta over trials and ROI voxels (the ratio of the
  NORDIC to the raw value is the amplitude kept);
- :func:`image_patterns` / :func:`pattern_fwhm`: smoothness (FWHM) of the image-specific beta
  patterns (repeats averaged, each voxel's mean over images removed);
- :func:`removed_neighbour_correlation`: whiteness of the removed part (input - output): the
  neighbour correlation per axis, about 0 when NORDIC removed only spatially white (thermal)
  noise;
- :func:`edge_share`: the share of a noise-ceiling map's brain-edge voxels above a value (a
  ring of very high NC around the head flags voxels fitted outside the data).

Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from echoprep.kernels.quality import fwhm_classic, neighbours, tsnr

#: Volumes per block of :func:`removed_neighbour_correlation` (bounds its float64 temporaries
#: to about ``chunk * 8`` bytes per voxel).
DEFAULT_CHUNK = 16
#: Axial slices per slab of :func:`tsnr_map` (a LAION-size run: 8 x 90 x 110 voxels x 163
#: volumes, about 100 MiB of float64 per slab).
TSNR_CHUNK = 8
#: First-axis indices per block of :func:`image_patterns` (x-slices of LAION-size betas, 1050
#: trials: about 300 MiB per block's copy).
PATTERN_CHUNK = 8


def removed_neighbour_correlation(
    before: np.ndarray,
    after: np.ndarray,
    mask: np.ndarray,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """Neighbour correlation per axis of the removed part ``before - after``.

    Each voxel's temporal mean of the removed part is subtracted; for each axis, the Pearson
    correlation is pooled over all pairs of neighbouring voxels with both in ``mask`` and all
    volumes (the same value as :func:`echoprep.kernels.quality.neighbour_correlation` of the
    difference, computed in blocks of volumes so that no 4D float64 copy is made).

    Parameters
    ----------
    before, after
        ``(x, y, z, t)`` series before and after denoising (same shape, any float dtype).
    mask
        ``(x, y, z)`` bool: voxels used.
    chunk
        Volumes per block.

    Returns
    -------
    numpy.ndarray
        ``(3,)`` float64 correlations along x, y, z; NaN along an axis without pairs or
        where the removed part is constant.
    """
    if before.shape != after.shape or before.ndim != 4:
        raise ValueError(
            f"removed part: expected two 4D series of one shape; got {before.shape} and "
            f"{after.shape}"
        )
    mask = np.asarray(mask, bool)
    if mask.shape != before.shape[:3]:
        raise ValueError(f"removed part: mask {mask.shape} does not match {before.shape[:3]}")
    nt = before.shape[3]
    mean = np.zeros(before.shape[:3], np.float64)
    for t0 in range(0, nt, chunk):
        sl = slice(t0, min(nt, t0 + chunk))
        mean += (before[..., sl].astype(np.float64) - after[..., sl]).sum(axis=-1)
    mean /= nt
    pairs = [mask[neighbours(axis, 0)] & mask[neighbours(axis, 1)] for axis in range(3)]
    sab = np.zeros(3)
    saa = np.zeros(3)
    sbb = np.zeros(3)
    for t0 in range(0, nt, chunk):
        sl = slice(t0, min(nt, t0 + chunk))
        d = before[..., sl].astype(np.float64) - after[..., sl]
        d -= mean[..., None]
        for axis in range(3):
            a = d[neighbours(axis, 0)][pairs[axis]]  # views, then the pairs' values
            b = d[neighbours(axis, 1)][pairs[axis]]
            sab[axis] += float((a * b).sum())
            saa[axis] += float((a * a).sum())
            sbb[axis] += float((b * b).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sab / np.sqrt(saa * sbb)
    return np.where(np.isfinite(r), r, np.nan)


def tsnr_map(series: np.ndarray, *, order: int = 3, chunk: int = TSNR_CHUNK) -> np.ndarray:
    """Temporal SNR of a 4D series, a slab of axial slices at a time.

    Mean over the SD of the residual after Legendre drift removal of degree ``order``
    (:func:`echoprep.kernels.quality.tsnr`).

    Parameters
    ----------
    series
        ``(x, y, z, t)`` series (any float dtype; converted to float64 a slab at a time).
    order
        Degree of the drift polynomials.
    chunk
        Axial slices per slab (float64 temporaries of about ``chunk * x * y * t * 8`` bytes).

    Returns
    -------
    numpy.ndarray
        ``(x, y, z)`` float32 tSNR (dimensionless); 0 where the residual SD is 0.
    """
    if series.ndim != 4:
        raise ValueError(f"tSNR: expected a 4D series; got shape {series.shape}")
    nx, ny, nz, nt = series.shape
    out = np.zeros((nx, ny, nz), np.float32)
    step = max(1, chunk)
    for z0 in range(0, nz, step):
        slab = series[:, :, z0 : z0 + step, :]
        # the voxels of the slab in the order of its memory (a view for nibabel's
        # Fortran-ordered arrays), one row per voxel
        layout = "F" if slab.flags.f_contiguous or series.flags.f_contiguous else "C"
        rows = slab.reshape(-1, nt, order=layout)
        out[:, :, z0 : z0 + slab.shape[2]] = tsnr(rows, order=order).reshape(
            slab.shape[:3], order=layout
        )
    return out


def median_ratio(
    raw: np.ndarray, nordic: np.ndarray, mask: np.ndarray
) -> tuple[float, float, float, int]:
    """Medians of two maps in a mask and their ratio.

    Voxels used: ``mask`` and both maps finite and > 0 (tedana's outputs are 0 outside its
    mask).

    Parameters
    ----------
    raw, nordic
        Maps of one shape (e.g. tSNR without and with NORDIC).
    mask
        Bool of that shape.

    Returns
    -------
    (float, float, float, int)
        ``median(raw)``, ``median(nordic)``, ``median(nordic) / median(raw)`` and the voxels
        used; NaNs and 0 when no voxel is left.
    """
    raw = np.asarray(raw, np.float64)
    nordic = np.asarray(nordic, np.float64)
    use = np.asarray(mask, bool) & np.isfinite(raw) & np.isfinite(nordic) & (raw > 0) & (nordic > 0)
    if not use.any():
        return math.nan, math.nan, math.nan, 0
    a, b = float(np.median(raw[use])), float(np.median(nordic[use]))
    return a, b, b / a if a > 0 else math.nan, int(use.sum())


def evoked_amplitude(betas: np.ndarray) -> float:
    """Mean single-trial beta over voxels and trials (the evoked amplitude of an ROI).

    Parameters
    ----------
    betas
        ``(V, N)`` betas (% signal change) of the ROI voxels and the image trials.

    Returns
    -------
    float
        The mean (% signal change); NaN when empty. The ratio of two such means, NORDIC over
        raw, is the share of the evoked amplitude NORDIC kept.
    """
    betas = np.asarray(betas, np.float64)
    return float(betas.mean()) if betas.size else math.nan


def ratio(nordic: float, raw: float) -> float:
    """``nordic / raw`` for a positive ``raw`` (NaN otherwise: a ratio to a non-positive
    amplitude has no meaning)."""
    return nordic / raw if math.isfinite(raw) and raw > 0 and math.isfinite(nordic) else math.nan


def image_patterns(
    betas: np.ndarray, labels: Sequence | np.ndarray, *, chunk: int = PATTERN_CHUNK
) -> np.ndarray:
    """Image-specific response patterns: betas averaged over the repeats of each image, then
    each voxel's mean over images removed.

    Each image's trials are summed (float64) in trial order, a block of ``chunk`` indices of
    the first axis at a time: memory is the output plus one block's copy.

    Parameters
    ----------
    betas
        ``(..., N)`` single-trial betas (trials last), e.g. ``(x, y, z, N)``.
    labels
        ``(N,)`` image label of each trial.
    chunk
        Indices of the first axis per block (for ``(x, y, z, N)`` betas: x-slices).

    Returns
    -------
    numpy.ndarray
        ``(..., K)`` float64, one pattern per distinct label (sorted labels).
    """
    labels = np.asarray(labels)
    betas = np.asarray(betas)
    if labels.shape != (betas.shape[-1],):
        raise ValueError(
            f"image patterns: expected one label per trial ({betas.shape[-1]}); got {labels.shape}"
        )
    if betas.ndim < 2:
        return image_patterns(betas[None], labels, chunk=chunk)[0]
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    out = np.zeros((*betas.shape[:-1], counts.size))
    if not labels.size:
        return out
    order = np.argsort(inverse, kind="stable")  # each image's trials together, in trial order
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    step = max(1, chunk)
    for i0 in range(0, betas.shape[0], step):
        block = np.add.reduceat(
            betas[i0 : i0 + step][..., order], starts, axis=-1, dtype=np.float64
        )
        block /= counts
        block -= block.mean(axis=-1, keepdims=True)
        out[i0 : i0 + step] = block
    return out


def pattern_fwhm(
    patterns: np.ndarray, mask: np.ndarray, voxel_size: Sequence[float] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, float]:
    """Smoothness of patterns: AFNI "classic" FWHM per axis and its geometric mean.

    Parameters
    ----------
    patterns
        ``(x, y, z, K)`` patterns (e.g. from :func:`image_patterns`).
    mask
        ``(x, y, z)`` bool.
    voxel_size
        Voxel size along x, y, z (mm).

    Returns
    -------
    (numpy.ndarray, float)
        ``(3,)`` FWHM per axis in mm (0 where the estimator fails) and their geometric mean in
        mm (NaN when an axis failed or fewer than 2 voxels are in the mask).
    """
    mask = np.asarray(mask, bool)
    if mask.sum() < 2:
        return np.full(3, np.nan), math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        per_axis = fwhm_classic(patterns, mask) * np.asarray(voxel_size, np.float64)
    geo = float(np.prod(per_axis) ** (1 / 3)) if np.all(per_axis > 0) else math.nan
    return per_axis, geo


def edge_share(
    values: np.ndarray,
    support: np.ndarray,
    *,
    above: float = 80.0,
    brain: np.ndarray | None = None,
    depth: int = 1,
) -> dict[str, float | int]:
    """Share of a map's edge voxels above a value, against the same share inside.

    Edge: voxels of ``support`` within ``depth`` voxels of its border (``support`` minus its
    binary erosion, 6-connected), plus the voxels of ``support`` outside ``brain`` when given.
    Interior: the rest of ``support``.

    Parameters
    ----------
    values
        3D map (e.g. noise ceiling in %).
    support
        Bool of that shape: where the map has values (e.g. the fitted voxels).
    above
        The value a voxel must exceed.
    brain
        Optional brain mask of that shape.
    depth
        Erosion depth (voxels).

    Returns
    -------
    dict
        ``edge_voxels``, ``edge_above`` (count), ``edge_share`` and ``interior_share`` (0..1;
        NaN when the set is empty).
    """
    values = np.asarray(values, np.float64)
    support = np.asarray(support, bool) & np.isfinite(values)
    inner = ndimage.binary_erosion(support, iterations=depth, border_value=0)
    edge = support & ~inner
    if brain is not None:
        edge |= support & ~np.asarray(brain, bool)
    interior = support & ~edge
    hi = values > above
    n_edge, n_int = int(edge.sum()), int(interior.sum())
    return {
        "edge_voxels": n_edge,
        "edge_above": int((hi & edge).sum()),
        "edge_share": float((hi & edge).sum() / n_edge) if n_edge else math.nan,
        "interior_share": float((hi & interior).sum() / n_int) if n_int else math.nan,
    }


__all__ = [
    "DEFAULT_CHUNK",
    "PATTERN_CHUNK",
    "TSNR_CHUNK",
    "edge_share",
    "evoked_amplitude",
    "image_patterns",
    "median_ratio",
    "pattern_fwhm",
    "ratio",
    "removed_neighbour_correlation",
    "tsnr_map",
]
