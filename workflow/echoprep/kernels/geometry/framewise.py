"""Frame-wise off-resonance fields from the multi-echo phase (MEDIC-style distortion correction).

Every volume of a multi-echo run carries its own field: the phase of echo ``e`` is
``phi_e = phi_0 + 2 pi f TE_e`` (mod 2 pi), ``f`` the off-resonance in Hz. After Van et al.
(MEDIC, Imaging Neuroscience 2026), implemented from that description in our own way:

1. **Reference field** (one volume, the run's reference): the phase difference of the first
   two echoes is unwrapped in space (:func:`unwrap_quality_guided`: voxels merged along their
   most reliable edges first), later echoes are unwrapped against the field it gives, and
   the field is the magnitude-weighted least-squares slope of phase over echo time. The
   whole-volume ambiguity of one turn per ``TE_2 - TE_1`` is resolved by taking the field
   whose median in the head is nearest 0 Hz (the scanner's frequency is set on the head's
   water).
2. **Change per volume**: the phase of every echo relative to the reference volume is small
   (a few Hz move it by less than a turn at the last echo), so no spatial unwrapping is
   needed: the first echo predicts the later ones' turns, and a weighted fit with an
   intercept (receive-phase change) over the echoes gives the change in Hz.
3. **Geometry**: a measured field sits where the distorted image puts it; it is moved back
   along the phase-encoding line to the true positions (fixed point ``f(p) = F(p + s f(p))``,
   ``s = sign * TotalReadoutTime``), then into the reference head position with the volume's
   head motion, and smoothed inside the head (normalised Gaussian convolution, as the static
   fieldmaps).
4. **Temporal consistency**: the fields are split into their mean over the run and a change
   of low rank (the leading principal components of the change, at most ``max_rank``, enough
   for ``energy`` of its variance): breathing and motion change the field smoothly and in a
   few patterns, noise does not.

The result is what the one-shot resampling applies (:class:`FramewiseField`): the field of
volume ``t`` at reference voxel ``v`` is ``static(v) + maps(v) @ courses[t]``. Pure array
code; the spatial stage reads the echoes and writes the result (docs/distortion.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from echoprep.kernels.geometry.distortion import smooth_fieldmap

TWO_PI = 2 * np.pi


@dataclass(frozen=True)
class FramewiseField:
    """The field of every volume of a run in the reference head position (true positions).

    Attributes
    ----------
    static
        ``(nx, ny, nz)`` float32, Hz: the field averaged over the run.
    maps
        ``(K, nx, ny, nz)`` float32, Hz per unit course: the patterns of its change.
    courses
        ``(t, K)`` float32: each volume's weight on each pattern.
    mask
        ``(nx, ny, nz)`` bool: voxels with signal where the phase was used.
    energy
        Fraction of the change's variance (inside ``mask``) the kept patterns explain.
    """

    static: np.ndarray
    maps: np.ndarray
    courses: np.ndarray
    mask: np.ndarray
    energy: float

    def field(self, t: int) -> np.ndarray:
        """``(nx, ny, nz)`` float32 field of volume ``t``, Hz."""
        return (self.static + np.tensordot(self.courses[t], self.maps, axes=1)).astype(np.float32)


def unwrap_quality_guided(wrapped: np.ndarray, quality: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Spatial phase unwrapping by merging voxels along their most reliable edges first.

    The edges between face neighbours inside ``mask`` are sorted by reliability
    (``min(quality_i, quality_j) * (1 - |wrap(phase_j - phase_i)| / pi)``: strong signal and a
    small phase step first) and taken in that order; an edge joining two groups shifts the
    second group by the whole turns that make the step across the edge its wrapped value
    (union-find with the turns stored relative to each voxel's parent; as in the
    reliability-sorted unwrapping of Herraez et al. 2002). Voxels outside ``mask`` keep their
    wrapped phase; each connected group of the mask is unwrapped up to one common turn.

    Parameters
    ----------
    wrapped
        ``(nx, ny, nz)`` phase, rad, in ``[-pi, pi]``.
    quality
        ``(nx, ny, nz)`` non-negative weight (e.g. the magnitude).
    mask
        ``(nx, ny, nz)`` bool.

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float64 unwrapped phase, rad.
    """
    phase = np.asarray(wrapped, np.float64)
    shape = phase.shape
    flat = phase.reshape(-1)
    q = np.asarray(quality, np.float64).reshape(-1)
    m = np.asarray(mask, bool)
    a_list, b_list = [], []
    strides = np.cumprod((1, *shape[::-1]))[:-1][::-1]  # C-order strides in voxels
    index = np.arange(phase.size).reshape(shape)
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        both = m[tuple(lo)] & m[tuple(hi)]
        a = index[tuple(lo)][both]
        a_list.append(a)
        b_list.append(a + strides[axis])
    a = np.concatenate(a_list)
    b = np.concatenate(b_list)
    step = flat[b] - flat[a]
    jump = np.round(step / TWO_PI).astype(np.int64)  # b's turns minus a's, to make the step small
    rel = np.minimum(q[a], q[b]) * (1 - np.abs(step - TWO_PI * jump) / np.pi)
    order = np.argsort(-rel, kind="stable")
    par = list(range(phase.size))
    trn = [0] * phase.size  # whole turns relative to the parent
    sz = [1] * phase.size
    av, bv, jv = a[order].tolist(), b[order].tolist(), jump[order].tolist()

    def find(i: int) -> tuple[int, int]:
        path = []
        total = 0
        while par[i] != i:
            path.append(i)
            total += trn[i]
            i = par[i]
        root, acc = i, total
        for v in path:  # compress: point every visited voxel at the root
            t = trn[v]
            par[v] = root
            trn[v] = acc
            acc -= t
        return root, total

    for i, j, k in zip(av, bv, jv, strict=True):
        ri, ti = find(i)
        rj, tj = find(j)
        if ri == rj:
            continue
        # wanted: turns(j) - turns(i) = -k, with turns(j) = tj + T(rj), turns(i) = ti
        shift = ti - k - tj
        if sz[ri] < sz[rj]:  # attach the smaller tree: ri under rj with the opposite shift
            par[ri] = rj
            trn[ri] = -shift
            sz[rj] += sz[ri]
        else:
            par[rj] = ri
            trn[rj] = shift
            sz[ri] += sz[rj]
    total = np.fromiter((find(v)[1] for v in range(phase.size)), np.int64, phase.size)
    out = flat + TWO_PI * np.where(m.reshape(-1), total, 0)
    return out.reshape(shape)


def congruent(wrapped: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """``wrapped`` plus the whole turns that bring it nearest ``guide`` (rad)."""
    return wrapped + TWO_PI * np.round((guide - wrapped) / TWO_PI)


def reference_field(echoes: np.ndarray, tes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Field (Hz) of one volume from its complex echoes, unwrapped in space.

    Parameters
    ----------
    echoes
        ``(E, nx, ny, nz)`` complex, E >= 2, in echo-time order.
    tes
        ``(E,)`` echo times, s, increasing.
    mask
        ``(nx, ny, nz)`` bool: voxels with signal (the median rule and the weights).

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float64, Hz, where the volume's image puts it (distorted space).
    """
    z = np.asarray(echoes)
    tes = np.asarray(tes, np.float64)
    dte = tes - tes[0]
    d1 = np.angle(z[1] * np.conj(z[0]))
    unwrapped = unwrap_quality_guided(d1, np.abs(z[0]), mask)
    if mask.any():  # the one turn spatial unwrapping leaves open, before the later echoes
        unwrapped -= TWO_PI * np.round(np.median(unwrapped[mask]) / TWO_PI)
    f = unwrapped / (TWO_PI * dte[1])
    if len(z) > 2:
        num = np.abs(z[1]) * dte[1] * unwrapped
        den = np.abs(z[1]) * dte[1] ** 2
        for e in range(2, len(z)):
            de = congruent(np.angle(z[e] * np.conj(z[0])), TWO_PI * f * dte[e])
            w = np.abs(z[e])
            num = num + w * dte[e] * de
            den = den + w * dte[e] ** 2
        f = np.divide(num / TWO_PI, den, out=f.copy(), where=den > 0)
    return f


def field_change(echoes: np.ndarray, reference: np.ndarray, tes: np.ndarray) -> np.ndarray:
    """Change of the field (Hz) from ``reference`` to ``echoes``, voxel by voxel.

    Per echo the phase change ``d_e = angle(z_e conj(r_e))``; the first echo's change
    predicts the whole turns of the later ones (a field change below ``1 / (2 TE_1)`` Hz), and
    the change is the weighted least-squares slope of ``d_e = a + 2 pi df TE_e`` (the
    intercept ``a`` takes a receive-phase change), weights ``|z_e| |r_e|``.

    Parameters
    ----------
    echoes, reference
        ``(E, ...)`` complex echoes of one volume and of the reference volume.
    tes
        ``(E,)`` echo times, s.

    Returns
    -------
    numpy.ndarray
        ``(...)`` float64, Hz.
    """
    tes = np.asarray(tes, np.float64)
    prod = echoes * np.conj(reference)
    d = np.angle(prod)
    w = np.abs(prod)
    first = d[0] / (TWO_PI * tes[0])
    for e in range(1, len(tes)):
        d[e] = congruent(d[e], TWO_PI * first * tes[e])
    x = TWO_PI * tes.reshape((-1,) + (1,) * (d.ndim - 1))
    sw = w.sum(axis=0)
    safe = np.where(sw > 0, sw, 1.0)
    xm = (w * x).sum(axis=0) / safe
    dm = (w * d).sum(axis=0) / safe
    sxx = (w * (x - xm) ** 2).sum(axis=0)
    sxy = (w * (x - xm) * (d - dm)).sum(axis=0)
    return np.divide(sxy, sxx, out=np.zeros_like(sxy), where=sxx > 0)


def undistort_field(
    measured: np.ndarray, axis: int, shift_per_hz: float, n_iter: int = 8
) -> np.ndarray:
    """Field at the true positions from a field measured in the distorted image.

    Solves ``f(p) = F(p + shift_per_hz * f(p))`` along each phase-encoding line by fixed
    point (``F`` linearly interpolated, held at the line ends).

    Parameters
    ----------
    measured
        ``(nx, ny, nz)`` field where the image shows it, Hz.
    axis
        Phase-encoding array axis.
    shift_per_hz
        Voxel shift per Hz: ``sign * TotalReadoutTime`` (s).
    n_iter
        Iterations (converges where ``|shift_per_hz * dF/dp| < 1``).

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float64, Hz.
    """
    fm = np.moveaxis(np.asarray(measured, np.float64), axis, -1)
    shape = fm.shape
    n = shape[-1]
    lines = fm.reshape(-1, n)
    p = np.arange(n, dtype=np.float64)
    f = lines.copy()
    rows = np.arange(lines.shape[0])[:, None]
    for _ in range(n_iter):
        q = np.clip(p + shift_per_hz * f, 0, n - 1)
        i0 = np.minimum(np.floor(q).astype(np.int64), max(n - 2, 0))
        frac = q - i0
        f = lines[rows, i0] * (1 - frac) + lines[rows, np.minimum(i0 + 1, n - 1)] * frac
    return np.moveaxis(f.reshape(shape), -1, axis)


def framewise_fields(
    echoes: np.ndarray,
    tes: np.ndarray,
    *,
    axis: int,
    shift_per_hz: float,
    ref_volume: int,
    motion: np.ndarray | None,
    voxel_size: np.ndarray,
    fwhm_mm: float = 4.0,
    max_rank: int = 8,
    energy: float = 0.995,
    min_signal: float = 0.1,
) -> FramewiseField:
    """The field of every volume of a run, in the reference head position (module doc).

    Parameters
    ----------
    echoes
        ``(E, nx, ny, nz, t)`` complex64 echoes (magnitude and phase in rad), E >= 2.
    tes
        ``(E,)`` echo times, s, increasing.
    axis
        Phase-encoding array axis.
    shift_per_hz
        ``sign * TotalReadoutTime`` (voxels per Hz along ``+axis``).
    ref_volume
        The volume whose head position is the reference (head motion's reference).
    motion
        ``(t, 4, 4)`` voxel matrices: reference voxel -> the same head point's voxel in volume
        ``t`` (``inv(A) @ vol_from_ref[t] @ A``); None: no motion.
    voxel_size
        ``(3,)`` mm (the smoothing).
    fwhm_mm
        Smoothing of each volume's field inside the head, mm.
    max_rank, energy
        The change is kept to its leading ``K <= max_rank`` principal components, the fewest
        that explain ``energy`` of its variance inside the head.
    min_signal
        Head mask: first-echo magnitude of the reference volume above this fraction of its
        98th percentile.

    Returns
    -------
    FramewiseField
    """
    z = np.asarray(echoes)
    if z.ndim != 5 or len(z) < 2:
        raise ValueError(
            f"framewise_fields: expected (echoes >= 2, x, y, z, t) complex data; found {z.shape}"
        )
    n_e, nx, ny, nz, nt = z.shape
    if len(tes) != n_e or not np.all(np.diff(tes) > 0):
        raise ValueError(f"framewise_fields: {n_e} echoes need increasing echo times; got {tes}")
    if not 0 <= ref_volume < nt:
        raise ValueError(f"framewise_fields: ref_volume {ref_volume} not in 0..{nt - 1}")
    ref = z[..., ref_volume]
    mag1 = np.abs(ref[0])
    top = float(np.percentile(mag1, 98))
    mask = mag1 > min_signal * top if top > 0 else np.ones(mag1.shape, bool)
    f_ref = reference_field(ref, tes, mask)
    fields = np.empty((nt, nx * ny * nz), np.float32)
    for t in range(nt):
        measured = f_ref + field_change(z[..., t], ref, tes)
        true = undistort_field(measured, axis, shift_per_hz)
        if motion is not None:
            m = np.asarray(motion[t], np.float64)
            true = ndimage.affine_transform(true, m[:3, :3], m[:3, 3], order=1, mode="nearest")
        fields[t] = smooth_fieldmap(true, mask, voxel_size, fwhm_mm).reshape(-1)
    static = fields.mean(axis=0)
    change = fields - static
    inside = mask.reshape(-1)
    sub = change[:, inside].astype(np.float64)
    gram = sub @ sub.T
    w, v = np.linalg.eigh(gram)
    w, v = w[::-1], v[:, ::-1]
    total = float(w.sum())
    if total <= 0:
        k, kept = 0, 1.0
    else:
        cum = np.cumsum(np.clip(w, 0, None)) / total
        k = int(min(max_rank, np.searchsorted(cum, energy) + 1))
        kept = float(cum[k - 1])
    courses = v[:, :k] * np.sqrt(np.clip(w[:k], 0, None))  # (t, K)
    scale = np.where(w[:k] > 0, 1 / np.sqrt(np.clip(w[:k], 1e-30, None)), 0.0)
    maps = (v[:, :k] * scale).T @ change  # (K, nvox): unit-norm course directions
    return FramewiseField(
        static=static.reshape(nx, ny, nz).astype(np.float32),
        maps=maps.reshape(k, nx, ny, nz).astype(np.float32),
        courses=courses.astype(np.float32),
        mask=mask,
        energy=kept,
    )


__all__ = [
    "FramewiseField",
    "congruent",
    "field_change",
    "framewise_fields",
    "reference_field",
    "undistort_field",
]
