"""User ROI masks brought into the functional grid (``echoprep rois mask``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.adapters.ants import apply_to_grid
from echoprep.io.images import StageInputError, atomic_save, load_image
from echoprep.io.outputs import TEMPLATE
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.rois import resample_nearest

log = logging.getLogger(__name__)


def check_binary_mask(img: nib.Nifti1Image, path: str | Path) -> np.ndarray:
    """The boolean array of a binary 3D mask image.

    Raises
    ------
    StageInputError
        Not 3D (a 4D file with one volume is accepted), values other than 0 and 1, or no
        voxel set.
    """
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise StageInputError(
            f"{path}: expected a 3D binary mask; found shape {img.shape}. Fix: one mask per file."
        )
    finite = np.isfinite(data)
    values = np.unique(data[finite]) if finite.any() else np.array([])
    if not finite.all() or not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
        extra = "" if finite.all() else " and non-finite values"
        raise StageInputError(
            f"{path}: expected a binary mask (0 and 1 only); found values {shown}{extra}. Fix: "
            "threshold the image (e.g. fslmaths in -thr 0.5 -bin out) or split a label image "
            "into one mask per label."
        )
    mask = data == 1
    if not mask.any():
        raise StageInputError(
            f"{path}: expected at least one voxel in the mask; found an empty mask. Fix: remove "
            "the file or fix the mask."
        )
    return mask


def _grid(reference: nib.Nifti1Image) -> tuple[tuple[int, int, int], np.ndarray]:
    return tuple(int(n) for n in reference.shape[:3]), np.asarray(reference.affine, float)  # type: ignore[return-value]


def roi_to_grid(
    mask_path: str | Path,
    space: str,
    reference: nib.Nifti1Image,
    *,
    xfm_from_template: str | Path | None = None,
) -> np.ndarray:
    """A user ROI mask on the functional grid (nearest neighbour).

    Parameters
    ----------
    mask_path
        Binary mask (checked with :func:`check_binary_mask`).
    space
        ``T1w`` (resampled in world coordinates: the functional grid is T1w-aligned) or
        :data:`TEMPLATE` (through ``xfm_from_template``, the anatomy stage's
        ``from-<template>_to-T1w`` transform, with ANTs).
    reference
        The functional grid (an image whose first three dimensions and affine are used).

    Returns
    -------
    numpy.ndarray
        Boolean mask of the reference grid's shape.

    Raises
    ------
    StageInputError
        Bad mask; template space without the transform; a mask that misses the grid.
    """
    img = load_image(mask_path, "ROI mask")
    mask = check_binary_mask(img, mask_path)
    shape, affine = _grid(reference)
    if space == "T1w":
        out = resample_nearest(mask.astype(np.uint8), img.affine, shape, affine) > 0
    elif space == TEMPLATE:
        if xfm_from_template is None:
            raise StageInputError(
                f"{mask_path}: a {TEMPLATE} mask needs the anatomy stage's from-{TEMPLATE}_to-T1w "
                "transform; found none. Fix: run the anatomy stage (the subject needs a T1w) or "
                "give the mask in T1w space."
            )
        moved = apply_to_grid(
            nib.Nifti1Image(mask.astype(np.uint8), img.affine),
            [xfm_from_template],
            (shape, affine),
            "nearest",
        )
        out = np.asarray(moved.dataobj) > 0
    else:
        raise StageInputError(
            f"{mask_path}: expected space T1w or {TEMPLATE}; found {space!r}. Fix: rename the "
            "file with the space the mask is in."
        )
    if not out.any():
        raise StageInputError(
            f"{mask_path}: the mask has {int(mask.sum())} voxels but none of them falls inside "
            f"the functional grid {shape}. Fix: check the mask's space label and its affine "
            "(is it in the subject's T1w space?)."
        )
    return out


def write_mask(
    mask: np.ndarray, reference: nib.Nifti1Image, out: str | Path, **sidecar: Any
) -> Path:
    """Write a uint8 mask on ``reference``'s grid and its sidecar (``write_sidecar`` keywords)."""
    shape, affine = _grid(reference)
    img = nib.Nifti1Image(np.asarray(mask, np.uint8).reshape(shape), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_data_dtype(np.uint8)
    atomic_save(img, out)
    write_sidecar(out, **sidecar)
    return Path(out)


def run_roi_mask(
    mask_path: str | Path,
    space: str,
    reference: str | Path,
    out: str | Path,
    *,
    xfm_from_template: str | Path | None = None,
    category: str | None = None,
    grid_space: str = "T1w",
) -> Path:
    """Bring one user ROI mask into the functional grid and write it with its sidecar.

    ``grid_space="native"`` says the functional grid is not T1w-aligned (spatial preprocessing
    off): the mask is then placed by world coordinates only, which is right only when the T1w
    and the BOLD share the scanner frame; a warning is logged and recorded in the sidecar.
    """
    if grid_space != "T1w":
        log.warning(
            "ROI %s: the functional grid is not aligned to the T1w (spatial preprocessing is "
            "off); placing the mask by world coordinates only",
            mask_path,
        )
    ref = load_image(reference, "functional reference grid")
    mask = roi_to_grid(mask_path, space, ref, xfm_from_template=xfm_from_template)
    zooms = np.sqrt((np.asarray(ref.affine)[:3, :3] ** 2).sum(axis=0))
    sources = [mask_path, reference, *([xfm_from_template] if space == TEMPLATE else [])]
    log.info("ROI %s (%s space): %d voxels on the grid -> %s", mask_path, space, mask.sum(), out)
    return write_mask(
        mask,
        ref,
        out,
        sources=sources,
        parameters={"Interpolation": "nearest", "SourceSpace": space, "GridSpace": grid_space},
        extra={
            "Type": "ROI",
            "Category": category,
            "Voxels": int(mask.sum()),
            "Resolution": [round(float(z), 4) for z in zooms],
            "Description": f"User ROI from {Path(mask_path).name}, nearest-neighbour on the "
            "functional grid",
        },
    )


__all__ = ["check_binary_mask", "roi_to_grid", "run_roi_mask", "write_mask"]
