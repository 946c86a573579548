"""A smooth synthetic head, evaluated in continuous world coordinates (tests, benchmarks).

The geometry kernels are checked against known rigid transforms: the phantom is a function of
world position (mm), so a moved volume is made by evaluating it at moved coordinates, without
an interpolation that would blur the truth. It is not the simulator's anatomy (that lives in
:mod:`echoprep.simulate`); it is small, seeded and fast.

Structure (mm, about ``center``): a scalp shell (ellipsoid semi-axes 74 × 92 × 70 outside,
68 × 86 × 64 inside), a brain (62 × 78 × 56, boundary perturbed by ±4 mm), white matter
where a smooth random field (wavelengths 12–30 mm) is high, two ventricles, and a fine
texture (wavelengths 7–14 mm, ±10 %). Tissue edges are sigmoids of width ``edge_mm``.
Contrasts: ``"bold"`` (T2*-weighted EPI: CSF > GM > WM > scalp) and ``"t1"`` (WM > GM > CSF,
bright scalp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echoprep.kernels.geometry.transforms import apply_matrix, rigid_matrix

#: Tissue intensities of each contrast: (scalp, grey matter, white matter, CSF).
CONTRASTS: dict[str, tuple[float, float, float, float]] = {
    "bold": (0.35, 1.0, 0.75, 1.3),
    "t1": (0.8, 0.55, 0.9, 0.15),
}
_HEAD = np.array([74.0, 92.0, 70.0])
_SKULL = np.array([68.0, 86.0, 64.0])
_BRAIN = np.array([62.0, 78.0, 56.0])
_VENTRICLES = (((-9.0, 4.0, 8.0), (5.0, 18.0, 8.0)), ((9.0, 4.0, 8.0), (5.0, 18.0, 8.0)))


@dataclass(frozen=True)
class _Waves:
    """Sum of plane waves ``sum_k cos(k . x + phi)``, scaled to unit variance."""

    k: np.ndarray  # (n, 3) rad/mm
    phi: np.ndarray  # (n,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape[:-1], np.float32)
        xf = x.astype(np.float32, copy=False)
        for kk, ph in zip(self.k.astype(np.float32), self.phi.astype(np.float32), strict=True):
            out += np.cos(xf @ kk + ph)
        return out * np.float32(np.sqrt(2.0 / len(self.phi)))


def _waves(rng: np.random.Generator, n: int, lo_mm: float, hi_mm: float) -> _Waves:
    d = rng.standard_normal((n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    lam = rng.uniform(lo_mm, hi_mm, n)
    return _Waves(d * (2 * np.pi / lam)[:, None], rng.uniform(0, 2 * np.pi, n))


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(v, -30, 30)))


def _inside(x: np.ndarray, radii: np.ndarray, edge_mm: float, offset: np.ndarray | float = 0.0):
    """Soft indicator of an ellipsoid: sigmoid of an approximate signed distance (mm)."""
    rho = np.sqrt(np.sum((x / radii.astype(np.float32)) ** 2, axis=-1))
    dist = (1.0 - rho) * np.float32(radii.mean()) + offset
    return _sigmoid(dist / np.float32(edge_mm))


def head_phantom(
    points: np.ndarray,
    contrast: str = "bold",
    *,
    seed: int = 0,
    center: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
    edge_mm: float = 1.5,
) -> np.ndarray:
    """Intensity of the phantom at world points.

    Parameters
    ----------
    points
        ``(..., 3)`` world coordinates, mm.
    contrast
        ``"bold"`` or ``"t1"`` (see :data:`CONTRASTS`); both share one anatomy per ``seed``.
    seed
        Anatomy seed.
    center
        ``(3,)`` world position of the head centre, mm.
    edge_mm
        Width of tissue edges, mm.

    Returns
    -------
    numpy.ndarray
        ``(...)`` float32 intensity (0 outside the head, about 1 in grey matter for ``bold``).
    """
    if contrast not in CONTRASTS:
        raise ValueError(
            f"head_phantom: contrast must be one of {sorted(CONTRASTS)}; found {contrast!r}"
        )
    scalp_v, gm_v, wm_v, csf_v = CONTRASTS[contrast]
    rng = np.random.default_rng(seed)
    boundary, white, texture = (
        _waves(rng, 8, 25, 60),
        _waves(rng, 12, 12, 30),
        _waves(rng, 12, 7, 14),
    )
    x = (np.asarray(points, np.float64) - np.asarray(center, np.float64)).astype(np.float32)
    head = _inside(x, _HEAD, edge_mm)
    skull = _inside(x, _SKULL, edge_mm)
    brain = _inside(x, _BRAIN, edge_mm, offset=4.0 * boundary(x))
    wm = brain * _inside(x, _BRAIN * 0.8, 4 * edge_mm) * _sigmoid((white(x) - 0.2) / 0.25)
    csf = np.zeros_like(head)
    for c, r in _VENTRICLES:
        csf = np.maximum(csf, _inside(x - np.asarray(c, np.float32), np.asarray(r), edge_mm))
    csf *= brain
    tissue = gm_v * (brain - wm) + wm_v * wm
    tissue = tissue * (1 - csf) + csf_v * csf
    out = scalp_v * (head - skull) + tissue * (1 + 0.1 * texture(x))
    return out.astype(np.float32)


def brain_fraction(
    points: np.ndarray,
    *,
    seed: int = 0,
    center: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
    edge_mm: float = 1.5,
) -> np.ndarray:
    """Soft brain indicator (0–1) of :func:`head_phantom` at world points ``(..., 3)``."""
    rng = np.random.default_rng(seed)
    boundary = _waves(rng, 8, 25, 60)
    x = (np.asarray(points, np.float64) - np.asarray(center, np.float64)).astype(np.float32)
    return _inside(x, _BRAIN, edge_mm, offset=4.0 * boundary(x)).astype(np.float32)


def grid_points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates of every voxel centre, ``(nx, ny, nz, 3)`` float64, mm."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return apply_matrix(affine, ijk)


def moved_series(
    shape: tuple[int, int, int],
    affine: np.ndarray,
    params: np.ndarray,
    center: np.ndarray,
    *,
    contrast: str = "bold",
    noise: float = 0.0,
    seed: int = 0,
    head_center: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """A series of the phantom moved rigidly, volume ``t`` showing the head at ``params[t]``.

    A point ``y`` of the unmoved head is at ``vol_from_ref @ y`` in volume ``t``
    (``vol_from_ref = rigid_matrix(params[t], center)``), so volume ``t`` at world ``x`` is
    the phantom at ``inv(vol_from_ref) @ x``.

    Parameters
    ----------
    shape, affine
        Voxel grid ``(nx, ny, nz)`` and its voxel → world affine.
    params
        ``(t, 6)`` rigid parameters (mm, rad) about ``center`` (mm, ``(3,)``).
    contrast, seed, head_center
        Passed to :func:`head_phantom`.
    noise
        SD of added Gaussian noise (drawn from ``seed + 1``).

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz, t)`` float32.
    """
    p = np.atleast_2d(np.asarray(params, np.float64))
    pts = grid_points(shape, affine)
    out = np.empty((*shape, len(p)), np.float32)
    rng = np.random.default_rng(seed + 1)
    for t, m in enumerate(rigid_matrix(p, center)):
        vol = head_phantom(
            apply_matrix(np.linalg.inv(m), pts), contrast, seed=seed, center=head_center
        )
        if noise > 0:
            vol += np.float32(noise) * rng.standard_normal(shape, dtype=np.float32)
        out[..., t] = vol
    return out
