"""NIfTI (RAS) ↔ ITK/ANTs (LPS) geometry: image headers and affine transform parameters.

Pure numpy: the ANTs calls themselves (images, registration, transform files) live in
:mod:`echoprep.adapters.ants`, which uses these conversions.

World matrices follow :mod:`echoprep.kernels.geometry.transforms`: ``moving_from_fixed`` takes
a head point of the fixed image (world RAS mm) to the same tissue point in the moving image.
ITK works in LPS: an ITK ``MatrixOffsetTransform`` (matrix ``A``, translation ``t``, centre
``c``) maps a fixed LPS point ``y`` to ``A (y - c) + t + c`` in the moving image (ITK's
registration transform maps fixed → moving). In RAS, ``M_ras = F M_lps F`` with
``F = diag(-1, -1, 1, 1)``.
"""

from __future__ import annotations

import numpy as np

from echoprep.kernels.geometry.transforms import check_matrix

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_LPS3 = np.diag([-1.0, -1.0, 1.0])


def lps_geometry(
    affine: np.ndarray, what: str = "ants_image"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ITK image geometry of a NIfTI voxel → world RAS affine.

    Parameters
    ----------
    affine
        ``(4, 4)`` voxel → world RAS (mm); must be rotation × positive scaling (no shear).
    what
        Name for the messages.

    Returns
    -------
    origin
        ``(3,)`` LPS position of voxel (0, 0, 0), mm.
    spacing
        ``(3,)`` voxel sizes, mm.
    direction
        ``(3, 3)`` LPS direction cosines (columns: voxel axes).

    Raises
    ------
    ValueError
        A malformed affine, or one with shear.
    """
    a = check_matrix(affine, f"{what}: affine")
    lps = _LPS @ a
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError(f"{what}: the affine has shear; ANTs images need orthogonal axes")
    return lps[:3, 3], spacing, direction


def ras_affine(origin: np.ndarray, spacing: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """NIfTI voxel → world RAS ``(4, 4)`` affine of an ITK image geometry.

    Parameters
    ----------
    origin, spacing
        ``(3,)`` LPS origin and voxel sizes (mm).
    direction
        ``(3, 3)`` LPS direction cosines.
    """
    affine = np.eye(4)
    affine[:3, :3] = _LPS3 @ np.asarray(direction, float) @ np.diag(spacing)
    affine[:3, 3] = _LPS3 @ np.asarray(origin, float)
    return affine


def itk_affine_to_world(
    parameters: np.ndarray, fixed_parameters: np.ndarray, what: str = "ants_transform_to_world"
) -> np.ndarray:
    """RAS world matrix (``moving_from_fixed``) of ITK affine transform parameters.

    Parameters
    ----------
    parameters
        ``(12,)``: the 3×3 matrix (row-major) then the translation (LPS, mm).
    fixed_parameters
        ``(3,)`` (or more) centre of rotation, LPS mm.
    what
        Name for the messages.

    Returns
    -------
    numpy.ndarray
        ``(4, 4)`` float64.
    """
    p = np.asarray(parameters, np.float64)
    c = np.asarray(fixed_parameters, np.float64)[:3]
    if p.size != 12:
        raise ValueError(f"{what}: expected 12 affine parameters; found {p.size}")
    a = p[:9].reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = p[9:] + c - a @ c
    return _LPS @ m @ _LPS


def world_to_itk_affine(
    matrix: np.ndarray, what: str = "world_to_ants_transform: matrix"
) -> tuple[np.ndarray, np.ndarray]:
    """ITK affine parameters of a RAS ``moving_from_fixed`` world matrix.

    Returns
    -------
    parameters
        ``(12,)``: the LPS 3×3 matrix (row-major) then the translation (mm).
    fixed_parameters
        ``(3,)`` zeros (centre of rotation at the LPS origin).
    """
    m = _LPS @ check_matrix(matrix, what) @ _LPS
    return np.concatenate([m[:3, :3].ravel(), m[:3, 3]]), np.zeros(3)


__all__ = ["itk_affine_to_world", "lps_geometry", "ras_affine", "world_to_itk_affine"]
