"""Gradient-nonlinearity displacement from a vendor's spherical-harmonic coefficients.

Pure array code (no file I/O: :mod:`echoprep.io.gradients` reads the Siemens ``.grad`` files).
The model, its normalisation, the frames and the displacement convention are described in
docs/gradients.md; in short, for each gradient axis ``a`` in ``x, y, z`` of the scanner's device
frame::

    d_a(p) = R0 * sum_{n=0..L} sum_{m=0..n} (r/R0)^n * P~_n^m(cos theta)
                                * (A_a[n, m] cos(m phi) + B_a[n, m] sin(m phi))

``(r, theta, phi)`` are the spherical coordinates of the point ``p`` (device frame, mm, origin
at the gradient isocentre), ``R0`` the coefficient file's reference radius and ``P~_n^m`` the
associated Legendre function with the Siemens normalisation (:func:`siemens_normalization`):
no Condon-Shortley phase, multiplied by ``sqrt((2n + 1) (n - m)! / (2 (n + m)!))`` for
``m > 0`` and unnormalised for ``m = 0`` (the normalisation gradunwarp applies to the Siemens
files). The coefficients describe the departure from the nominal linear gradient (a Siemens
``.grad`` header states ``A(1,0) = B(1,1) = A(1,1) = 0``: the linear terms are normalised
away), so ``d`` is that departure: the image as acquired shows the tissue point at true
position ``p`` at ``p + d(p)``.

The sum is evaluated in Cartesian form, without the singularities of ``theta`` and ``phi`` at
the origin and on the z axis: with ``u = p / R0``,
``(r/R0)^n P_n^m(cos theta) e^{i m phi} = (u_x + i u_y)^m q_n^m(u)``, where
``q_n^m = |u|^(n-m) P_n^(m)(u_z / |u|)`` (``P_n^(m)``: the m-th derivative of the Legendre
polynomial) is a polynomial that obeys the associated Legendre recurrence in ``n`` (upward in
``n`` at fixed ``m``: the stable direction)::

    q_m^m = (2m - 1)!!,   q_{m+1}^m = (2m + 1) u_z q_m^m,
    (n - m) q_n^m = (2n - 1) u_z q_{n-1}^m - (n + m - 1) |u|^2 q_{n-2}^m.

Frames (docs/gradients.md "Coordinate frames"): callers pass NIfTI RAS+ world coordinates in
mm; the coefficients are defined in the scanner's device coordinate system (DCS). For a
head-first supine (HFS) patient the DCS axes point to the patient's left, anterior and
inferior (LAI): DCS = diag(-1, +1, -1) RAS. The DICOM patient frame (LPS) is not the device
frame: for HFS the DCS is the LPS frame with its y and z axes reversed (Siemens'
patient-to-device rotation). :func:`device_from_ras` holds these matrices; the displacement
vector is converted with the same matrix as the point.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: The gradient axes, in the order of the coefficient arrays' first axis.
AXES: tuple[str, str, str] = ("x", "y", "z")

#: The highest expansion order accepted (Siemens files go to about 20; the recurrence is tested
#: to 20, and its intermediate values stay far inside the float64 range up to this order).
MAX_SUPPORTED_ORDER = 60

#: Points evaluated at a time by :func:`displacement`: about 10 float64 arrays of this length
#: are alive at once (about 5 MiB).
DEFAULT_CHUNK = 65536

#: Device (DCS) axes from RAS+ world axes, per patient position (docs/gradients.md): HFS is LAI;
#: head-first prone is RPI. Diagonal with entries +-1, so each matrix is its own inverse.
_DEVICE_FROM_RAS: dict[str, np.ndarray] = {
    "HFS": np.diag([-1.0, 1.0, -1.0]),
    "HFP": np.diag([1.0, -1.0, -1.0]),
}

#: The patient positions :func:`device_from_ras` knows.
PATIENT_POSITIONS: tuple[str, ...] = tuple(_DEVICE_FROM_RAS)


@dataclass(frozen=True)
class GradientCoefficients:
    """Spherical-harmonic coefficients of the three gradient axes (Siemens convention).

    Attributes
    ----------
    r0_mm
        Reference radius ``R0`` of the expansion, mm (> 0).
    cosine
        ``A`` coefficients, shape ``(3, L + 1, L + 1)``: ``cosine[axis, n, m]`` multiplies
        ``cos(m phi)``; axis 0, 1, 2 = device x, y, z (:data:`AXES`). Dimensionless. Entries
        with ``m > n`` must be 0.
    sine
        ``B`` coefficients, same shape, multiplying ``sin(m phi)`` (``sine[:, n, 0]`` has no
        effect).

    The arrays are copied and made read-only. ``L`` (:attr:`max_order`) is at most
    :data:`MAX_SUPPORTED_ORDER`.
    """

    r0_mm: float
    cosine: np.ndarray
    sine: np.ndarray

    def __post_init__(self) -> None:
        r0 = float(self.r0_mm)
        if not (math.isfinite(r0) and r0 > 0):
            raise ValueError(f"r0_mm: expected a positive number of mm; found {self.r0_mm!r}")
        cosine = np.array(self.cosine, dtype=np.float64)
        sine = np.array(self.sine, dtype=np.float64)
        if cosine.ndim != 3 or cosine.shape[0] != 3 or cosine.shape[1] != cosine.shape[2]:
            raise ValueError(
                f"cosine: expected shape (3, L+1, L+1) (axis, n, m); found {cosine.shape}"
            )
        if sine.shape != cosine.shape:
            raise ValueError(
                f"sine: expected the shape of cosine {cosine.shape}; found {sine.shape}"
            )
        order = cosine.shape[1] - 1
        if order > MAX_SUPPORTED_ORDER:
            raise ValueError(
                f"expected an expansion order of at most {MAX_SUPPORTED_ORDER}; found {order}"
            )
        if not (np.isfinite(cosine).all() and np.isfinite(sine).all()):
            raise ValueError("cosine, sine: expected finite coefficients; found NaN or inf")
        above = np.triu(np.ones((order + 1, order + 1), bool), k=1)  # m > n
        for name, arr in (("cosine", cosine), ("sine", sine)):
            if np.any(arr[:, above]):
                axis, n, m = (int(i[0]) for i in np.nonzero(arr * above))
                raise ValueError(
                    f"{name}[{axis}, {n}, {m}]: expected 0 <= m <= n; found a nonzero term "
                    f"with m = {m} > n = {n}"
                )
        cosine.setflags(write=False)
        sine.setflags(write=False)
        object.__setattr__(self, "r0_mm", r0)
        object.__setattr__(self, "cosine", cosine)
        object.__setattr__(self, "sine", sine)

    @property
    def max_order(self) -> int:
        """``L``: the highest order ``n`` the arrays hold."""
        return self.cosine.shape[1] - 1

    @classmethod
    def from_terms(
        cls,
        r0_mm: float,
        terms: Mapping[tuple[str, str, int, int], float],
        *,
        max_order: int | None = None,
    ) -> GradientCoefficients:
        """Coefficients from a sparse list of terms.

        Parameters
        ----------
        r0_mm
            Reference radius, mm.
        terms
            ``(axis, kind, n, m) -> value``: axis ``"x"``, ``"y"`` or ``"z"``, kind ``"A"``
            (cosine) or ``"B"`` (sine), ``0 <= m <= n``.
        max_order
            ``L``; None: the largest ``n`` in ``terms`` (0 without terms).

        Raises
        ------
        ValueError
            An unknown axis or kind, ``m > n``, or an ``n`` above ``max_order``.
        """
        top = max((n for (_, _, n, _) in terms), default=0)
        order = top if max_order is None else int(max_order)
        if top > order:
            raise ValueError(f"terms: expected n <= max_order = {order}; found n = {top}")
        if order > MAX_SUPPORTED_ORDER:
            raise ValueError(
                f"expected an expansion order of at most {MAX_SUPPORTED_ORDER}; found {order}"
            )
        arrays = {
            "A": np.zeros((3, order + 1, order + 1)),
            "B": np.zeros((3, order + 1, order + 1)),
        }
        for (axis, kind, n, m), value in terms.items():
            if axis not in AXES or kind not in arrays:
                raise ValueError(
                    f"term {(axis, kind, n, m)}: expected axis in {AXES} and kind 'A' or 'B'"
                )
            if not 0 <= m <= n:
                raise ValueError(f"term {(axis, kind, n, m)}: expected 0 <= m <= n")
            arrays[kind][AXES.index(axis), n, m] = value
        return cls(r0_mm, arrays["A"], arrays["B"])

    def terms(self) -> Iterator[tuple[str, str, int, int, float]]:
        """The nonzero terms as ``(axis, kind, n, m, value)``, by axis, kind, n, m."""
        for a, axis in enumerate(AXES):
            for kind, arr in (("A", self.cosine), ("B", self.sine)):
                for n, m in zip(*np.nonzero(arr[a]), strict=True):
                    yield axis, kind, int(n), int(m), float(arr[a, n, m])


def siemens_normalization(n: int, m: int) -> float:
    """The Siemens normalisation factor of the associated Legendre function ``P_n^m``.

    Returns ``1`` for ``m = 0`` and ``sqrt((2n + 1) (n - m)! / (2 (n + m)!))`` for
    ``0 < m <= n``; it multiplies ``P_n^m`` without the Condon-Shortley phase (gradunwarp
    writes the same as ``(-1)^m * factor * scipy.special.lpmv(m, n, t)``).
    """
    if not 0 <= m <= n:
        raise ValueError(f"expected 0 <= m <= n; found n = {n}, m = {m}")
    if m == 0:
        return 1.0
    return math.sqrt((2 * n + 1) * math.factorial(n - m) / (2 * math.factorial(n + m)))


def _legendre_series(z: np.ndarray, r2: np.ndarray, m: int, top: int) -> Iterator[np.ndarray]:
    """``q_n^m`` for ``n = m .. top`` (module docstring): the associated Legendre recurrence in
    homogeneous form (``z = |u| cos theta``, ``r2 = |u|^2``); each array has ``z``'s shape."""
    older: np.ndarray | None = None
    current = np.full(z.shape, float(math.prod(range(1, 2 * m, 2))))  # (2m - 1)!!, exact
    yield current
    for n in range(m + 1, top + 1):
        if older is None:
            nxt = (2 * m + 1) * z * current
        else:
            nxt = ((2 * n - 1) * z * current - (n + m - 1) * r2 * older) / (n - m)
        older, current = current, nxt
        yield current


def associated_legendre(t: np.ndarray, max_order: int) -> np.ndarray:
    """Siemens-normalised associated Legendre functions ``P~_n^m(t)``, all ``n, m <= L``.

    Parameters
    ----------
    t
        Arguments ``cos(theta)``, shape ``(N,)``, in ``[-1, 1]``.
    max_order
        ``L`` (0 .. :data:`MAX_SUPPORTED_ORDER`).

    Returns
    -------
    numpy.ndarray
        Shape ``(L + 1, L + 1, N)`` float64: ``[n, m]`` holds
        ``siemens_normalization(n, m) * P_n^m(t)`` (no Condon-Shortley phase) for ``m <= n``,
        0 for ``m > n``. Computed by the upward recurrence in ``n`` that :func:`displacement`
        uses.
    """
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if not 0 <= max_order <= MAX_SUPPORTED_ORDER:
        raise ValueError(f"max_order: expected 0 .. {MAX_SUPPORTED_ORDER}; found {max_order}")
    out = np.zeros((max_order + 1, max_order + 1, t.size))
    sin_theta = np.sqrt(np.clip(1.0 - t * t, 0.0, None))
    ones = np.ones_like(t)
    for m in range(max_order + 1):
        for n, q in enumerate(_legendre_series(t, ones, m, max_order), start=m):
            out[n, m] = siemens_normalization(n, m) * sin_theta**m * q
    return out


def device_from_ras(patient_position: str = "HFS") -> np.ndarray:
    """The 3x3 matrix taking RAS+ world vectors (and points) to the scanner's device frame.

    Parameters
    ----------
    patient_position
        The DICOM patient position: ``"HFS"`` (head first supine: device = LAI, the matrix is
        ``diag(-1, 1, -1)``) or ``"HFP"`` (head first prone: RPI, ``diag(1, -1, -1)``). The
        matrix is its own inverse (device -> RAS).

    Raises
    ------
    ValueError
        Another position (feet first or decubitus: not implemented).
    """
    try:
        return _DEVICE_FROM_RAS[patient_position].copy()
    except KeyError:
        raise ValueError(
            f"patient_position: expected one of {', '.join(PATIENT_POSITIONS)}; found "
            f"{patient_position!r} (other positions are not implemented: docs/gradients.md)"
        ) from None


def _points(points_mm: np.ndarray, chunk: int) -> np.ndarray:
    pts = np.asarray(points_mm, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_mm: expected shape (N, 3); found {pts.shape}")
    if int(chunk) < 1:
        raise ValueError(f"chunk: expected a positive number of points; found {chunk}")
    return pts


def device_displacement(
    coeffs: GradientCoefficients, points_mm: np.ndarray, *, chunk: int = DEFAULT_CHUNK
) -> np.ndarray:
    """The displacement ``d(p)`` of points given and returned in the device frame.

    Parameters
    ----------
    coeffs
        The coefficients.
    points_mm
        True positions ``p``, shape ``(N, 3)``, device-frame mm (origin at isocentre).
    chunk
        Points evaluated at a time (memory: about 10 float64 arrays of ``chunk`` values).

    Returns
    -------
    numpy.ndarray
        Shape ``(N, 3)`` float64, device-frame mm: component ``a`` is ``d_a(p)`` of the
        module docstring (the gradient axis ``a`` displaces along ``a``).
    """
    pts = _points(points_mm, chunk)
    out = np.zeros(pts.shape)
    top = coeffs.max_order
    norms = np.zeros((top + 1, top + 1))
    for n in range(top + 1):
        for m in range(n + 1):
            norms[n, m] = siemens_normalization(n, m)
    used = (coeffs.cosine != 0) | (coeffs.sine != 0)  # (3, n, m)
    needed = used.any(axis=0)  # (n, m)
    last_m = int(np.nonzero(needed.any(axis=0))[0].max()) if needed.any() else -1
    step = int(chunk)
    for start in range(0, len(pts), step):
        u = pts[start : start + step] / coeffs.r0_mm
        x, y, z = u[:, 0], u[:, 1], u[:, 2]
        r2 = x * x + y * y + z * z
        acc = out[start : start + step]
        re = np.ones_like(x)  # Re (x + iy)^m
        im = np.zeros_like(x)  # Im (x + iy)^m
        for m in range(last_m + 1):
            if m:
                re, im = x * re - y * im, x * im + y * re
            if not needed[:, m].any():
                continue
            top_n = int(np.nonzero(needed[:, m])[0].max())
            for n, q in enumerate(_legendre_series(z, r2, m, top_n), start=m):
                if not needed[n, m]:
                    continue
                radial = norms[n, m] * q
                for a in range(3):
                    a_nm, b_nm = coeffs.cosine[a, n, m], coeffs.sine[a, n, m]
                    if a_nm:
                        acc[:, a] += a_nm * radial * re
                    if b_nm and m:
                        acc[:, a] += b_nm * radial * im
    out *= coeffs.r0_mm
    return out


def displacement(
    coeffs: GradientCoefficients,
    points_mm: np.ndarray,
    *,
    chunk: int = DEFAULT_CHUNK,
    patient_position: str = "HFS",
) -> np.ndarray:
    """The gradient-nonlinearity displacement ``d(p)`` at RAS+ world points.

    Parameters
    ----------
    coeffs
        The coefficients (device frame).
    points_mm
        True positions ``p``, shape ``(N, 3)``, NIfTI RAS+ world mm, relative to the
        gradient isocentre (scanner coordinates: the world frame of the images the scanner
        writes).
    chunk
        Points evaluated at a time (bounds the memory; the result does not depend on it).
    patient_position
        How the RAS+ axes relate to the device axes (:func:`device_from_ras`).

    Returns
    -------
    numpy.ndarray
        Shape ``(N, 3)`` float64, RAS+ mm: the image as acquired shows the point at true
        position ``p`` at ``p + d(p)``.
    """
    frame = device_from_ras(patient_position)
    pts = _points(points_mm, chunk)
    return device_displacement(coeffs, pts @ frame.T, chunk=chunk) @ frame


def invert_displacement(
    coeffs: GradientCoefficients,
    points_mm: np.ndarray,
    *,
    max_steps: int = 30,
    tolerance_mm: float = 1e-6,
    patient_position: str = "HFS",
) -> tuple[np.ndarray, float]:
    """The true positions imaged at acquired positions: ``p`` with ``p + d(p) = q``.

    Fixed-point iteration ``p <- q - d(p)`` from ``p = q``; it contracts wherever
    ``|grad d| < 1`` (real coils: a few hundredths), gaining about two digits per step.

    Parameters
    ----------
    coeffs
        The coefficients.
    points_mm
        Acquired positions ``q``, shape ``(N, 3)``, RAS+ world mm (scanner coordinates).
    max_steps, tolerance_mm
        At most ``max_steps`` steps; stop once no point moves by ``tolerance_mm`` or more.
    patient_position
        As for :func:`displacement`.

    Returns
    -------
    p
        ``(N, 3)`` float64 RAS+ mm.
    step
        The largest move of the last step, mm (what the caller checks for convergence).
    """
    q = np.asarray(points_mm, np.float64)
    p = q.copy()
    step = np.inf
    for _ in range(int(max_steps)):
        new = q - displacement(coeffs, p, patient_position=patient_position)
        step = float(np.abs(new - p).max()) if len(p) else 0.0
        p = new
        if step < tolerance_mm:
            break
    return p, step


def grid_displacement(
    coeffs: GradientCoefficients,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    pad: int = 0,
    patient_position: str = "HFS",
    chunk: int = DEFAULT_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """``d(p)`` at every voxel centre of a grid widened by ``pad`` voxels on every side.

    Parameters
    ----------
    coeffs
        The coefficients.
    shape, affine
        The grid ``(nx, ny, nz)`` and its ``(4, 4)`` voxel -> RAS+ world affine (mm, the
        scanner frame: origin at the isocentre).
    pad
        Voxels added on every side (>= 0), so that positions moved by head motion stay inside.
    patient_position, chunk
        As in :func:`displacement` (the grid is evaluated one slice at a time).

    Returns
    -------
    field
        ``(nx + 2 pad, ny + 2 pad, nz + 2 pad, 3)`` float32, RAS+ mm (the ``echoprep
        gradient-warp`` image).
    field_affine
        ``(4, 4)`` float64: ``affine`` with its origin moved to voxel ``(-pad, -pad, -pad)``.
    """
    if int(pad) < 0:
        raise ValueError(f"pad: expected a non-negative number of voxels; found {pad}")
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine: expected shape (4, 4); found {a.shape}")
    p = int(pad)
    out_shape = tuple(int(n) + 2 * p for n in shape[:3])
    grid_affine = a.copy()
    grid_affine[:3, 3] = a[:3, :3] @ np.full(3, -float(p)) + a[:3, 3]
    field = np.zeros((*out_shape, 3), np.float32)
    ii, jj = np.meshgrid(np.arange(out_shape[0]), np.arange(out_shape[1]), indexing="ij")
    plane = np.stack([ii.ravel(), jj.ravel()], axis=1).astype(np.float64)
    for k in range(out_shape[2]):  # one slice at a time: memory bounded by a slice
        ijk = np.column_stack([plane, np.full(len(plane), float(k))])
        points = ijk @ grid_affine[:3, :3].T + grid_affine[:3, 3]
        d = displacement(coeffs, points, chunk=chunk, patient_position=patient_position)
        field[:, :, k, :] = d.reshape(out_shape[0], out_shape[1], 3)
    return field, grid_affine


#: Voxels of edge padding before the B-spline prefilter of :func:`unwarp_image` (what
#: ``scipy.ndimage.map_coordinates`` pads by for ``mode="nearest"``).
_SPLINE_PAD = 12


def unwarp_image(
    data: np.ndarray,
    affine: np.ndarray,
    coeffs: GradientCoefficients,
    *,
    patient_position: str = "HFS",
    order: int = 3,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[np.ndarray, float]:
    """An image without the gradient distortion, on its own grid: its values at ``p + d(p)``.

    Each voxel centre ``p`` of the grid takes the image as acquired sampled at ``p + d(p)``
    (docs/gradients.md, "The displacement convention"), with a B-spline of ``order``
    (``scipy.ndimage.map_coordinates``, mode ``"nearest"``); ``d`` is evaluated directly at
    every voxel (:func:`displacement`), a slab of whole ``x`` planes of about ``chunk`` points
    at a time, so memory grows with the image (its spline coefficients, float64) but not
    with ``d``. No Jacobian intensity correction.

    Parameters
    ----------
    data
        ``(nx, ny, nz)`` the image as acquired.
    affine
        ``(4, 4)`` its voxel -> RAS+ world affine (mm, the scanner frame: origin at the
        isocentre).
    coeffs
        The coil's coefficients.
    patient_position, chunk
        As in :func:`displacement`.
    order
        B-spline order 0-5 (3: cubic).

    Returns
    -------
    image
        ``(nx, ny, nz)`` float32.
    max_displacement
        The largest ``|d(p)|`` over the grid, mm.

    Raises
    ------
    ValueError
        ``data`` not 3D, ``affine`` not ``(4, 4)`` or singular, ``order`` outside 0-5.
    """
    vol = np.asarray(data, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"unwarp_image: expected a 3D image; found shape {vol.shape}")
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError("unwarp_image: expected a non-singular (4, 4) affine")
    if not 0 <= int(order) <= 5:
        raise ValueError(f"unwarp_image: expected a spline order 0-5; found {order}")
    # prefiltered once (as map_coordinates does for mode "nearest": edge padding, then the
    # spline filter), then sampled slab by slab without prefiltering again
    coef = np.pad(vol, _SPLINE_PAD, mode="edge")
    if order > 1:
        coef = ndimage.spline_filter(coef, order=int(order), mode="nearest")
    vox_from_mm = np.linalg.inv(a)[:3, :3]
    nx, ny, nz = vol.shape
    jk = np.indices((ny, nz), dtype=np.float64).reshape(2, -1)
    step = max(1, int(chunk) // (ny * nz))
    out = np.empty(vol.shape, np.float32)
    largest = 0.0
    for i0 in range(0, nx, step):
        i1 = min(nx, i0 + step)
        ijk = np.vstack(
            [np.repeat(np.arange(i0, i1, dtype=np.float64), ny * nz), np.tile(jk, i1 - i0)]
        )
        points = (a[:3, :3] @ ijk + a[:3, 3:4]).T
        d = displacement(coeffs, points, chunk=chunk, patient_position=patient_position)
        largest = max(largest, float(np.sqrt((d**2).sum(axis=1)).max()))
        coords = ijk + vox_from_mm @ d.T + _SPLINE_PAD
        samples = ndimage.map_coordinates(
            coef, coords, order=int(order), mode="nearest", prefilter=False
        )
        out[i0:i1] = samples.reshape(i1 - i0, ny, nz)
    return out, largest


__all__ = [
    "AXES",
    "DEFAULT_CHUNK",
    "MAX_SUPPORTED_ORDER",
    "PATIENT_POSITIONS",
    "GradientCoefficients",
    "associated_legendre",
    "device_displacement",
    "device_from_ras",
    "displacement",
    "grid_displacement",
    "invert_displacement",
    "siemens_normalization",
    "unwarp_image",
]
