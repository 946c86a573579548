"""Noise-ceiling kernel: known answers of the NSD ncsnr formula, ROI summaries and d'."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.noiseceiling import (
    d_prime,
    expected_noise_ceiling,
    nc_from_ncsnr,
    noise_ceiling,
    roi_summary,
    zscore_within,
)


def test_hand_computed_case_with_two_stimuli() -> None:
    # one voxel, one z-scoring group, stimuli A A B B with betas 1, 3, -1, -3 (mean 0,
    # SD sqrt(5)): z = [1, 3, -1, -3] / sqrt(5); var(A) = var(B) = 2 / 5 (ddof 1)
    betas = np.array([[1.0, 3.0, -1.0, -3.0]])
    res = noise_ceiling(betas, ["A", "A", "B", "B"], [0, 0, 0, 0])
    noise, signal = 2 / 5, 3 / 5
    snr2 = signal / noise
    assert res.ncsnr[0] == pytest.approx(np.sqrt(snr2), rel=1e-6)
    assert res.mean_inverse_repeats == pytest.approx(0.5)
    assert res.nc[0] == pytest.approx(100 * snr2 / (snr2 + 0.5), rel=1e-6)
    assert res.nc_single[0] == pytest.approx(100 * snr2 / (snr2 + 1), rel=1e-6)
    assert res.repeat_counts == {2: 2} and res.n_stimuli == 2


def test_pure_signal_gives_100_and_zero_signal_gives_0() -> None:
    labels = np.repeat(np.arange(20), 3)
    rng = np.random.default_rng(0)
    pure = np.tile(rng.standard_normal(20), (4, 1)).repeat(3, axis=1)  # repeats identical
    res = noise_ceiling(pure, labels, np.zeros(60))
    assert np.all(res.nc == 100) and np.all(res.ncsnr > 1e6)  # noise variance ~ round-off
    # noise variance above 1 (z-units): no signal at all -> exactly 0
    anti = np.tile([1.0, -1.0, 0.0], 20)[None, :]  # every stimulus: +1, -1, 0; same mean
    res = noise_ceiling(anti, labels, np.zeros(60))
    assert res.nc[0] == 0 and res.ncsnr[0] == 0
    const = np.ones((1, 60))
    assert noise_ceiling(const, labels, np.zeros(60)).nc[0] == 0


@pytest.mark.parametrize("repeats", [(3,), (2, 3), (2, 3, 4)])
def test_known_snr_is_recovered_with_equal_and_mixed_repeats(repeats) -> None:
    rng = np.random.default_rng(1)
    n_stim, n_vox = 5000, 6
    n_of = np.resize(np.array(repeats), n_stim)
    labels = np.repeat(np.arange(n_stim), n_of)
    # SNR from 0.5 up: below, sigma_signal^2 = 1 - sigma_noise^2 is a small difference of
    # large numbers and its sampling error (several NC points) would dominate the check
    s = np.linspace(0.5, 2.0, n_vox)[:, None]
    t = 1.0
    mu = s * rng.standard_normal((n_vox, n_stim))
    betas = mu[:, labels] + t * rng.standard_normal((n_vox, len(labels)))
    runs = rng.integers(0, 4, len(labels))
    res = noise_ceiling(betas, labels, runs, chunk=4)
    k = np.mean(1.0 / n_of)
    assert res.mean_inverse_repeats == pytest.approx(k)
    expected = 100 * s[:, 0] ** 2 / (s[:, 0] ** 2 + t**2 * k)
    # sampling error of sigma_signal^2 = 1 - sigma_noise^2 dominates at low SNR: atol too
    np.testing.assert_allclose(res.ncsnr, s[:, 0] / t, rtol=0.05, atol=0.04)
    np.testing.assert_allclose(res.nc, expected, atol=1.5)
    np.testing.assert_allclose(res.at_repeats(1), res.nc_single, rtol=1e-6)
    assert res.repeat_counts == {r: int(np.sum(n_of == r)) for r in repeats}


def test_single_shown_stimuli_are_ignored_and_chunks_do_not_matter() -> None:
    rng = np.random.default_rng(2)
    labels = np.array([0, 0, 1, 1, 2, 3, 3, 4])  # 2 and 4 are shown once
    betas = rng.standard_normal((50, 8))
    a = noise_ceiling(betas, labels, [0, 0, 0, 0, 1, 1, 1, 1], chunk=7)
    b = noise_ceiling(betas, labels, [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(a.ncsnr, b.ncsnr)
    assert a.n_stimuli == 3 and a.mean_inverse_repeats == pytest.approx(0.5)


def test_zscoring_is_per_group() -> None:
    z = zscore_within(np.array([[1.0, 3.0, 10.0, 30.0]]), [0, 0, 1, 1])
    np.testing.assert_allclose(z, [[-1, 1, -1, 1]])


def test_bad_input_messages() -> None:
    with pytest.raises(ValueError, match="no stimulus is shown 2 or more times"):
        noise_ceiling(np.ones((2, 3)), ["a", "b", "c"], [0, 0, 0])
    with pytest.raises(ValueError, match="one stimulus label per trial"):
        noise_ceiling(np.ones((2, 3)), ["a", "a"], [0, 0, 0])
    with pytest.raises(ValueError, match="one group label per trial"):
        noise_ceiling(np.ones((2, 4)), ["a", "a", "b", "b"], [0, 0])
    with pytest.raises(ValueError, match=r"betas must be \(voxels, trials\)"):
        noise_ceiling(np.ones(4), ["a", "a", "b", "b"], [0, 0, 0, 0])


def test_nc_from_ncsnr_limits() -> None:
    np.testing.assert_allclose(nc_from_ncsnr(np.array([0.0, 1.0, np.inf]), 1.0), [0, 50, 100])


def test_expected_noise_ceiling_of_perfect_and_scaled_estimates() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(400), 2)
    s, t = np.array([1.0, 0.5]), np.array([1.0, 1.0])
    true = s[:, None] * rng.standard_normal((2, 400))[:, labels] + t[:, None] * (
        rng.standard_normal((2, 800))
    )
    exp = expected_noise_ceiling(true, true, s, t, 0.5)
    np.testing.assert_allclose(exp, 100 * s**2 / (s**2 + t**2 * 0.5), rtol=1e-9)
    # scaled and offset estimates have the same expected ceiling; added noise lowers it
    np.testing.assert_allclose(expected_noise_ceiling(3 * true + 2, true, s, t, 0.5), exp)
    noisy = true + rng.standard_normal(true.shape)
    assert np.all(expected_noise_ceiling(noisy, true, s, t, 0.5) < exp)


def test_roi_summary_and_d_prime() -> None:
    nc = np.array([[10.0, 20.0], [30.0, 0.0]])
    r2 = np.array([[1.0, 2.0], [3.0, 4.0]])
    rows = roi_summary(nc, r2, {"a": nc > 5, "none": nc > 100})
    assert rows[0] == {
        "roi": "a",
        "voxels": 3,
        "nc_median": 20.0,
        "nc_mean": 20.0,
        "r2_median": 2.0,
    }
    assert rows[1]["voxels"] == 0 and np.isnan(rows[1]["nc_median"])
    with pytest.raises(ValueError, match="bring the mask into the functional grid"):
        roi_summary(nc, None, {"bad": np.ones(3, bool)})
    values = np.array([4.0, 6.0, 0.0, 2.0])
    inside = np.array([True, True, False, False])
    # means 5 and 1, SDs sqrt(2) each: d' = 4 / sqrt(2)
    assert d_prime(values, inside, ~inside) == pytest.approx(4 / np.sqrt(2))
    assert np.isnan(d_prime(values, inside & False, ~inside))
