"""Slice-wise low-pass phase estimate used by NORDIC's phase stabilisation.

Each 2-D complex image (one slice of one volume) is taken to k-space with a centred inverse
2-D FFT (``fftshift(ifft(ifftshift(img)))`` per axis), multiplied by ``w(kx) w(ky)`` with
``w = hann(N) ** width`` (the symmetric Hann window of length ``N``, zero at both ends; a
larger ``width`` is a narrower window, i.e. a smoother phase) and brought back with the centred
forward FFT; only the phase of the result is used. The centring shifts cancel in the round
trip, so per axis the filter is ``ifft(fft(img) * H)`` with ``H[j] = ifftshift(w)[-j mod N]``.
For even ``N`` the window's peak sits half a sample off the k-space centre, and the direction
matters: the inverse-FFT-first order is the one that reproduces the reference fixtures exactly
(the forward-first order gives ~0.3 % different g-factor maps). For odd ``N`` both orders are
the same; odd sizes are not covered by the reference fixtures.

Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

import numpy as np
from scipy import fft


def hann(n: int) -> np.ndarray:
    """Symmetric Hann window of length ``n`` (``0.5 (1 - cos(2 pi i / (n - 1)))``), float64.

    ``n == 1`` gives ``[1.0]``.
    """
    if n < 1:
        raise ValueError(f"window length must be at least 1, got {n}")
    if n == 1:
        return np.ones(1)
    return 0.5 * (1 - np.cos(2 * np.pi * np.arange(n) / (n - 1)))


def lowpass_response(n: int, width: float) -> np.ndarray:
    """Frequency response of the phase low-pass along one axis, in FFT (unshifted) order.

    Parameters
    ----------
    n
        Axis length.
    width
        Exponent of the Hann window (NORDIC's ``phase_filter_width``).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64, ``H[j] = ifftshift(hann(n) ** width)[-j mod n]``.
    """
    shifted = np.fft.ifftshift(hann(n) ** float(width))
    return shifted[(-np.arange(n)) % n]


def lowpass_phase(
    data: np.ndarray, width: float, *, out: np.ndarray | None = None, workers: int = 1
) -> np.ndarray:
    """Phase of the slice-wise low-pass filtered complex images.

    Parameters
    ----------
    data
        ``(nx, ny, nz, n)`` complex array (any number of trailing volumes ``n``).
    width
        Exponent of the Hann window.
    out
        Optional ``(nx, ny, nz, n)`` float32 array to write into.
    workers
        Threads for :func:`scipy.fft.fft2`.

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz, n)`` float32 phase in rad (``angle(0) = 0``).
    """
    nx, ny = data.shape[:2]
    resp = (
        lowpass_response(nx, width)[:, None, None, None]
        * lowpass_response(ny, width)[None, :, None, None]
    ).astype(np.float32)
    k = fft.fft2(data, axes=(0, 1), workers=workers)
    k *= resp
    low = fft.ifft2(k, axes=(0, 1), workers=workers, overwrite_x=True)
    if out is None:
        out = np.empty(data.shape, np.float32)
    np.arctan2(low.imag, low.real, out=out, casting="same_kind")
    return out


def phasor(theta: np.ndarray) -> np.ndarray:
    """``exp(i theta)`` as complex64 from float32 angles (single-precision sin/cos)."""
    theta = np.asarray(theta, np.float32)
    out = np.empty(theta.shape, np.complex64)
    np.cos(theta, out=out.real)
    np.sin(theta, out=out.imag)
    return out


def replace_phase(block: np.ndarray, theta: np.ndarray, min_abs: float | None) -> None:
    """Spike handling of ``temporal_phase`` 2/3, in place on stabilised data: where the
    stabilised phase exceeds 1 rad (and, for 3, ``|data| > min_abs``) the voxel's own phase
    is removed (block becomes ``|block|``) and added to ``theta``."""
    ang = np.angle(block)
    sel = np.abs(ang) > 1
    if min_abs is not None:
        sel &= np.abs(block) > min_abs
    theta[sel] += ang[sel]
    block[sel] = np.abs(block[sel])


def stabilise_phase(
    data: np.ndarray,
    others: list[np.ndarray],
    width: float,
    temporal_phase: int,
    slices_per_block: int,
    workers: int,
    own_phase: bool = False,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """NORDIC's phase stabilisation, in place: ``data`` and each of ``others`` (companion
    series) divided by a low-pass phase, ``slices_per_block`` slices at a time.

    Parameters
    ----------
    data, others
        ``(x, y, z, t)`` complex64 series; **overwritten**.
    width
        The filter width (:func:`lowpass_phase`).
    temporal_phase
        1, 2 or 3 (2: :func:`replace_phase` at once).
    own_phase
        False: every series by ``data``'s low-pass phase (NORDIC's decision, frozen); True:
        each companion by its own (a smooth function of the series, as NORDIC's phase follows
        a change of magnitude).

    Returns
    -------
    theta
        ``(x, y, z, t)`` float32: ``data``'s low-pass phase.
    own
        With ``own_phase`` and ``temporal_phase`` 3, each companion's own (step 4 imposes them
        again), else empty.
    """
    nz = data.shape[2]
    theta = np.empty(data.shape, np.float32)
    own = [np.empty(data.shape, np.float32) for _ in others if own_phase and temporal_phase == 3]
    for z0 in range(0, nz, slices_per_block):
        zs = slice(z0, min(nz, z0 + slices_per_block))
        th = lowpass_phase(data[:, :, zs], width, workers=workers)
        for i, x in enumerate((data, *others)):
            block = x[:, :, zs]
            t = th
            if i and own_phase:
                t = lowpass_phase(block, width, workers=workers)
                if own:
                    own[i - 1][:, :, zs] = t
            block *= phasor(-t)
            if temporal_phase == 2:
                replace_phase(block, t, None)
        theta[:, :, zs] = th
    return theta, own
