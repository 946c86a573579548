"""NORDIC of one 4D series with every step on a torch device (``nordic.device: cuda``).

The device twin of :func:`echoprep.kernels.nordic._nordic`: the same steps, inputs and
outputs (:class:`echoprep.kernels.nordic.NordicResult`), see that module for the algorithm.
The series goes to the device once (float32), and everything runs there: the complex series
and absolute scale, the slice-wise phase low-pass (``torch.fft``), the MP-PCA g-factor pass
and the hard-threshold pass (:mod:`echoprep.kernels.nordic_torch_patches`: strided lattice
views instead of copies patch by patch, batched SVDs in float64/complex128, overlap sums in
double precision without atomics), the normalisation, and the undo; the outputs come back
once. What stays on the host is small and keeps the CPU path's exact formulas: the random
draws of NumPy's generator (Monte-Carlo matrices, fill of all-zero voxels: their singular
values are taken on the device), the noise SD of the few noise volumes, and the noise map's
fix-up when it has zeros.

Element-wise steps use the CPU path's single-precision arithmetic (the same rounding for
divisions and real-by-complex products; sin/cos/FFT/complex products may differ in the last
bit); the patch algebra is in double precision where the NumPy path forms its Gram matrices
in single precision, so the two paths agree to single-precision rounding, not bitwise
(docs/nordic.md, "GPU"). On one device and torch build, with the same ``batch_bytes``, a run
repeats bitwise: no step uses atomics or a launch-order-dependent reduction.

Device memory: about 28 bytes per complex entry of the series (the series, its low-pass
phase and the double-precision sum of the rebuilt patches) plus ``batch_bytes``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np

from echoprep.kernels.nordic import (
    THRESHOLD_DRAWS,
    ZERO_FIRST_VOLUME,
    NordicResult,
    NordicSteps,
    final_threshold,
    fix_gfactor,
    minmax_mapping,
    noise_level,
    zero_fill,
)
from echoprep.kernels.nordic_checks import count_nonfinite, nonfinite_error
from echoprep.kernels.nordic_torch_patches import denoise_pass, gfactor_pass
from echoprep.kernels.patches_torch import (
    default_batch_bytes,
    describe,
    open_device,
    singular_values,
)
from echoprep.kernels.phase import lowpass_response

log = logging.getLogger(__name__)

#: Float32 copies of one series entry that the element-wise steps need at their peak (the
#: phase low-pass: spectrum, filtered image, angle, phasor): sizes their slabs.
ELEMENTWISE_COPIES = 8


def nordic_on_device(
    magnitude: np.ndarray,
    phase: np.ndarray | None,
    steps: NordicSteps,
    device: str,
    batch_bytes: int | None,
    n_threads: int | None,
) -> NordicResult:
    """NORDIC on a torch device; called by :func:`echoprep.kernels.nordic.nordic` with
    checked options (see there for each).

    Parameters
    ----------
    magnitude
        ``(x, y, z, t)`` real array.
    phase
        ``(x, y, z, t)`` real array, or None (magnitude-only mode).
    steps
        The options of the steps, the patch sizes fitted to the volume.
    device
        Torch device string (``"cuda"``, ``"cuda:1"``, ``"cpu"`` for torch's CPU kernels).
    batch_bytes
        Memory budget of one patch batch (bytes); None:
        :func:`echoprep.kernels.patches_torch.default_batch_bytes`.
    n_threads
        torch's threads while the kernel runs on torch's CPU kernels (None: unchanged).

    Returns
    -------
    NordicResult
        NumPy arrays on the host, as the CPU path.

    Raises
    ------
    ValueError
        NaN/Inf in the input or an all-zero first volume.
    echoprep.kernels.patches_torch.DeviceUnavailableError
        The device is not on this machine.
    """
    import torch

    dev = open_device(device)
    budget = int(batch_bytes) if batch_bytes is not None else default_batch_bytes(dev)
    with _threads(torch, dev, n_threads), torch.no_grad():
        return _run(magnitude, phase, steps, dev, budget)


def _run(
    magnitude: np.ndarray, phase: np.ndarray | None, steps: NordicSteps, dev: Any, budget: int
) -> NordicResult:
    import torch

    nx, ny, nz, nt = (int(s) for s in magnitude.shape)
    complex_mode = phase is not None
    clock = _Clock(dev)
    noise_volumes, temporal_phase = steps.noise_volumes, steps.temporal_phase
    width = steps.phase_filter_width

    # 1. complex (or real) series, divided by the absolute scale
    data = _upload(magnitude, dev, "magnitude").abs_()
    if phase is not None:
        ph = _upload(phase, dev, "phase")
        if steps.phase_units == "minmax":
            offset, factor = minmax_mapping(*_extremes(phase, ph))
            ph.sub_(_f32(offset)).mul_(_f32(factor)).sub_(_f32(np.pi))
        data = torch.polar(data, ph)
        del ph
    first = data[..., 0].abs()
    smallest = float(torch.where(first > 0, first, math.inf).amin())
    if not math.isfinite(smallest):
        raise ValueError(ZERO_FIRST_VOLUME)
    scale = smallest
    del first
    if complex_mode:  # NumPy divides complex by real as a product with the reciprocal
        _real(data).mul_(_f32(np.float32(1) / np.float32(scale)))
    else:
        data.div_(_f32(scale))
    noise = data[..., nt - noise_volumes :].clone() if noise_volumes else None
    clock.lap("series")

    # 2. phase stabilisation
    theta = None
    if temporal_phase >= 1:
        theta = torch.empty(data.shape, dtype=torch.float32, device=dev)
        resp = lowpass_response(nx, width)[:, None] * lowpass_response(ny, width)[None, :]
        resp_t = torch.from_numpy(resp.astype(np.float32)).to(dev)[:, :, None, None]
        for zs in _slabs(nz, nx * ny * nt * 4 * ELEMENTWISE_COPIES, budget):
            block = data[:, :, zs]
            spectrum = torch.fft.fft2(block, dim=(0, 1))
            spectrum.mul_(resp_t)
            low = torch.fft.ifft2(spectrum, dim=(0, 1))
            del spectrum
            th = torch.atan2(low.imag, low.real)
            del low
            block.mul_(_phasor(-th))
            if temporal_phase == 2:
                _replace_phase(block, th, None)
            theta[:, :, zs] = th
        log.info("NORDIC: phase stabilised (filter width %g)", width)
    clock.lap("phase")

    # 3. g-factor (MP-PCA) pass
    gv = min(steps.gfactor_volumes, nt)
    g, n_gbatches = gfactor_pass(data[..., :gv], steps.gkernel, budget)
    has_zero = bool(torch.any(g == 0))
    if has_zero or nt < 6:
        g32_host = fix_gfactor(g.cpu().numpy(), has_zero).astype(np.float32)
        g32 = torch.from_numpy(g32_host).to(dev)
    else:
        g32 = g.to(torch.float32)
        g32_host = g32.cpu().numpy()
    del g
    clock.lap("g-factor")

    # 4. normalisation and noise level
    inv_g = torch.where(g32 > 0, torch.reciprocal(g32), 0.0)
    _scale_voxels(data, inv_g)
    if temporal_phase == 3:
        assert theta is not None
        for xs in _slabs(nx, ny * nz * nt * 4 * ELEMENTWISE_COPIES, budget):
            _replace_phase(data[xs], theta[xs], math.sqrt(2))
    if noise is not None:
        _scale_voxels(noise, inv_g)
    sigma = noise_level(None if noise is None else noise.cpu().numpy(), complex_mode)
    del noise
    zero_voxels = None
    if has_zero:
        zero_voxels = ~torch.any(data != 0, dim=3)
        n_zero = int(zero_voxels.sum())
        if n_zero:
            fill = zero_fill(n_zero, nt, steps.seed, complex_mode)
            data[zero_voxels] = torch.from_numpy(fill).to(dev)
            del fill

    # 5. threshold
    threshold = final_threshold(
        steps, nt, sigma, complex_mode, partial(_monte_carlo_threshold, dev=dev)
    )
    clock.lap("threshold")

    # 6. patch-wise low-rank approximation
    out, removed, n_batches = denoise_pass(data, steps.kernel, threshold, budget)
    del data
    clock.lap("patches")

    # 7. undo normalisation, phase and scale
    _scale_voxels(out, g32 * _f32(scale))
    if theta is not None:
        for xs in _slabs(nx, ny * nz * nt * 4 * ELEMENTWISE_COPIES, budget):
            out[xs].mul_(_phasor(theta[xs]))
        del theta
    if zero_voxels is not None:
        out.masked_fill_(zero_voxels[..., None], 0)
    t_out = steps.t_out(nt)
    if t_out < nt:
        out = out[..., :t_out].contiguous()
    mag = out.abs()
    mag_host = mag.cpu().numpy()
    del mag
    complex_host = out.cpu().numpy() if complex_mode else None
    removed_host = removed.cpu().numpy()
    del out
    clock.lap("undo")
    log.info(
        "NORDIC on %s: %d + %d batches (batch budget %.3g GiB); seconds per step: %s",
        dev,
        n_gbatches,
        n_batches,
        budget / 2**30,
        clock.summary(),
    )
    return steps.result(
        mag_host, complex_host, g32_host, removed_host, threshold, sigma, scale, describe(dev)
    )


# ---------------------------------------------------------------------------------------------
# steps


def _upload(a: np.ndarray, dev: Any, name: str) -> Any:
    """``a`` as a float32 tensor on ``dev`` (a copy), after the NaN/Inf check of
    :func:`echoprep.kernels.nordic.nordic`: on the device for float32 input, on the host
    for other dtypes (whose values change when rounded to float32)."""
    import torch

    if a.dtype != np.float32:
        bad = count_nonfinite(a)
        if bad:
            raise nonfinite_error(name, bad, a.size)
    if a.dtype == np.float32 and a.dtype.isnative and a.flags.c_contiguous:
        with warnings.catch_warnings():  # read-only arrays (memory maps): only read here
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(a).to(dev, copy=True)
    else:
        t = torch.empty(a.shape, dtype=torch.float32, device=dev)
        for s in _slabs(a.shape[0], int(np.prod(a.shape[1:])) * 8, 64 * 2**20):
            t[s].copy_(torch.from_numpy(np.ascontiguousarray(a[s], np.float32)))
    if a.dtype == np.float32:
        bad = int(torch.count_nonzero(~torch.isfinite(t)))
        if bad:
            raise nonfinite_error(name, bad, a.size)
    return t


def _extremes(phase: np.ndarray, uploaded: Any) -> tuple[float, float]:
    """``(min, max)`` of the phase input as :func:`numpy.min`/``max`` give them: on the
    device when the dtype converts to float32 exactly, else on the host."""
    import torch

    if np.can_cast(phase.dtype, np.float32, "safe"):
        lo, hi = torch.aminmax(uploaded)
        return float(lo), float(hi)
    return float(np.min(phase)), float(np.max(phase))


def _phasor(theta: Any) -> Any:
    """``exp(i theta)`` (complex64) from float32 angles, as ``cos + i sin``."""
    import torch

    return torch.complex(torch.cos(theta), torch.sin(theta))


def _replace_phase(block: Any, theta: Any, min_abs: float | None) -> None:
    """:func:`echoprep.kernels.nordic._replace_phase` on tensors, in place on both."""
    import torch

    ang = torch.angle(block)
    sel = ang.abs() > 1
    if min_abs is not None:
        sel &= block.abs() > min_abs
    theta.add_(torch.where(sel, ang, 0.0))
    block.copy_(torch.where(sel, block.abs().to(block.dtype), block))


def _monte_carlo_threshold(n_rows: int, n_cols: int, seed: int, dev: Any) -> float:
    """:func:`echoprep.kernels.nordic.monte_carlo_threshold` with ``default_rng(seed)``: the
    same draws (NumPy, on the host), their largest singular values on the device (float64),
    averaged with NumPy."""
    import torch

    draws = np.random.default_rng(seed).standard_normal((THRESHOLD_DRAWS, n_rows, n_cols))
    t = torch.from_numpy(draws).to(dev)
    s = singular_values(t if n_rows >= n_cols else t.mH)
    return float(np.mean(s[:, 0].cpu().numpy()))


# ---------------------------------------------------------------------------------------------
# plumbing


def _real(t: Any) -> Any:
    """Real view of a complex tensor (trailing axis re/im), or the real tensor itself."""
    import torch

    return torch.view_as_real(t) if t.is_complex() else t


def _scale_voxels(t: Any, per_voxel: Any) -> None:
    """``t`` (``(x, y, z, t)``, float32 or complex64) times the float32 ``(x, y, z)`` map, in
    place: each channel of a complex entry times the real factor, as NumPy multiplies
    complex by real."""
    real = _real(t)
    real.mul_(per_voxel.view(*per_voxel.shape, *(1,) * (real.dim() - 3)))


def _f32(v: float | np.floating) -> float:
    """``v`` rounded to float32, as a Python float (so torch computes with the value NumPy's
    float32 arithmetic uses)."""
    return float(np.float32(v))


def _slabs(n: int, bytes_per_index: int, budget: int) -> list[slice]:
    """Slices of ``0 .. n-1`` of about ``budget`` bytes each (at least one index)."""
    step = max(1, budget // max(1, bytes_per_index))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


@contextmanager
def _threads(torch: Any, dev: Any, n_threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n_threads`` while on its CPU kernels."""
    if dev.type != "cpu" or n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Clock:
    """Wall seconds per step (the device synchronised at each lap), for the log."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.laps: list[tuple[str, float]] = []
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        import torch

        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        now = time.perf_counter()
        self.laps.append((name, now - self.t))
        self.t = now

    def summary(self) -> str:
        return ", ".join(f"{name} {s:.3f}" for name, s in self.laps)


__all__ = ["ELEMENTWISE_COPIES", "nordic_on_device"]
