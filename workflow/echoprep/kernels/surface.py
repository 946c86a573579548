"""Cortical-surface array code: ribbon sampling of a volume to vertices, sphere resampling.

Pure array code (numpy, scipy): the surface stage (:mod:`echoprep.stages.surface`) reads the
meshes and maps and writes GIFTI files; docs/surface.md has the method and its checks.

**Ribbon sampling** (:func:`ribbon_matrix`). Each vertex is sampled at ``n_depths`` points
evenly spaced from its white-surface position (depth 0) to its pial position (depth 1), both
ends included, as nilearn's ``vol_to_surf(kind="depth")`` does. Each point takes the
trilinear interpolation of the voxels around it, restricted to the voxels of the analysis mask
(the weights of the other corners are dropped and the rest renormalised, so that no voxel
outside the mask ever contributes to a vertex); the vertex is the mean over its points. The
result is one sparse ``(vertices, mask voxels)`` matrix with rows summing to 1, applied to any
number of maps at once (betas, series) by one sparse product.

A vertex is *outside the field of view* when less than half of its points' trilinear weight
falls on the grid, and *outside the mask* when it is inside the field of view but no mask
voxel touches any of its points; both rows are empty and their values NaN.

**Sphere resampling** (:func:`sphere_matrix`). From the subject's ``sphere.reg`` to a
template sphere (fsaverage), FreeSurfer's ``mri_surf2surf`` default ``nnfr``: every target
vertex averages its nearest source vertex (forward) and every source vertex whose nearest
target it is (reverse), so that a coarse target (fsaverage5) averages all the source vertices
around it and a fine one never has a hole. Both spheres are compared as unit vectors (their
radii may differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

#: Default number of depths between white (0) and pial (1) (docs/surface.md).
DEFAULT_DEPTHS = 7

#: Vertices per chunk of :func:`ribbon_matrix` (bounds its temporary arrays: about 30 bytes
#: per vertex, depth and corner).
_CHUNK = 32768

_CORNERS = np.array(
    [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.int64
)  # (8, 3)


@dataclass(frozen=True)
class RibbonMatrix:
    """Output of :func:`ribbon_matrix`.

    Attributes
    ----------
    matrix
        ``(V, M)`` CSR float32: row v holds the weights of the M mask voxels (in
        :attr:`voxels` order) for vertex v; each non-empty row sums to 1.
    voxels
        ``(M,)`` int64 flat (C-order) indices of the mask voxels on the grid.
    outside_fov
        ``(V,)`` bool: vertices outside the field of view (empty rows).
    outside_mask
        ``(V,)`` bool: vertices inside the field of view that touch no mask voxel (empty rows).
    """

    matrix: sparse.csr_matrix
    voxels: np.ndarray
    outside_fov: np.ndarray
    outside_mask: np.ndarray

    @property
    def empty(self) -> np.ndarray:
        """``(V,)`` bool: vertices without a value (NaN in every sampled map)."""
        return self.outside_fov | self.outside_mask

    def sample(self, data: np.ndarray) -> np.ndarray:
        """Vertex values of mask-voxel data.

        Parameters
        ----------
        data
            ``(M,)`` or ``(M, K)`` values of the mask voxels (in :attr:`voxels` order), any
            float dtype; must be finite.

        Returns
        -------
        numpy.ndarray
            ``(V,)`` or ``(V, K)`` float32, NaN at the :attr:`empty` vertices.
        """
        values = np.asarray(data, np.float32)
        if values.shape[0] != self.voxels.size:
            raise ValueError(
                f"sample: expected {self.voxels.size} mask-voxel rows; found {values.shape[0]}"
            )
        out = np.asarray(self.matrix @ values, np.float32)
        out[self.empty] = np.nan
        return out


def depth_points(white: np.ndarray, pial: np.ndarray, n_depths: int) -> np.ndarray:
    """Points between the white and pial surfaces.

    Parameters
    ----------
    white, pial
        ``(V, 3)`` vertex coordinates (mm) of the same mesh topology.
    n_depths
        Number of depths, >= 1: evenly from 0 (white) to 1 (pial); one depth is the midpoint.

    Returns
    -------
    numpy.ndarray
        ``(n_depths, V, 3)`` float64 (mm).
    """
    white = np.asarray(white, np.float64)
    pial = np.asarray(pial, np.float64)
    if white.shape != pial.shape or white.ndim != 2 or white.shape[1] != 3:
        raise ValueError(
            f"depth_points: expected white and pial of one shape (V, 3); found {white.shape} "
            f"and {pial.shape}"
        )
    if n_depths < 1:
        raise ValueError(f"depth_points: n_depths must be >= 1; found {n_depths}")
    depths = np.linspace(0.0, 1.0, n_depths) if n_depths > 1 else np.array([0.5])
    return white[None] + depths[:, None, None] * (pial - white)[None]


def ribbon_matrix(
    white: np.ndarray,
    pial: np.ndarray,
    vox_from_world: np.ndarray,
    shape: tuple[int, int, int],
    mask: np.ndarray,
    n_depths: int = DEFAULT_DEPTHS,
) -> RibbonMatrix:
    """The sparse sampling matrix of a volume's mask voxels to the vertices (module docstring).

    Parameters
    ----------
    white, pial
        ``(V, 3)`` vertex coordinates in the volume's world space (mm).
    vox_from_world
        ``(4, 4)`` inverse of the volume's voxel-to-world affine.
    shape
        The volume's grid shape ``(nx, ny, nz)``.
    mask
        ``shape`` bool: the voxels allowed to contribute (the analysis mask).
    n_depths
        Depths per vertex (:func:`depth_points`).

    Returns
    -------
    RibbonMatrix
    """
    shape = tuple(int(n) for n in shape)
    mask = np.asarray(mask, bool)
    if mask.shape != shape:
        raise ValueError(f"ribbon_matrix: mask shape {mask.shape} != grid shape {shape}")
    voxels = np.flatnonzero(mask)
    column = np.full(int(np.prod(shape)), -1, np.int64)
    column[voxels] = np.arange(voxels.size)
    points = depth_points(white, pial, n_depths)  # (D, V, 3)
    n_vertices = points.shape[1]
    dims = np.asarray(shape, np.int64)
    rows_all, cols_all, vals_all = [], [], []
    fov_weight = np.zeros(n_vertices, np.float64)
    for start in range(0, n_vertices, _CHUNK):
        stop = min(start + _CHUNK, n_vertices)
        p = points[:, start:stop].reshape(-1, 3)  # (D * n, 3), depth-major
        ijk = p @ vox_from_world[:3, :3].T + vox_from_world[:3, 3]
        base = np.floor(ijk).astype(np.int64)
        frac = ijk - base
        vertex = np.tile(np.arange(start, stop), n_depths)  # (D * n,)
        for corner in _CORNERS:
            idx = base + corner
            w = np.prod(np.where(corner == 1, frac, 1.0 - frac), axis=1)
            on_grid = np.all((idx >= 0) & (idx < dims), axis=1)
            fov_weight += np.bincount(vertex[on_grid], weights=w[on_grid], minlength=n_vertices)
            flat = np.ravel_multi_index(tuple(idx[on_grid].T), shape)
            col = column[flat]
            keep = col >= 0
            rows_all.append(vertex[on_grid][keep])
            cols_all.append(col[keep])
            vals_all.append(w[on_grid][keep])
    rows = np.concatenate(rows_all) if rows_all else np.zeros(0, np.int64)
    cols = np.concatenate(cols_all) if cols_all else np.zeros(0, np.int64)
    vals = np.concatenate(vals_all) if vals_all else np.zeros(0)
    coo = sparse.coo_matrix((vals, (rows, cols)), shape=(n_vertices, voxels.size))
    matrix = coo.tocsr()
    matrix.sum_duplicates()
    outside_fov = fov_weight < 0.5 * n_depths
    total = np.asarray(matrix.sum(axis=1)).ravel()
    outside_mask = ~outside_fov & (total <= 0)
    keep_rows = ~(outside_fov | outside_mask)
    scale = np.where(keep_rows, 1.0 / np.where(total > 0, total, 1.0), 0.0)
    matrix = sparse.diags(scale) @ matrix
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    return RibbonMatrix(matrix, voxels, outside_fov, outside_mask)


def sphere_matrix(source: np.ndarray, target: np.ndarray) -> sparse.csr_matrix:
    """FreeSurfer's ``nnfr`` resampling from a source sphere to a target sphere.

    Parameters
    ----------
    source
        ``(Vs, 3)`` the subject's ``sphere.reg`` coordinates (any radius).
    target
        ``(Vt, 3)`` the template's sphere coordinates (any radius).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(Vt, Vs)`` float32, each row the mean weights of its forward and reverse
        neighbours (module docstring); apply with :func:`resample_to_sphere`.
    """
    src = _unit(source, "source sphere")
    tgt = _unit(target, "target sphere")
    forward = cKDTree(src).query(tgt)[1]  # nearest source of each target
    reverse = cKDTree(tgt).query(src)[1]  # nearest target of each source
    rows = np.concatenate([np.arange(tgt.shape[0]), reverse])
    cols = np.concatenate([forward, np.arange(src.shape[0])])
    pairs = np.unique(rows.astype(np.int64) * src.shape[0] + cols)
    rows, cols = np.divmod(pairs, src.shape[0])
    matrix = sparse.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, cols)), shape=(tgt.shape[0], src.shape[0])
    )
    counts = np.asarray(matrix.sum(axis=1)).ravel()
    return sparse.csr_matrix(sparse.diags(1.0 / counts) @ matrix, dtype=np.float32)


def resample_to_sphere(matrix: sparse.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Apply a :func:`sphere_matrix` to vertex values, ignoring NaN sources.

    Parameters
    ----------
    matrix
        ``(Vt, Vs)`` from :func:`sphere_matrix`.
    values
        ``(Vs,)`` or ``(Vs, K)``; NaN marks vertices without a value (the same vertices in every
        column).

    Returns
    -------
    numpy.ndarray
        ``(Vt,)`` or ``(Vt, K)`` float32: each target the weighted mean of its finite sources,
        NaN when it has none.
    """
    values = np.asarray(values, np.float32)
    valid = np.isfinite(values if values.ndim == 1 else values[:, 0]).astype(np.float32)
    weight = matrix @ valid
    out = np.asarray(matrix @ np.nan_to_num(values, nan=0.0), np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(weight > 0, 1.0 / weight, np.nan).astype(np.float32)
    return out * (scale if out.ndim == 1 else scale[:, None])


def _unit(points: np.ndarray, what: str) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"{what}: expected (V, 3) coordinates; found shape {pts.shape}")
    norm = np.linalg.norm(pts, axis=1, keepdims=True)
    if np.any(norm <= 0):
        raise ValueError(f"{what}: a vertex at the centre of the sphere (radius 0)")
    return pts / norm


def vertex_normals(coords: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals of a triangle mesh (area-weighted face normals; FreeSurfer's faces
    are ordered so that they point outwards).

    Parameters
    ----------
    coords
        ``(V, 3)`` vertex coordinates (mm).
    faces
        ``(F, 3)`` vertex indices.

    Returns
    -------
    numpy.ndarray
        ``(V, 3)`` float64; a vertex of no face gets (0, 0, 0).
    """
    coords = np.asarray(coords, np.float64)
    faces = np.asarray(faces, np.int64)
    a, b, c = coords[faces[:, 0]], coords[faces[:, 1]], coords[faces[:, 2]]
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(coords)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)


def transform_size(matrix: np.ndarray, center: np.ndarray) -> tuple[float, float]:
    """How far a rigid transform is from the identity.

    Parameters
    ----------
    matrix
        ``(4, 4)`` rigid world transform (mm).
    center
        ``(3,)`` the point whose displacement is reported (mm; e.g. the head's centre).

    Returns
    -------
    tuple of float
        The displacement of ``center`` (mm) and the rotation angle (degrees).
    """
    m = np.asarray(matrix, float)
    c = np.asarray(center, float)
    cos = np.clip((np.trace(m[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
    shift = float(np.linalg.norm(m[:3, :3] @ c + m[:3, 3] - c))
    return shift, float(np.degrees(np.arccos(cos)))


__all__ = [
    "DEFAULT_DEPTHS",
    "RibbonMatrix",
    "depth_points",
    "resample_to_sphere",
    "ribbon_matrix",
    "sphere_matrix",
    "transform_size",
    "vertex_normals",
]
