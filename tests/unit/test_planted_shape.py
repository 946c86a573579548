"""The shape of the planted responses estimated from a session's series
(:mod:`echoprep.kernels.planted_shape`), on synthetic series whose response curve is known and
is not one of the library's."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.glm.hrf import FINE_DT
from echoprep.kernels.planted import presentation_halves, response_curves
from echoprep.kernels.planted_shape import (
    cross_amplitudes,
    fit_shape,
    shape_moments,
    spline_basis,
    warped,
)

TR = 1.9
STIMDUR = 2.5


def _session(true_curve, n_vox=300, runs=4, seed=0, noise=3.0, amp_noise=0.7):
    """Moments of ``runs`` runs whose voxels respond with ``true_curve`` (at FINE_DT) to each
    image, with a response common to all trials, drift, slice offsets and Gaussian noise; the
    amplitudes given to the fit are the true image responses plus noise (as from the other
    presentations)."""
    rng = np.random.default_rng(seed)
    _, basis = spline_basis()
    fine = np.arange(true_curve.size) * FINE_DT
    resp = rng.normal(size=(n_vox, 60))
    k = basis.shape[1]
    moments, cross = np.zeros((n_vox, k, k)), np.zeros((n_vox, k))
    for _ in range(runs):
        n_vol = 180
        onsets = np.sort(rng.uniform(0, n_vol * TR - 20, 80))
        images = rng.integers(0, 60, 80)
        offsets = rng.choice(np.arange(10) * TR / 10, n_vox)
        lags = (np.arange(n_vol) * TR)[None, :, None] + offsets[:, None, None] - onsets
        design = np.interp(lags, fine, true_curve, left=0, right=0)  # (V, T, N)
        y = np.einsum("vtn,vn->vt", design, resp[:, images] + 1.0)
        y += np.linspace(0, 2, n_vol) + rng.normal(scale=noise, size=y.shape)
        amps = resp[:, images] + rng.normal(scale=amp_noise, size=(n_vox, 80))
        m, c = shape_moments(y, offsets, TR, onsets, amps, basis, chunk_voxels=64)
        moments += m
        cross += c
    return moments, cross, basis


def _r(a, b):
    n = min(a.size, b.size)
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize("method", ["warped", "free"])
def test_a_response_shape_outside_the_library_is_recovered(method) -> None:
    _, library = response_curves(STIMDUR)
    length = library.shape[0]
    # library curve 10, 1 s later and 25 % wider: not a library shape
    true = warped(library[:, 10], 1.0, 1.25, length, FINE_DT)
    true /= true.max()
    moments, cross, basis = _session(true)
    curve, record = fit_shape(moments, cross, basis, library, method=method)
    assert record["Estimated"] and record["Voxels"] == len(moments)
    assert curve.max() == pytest.approx(1.0)
    assert _r(curve, true) > 0.99 > _r(library[:, 10], true) + 0.05
    assert abs(record["PeakSeconds"] - np.argmax(true) * FINE_DT) <= 0.4


def test_the_warped_fit_searches_every_library_curve() -> None:
    _, library = response_curves(STIMDUR)
    # library curve 2 (a deep undershoot), 2 s later: the late curves' shift cannot make it
    true = warped(library[:, 2], 2.0, 1.0, library.shape[0], FINE_DT)
    true /= true.max()
    moments, cross, basis = _session(true)
    curve, record = fit_shape(moments, cross, basis, library)
    assert record["LibraryIndex"] == 2 and record["ShiftSeconds"] == pytest.approx(2.0)
    assert record["Stretch"] == pytest.approx(1.0)
    assert _r(curve, true) > 0.999


def test_too_few_voxels_or_no_response_keep_the_library() -> None:
    _, library = response_curves(STIMDUR)
    true = warped(library[:, 8], 0.5, 1.1, library.shape[0], FINE_DT)
    moments, cross, basis = _session(true, n_vox=60)
    curve, record = fit_shape(moments[:49], cross[:49], basis, library)
    assert curve is None and record == {
        "Voxels": 49,
        "Estimated": False,
        "Reason": "fewer than 50 voxels",
    }
    curve, record = fit_shape(np.zeros_like(moments), np.zeros_like(cross), basis, library)
    assert curve is None and record["Reason"] == "no positive response"
    with pytest.raises(ValueError, match="method must be 'warped' or 'free'"):
        fit_shape(moments, cross, basis, library, method="spline")


def test_an_inverted_response_is_not_planted_upside_down() -> None:
    _, library = response_curves(STIMDUR)
    moments, cross, basis = _session(-library[:, 10])
    for method in ("warped", "free"):
        curve, record = fit_shape(moments, cross, basis, library, method=method)
        assert curve is None and not record["Estimated"], method


def test_each_trial_takes_its_amplitude_from_the_images_other_presentations() -> None:
    labels = np.array(["a", "b", "a", "c", "b", "a"])
    odd = presentation_halves(labels)  # a1 b1 . c1 . a3 are odd-numbered
    images = np.array(["a", "b"])  # "c" is shown once
    half_a = np.array([[1.0, 2.0]])
    half_b = np.array([[10.0, 20.0]])
    out = cross_amplitudes(labels, odd, images, half_a, half_b)
    # a(1st) <- B, b(1st) <- B, a(2nd) <- A, c <- 0, b(2nd) <- A, a(3rd) <- B
    assert out.tolist() == [[10.0, 20.0, 1.0, 0.0, 2.0, 10.0]]


def test_the_splines_start_at_the_onset_and_cover_the_curve() -> None:
    times, basis = spline_basis()
    assert basis.shape == (times.size, 17) and np.all(basis[0] == 0)
    _, library = response_curves(STIMDUR)
    n = min(times.size, library.shape[0])
    coef, *_ = np.linalg.lstsq(basis[:n], library[:n], rcond=None)
    fit = basis[:n] @ coef  # every library curve (peak 1) within a few % of its peak
    assert np.abs(fit - library[:n]).max() < 0.05
    assert min(_r(fit[:, h], library[:n, h]) for h in range(library.shape[1])) > 0.998
