"""Spatial geometry of the simulation: rigid transforms and the EPI distortion operator.

Conventions (all coordinates are world RAS millimetres unless stated otherwise; the simulated
grids are RAS without obliquity, so voxel axis j is world +y, anterior):

- Rigid head motion (:func:`rigid_matrix`): a volume's parameters
  ``(trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)`` (mm, rad) map a point ``x`` of the
  motion-free head to ``c + R (x - c) + d`` in the scanner, ``R = Rz(rot_z) Ry(rot_y) Rx(rot_x)``
  (:func:`rotation`), ``d = (trans_x, trans_y, trans_z)``, ``c`` the centre of the functional
  grid. The head of volume ``t`` relative to volume 0 is ``M_t @ inv(M_0)``.
- EPI distortion (:func:`voxel_shift_map`, :func:`distortion_operator`): the phase-encoding
  axis is voxel axis j (:data:`PE_AXIS`) and the direction is ``"j-"`` (:data:`PE_DIRECTION`,
  the LAION A>>P acquisition). A spin at voxel position ``j`` with off-resonance ``f`` (Hz)
  appears at ``j + s`` with ``s = PE_SIGN * f * TotalReadoutTime`` voxels, ``PE_SIGN = -1``:
  for ``"j-"`` a positive frequency moves the signal towards -j (posterior). This is the
  voxel-shift-map convention of FSL/sdcflows (``VSM = f * TRT``, negated for a ``-`` direction).
  Intensity follows the mapping: the content of every source voxel is spread uniformly over the
  interval its two edges map to, so the total signal of each PE column is conserved (the
  stored intensity is the true intensity divided by the Jacobian ``1 + ds/dj``: compressed
  regions pile up, stretched ones dim). Shifts wrap around the field of view along j, as
  Fourier encoding does.
- Complex images (:func:`distort_signal`): the magnitude is redistributed as above and the
  phase of a target voxel is the magnitude-weighted mean of the (unwrapped) phases of the
  sources that land in it. The simulated voxels carry no intravoxel dephasing, so sources are
  not summed coherently: a coherent sum of neighbours whose phases differ by radians (the
  steep field near the sinuses at late echoes) would produce moiré rings instead of the real
  dropout, which this simulator does not model.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

#: Phase-encoding voxel axis of the BOLD (j, world y) and its BIDS direction.
PE_AXIS = 1
PE_DIRECTION = "j-"
#: Sign of the voxel shift along +j per unit of (frequency × readout time) for PE_DIRECTION.
PE_SIGN = -1.0


def rotation(angles: np.ndarray) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for rotations (rad) about x, y, z; shape (3, 3)."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix (3, 3) by ``angle`` (rad, right-handed) about the unit vector ``axis``."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def rigid_matrix(params: np.ndarray, center: np.ndarray) -> np.ndarray:
    """4×4 world → world matrix of one volume's motion parameters (see module conventions).

    Parameters
    ----------
    params
        ``(trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)``, mm and rad, shape (6,).
    center
        Rotation centre ``c`` (world mm), shape (3,).

    Returns
    -------
    numpy.ndarray
        (4, 4) float64: motion-free head position → scanner position.
    """
    params = np.asarray(params, float)
    c = np.asarray(center, float)
    rot = rotation(params[3:])
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = c - rot @ c + params[:3]
    return out


def voxel_shift_map(field_hz: np.ndarray, total_readout_time: float) -> np.ndarray:
    """Voxel shift along +j (voxels) of an off-resonance map for PE ``"j-"``.

    Parameters
    ----------
    field_hz
        Off-resonance, Hz, any shape.
    total_readout_time
        BIDS ``TotalReadoutTime``, s.

    Returns
    -------
    numpy.ndarray
        ``PE_SIGN * field_hz * total_readout_time``, float32, the shape of ``field_hz``.
    """
    return (PE_SIGN * total_readout_time * np.asarray(field_hz, np.float64)).astype(np.float32)


def distortion_operator(shift: np.ndarray, sources: np.ndarray | None = None) -> sparse.csc_array:
    """Sparse linear operator of the EPI distortion of a 3D image.

    Source voxel ``j`` of a PE column covers ``[j - 1/2, j + 1/2]``; its edges move with the
    shift interpolated to them (``s(j ± 1/2)``, the mean of the two neighbours, the end value at
    the grid ends), and its content is spread uniformly over the mapped interval, i.e. over the
    target voxels in proportion to their overlap with it (wrapping around along j). The
    weights of every source sum to one (content is conserved per column); folds (a Jacobian
    ``<= 0``) are handled by the same rule.

    Parameters
    ----------
    shift
        Voxel shift along +j of every (true-position) voxel, shape (nx, ny, nz).
    sources
        Sorted flat (C-order) indices of the voxels that carry signal (the others are left out
        of the operator); default all.

    Returns
    -------
    scipy.sparse.csc_array
        (nvox, nvox) float32 ``D`` with ``distorted.ravel() = D @ true.ravel()``.
    """
    nx, ny, nz = shift.shape
    nvox = nx * ny * nz
    s = np.asarray(shift, np.float64)
    edge = np.empty((nx, ny + 1, nz))
    edge[:, 1:-1] = 0.5 * (s[:, :-1] + s[:, 1:])
    edge[:, 0], edge[:, -1] = s[:, 0], s[:, -1]
    pos = np.arange(ny + 1, dtype=np.float64)[None, :, None] - 0.5 + edge
    src = np.arange(nvox) if sources is None else np.asarray(sources, np.int64)
    a = pos[:, :-1].reshape(-1)[src]
    b = pos[:, 1:].reshape(-1)[src]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    width = hi - lo
    degenerate = width < 1e-9
    safe = np.where(degenerate, 1.0, width)
    x, _, z = np.unravel_index(src, (nx, ny, nz))
    base = x * (ny * nz) + z
    k0 = np.floor(lo + 0.5).astype(np.int64)
    n_bins = int((np.floor(hi + 0.5).astype(np.int64) - k0).max()) + 1 if src.size else 1
    k = k0[:, None] + np.arange(n_bins)
    overlap = np.minimum(hi[:, None], k + 0.5) - np.maximum(lo[:, None], k - 0.5)
    weight = np.clip(overlap, 0.0, None) / safe[:, None]
    weight[degenerate] = 0.0
    weight[degenerate, 0] = 1.0
    keep = weight > 0
    counts = np.zeros(nvox, np.int64)
    counts[src] = keep.sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    rows = (base[:, None] + (k % ny) * nz)[keep]
    return sparse.csc_array((weight[keep].astype(np.float32), rows, indptr), shape=(nvox, nvox))


def distort_signal(
    magnitude: np.ndarray, phase: np.ndarray, operator: sparse.csc_array
) -> tuple[np.ndarray, np.ndarray]:
    """Distort a complex image given as magnitude and unwrapped phase (module conventions).

    Parameters
    ----------
    magnitude, phase
        Flat (C-order) magnitude and unwrapped phase (rad) of the true image, shape (nvox,).
    operator
        From :func:`distortion_operator`.

    Returns
    -------
    magnitude, phase
        Flat float32 arrays (nvox,): ``D @ magnitude`` and ``D @ (magnitude * phase)`` divided
        by it (0 where no signal lands).
    """
    mag = np.asarray(magnitude, np.float32)
    out_mag = operator @ mag
    weighted = operator @ (mag * np.asarray(phase, np.float32))
    out_phase = np.divide(
        weighted, out_mag, out=np.zeros_like(weighted), where=out_mag > 1e-6 * out_mag.max()
    )
    return out_mag.astype(np.float32), out_phase.astype(np.float32)


def distort(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Apply the EPI distortion of ``shift`` (voxels along +j) to a 3D image.

    Parameters
    ----------
    image
        Real image (e.g. a magnitude), shape (nx, ny, nz); a complex image is treated
        linearly (coherent sum; not what the simulator does, see :func:`distort_signal`).
    shift
        Voxel shift map, shape (nx, ny, nz).

    Returns
    -------
    numpy.ndarray
        The distorted image, same shape and dtype as ``image``.
    """
    flat = np.asarray(image).reshape(-1)
    src = np.flatnonzero(flat)
    out = distortion_operator(shift, src) @ flat
    return out.reshape(image.shape).astype(image.dtype, copy=False)


def itk_affine_text(points_map: np.ndarray) -> str:
    """ITK/ANTs text transform file of a world → world map given in RAS mm.

    ITK transforms act on LPS physical points; a resampling transform maps points of the
    reference (fixed) space to the moving space. Pass the RAS map from the reference space to
    the space of the image to be resampled.

    Parameters
    ----------
    points_map
        (4, 4) RAS-mm affine ``y = A x + t``.

    Returns
    -------
    str
        An ``#Insight Transform File V1.0`` with one ``AffineTransform_double_3_3`` (centre 0).
    """
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = flip @ np.asarray(points_map, float) @ flip
    params = [*lps[:3, :3].ravel(), *lps[:3, 3]]
    return (
        "#Insight Transform File V1.0\n#Transform 0\n"
        "Transform: AffineTransform_double_3_3\n"
        f"Parameters: {' '.join(repr(float(v)) for v in params)}\n"
        "FixedParameters: 0 0 0\n"
    )
