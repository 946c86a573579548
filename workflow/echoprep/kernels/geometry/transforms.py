"""Rigid transforms in world (scanner RAS, mm) coordinates: the one parameter convention.

Conventions used by every module of :mod:`echoprep.kernels.geometry`:

- An ``affine`` maps voxel indices ``(i, j, k, 1)`` to world coordinates (RAS, mm), as in
  NIfTI/nibabel.
- A world matrix is named ``b_from_a``: a 4×4 matrix that takes the world coordinates of a
  point of the head in frame ``a`` to the world coordinates of *the same tissue point* in frame
  ``b``. It is a "pull" map: an image in frame ``a`` is built by sampling the image of frame
  ``b`` at ``b_from_a @ x``. Matrices compose right to left:
  ``c_from_a = c_from_b @ b_from_a``.
- Rigid parameters ``p = (trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)`` (mm, rad) about a
  centre ``c`` (mm) stand for the map ``x -> c + R (x - c) + d`` with ``d = p[:3]`` and
  ``R = Rz(rot_z) @ Ry(rot_y) @ Rx(rot_x)`` (right-handed rotations about the world x, y, z
  axes, applied x first). This is the simulator's head-motion convention
  (``derivatives/truth/*_motion.tsv``): for head motion the map is ``vol_from_ref``, taking a
  point of the reference head to where it is in volume ``t``; ``c`` is the centre of the
  functional grid (world coordinates of voxel ``(shape - 1) / 2``).
"""

from __future__ import annotations

import numpy as np


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for rotations (rad) about the world x, y, z axes.

    Parameters
    ----------
    angles
        ``(..., 3)`` rotations ``(rot_x, rot_y, rot_z)``, rad.

    Returns
    -------
    numpy.ndarray
        ``(..., 3, 3)`` float64 rotation matrices.
    """
    a = np.asarray(angles, dtype=np.float64)
    if a.shape[-1:] != (3,):
        raise ValueError(f"rotation_matrix: angles must have shape (..., 3); found {a.shape}")
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    r = np.empty((*a.shape[:-1], 3, 3))
    r[..., 0, 0] = cz * cy
    r[..., 0, 1] = cz * sy * sx - sz * cx
    r[..., 0, 2] = cz * sy * cx + sz * sx
    r[..., 1, 0] = sz * cy
    r[..., 1, 1] = sz * sy * sx + cz * cx
    r[..., 1, 2] = sz * sy * cx - cz * sx
    r[..., 2, 0] = -sy
    r[..., 2, 1] = cy * sx
    r[..., 2, 2] = cy * cx
    return r


def rotation_angles(rotation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_matrix` (``rot_y`` in ``[-pi/2, pi/2]``).

    Parameters
    ----------
    rotation
        ``(..., 3, 3)`` rotation matrices.

    Returns
    -------
    numpy.ndarray
        ``(..., 3)`` float64 ``(rot_x, rot_y, rot_z)``, rad.
    """
    r = np.asarray(rotation, dtype=np.float64)
    ry = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
    rx = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    rz = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([rx, ry, rz], axis=-1)


def rigid_matrix(params: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    """World matrices ``x -> c + R (x - c) + d`` from rigid parameters.

    Parameters
    ----------
    params
        ``(6,)`` or ``(n, 6)``: ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z``
        (rad); see the module docstring.
    center
        ``(3,)`` rotation centre ``c``, mm (default the world origin).

    Returns
    -------
    numpy.ndarray
        ``(4, 4)`` or ``(n, 4, 4)`` float64.
    """
    p = np.asarray(params, dtype=np.float64)
    if p.shape[-1:] != (6,) or p.ndim > 2:
        raise ValueError(f"rigid_matrix: params must have shape (6,) or (n, 6); found {p.shape}")
    c = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64).reshape(3)
    r = rotation_matrix(p[..., 3:])
    m = np.zeros((*p.shape[:-1], 4, 4))
    m[..., :3, :3] = r
    m[..., :3, 3] = p[..., :3] + c - r @ c
    m[..., 3, 3] = 1.0
    return m


def rigid_params(matrix: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    """Rigid parameters of world matrices (inverse of :func:`rigid_matrix`).

    Parameters
    ----------
    matrix
        ``(4, 4)`` or ``(n, 4, 4)`` rigid world matrices.
    center
        ``(3,)`` rotation centre ``c``, mm (default the world origin).

    Returns
    -------
    numpy.ndarray
        ``(6,)`` or ``(n, 6)`` float64 ``(trans_x, trans_y, trans_z [mm], rot_x, rot_y,
        rot_z [rad])``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (4, 4) or m.ndim > 3:
        raise ValueError(f"rigid_params: matrix must be (4, 4) or (n, 4, 4); found {m.shape}")
    c = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64).reshape(3)
    r = m[..., :3, :3]
    d = m[..., :3, 3] - c + r @ c
    return np.concatenate([d, rotation_angles(r)], axis=-1)


def grid_center(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of the centre of a voxel grid, voxel ``(shape[:3] - 1) / 2``.

    Returns
    -------
    numpy.ndarray
        ``(3,)`` float64.
    """
    a = np.asarray(affine, dtype=np.float64)
    ijk = (np.asarray(shape[:3], dtype=np.float64) - 1) / 2
    return a[:3, :3] @ ijk + a[:3, 3]


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4×4 matrix to points.

    Parameters
    ----------
    matrix
        ``(4, 4)``.
    points
        ``(..., 3)`` coordinates.

    Returns
    -------
    numpy.ndarray
        ``(..., 3)`` float64.
    """
    m = np.asarray(matrix, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    flat = p.reshape(-1, 3)
    # (3, 3) @ (3, n) is several times faster than (n, 3) @ (3, 3) in NumPy
    out = (m[:3, :3] @ flat.T).T + m[:3, 3]
    return out.reshape(p.shape)


def rms_displacement(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    """Root-mean-square distance (mm) between ``a @ x`` and ``b @ x`` over ``points``.

    Parameters
    ----------
    a, b
        ``(4, 4)`` world matrices.
    points
        ``(n, 3)`` world coordinates, mm (e.g. the brain-mask voxels).
    """
    d = apply_matrix(a, points) - apply_matrix(b, points)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=-1))))


def is_rigid(matrix: np.ndarray, atol: float = 1e-6) -> bool:
    """True when ``matrix`` (4×4) is a proper rigid transform (orthonormal, det +1)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.allclose(m[3], [0, 0, 0, 1], atol=atol):
        return False
    r = m[:3, :3]
    return bool(np.allclose(r.T @ r, np.eye(3), atol=atol) and np.linalg.det(r) > 0)


def check_matrix(matrix: np.ndarray, name: str, *, rigid: bool = False) -> np.ndarray:
    """Validate a 4×4 world matrix; return it as float64.

    Raises
    ------
    ValueError
        When the shape is not ``(4, 4)``, values are not finite, the last row is not
        ``(0, 0, 0, 1)``, or (``rigid=True``) the matrix is not rigid.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix; found shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains non-finite values")
    if not np.allclose(m[3], [0, 0, 0, 1]):
        raise ValueError(f"{name}: last row must be (0, 0, 0, 1); found {m[3].tolist()}")
    if rigid and not is_rigid(m, atol=1e-4):
        raise ValueError(f"{name} is not a rigid transform (rotation not orthonormal or det < 0)")
    return m
