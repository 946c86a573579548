"""Slice-timing correction: sinusoids sampled at slice-shifted times, upsampling, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.geometry.slicetime import (
    interpolation_matrix,
    output_times,
    slice_timing_correct,
)

TR = 1.9


def _multiband_times(nz: int, mb: int, tr: float) -> np.ndarray:
    """Interleaved multiband slice times (the simulator's scheme), s."""
    shots = nz // mb
    order = [*range(0, shots, 2), *range(1, shots, 2)]
    rank = np.empty(shots, int)
    rank[order] = np.arange(shots)
    return rank[np.arange(nz) % shots] * tr / shots


def _sampled(shape, slice_times, n, period, slice_axis=2, phase=None):
    """A sinusoid of ``period`` s sampled at each slice's acquisition times."""
    rng = np.random.default_rng(0)
    ph = rng.uniform(0, 2 * np.pi, shape) if phase is None else phase
    k = np.arange(n) * TR
    st = np.expand_dims(np.asarray(slice_times), [a for a in range(3) if a != slice_axis])
    t = k[None, None, None, :] + st[..., None]
    return np.sin(2 * np.pi * t / period + ph[..., None]).astype(np.float32), ph


@pytest.mark.parametrize(("method", "tol"), [("cubic", 2e-3), ("sinc", 5e-3)])
def test_sinusoid_recovered_at_reference_times(method, tol):
    nz, n, period = 12, 80, 20.0
    st = _multiband_times(nz, 3, TR)
    data, ph = _sampled((3, 4, nz), st, n, period)
    res = slice_timing_correct(data, st, TR, method=method)
    assert res.data.shape == data.shape and res.data.dtype == np.float32
    np.testing.assert_allclose(res.times, np.arange(n) * TR)
    truth = np.sin(2 * np.pi * res.times / period + ph[..., None])
    inner = (res.times > 8 * TR) & (res.times < (n - 9) * TR)  # away from the series' ends
    assert np.abs(res.data - truth)[..., inner].max() < tol
    # not a no-op: the raw data are off by the slice delays
    assert np.abs(data - truth)[..., inner].max() > 0.2


@pytest.mark.parametrize("method", ["cubic", "sinc"])
def test_upsampling_band_limited_signal(method):
    nz, n, tr_out = 6, 90, 1.0
    st = _multiband_times(nz, 2, TR)
    rng = np.random.default_rng(3)
    freqs = rng.uniform(0.01, 0.06, 3)  # Hz, well below Nyquist (0.26 Hz)
    amps = rng.uniform(0.5, 1.0, 3)

    def signal(t):
        return sum(
            a * np.cos(2 * np.pi * f * t + i)
            for i, (a, f) in enumerate(zip(amps, freqs, strict=True))
        )

    t_in = np.arange(n)[None, :] * TR + st[:, None]  # (nz, n)
    data = np.broadcast_to(signal(t_in)[None, None], (2, 2, nz, n)).astype(np.float32)
    res = slice_timing_correct(data, st, TR, tr_out=tr_out, method=method, ref_time=0.5)
    assert len(res.times) == int(np.floor((n - 1) * TR / tr_out)) + 1 == res.data.shape[3]
    assert res.tr == tr_out
    np.testing.assert_allclose(res.times, 0.5 + np.arange(len(res.times)) * tr_out)
    inner = (res.times > 10 * TR) & (res.times < (n - 10) * TR)
    err = np.abs(res.data - signal(res.times))[..., inner]
    assert err.max() < (2e-3 if method == "cubic" else 1e-2)


def test_constant_series_and_linearity():
    st = _multiband_times(4, 1, TR)
    for method in ("cubic", "sinc"):
        w = interpolation_matrix(30, st[1], TR, output_times(30, TR, 1.0), method)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)  # constants preserved
    data = np.random.default_rng(1).normal(size=(3, 4, 4, 20)).astype(np.float32)
    a = slice_timing_correct(data, st, TR, tr_out=1.0).data
    b = slice_timing_correct(2 * data + 0, st, TR, tr_out=1.0).data
    np.testing.assert_allclose(b, 2 * a, rtol=1e-5, atol=1e-5)


def test_output_length_rule():
    assert len(output_times(163, 1.9, 1.0)) == 308  # floor(162 * 1.9) + 1
    assert len(output_times(163, 1.9)) == 163
    assert len(output_times(163, 1.9, 0.95)) == 325  # exactly 2x: no rounding loss


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_slice_axis_and_chunk_invariance(slice_axis):
    shape = [5, 6, 7]
    n_sl = shape[slice_axis]
    st = np.linspace(0, TR, n_sl, endpoint=False)
    data = np.random.default_rng(2).normal(size=(*shape, 12)).astype(np.float32)
    ref = slice_timing_correct(data, st, TR, slice_axis=slice_axis, tr_out=1.0)
    for chunk in (1, 7, 10_000):
        res = slice_timing_correct(
            data, st, TR, slice_axis=slice_axis, tr_out=1.0, chunk_voxels=chunk
        )
        np.testing.assert_allclose(res.data, ref.data, rtol=1e-6, atol=1e-6)
    # each slice gets its own delay: slice s of the output equals the 1-slice correction
    s = n_sl - 1
    one = slice_timing_correct(
        np.take(data, [s], axis=slice_axis), st[[s]], TR, slice_axis=slice_axis, tr_out=1.0
    )
    np.testing.assert_allclose(np.take(ref.data, [s], axis=slice_axis), one.data, atol=1e-6)


def test_deterministic():
    st = _multiband_times(6, 3, TR)
    data = np.random.default_rng(4).normal(size=(4, 4, 6, 10)).astype(np.float32)
    a = slice_timing_correct(data, st, TR, tr_out=1.0, method="sinc")
    b = slice_timing_correct(data, st, TR, tr_out=1.0, method="sinc")
    np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.zeros((4, 4, 4)), np.zeros(4), TR), {}, "data must be a 4D array"),
        ((np.zeros((4, 4, 4, 3)), np.zeros(4), TR), {}, "at least 4 volumes"),
        ((np.zeros((4, 4, 5, 6)), np.zeros(4), TR), {}, "4 slice times for 5 slices along axis 2"),
        ((np.zeros((4, 4, 4, 6)), np.zeros(4), 0.0), {}, "TR must be > 0"),
        ((np.zeros((4, 4, 4, 6)), np.zeros(4), -1.9), {}, "TR must be > 0"),
        ((np.zeros((4, 4, 4, 6)), np.zeros(4), TR), {"tr_out": 0}, "tr_out must be > 0"),
        (
            (np.zeros((4, 4, 4, 6)), np.array([0, 0.5, 1, 1.9]), TR),
            {},
            r"slice times must lie in \[0, TR\)",
        ),
        ((np.zeros((4, 4, 4, 6)), np.zeros(4), TR), {"ref_time": 2.0}, "ref_time must lie in"),
        ((np.zeros((4, 4, 4, 6)), np.zeros(4), TR), {"method": "linear"}, "method must be one of"),
        (
            (np.zeros((4, 4, 4, 6)), np.zeros(4), TR),
            {"slice_axis": 3},
            "slice_axis must be 0, 1 or 2",
        ),
        ((np.zeros((4, 4, 4, 6)), np.zeros(4), TR), {"sinc_lobes": 0}, "sinc_lobes must be >= 1"),
        (
            (np.zeros((4, 4, 4, 6)), np.zeros(4), TR),
            {"chunk_voxels": 0},
            "chunk_voxels must be >= 1",
        ),
        ((np.full((4, 4, 4, 6), np.nan), np.zeros(4), TR), {}, "non-finite values in volume 0"),
    ],
)
def test_bad_inputs(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        slice_timing_correct(*args, **kwargs)
