"""One-shot resampling: every volume of one echo interpolated once through the composed chain.

For output voxel ``u`` (output grid, e.g. T1w-aligned) and volume ``t`` the native voxel that
is sampled is (world matrices in the ``b_from_a`` pull convention of
:mod:`echoprep.kernels.geometry.transforms`; ``A`` the native affine):

1. ``x_out = out_affine @ u``                                     output world (T1w space)
2. ``v = inv(A) @ ref_from_out @ x_out``                          true position, reference run
   native voxels (``ref_from_out`` = ``ref_from_t1w``, e.g. ``run_from_run1 @ run1_from_t1w``)
3. ``v_d = v + vsm(v) e_pe``                                      distorted position (SDC,
   :mod:`echoprep.kernels.geometry.distortion`; skipped without a VSM)
4. ``w = inv(A) @ vol_from_ref[t] @ A @ v_d``                     native voxel of volume ``t``
   (head motion, :mod:`echoprep.kernels.geometry.motion`)
5. ``w += inv(A)[:3, :3] @ d(p)``, ``p = vol_from_ref[t] @ A @ v``  gradient nonlinearity
   (optional, docs/gradients.md): ``p`` is the true scanner-frame position of the tissue in
   volume ``t``; the scanner encoded it at ``p + d(p)``. ``d`` is interpolated trilinearly
   from a warp image (``gradient_warp`` on ``gradient_affine``'s grid); the susceptibility
   shift of step 3 stays the one of the tissue (evaluated at ``v``, the same tissue point)

and ``out[u, t] = J(v) * S_t(w)`` with ``S_t`` the order-``order`` B-spline interpolant of the
native volume ``t`` (:func:`scipy.ndimage.map_coordinates`, prefiltered per call, 0 outside
the native field of view) and ``J = 1 + ∂vsm/∂p`` (1 without a VSM or with
``jacobian=False``). The VSM and ``J`` are sampled at ``v`` trilinearly (fields, not data).

SDC is applied in the reference frame, before the motion of the volume (as fMRIPrep does):
motion is estimated on distorted volumes, so each volume's motion maps the distorted reference
onto it, and the field is assumed to move with the head. The shift direction therefore turns
with the head; for a shift ``s`` and a rotation ``θ`` the position error is about
``|s| sin θ`` (0.1 voxel for 3 voxels and 2°).

Proof of "each echo interpolated once with identical transforms": the whole map is one
frozen :class:`Chain` with a stable :attr:`Chain.digest` (SHA-256 of every array and setting);
:func:`resample` makes exactly one interpolation call per volume, on the raw native volume,
counts them, and returns a :class:`ResampleRecord` (digest, number of volumes, number of
interpolation calls) that the stage writes into each echo's sidecar. Echoes resampled with the
same Chain carry the same digest; a test can compare the records instead of images.
"""

from __future__ import annotations

import hashlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy import ndimage

from echoprep.kernels.geometry.distortion import shift_jacobian
from echoprep.kernels.geometry.transforms import check_matrix
from echoprep.kernels.threads import blas_limits, n_workers

log = logging.getLogger(__name__)

#: Version of the digest recipe (change it when :meth:`Chain.digest` changes).
CHAIN_VERSION = "echoprep.geometry.Chain/1"


@dataclass(frozen=True)
class OutputGrid:
    """A voxel grid: ``shape`` ``(nx, ny, nz)`` and ``affine`` (voxel → world RAS, mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shp = tuple(int(n) for n in self.shape)
        if len(shp) != 3 or min(shp) < 1:
            raise ValueError(f"OutputGrid: shape must be 3 positive ints; found {self.shape}")
        a = check_matrix(self.affine, "OutputGrid affine")
        if abs(np.linalg.det(a[:3, :3])) < 1e-9:
            raise ValueError("OutputGrid affine is singular")
        object.__setattr__(self, "shape", shp)
        object.__setattr__(self, "affine", _frozen(a))

    @property
    def voxel_size(self) -> np.ndarray:
        """``(3,)`` voxel sizes, mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def native_grid(shape: tuple[int, ...], affine: np.ndarray) -> OutputGrid:
    """The native (reference run) grid as output grid: motion and SDC applied, no T1w step
    (use ``ref_from_out = identity`` in the :class:`Chain`)."""
    return OutputGrid(tuple(int(n) for n in shape[:3]), np.asarray(affine, np.float64))  # type: ignore[arg-type]


def t1w_aligned_grid(
    t1w_shape: tuple[int, int, int],
    t1w_affine: np.ndarray,
    voxel_size: float,
    *,
    mask: np.ndarray | None = None,
    margin_mm: float = 10.0,
) -> OutputGrid:
    """A grid with the T1w's axes (rotation and axis flips) at the functional voxel size.

    Coordinates along the T1w axes are ``w = D^T (x - o)`` (``D``: the T1w affine's unit
    column directions, ``o`` its origin). The covered box is, in ``w``:

    - ``mask`` given (the T1w brain mask): the extent of the mask's voxel centres, widened by
      half a T1w voxel and ``margin_mm`` on every side;
    - ``mask=None``: the full T1w field of view (voxel edges, ``margin_mm`` ignored).

    The output has ``n_a = ceil(extent_a / voxel_size)`` voxels per axis, centred on the box;
    the affine is ``D * voxel_size`` with the origin at the first voxel centre.

    Parameters
    ----------
    t1w_shape, t1w_affine
        T1w grid ``(nx, ny, nz)`` and its voxel → world affine.
    voxel_size
        Output voxel size, mm (the functional one, e.g. 1.8; LAION writes 1.778).
    mask
        Optional ``(nx, ny, nz)`` boolean T1w brain mask.
    margin_mm
        Margin around the mask box, mm (>= 0).

    Returns
    -------
    OutputGrid
    """
    a = check_matrix(t1w_affine, "t1w_aligned_grid: T1w affine")
    if not (np.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"t1w_aligned_grid: voxel_size must be > 0 mm; found {voxel_size}")
    if margin_mm < 0:
        raise ValueError(f"t1w_aligned_grid: margin_mm must be >= 0; found {margin_mm}")
    shape = tuple(int(n) for n in t1w_shape[:3])
    vs_t1 = np.linalg.norm(a[:3, :3], axis=0)
    d = a[:3, :3] / vs_t1
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        raise ValueError("t1w_aligned_grid: the T1w affine has shear")
    if mask is None:
        lo = -0.5 * vs_t1
        hi = (np.asarray(shape) - 0.5) * vs_t1
    else:
        m = np.asarray(mask, bool)
        if m.shape != shape:
            raise ValueError(f"t1w_aligned_grid: mask shape {m.shape} != T1w shape {shape}")
        if not m.any():
            raise ValueError("t1w_aligned_grid: the brain mask is empty")
        idx = np.argwhere(m)
        # w = D^T (A ijk - o) = diag(vs_t1) ijk
        lo = idx.min(0) * vs_t1 - 0.5 * vs_t1 - margin_mm
        hi = idx.max(0) * vs_t1 + 0.5 * vs_t1 + margin_mm
    n = np.maximum(1, np.ceil((hi - lo) / voxel_size - 1e-6)).astype(int)
    first = (lo + hi) / 2 - (n - 1) / 2 * voxel_size
    out = np.eye(4)
    out[:3, :3] = d * voxel_size
    out[:3, 3] = a[:3, 3] + d @ first
    return OutputGrid(tuple(int(v) for v in n), out)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Chain:
    """The complete, frozen map from output voxels to the native voxels of every volume.

    Attributes
    ----------
    native_shape
        ``(nx, ny, nz)`` of the native series (every echo of the run).
    native_affine
        ``(4, 4)`` voxel → world affine of the native series.
    vol_from_ref
        ``(t, 4, 4)`` head-motion world matrices (:attr:`MotionResult.vol_from_ref`).
    output
        The :class:`OutputGrid`.
    ref_from_out
        ``(4, 4)`` world matrix, output-space head point → reference-space head point
        (``ref_from_t1w``; identity for a native output).
    vsm
        ``(nx, ny, nz)`` voxel shift map on the native grid (true positions of the reference),
        voxels along ``pe_axis``; None: no SDC.
    pe_axis
        PE array axis (0–2) when ``vsm`` is given.
    jacobian
        Multiply by ``1 + ∂vsm/∂p`` (only with a VSM).
    order
        B-spline order of the data interpolation (0–5; 3 = cubic).
    vsm_maps, vsm_courses
        Frame-wise distortion (:mod:`echoprep.kernels.geometry.framewise`): ``(K, nx, ny, nz)``
        patterns (voxels of shift per unit course) and ``(t, K)`` courses; the shift of volume
        ``t`` is ``vsm + vsm_courses[t] @ vsm_maps`` (and its Jacobian likewise). None: the
        static ``vsm`` for every volume.
    gradient_warp, gradient_affine
        Gradient nonlinearity (docs/gradients.md): ``(gx, gy, gz, 3)`` displacement ``d`` (RAS+
        mm, at the voxel centres of a grid in the scanner frame, e.g. the native grid padded by
        a few voxels; the ``echoprep gradient-warp`` image) and that grid's ``(4, 4)`` affine.
        None: not corrected (the chain, its digest and its samples are those without it).
    """

    native_shape: tuple[int, int, int]
    native_affine: np.ndarray
    vol_from_ref: np.ndarray
    output: OutputGrid
    ref_from_out: np.ndarray = field(default_factory=lambda: np.eye(4))
    vsm: np.ndarray | None = None
    pe_axis: int | None = None
    jacobian: bool = True
    order: int = 3
    vsm_maps: np.ndarray | None = None
    vsm_courses: np.ndarray | None = None
    gradient_warp: np.ndarray | None = None
    gradient_affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        shp = tuple(int(n) for n in self.native_shape)
        if len(shp) != 3 or min(shp) < 1:
            raise ValueError(
                f"Chain: native_shape must be 3 positive ints; found {self.native_shape}"
            )
        object.__setattr__(self, "native_shape", shp)
        a = check_matrix(self.native_affine, "Chain native_affine")
        object.__setattr__(self, "native_affine", _frozen(a))
        m = np.asarray(self.vol_from_ref, np.float64)
        if m.ndim != 3 or m.shape[1:] != (4, 4) or len(m) < 1:
            raise ValueError(f"Chain: vol_from_ref must have shape (t, 4, 4); found {m.shape}")
        for t, mt in enumerate(m):
            check_matrix(mt, f"Chain vol_from_ref[{t}]", rigid=True)
        object.__setattr__(self, "vol_from_ref", _frozen(m))
        if not isinstance(self.output, OutputGrid):
            raise ValueError(
                f"Chain: output must be an OutputGrid; found {type(self.output).__name__}"
            )
        object.__setattr__(
            self, "ref_from_out", _frozen(check_matrix(self.ref_from_out, "Chain ref_from_out"))
        )
        if self.vsm is not None:
            v = np.asarray(self.vsm, np.float32)
            if v.shape != shp:
                raise ValueError(f"Chain: vsm shape {v.shape} != native shape {shp}")
            if not np.all(np.isfinite(v)):
                raise ValueError("Chain: vsm has non-finite values")
            if self.pe_axis not in (0, 1, 2):
                raise ValueError(
                    f"Chain: pe_axis must be 0, 1 or 2 with a vsm; found {self.pe_axis}"
                )
            object.__setattr__(self, "vsm", _frozen(v))
        elif self.pe_axis is not None:
            raise ValueError("Chain: pe_axis given without a vsm")
        if (self.vsm_maps is None) != (self.vsm_courses is None):
            raise ValueError("Chain: vsm_maps and vsm_courses go together")
        if self.vsm_maps is not None:
            maps = np.asarray(self.vsm_maps, np.float32)
            courses = np.asarray(self.vsm_courses, np.float32)
            if self.vsm is None:
                raise ValueError("Chain: frame-wise vsm_maps need the static vsm (its mean)")
            if maps.ndim != 4 or maps.shape[1:] != shp:
                raise ValueError(f"Chain: vsm_maps shape {maps.shape} != (K, *{shp})")
            if courses.shape != (len(m), len(maps)):
                raise ValueError(
                    f"Chain: vsm_courses shape {courses.shape} != (volumes, K) = "
                    f"{(len(m), len(maps))}"
                )
            if not (np.all(np.isfinite(maps)) and np.all(np.isfinite(courses))):
                raise ValueError("Chain: frame-wise vsm has non-finite values")
            object.__setattr__(self, "vsm_maps", _frozen(maps))
            object.__setattr__(self, "vsm_courses", _frozen(courses))
        if (self.gradient_warp is None) != (self.gradient_affine is None):
            raise ValueError("Chain: gradient_warp and gradient_affine go together")
        if self.gradient_warp is not None:
            warp = np.asarray(self.gradient_warp, np.float32)
            if warp.ndim != 4 or warp.shape[3] != 3 or min(warp.shape[:3]) < 2:
                raise ValueError(
                    f"Chain: gradient_warp must have shape (gx, gy, gz, 3) with gx, gy, gz >= 2; "
                    f"found {warp.shape}"
                )
            if not np.all(np.isfinite(warp)):
                raise ValueError("Chain: gradient_warp has non-finite values")
            object.__setattr__(self, "gradient_warp", _frozen(warp))
            object.__setattr__(
                self,
                "gradient_affine",
                _frozen(check_matrix(np.asarray(self.gradient_affine), "Chain gradient_affine")),
            )
        if int(self.order) not in range(6):
            raise ValueError(f"Chain: order must be 0-5; found {self.order}")
        object.__setattr__(self, "order", int(self.order))
        object.__setattr__(self, "jacobian", bool(self.jacobian))

    @property
    def n_volumes(self) -> int:
        """Number of volumes ``t``."""
        return len(self.vol_from_ref)

    @cached_property
    def digest(self) -> str:
        """SHA-256 (hex) of every array (exact bytes) and setting of the chain."""
        h = hashlib.sha256(CHAIN_VERSION.encode())
        for part in (
            repr(self.native_shape),
            self.native_affine,
            self.vol_from_ref,
            repr(self.output.shape),
            self.output.affine,
            self.ref_from_out,
            self.vsm if self.vsm is not None else "no-vsm",
            repr((self.pe_axis, self.jacobian, self.order)),
            *(
                (self.vsm_maps, self.vsm_courses)
                if self.vsm_maps is not None and self.vsm_courses is not None
                else ()
            ),
            # (only when given: a chain without it keeps its digest)
            *(
                ("gradient", self.gradient_warp, self.gradient_affine)
                if self.gradient_warp is not None and self.gradient_affine is not None
                else ()
            ),
        ):
            if isinstance(part, np.ndarray):
                h.update(f"{part.dtype.str}{part.shape}".encode())
                h.update(np.ascontiguousarray(part).tobytes())
            else:
                h.update(str(part).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for the sidecar (digest, settings, the 4×4 matrices)."""
        return {
            "TransformChainDigest": self.digest,
            "TransformChainVersion": CHAIN_VERSION,
            "NumberOfVolumes": self.n_volumes,
            "InterpolationOrder": self.order,
            "SusceptibilityDistortionCorrection": self.vsm is not None,
            "FramewiseDistortionComponents": 0 if self.vsm_maps is None else len(self.vsm_maps),
            "PhaseEncodingAxis": self.pe_axis,
            "JacobianModulation": bool(self.jacobian and self.vsm is not None),
            "GradientNonlinearityCorrection": self.gradient_warp is not None,
            "RefFromOutput": self.ref_from_out.round(8).tolist(),
            "OutputShape": list(self.output.shape),
            "OutputAffine": self.output.affine.round(8).tolist(),
        }

    def _true_positions(self) -> np.ndarray:
        """Reference native voxel coordinates ``v`` of the output voxels (true positions,
        before any distortion shift): ``(3, n_out)`` float64, a new array each call."""
        ijk = np.indices(self.output.shape, dtype=np.float64).reshape(3, -1)
        q = np.linalg.inv(self.native_affine) @ self.ref_from_out @ self.output.affine
        return q[:3, :3] @ ijk + q[:3, 3:4]

    @cached_property
    def _field_samples(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Distorted reference voxel coordinates ``v_d`` ``(3, n_out)`` float64 and the
        Jacobian ``(n_out,)`` float32 (None when not applied)."""
        v = self._true_positions()
        jac = None
        if self.vsm is not None:
            vsm = np.asarray(self.vsm)
            s = ndimage.map_coordinates(vsm, v, order=1, mode="nearest")
            if self.jacobian:
                jmap = shift_jacobian(vsm, int(self.pe_axis))  # type: ignore[arg-type]
                jac = ndimage.map_coordinates(jmap, v, order=1, mode="nearest").astype(np.float32)
            v[int(self.pe_axis)] += s  # type: ignore[arg-type]
        return v, jac

    @cached_property
    def _framewise_samples(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The frame-wise patterns sampled at the output voxels' true reference positions:
        shifts ``(K, n_out)`` and their Jacobian terms ``(K, n_out)`` (None when not
        applied); None without frame-wise distortion."""
        if self.vsm_maps is None:
            return None
        v = self._true_positions()
        axis = int(self.pe_axis)  # type: ignore[arg-type]
        shifts = np.stack(
            [ndimage.map_coordinates(u, v, order=1, mode="nearest") for u in self.vsm_maps]
        ).astype(np.float32)
        jac = None
        if self.jacobian:
            jac = np.stack(
                [
                    ndimage.map_coordinates(np.gradient(u, axis=axis), v, order=1, mode="nearest")
                    for u in self.vsm_maps
                ]
            ).astype(np.float32)
        return shifts, jac

    @cached_property
    def _gradient_samples(self) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """The output voxels' true reference positions ``v`` ``(3, n_out)`` and the warp's
        components in native voxels (``inv(A)[:3, :3] @ d``, three ``(gx, gy, gz)`` float64
        arrays); None without gradient correction."""
        if self.gradient_warp is None:
            return None
        to_native = np.linalg.inv(self.native_affine)[:3, :3]
        warp = np.asarray(self.gradient_warp, np.float64) @ to_native.T  # (gx, gy, gz, 3)
        return self._true_positions(), [np.ascontiguousarray(warp[..., k]) for k in range(3)]

    def gradient_shift(self, t: int) -> np.ndarray | None:
        """``inv(A)[:3, :3] @ d(p)`` at the true scanner positions ``p`` of the output voxels
        in volume ``t``: ``(3, n_out)`` float64 native voxels (trilinear in the warp image,
        nearest value outside it); None without gradient correction."""
        samples = self._gradient_samples
        if samples is None:
            return None
        v, comps = samples
        a = self.native_affine
        q = np.linalg.inv(self.gradient_affine) @ self.vol_from_ref[t] @ a  # type: ignore[arg-type]
        g = q[:3, :3] @ v + q[:3, 3:4]
        return np.stack([ndimage.map_coordinates(c, g, order=1, mode="nearest") for c in comps])

    def volume_coordinates(self, t: int) -> np.ndarray:
        """Native voxel coordinates sampled for volume ``t``: ``(3, n_out)`` float64."""
        v, _ = self._field_samples
        frame = self._framewise_samples
        if frame is not None:
            v = v.copy()
            v[int(self.pe_axis)] += self.vsm_courses[t] @ frame[0]  # type: ignore[arg-type,index]
        a = self.native_affine
        m = np.linalg.inv(a) @ self.vol_from_ref[t] @ a
        w = m[:3, :3] @ v + m[:3, 3:4]
        shift = self.gradient_shift(t)
        if shift is not None:
            w += shift
        return w

    def jacobian_of(self, t: int) -> np.ndarray | None:
        """``(n_out,)`` float32 Jacobian of volume ``t`` (None when not applied)."""
        _, jac = self._field_samples
        frame = self._framewise_samples
        if jac is None or frame is None or frame[1] is None:
            return jac
        return jac + self.vsm_courses[t] @ frame[1]  # type: ignore[index]


@dataclass(frozen=True)
class ResampleRecord:
    """Provenance of one :func:`resample` call (write it into the output's sidecar).

    Attributes
    ----------
    chain_digest
        :attr:`Chain.digest` of the chain used.
    n_volumes
        Volumes resampled.
    interpolations
        Interpolation calls made on native data (one per volume: each voxel of the output
        is one interpolation of the raw input).
    order
        B-spline order.
    """

    chain_digest: str
    n_volumes: int
    interpolations: int
    order: int

    def to_json(self) -> dict[str, Any]:
        """Sidecar fields."""
        return {
            "TransformChainDigest": self.chain_digest,
            "NumberOfVolumes": self.n_volumes,
            "InterpolationsPerVolume": self.interpolations / max(1, self.n_volumes),
            "InterpolationOrder": self.order,
        }


def resample(
    series: np.ndarray,
    chain: Chain,
    *,
    chunk_volumes: int = 8,
    n_threads: int | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, ResampleRecord]:
    """Resample one echo's native series into the chain's output grid, once per volume.

    Parameters
    ----------
    series
        ``(nx, ny, nz, t)`` real array of one echo (native, un-interpolated; int or float),
        matching ``chain.native_shape`` and ``chain.n_volumes``.
    chain
        The :class:`Chain` (the same object for every echo of the run).
    chunk_volumes
        Volumes processed together (converted to float64 and interpolated, one per thread);
        temporary memory is about ``chunk_volumes * (8 * n_native + 32 * n_out)`` bytes.
    n_threads
        Worker threads (default: CPUs available; BLAS runs one thread in each); results do
        not depend on it.
    out
        Optional preallocated ``(*chain.output.shape, t)`` float32 array (e.g. a memmap).

    Returns
    -------
    data
        ``(ox, oy, oz, t)`` float32, in the input's intensity units (times the Jacobian).
    record
        :class:`ResampleRecord`.

    Raises
    ------
    ValueError
        Series not 4D/real, shape or volume count different from the chain's, bad
        ``chunk_volumes``/``n_threads``/``out``.
    """
    if not isinstance(chain, Chain):
        raise ValueError(f"resample: chain must be a Chain; found {type(chain).__name__}")
    if not isinstance(series, np.ndarray) or series.ndim != 4:
        found = f"shape {series.shape}" if hasattr(series, "shape") else type(series).__name__
        raise ValueError(f"resample: series must be a 4D array (x, y, z, t); found {found}")
    if not np.issubdtype(series.dtype, np.number) or np.iscomplexobj(series):
        raise ValueError(f"resample: series must be real; found dtype {series.dtype}")
    if series.shape[:3] != chain.native_shape or series.shape[3] != chain.n_volumes:
        raise ValueError(
            f"resample: series shape {series.shape} does not match the chain (native shape "
            f"{chain.native_shape}, {chain.n_volumes} volumes)"
        )
    if chunk_volumes < 1:
        raise ValueError(f"resample: chunk_volumes must be >= 1; found {chunk_volumes}")
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"resample: n_threads must be >= 1 or None; found {n_threads}")
    nt = chain.n_volumes
    oshape = (*chain.output.shape, nt)
    if out is None:
        out = np.empty(oshape, np.float32)
    elif out.shape != oshape or out.dtype != np.float32:
        raise ValueError(
            f"resample: out must be float32 of shape {oshape}; found {out.dtype} {out.shape}"
        )
    count = 0

    def one(t: int) -> int:
        vals = _interpolate(np.asarray(series[..., t]), chain.volume_coordinates(t), chain.order)
        jac = chain.jacobian_of(t)
        if jac is not None:
            vals *= jac
        out[..., t] = vals.reshape(chain.output.shape)
        return 1  # interpolation calls made for this volume

    workers = n_workers(n_threads)
    n_chunks = math.ceil(nt / chunk_volumes)
    # the worker threads are the parallelism; a BLAS thread pool per worker for the 3 x 3
    # coordinate products only adds threads that wait (docs/performance.md)
    with blas_limits(1), ThreadPoolExecutor(max_workers=min(workers, chunk_volumes)) as pool:
        for ci, t0 in enumerate(range(0, nt, chunk_volumes)):
            ts = range(t0, min(nt, t0 + chunk_volumes))
            count += sum(pool.map(one, ts))
            log.info(
                "resample: volumes %d-%d of %d (chunk %d of %d)",
                ts[0],
                ts[-1],
                nt,
                ci + 1,
                n_chunks,
            )
    return out, ResampleRecord(chain.digest, nt, count, chain.order)


def undistort_reference(
    reference: np.ndarray,
    affine: np.ndarray,
    vsm: np.ndarray | None,
    pe_axis: int | None,
    *,
    jacobian: bool = True,
    order: int = 3,
    gradient_warp: np.ndarray | None = None,
    gradient_affine: np.ndarray | None = None,
) -> np.ndarray:
    """The SDC-corrected reference image on its own native grid (registration target).

    The BOLD reference (e.g. :attr:`MotionResult.reference`) is distorted; register the
    undistorted one to the T1w (and run to run), because ``ref_from_out`` of the
    :class:`Chain` points at *true* reference positions. This interpolation makes a
    registration target only, never output data.

    Parameters
    ----------
    reference
        ``(nx, ny, nz)`` real reference image.
    affine
        ``(4, 4)`` its voxel → world affine.
    vsm, pe_axis
        Voxel shift map on the same grid and its PE axis
        (:func:`echoprep.kernels.geometry.distortion.voxel_shift_map`); None, None: no SDC.
    jacobian, order, gradient_warp, gradient_affine
        As in :class:`Chain`.

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float32.
    """
    ref = np.asarray(reference)
    if ref.ndim != 3:
        raise ValueError(f"undistort_reference: reference must be 3D; found shape {ref.shape}")
    chain = Chain(
        ref.shape,
        affine,
        np.eye(4)[None],
        native_grid(ref.shape, affine),
        vsm=vsm,
        pe_axis=pe_axis,
        jacobian=jacobian,
        order=order,
        gradient_warp=gradient_warp,
        gradient_affine=gradient_affine,
    )
    out, _ = resample(ref[..., None], chain, n_threads=1)
    return out[..., 0]


def _interpolate(volume: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """The one data interpolation: B-spline of ``order`` (prefiltered here), 0 outside.

    Parameters
    ----------
    volume
        ``(nx, ny, nz)`` native volume.
    coords
        ``(3, n)`` voxel coordinates.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float32.
    """
    vals = ndimage.map_coordinates(
        volume.astype(np.float64, copy=False),
        coords,
        order=order,
        mode="constant",
        cval=0.0,
        prefilter=True,
    )
    return vals.astype(np.float32)


def _frozen(a: np.ndarray) -> np.ndarray:
    b = np.array(a, copy=True)
    b.setflags(write=False)
    return b
