"""Slice-timing correction with optional temporal resampling (e.g. TR 1.9 s → 1.0 s).

Every slice of a volume series is acquired at its own time within the TR (BIDS
``SliceTiming``, s, relative to the start of each volume). Sample ``k`` of slice ``z`` was taken
at ``k * TR + slice_times[z]``. Each voxel's series is interpolated to the common output times

    ``times[j] = ref_time + j * tr_out``,  ``j = 0 .. n_out - 1``,
    ``n_out = floor((T - 1) * TR / tr_out) + 1``

(s, on the BIDS onset clock: 0 is the start of the first volume), so that output volume ``j``
is the whole brain at time ``times[j]`` — with the default ``ref_time = 0`` the events' onsets
apply to the output unchanged and ``tr_out`` is the new ``RepetitionTime`` (write
``StartTime = times[0]`` and ``SliceTimingCorrected = true`` in the sidecar).

The interpolation is linear in the data: for each distinct slice time the map from the ``T``
input samples to the ``n_out`` output samples is one ``(n_out, T)`` matrix, applied to the
voxels of that slice by a matrix product (in chunks of ``chunk_voxels`` voxels). Methods:

- ``"cubic"``: the interpolating cubic spline through the samples (not-a-knot ends,
  :func:`scipy.interpolate.make_interp_spline`); output times before the slice's first sample
  or after its last take that sample's value (no extrapolation beyond the data);
- ``"sinc"``: Lanczos-windowed sinc, ``sinc(d) sinc(d / a)`` for ``|d| < a`` samples
  (``a = sinc_lobes``), the series mirrored at both ends (``x[-k] = x[k]``,
  ``x[T-1+k] = x[T-1-k]``), each row of weights normalised to sum 1 (constant series are
  preserved exactly).

Both are exact for a constant series; interior accuracy for a sinusoid of period ``P`` sampled
every TR is about ``(2 pi TR / P)^4 / 384`` relative (cubic).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import make_interp_spline

log = logging.getLogger(__name__)

#: Accepted ``method`` values.
METHODS = ("cubic", "sinc")


@dataclass(frozen=True)
class SliceTimingResult:
    """Output of :func:`slice_timing_correct`.

    Attributes
    ----------
    data
        ``(nx, ny, nz, n_out)`` float32 series at the output times.
    times
        ``(n_out,)`` float64 output volume times, s, from the start of the first input volume.
    tr
        Output repetition time, s.
    method
        ``"cubic"`` or ``"sinc"``.
    """

    data: np.ndarray
    times: np.ndarray
    tr: float
    method: str


def output_times(
    n_volumes: int, tr: float, tr_out: float | None = None, ref_time: float = 0.0
) -> np.ndarray:
    """Output volume times (s): ``ref_time + j * tr_out``, ``j < floor((T - 1) TR / tr_out) + 1``.

    Parameters
    ----------
    n_volumes
        Input volumes ``T``.
    tr
        Input repetition time, s.
    tr_out
        Output repetition time, s (default ``tr``: no resampling).
    ref_time
        Time of the first output volume within the first TR, s.

    Returns
    -------
    numpy.ndarray
        ``(n_out,)`` float64.
    """
    tr_out = tr if tr_out is None else tr_out
    if not (tr > 0 and tr_out > 0):
        raise ValueError(f"slice timing: TR must be > 0; found tr={tr}, tr_out={tr_out}")
    # the small tolerance keeps e.g. 162 * 1.9 / 0.95 from rounding down
    n_out = math.floor((n_volumes - 1) * tr / tr_out + 1e-9) + 1
    return ref_time + tr_out * np.arange(n_out)


def interpolation_matrix(
    n_volumes: int,
    slice_time: float,
    tr: float,
    times: np.ndarray,
    method: str = "cubic",
    sinc_lobes: int = 4,
) -> np.ndarray:
    """Weights taking one slice's ``T`` samples to the output ``times``.

    Parameters
    ----------
    n_volumes
        ``T`` input samples, taken at ``k * tr + slice_time`` (s).
    slice_time
        Acquisition time of the slice within the TR, s.
    tr
        Input repetition time, s.
    times
        ``(n_out,)`` output times, s.
    method
        ``"cubic"`` or ``"sinc"`` (module docstring).
    sinc_lobes
        Lanczos ``a`` (samples on each side) for ``"sinc"``.

    Returns
    -------
    numpy.ndarray
        ``(n_out, T)`` float64 ``W``; output series ``= W @ input series``.
    """
    q = (np.asarray(times, np.float64) - slice_time) / tr  # output times in input-sample units
    if method == "cubic":
        basis = make_interp_spline(np.arange(n_volumes, dtype=np.float64), np.eye(n_volumes), k=3)
        return np.asarray(basis(np.clip(q, 0, n_volumes - 1)))
    if method == "sinc":
        a = int(sinc_lobes)
        base = np.floor(q).astype(np.int64)
        offs = np.arange(-a + 1, a + 1)
        k = base[:, None] + offs[None, :]  # (n_out, 2a) virtual sample indices
        d = q[:, None] - k
        w = np.sinc(d) * np.sinc(d / a)
        w[np.abs(d) >= a] = 0.0
        last = n_volumes - 1
        idx = np.abs(k)  # mirror at 0
        idx = np.where(idx > last, 2 * last - idx, idx)  # mirror at T - 1
        idx = np.clip(idx, 0, last)  # series shorter than the kernel: repeat the ends
        m = np.zeros((len(q), n_volumes))
        np.add.at(m, (np.repeat(np.arange(len(q)), k.shape[1]), idx.ravel()), w.ravel())
        return m / m.sum(axis=1, keepdims=True)
    raise ValueError(f"slice timing: method must be one of {METHODS}; found {method!r}")


def slice_timing_correct(
    data: np.ndarray,
    slice_times: np.ndarray,
    tr: float,
    *,
    slice_axis: int = 2,
    tr_out: float | None = None,
    ref_time: float = 0.0,
    method: str = "cubic",
    sinc_lobes: int = 4,
    chunk_voxels: int = 65536,
) -> SliceTimingResult:
    """Interpolate every voxel's series to common volume times (module docstring).

    Parameters
    ----------
    data
        ``(nx, ny, nz, T)`` real array, ``T >= 4``.
    slice_times
        ``(n_slices,)`` acquisition times (s) of the slices within the TR, in ``[0, tr)``,
        ``n_slices = data.shape[slice_axis]`` (BIDS ``SliceTiming``).
    tr
        Input repetition time, s (> 0).
    slice_axis
        Array axis of the slices (0, 1 or 2; BIDS ``SliceEncodingDirection`` i/j/k; the
        direction's sign does not matter because ``slice_times`` is indexed by array slice).
    tr_out
        Output repetition time, s (> 0; default ``tr``).
    ref_time
        Time (s) of the first output volume, ``0 <= ref_time < tr``; 0 = the start of the
        first volume (the BIDS onset clock).
    method
        ``"cubic"`` or ``"sinc"``.
    sinc_lobes
        Lanczos window half-width ``a`` in samples (``"sinc"``), >= 1.
    chunk_voxels
        Voxels per matrix product; temporary memory is about
        ``chunk_voxels * (T + n_out) * 4`` bytes.

    Returns
    -------
    SliceTimingResult

    Raises
    ------
    ValueError
        Non-4D or non-real data, fewer than 4 volumes, non-finite values, ``slice_axis`` not
        0–2, ``len(slice_times) != data.shape[slice_axis]``, slice times outside ``[0, tr)``
        or not finite, ``tr <= 0``, ``tr_out <= 0``, ``ref_time`` outside ``[0, tr)``, unknown
        method, ``sinc_lobes < 1``, ``chunk_voxels < 1``.
    """
    st = _check(
        data, slice_times, tr, slice_axis, tr_out, ref_time, method, sinc_lobes, chunk_voxels
    )
    nt = data.shape[3]
    times = output_times(nt, tr, tr_out, ref_time)
    out_tr = float(tr if tr_out is None else tr_out)
    out = np.empty((*data.shape[:3], len(times)), np.float32)
    src = np.moveaxis(data, slice_axis, 0)
    dst = np.moveaxis(out, slice_axis, 0)
    groups: dict[float, list[int]] = {}
    for z, s in enumerate(st):
        groups.setdefault(float(s), []).append(z)
    for gi, (s, slices) in enumerate(sorted(groups.items())):
        w = interpolation_matrix(nt, s, tr, times, method, sinc_lobes).astype(np.float32).T
        for z in slices:
            plane_in, plane_out = src[z], dst[z]  # (a, b, T), (a, b, n_out)
            rows = max(1, chunk_voxels // plane_in.shape[1])
            for r0 in range(0, plane_in.shape[0], rows):
                blk = np.asarray(plane_in[r0 : r0 + rows], np.float32)
                res = blk.reshape(-1, nt) @ w
                plane_out[r0 : r0 + rows] = res.reshape(*blk.shape[:2], len(times))
        log.debug("slice timing: slice time %d of %d (%.4f s)", gi + 1, len(groups), s)
    return SliceTimingResult(data=out, times=times, tr=out_tr, method=method)


def _check(
    data: np.ndarray,
    slice_times: np.ndarray,
    tr: float,
    slice_axis: int,
    tr_out: float | None,
    ref_time: float,
    method: str,
    sinc_lobes: int,
    chunk_voxels: int,
) -> np.ndarray:
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        found = f"shape {data.shape}" if hasattr(data, "shape") else type(data).__name__
        raise ValueError(f"slice timing: data must be a 4D array (x, y, z, t); found {found}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"slice timing: data must be real; found dtype {data.dtype}")
    if data.shape[3] < 4:
        raise ValueError(f"slice timing: at least 4 volumes are needed; found {data.shape[3]}")
    if slice_axis not in (0, 1, 2):
        raise ValueError(f"slice timing: slice_axis must be 0, 1 or 2; found {slice_axis}")
    if not (np.isfinite(tr) and tr > 0):
        raise ValueError(f"slice timing: TR must be > 0 s; found {tr}")
    if tr_out is not None and not (np.isfinite(tr_out) and tr_out > 0):
        raise ValueError(f"slice timing: tr_out must be > 0 s; found {tr_out}")
    st = np.asarray(slice_times, np.float64).ravel()
    n_slices = data.shape[slice_axis]
    if len(st) != n_slices:
        raise ValueError(
            f"slice timing: {len(st)} slice times for {n_slices} slices along axis "
            f"{slice_axis}; SliceTiming must have one entry per slice"
        )
    if not np.all(np.isfinite(st)) or st.min() < 0 or st.max() >= tr:
        raise ValueError(
            f"slice timing: slice times must lie in [0, TR) = [0, {tr}) s; found "
            f"[{st.min()}, {st.max()}]"
        )
    if not (np.isfinite(ref_time) and 0 <= ref_time < tr):
        raise ValueError(
            f"slice timing: ref_time must lie in [0, TR) = [0, {tr}) s; found {ref_time}"
        )
    if method not in METHODS:
        raise ValueError(f"slice timing: method must be one of {METHODS}; found {method!r}")
    if int(sinc_lobes) < 1:
        raise ValueError(f"slice timing: sinc_lobes must be >= 1; found {sinc_lobes}")
    if chunk_voxels < 1:
        raise ValueError(f"slice timing: chunk_voxels must be >= 1; found {chunk_voxels}")
    if np.issubdtype(data.dtype, np.floating):
        for t in range(data.shape[3]):
            if not np.all(np.isfinite(data[..., t])):
                raise ValueError(f"slice timing: data has non-finite values in volume {t}")
    return st
