"""The anatomy stage's inputs: the T1w (checked) and the template's maps on a registration grid.

What the header can tell (one 3-D volume, affine, units, voxel sizes, field of view) is checked
when the workflow is built too (:func:`echoprep.io.bids_checks.check_t1w_header`, with the same
limits), so a dataset that passes discovery passes these checks unless its voxel values are
unusable (NaN, constant). A field of view smaller than a whole head is legal (a small head, a
child): a warning, logged and recorded in the sidecars, never a refusal.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.bids_checks import (
    T1W_MIN_VOXELS,
    T1W_USUAL_FOV_MM,
    T1W_VOXEL_RANGE_MM,
    t1w_fov_warning,
)
from echoprep.io.images import StageInputError, load_image
from echoprep.kernels import tissue

log = logging.getLogger(__name__)

#: Voxel sizes accepted, mm.
VOXEL_RANGE_MM = T1W_VOXEL_RANGE_MM
#: A field of view below this along an axis (mm) gives a warning (the T1w is still processed).
MIN_FOV_MM = T1W_USUAL_FOV_MM
#: Fewest voxels along every axis.
MIN_VOXELS = T1W_MIN_VOXELS


# ---------------------------------------------------------------------------------------------
# geometry helpers


def _axes(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel sizes (3,) and direction cosines (3, 3) of a 4x4 affine."""
    linear = np.asarray(affine, float)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    return spacing, linear / spacing


def _like(data: np.ndarray, like: nib.Nifti1Image, dtype: Any) -> nib.Nifti1Image:
    """An image of ``dtype`` with the geometry and header of ``like`` (scaling reset)."""
    header = like.header.copy()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), like.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    return img


# ---------------------------------------------------------------------------------------------
# validation


def validate_t1w(path: str | Path, warnings: list[str] | None = None) -> nib.Nifti1Image:
    """Open a T1w image and check that the anatomy stage can use it.

    Parameters
    ----------
    path
        The T1w NIfTI file.
    warnings
        When given, legal but unusual findings (a field of view below :data:`MIN_FOV_MM`) are
        appended to it, one line each; they are logged either way.

    Returns
    -------
    nibabel.Nifti1Image
        The image, 3D (a 4D file with one volume is accepted and squeezed).

    Raises
    ------
    StageInputError
        For an unusable image (not 3D, fewer than :data:`MIN_VOXELS` voxels along an axis, a
        singular, non-finite or sheared affine, units other than mm, voxel sizes outside
        :data:`VOXEL_RANGE_MM`, NaN or constant values), naming the file, what was expected,
        what was found and how to fix it.
    """
    path = Path(path)
    img = load_image(path, "T1w image")
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise StageInputError(
            f"{path}: expected a 3D T1w image; found shape {img.shape}. Fix: pass one T1w "
            "volume (split multi-volume files, e.g. MP2RAGE UNI only)."
        )
    if min(img.shape) < MIN_VOXELS:
        raise StageInputError(
            f"{path}: expected a 3D volume with at least {MIN_VOXELS} voxels along every axis; "
            f"found shape {img.shape}. Fix: pass the 3D T1w volume, not a single slice."
        )
    affine = np.asarray(img.affine, float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise StageInputError(
            f"{path}: expected a valid voxel-to-world affine; found a singular or non-finite "
            "one. Fix: repair the qform/sform of the file."
        )
    spacing, direction = _axes(affine)
    shear = float(np.abs(direction.T @ direction - np.eye(3)).max())
    if shear > 1e-4:
        raise StageInputError(
            f"{path}: expected an affine without shear (rotation and voxel sizes only); found "
            f"a shear of {shear:.2g}. Fix: reslice the image to an unsheared grid."
        )
    unit = img.header.get_xyzt_units()[0]
    if unit not in ("mm", "unknown"):
        raise StageInputError(
            f"{path}: expected spatial units of mm; found {unit!r}. Fix: convert the voxel "
            "sizes to mm and set xyzt_units."
        )
    lo, hi = VOXEL_RANGE_MM
    if np.any(spacing < lo) or np.any(spacing > hi):
        raise StageInputError(
            f"{path}: expected voxel sizes between {lo} and {hi} mm; found "
            f"{np.round(spacing, 3).tolist()} mm. Fix: check the header's pixdim (units "
            "in mm) or resample the T1w."
        )
    warning = t1w_fov_warning(str(path), img.shape, spacing)
    if warning is not None:
        log.warning("%s", warning)
        if warnings is not None:
            warnings.append(warning)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise StageInputError(
            f"{path}: expected finite intensities; found {int((~np.isfinite(data)).sum())} "
            "NaN/inf voxels. Fix: replace them (e.g. by 0) before running the anatomy stage."
        )
    if float(data.max()) <= float(data.min()) or float(data.max()) <= 0:
        raise StageInputError(
            f"{path}: expected a T1w with positive, varying intensities; found all values in "
            f"[{float(data.min())}, {float(data.max())}]. Fix: pass the right file."
        )
    return img


# ---------------------------------------------------------------------------------------------
# the template


@lru_cache(maxsize=4)
def template_maps(resolution: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """nilearn's MNI152 (ICBM 2009a sym) T1 and tissue priors on a ``resolution`` mm grid.

    Above 1 mm the 1 mm maps are smoothed (Gaussian, FWHM of the new voxel, less the 1 mm
    voxel) before sampling, so the coarse maps hold partial-volume fractions, not aliased samples.

    Returns
    -------
    maps
        ``t1`` (0-1), ``gm``, ``wm``, ``csf`` (probabilities, CSF = smoothed brain mask − GM − WM,
        clipped) and ``brain`` (brain mask fraction); float32 arrays of one shape.
    affine
        The grid's RAS affine (same corner as the 1 mm template).
    """
    from nilearn import datasets
    from scipy import ndimage

    loaders = {
        "t1": datasets.load_mni152_template,
        "gm": datasets.load_mni152_gm_template,
        "wm": datasets.load_mni152_wm_template,
        "brain": datasets.load_mni152_brain_mask,
    }
    maps, affine = {}, np.eye(4)
    for key, load in loaders.items():
        img = load(resolution=1)
        maps[key] = np.asarray(img.get_fdata(dtype=np.float32))
        affine = np.asarray(img.affine, float)
    maps["brain"] = ndimage.gaussian_filter(maps["brain"], 1.0)
    maps["csf"] = tissue.csf_prior(maps["brain"], maps["gm"], maps["wm"])
    if resolution == 1:
        return maps, affine
    sigma = 0.4247 * np.sqrt(resolution**2 - 1.0)
    shape = tuple(int(np.ceil(n / resolution)) for n in maps["t1"].shape)
    ijk = np.stack(np.meshgrid(*[np.arange(n) * resolution for n in shape], indexing="ij"))
    out = {}
    for key, arr in maps.items():
        smooth = ndimage.gaussian_filter(arr, sigma, mode="constant")
        out[key] = ndimage.map_coordinates(smooth, ijk, order=1, mode="constant").astype(np.float32)
    coarse = affine.copy()
    coarse[:3, :3] *= resolution
    return out, coarse


__all__ = ["MIN_FOV_MM", "MIN_VOXELS", "VOXEL_RANGE_MM", "template_maps", "validate_t1w"]
