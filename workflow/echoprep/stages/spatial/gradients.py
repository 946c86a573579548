"""Gradient nonlinearity in the spatial stage: the run's warp image and the fieldmap unwarping.

The geometry step (:func:`echoprep.stages.spatial.run.run_geometry`) of a run whose scanner has
a coefficient file (``spatial.gradient_coefficients``) computes the displacement ``d(p)`` once
on the run's raw BOLD grid padded by :data:`PAD_VOXELS` voxels (so that the positions of every
volume's head stay inside), stores it in the run's geometry file, and unwarps its fieldmap (the
Hz map taken at ``p + d(p)`` on the fieldmap's own grid, ``d`` evaluated there directly); the
resampling interpolates the warp trilinearly at every volume's sample positions
(:class:`echoprep.kernels.geometry.resampling.Chain`). Reading a spec
(:func:`load_gradient`) and the record's common part live in :mod:`echoprep.io.gradients`,
shared with the anatomy stage; the subject step corrects the T2w target with
:func:`echoprep.io.gradients.correct_image`. docs/gradients.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from echoprep.io.gradients import correction_record, load_gradient
from echoprep.kernels.geometry.gradients import (
    GradientCoefficients,
    displacement,
    grid_displacement,
)

#: Voxels the warp grid extends the raw BOLD grid by on every side (head motion of a few mm
#: moves sample positions by a voxel or two; outside the warp grid the nearest value is used).
PAD_VOXELS = 4


def bold_warp(
    coeffs: GradientCoefficients, shape: tuple[int, ...], affine: np.ndarray, position: str
) -> tuple[np.ndarray, np.ndarray]:
    """``d`` on the raw BOLD grid padded by :data:`PAD_VOXELS`: ``(gx, gy, gz, 3)`` float32 mm
    and the ``(4, 4)`` affine of that grid (:func:`grid_displacement`)."""
    return grid_displacement(
        coeffs,
        tuple(int(n) for n in shape[:3]),  # type: ignore[arg-type]
        affine,
        pad=PAD_VOXELS,
        patient_position=position,
    )


def unwarp_fieldmap(
    hz: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None,
    coeffs: GradientCoefficients,
    position: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A fieldmap on its own grid without the gradient distortion: values at ``p + d(p)``.

    Parameters
    ----------
    hz
        ``(fx, fy, fz)`` field, Hz, as acquired (scanner frame).
    affine
        ``(4, 4)`` its voxel -> world affine.
    mask
        ``(fx, fy, fz)`` reliable-phase mask or None.
    coeffs, position
        The coil's coefficients and the patient position.

    Returns
    -------
    hz
        ``(fx, fy, fz)`` float32: trilinear samples at ``p + d(p)`` (nearest value outside).
    mask
        The mask sampled likewise (nearest neighbour), or None.
    """
    shape = hz.shape
    a = np.asarray(affine, np.float64)
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    points = (a[:3, :3] @ ijk + a[:3, 3:4]).T
    moved = points + displacement(coeffs, points, patient_position=position)
    coords = np.linalg.inv(a)[:3, :3] @ moved.T + np.linalg.inv(a)[:3, 3:4]
    out = ndimage.map_coordinates(np.asarray(hz, np.float32), coords, order=1, mode="nearest")
    new_mask = None
    if mask is not None:
        new_mask = (
            ndimage.map_coordinates(np.asarray(mask, np.uint8), coords, order=0, mode="nearest")
            .reshape(shape)
            .astype(bool)
        )
    return out.reshape(shape).astype(np.float32), new_mask


def gradient_record(
    coeffs: GradientCoefficients, position: str, path: Path, field: np.ndarray
) -> dict[str, Any]:
    """The sidecar record of an applied correction of a run (file, R0, order, position, how
    the warp is applied, max |d| over the warp grid; :func:`correction_record`)."""
    norm = np.sqrt((np.asarray(field, np.float64) ** 2).sum(axis=-1))
    record = correction_record(coeffs, position, path, float(norm.max()) if norm.size else 0.0)
    largest = record.pop("MaxDisplacementMm")
    record["WarpGrid"] = f"the raw BOLD grid padded by {PAD_VOXELS} voxels on every side"
    record["WarpInterpolation"] = (
        "trilinear, at every volume's true scanner positions (head motion applied), composed "
        "into the one interpolation of the data"
    )
    record["FieldmapUnwarped"] = "the Hz map taken at p + d(p) on its own grid (with a fieldmap)"
    record["MaxDisplacementMm"] = largest
    return record


__all__ = ["PAD_VOXELS", "bold_warp", "gradient_record", "load_gradient", "unwarp_fieldmap"]
