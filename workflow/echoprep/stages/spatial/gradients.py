"""Gradient nonlinearity in the spatial stage: the run's warp image and the fieldmap unwarping.

The geometry step (:func:`echoprep.stages.spatial.run.run_geometry`) of a run whose scanner has
a coefficient file (``spatial.gradient_coefficients``) computes the displacement ``d(p)`` once
on the run's raw BOLD grid padded by :data:`PAD_VOXELS` voxels (so that the positions of every
volume's head stay inside), stores it in the run's geometry file, and unwarps its fieldmap (the
Hz map taken at ``p + d(p)`` on the fieldmap's own grid, ``d`` evaluated there directly); the
resampling interpolates the warp trilinearly at every volume's sample positions
(:class:`echoprep.kernels.geometry.resampling.Chain`). docs/gradients.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from echoprep.io.gradients import read_grad
from echoprep.io.images import StageInputError
from echoprep.kernels.geometry.gradients import (
    PATIENT_POSITIONS,
    GradientCoefficients,
    displacement,
    grid_displacement,
)

#: Voxels the warp grid extends the raw BOLD grid by on every side (head motion of a few mm
#: moves sample positions by a voxel or two; outside the warp grid the nearest value is used).
PAD_VOXELS = 4


def load_gradient(spec: Mapping[str, Any]) -> tuple[GradientCoefficients, str, Path]:
    """The coefficients, patient position and file of a gradient spec.

    Parameters
    ----------
    spec
        ``{"coefficients": path of a Siemens .grad file, "patient_position": "HFS" | "HFP"}``
        (the position defaults to HFS).

    Raises
    ------
    StageInputError
        A missing or malformed file, an unknown patient position.
    """
    path = Path(spec["coefficients"])
    position = str(spec.get("patient_position") or "HFS")
    if position not in PATIENT_POSITIONS:
        raise StageInputError(
            f"{path}: expected a patient position of {', '.join(PATIENT_POSITIONS)} for the "
            f"gradient-nonlinearity correction; found {position!r}. Fix: set PatientPosition "
            "in the BOLD sidecar, or leave the scanner out of spatial.gradient_coefficients."
        )
    return read_grad(path), position, path


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
    """The sidecar record of an applied correction (file, R0, order, position, max |d|)."""
    norm = np.sqrt((np.asarray(field, np.float64) ** 2).sum(axis=-1))
    return {
        "Applied": True,
        "Coefficients": str(path),
        "R0": coeffs.r0_mm,
        "R0Units": "mm",
        "MaxOrder": coeffs.max_order,
        "PatientPosition": position,
        "WarpGrid": f"the raw BOLD grid padded by {PAD_VOXELS} voxels on every side",
        "WarpInterpolation": "trilinear, at every volume's true scanner positions (head motion "
        "applied), composed into the one interpolation of the data",
        "FieldmapUnwarped": "the Hz map taken at p + d(p) on its own grid (with a fieldmap)",
        "MaxDisplacementMm": round(float(norm.max()), 4) if norm.size else 0.0,
    }


__all__ = ["PAD_VOXELS", "bold_warp", "gradient_record", "load_gradient", "unwarp_fieldmap"]
