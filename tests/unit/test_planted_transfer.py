"""The leakage measure of ``benchmarks/planted_transfer.py`` (docs/comparison.md, "Where the
estimate's error comes from"): known answers on synthetic betas (no workflow is run)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from helpers.scripts import load_benchmark


@pytest.fixture(scope="module")
def transfer() -> ModuleType:
    return load_benchmark("planted_transfer")


def _session(seed: int = 0, n_voxels: int = 300, n_runs: int = 3, per_run: int = 60):
    rng = np.random.default_rng(seed)
    n_images = 40
    labels = rng.integers(0, n_images, size=n_runs * per_run).astype(str)
    runs = np.repeat([f"{r + 1:02d}" for r in range(n_runs)], per_run)
    pattern = rng.standard_normal((n_voxels, n_images))
    return rng, labels, runs, [str(i) for i in range(n_images)], pattern


def test_trial_responses_give_each_trial_its_images_response_and_0_elsewhere(
    transfer: ModuleType,
) -> None:
    pattern = np.array([[1.0, 2.0], [3.0, 4.0]])
    cols = np.array([1, -1, 0, 1])
    got = transfer.trial_responses(pattern, cols)
    np.testing.assert_array_equal(got, [[2.0, 0.0, 1.0, 2.0], [4.0, 0.0, 3.0, 4.0]])


def test_leakage_recovers_the_neighbouring_trials_shares_within_each_run(
    transfer: ModuleType,
) -> None:
    rng, labels, runs, images, pattern = _session()
    cols = np.array([images.index(lab) for lab in labels])
    resp = transfer.trial_responses(pattern, cols)
    shares = {-2: 0.0, -1: 0.25, 1: 0.6, 2: -0.1}
    betas = 2.0 * resp  # the trial's own response, in other units
    n = labels.size
    for lag, share in shares.items():
        idx = np.arange(n) + lag
        ok = (idx >= 0) & (idx < n)
        ok[ok] &= runs[idx[ok]] == runs[ok]  # a run's first trial carries nothing of the last
        betas[:, ok] += 2.0 * share * resp[:, idx[ok]]
    betas += 0.05 * rng.standard_normal(betas.shape)
    got = transfer.leakage(betas, resp, runs)
    np.testing.assert_allclose(got, [0.0, 0.25, 1.0, 0.6, -0.1], atol=0.01)


def test_leakage_of_betas_without_neighbours_is_zero_beside_the_trials_own(
    transfer: ModuleType,
) -> None:
    rng, labels, runs, images, pattern = _session(seed=1)
    cols = np.array([images.index(lab) for lab in labels])
    resp = transfer.trial_responses(pattern, cols)
    got = transfer.leakage(resp + 0.05 * rng.standard_normal(resp.shape), resp, runs)
    np.testing.assert_allclose(got, [0.0, 0.0, 1.0, 0.0, 0.0], atol=0.01)


def test_residual_share_tells_a_shared_noise_term_from_chance(transfer: ModuleType) -> None:
    """Two noisy measurements of the same image responses: with independent noise the share
    they have beyond the responses lies within its permutation spread; with a noise term they
    share it is that term's covariance over the responses' (known answer) and far beyond."""
    rng = np.random.default_rng(3)
    n_voxels, n_images = 400, 80
    means = rng.standard_normal((n_voxels, n_images))
    own = [rng.standard_normal((n_voxels, n_images)) * 2 for _ in range(2)]
    chance = transfer.residual_share(means + own[0], means + own[1], means, permutations=200)
    assert abs(chance["share"]) < 3 * chance["null_sd"] and chance["p"] > 0.01
    assert abs(chance["null_mean"]) < chance["null_sd"]
    common = rng.standard_normal((n_voxels, n_images)) * 0.5  # variance 0.25 of the means' 1
    shared = transfer.residual_share(
        means + own[0] + common, means + own[1] + common, means, permutations=200
    )
    assert shared["share"] == pytest.approx(0.25, abs=0.06)
    assert shared["p"] == 0.0 and shared["share"] > 5 * shared["null_sd"]


def _exact_correlation(rng: np.random.Generator, r: np.ndarray, n_images: int):
    """Image means ``M`` and true means ``R`` (``(V, I)`` each) whose correlation over the
    images is exactly ``r`` per voxel (the rest of ``M`` orthogonal to ``R``)."""
    true = rng.standard_normal((r.size, n_images))
    true -= true.mean(axis=1, keepdims=True)
    true /= true.std(axis=1, keepdims=True)
    other = rng.standard_normal(true.shape)
    other -= other.mean(axis=1, keepdims=True)
    other -= (other * true).mean(axis=1, keepdims=True) * true
    other /= other.std(axis=1, keepdims=True)
    return r[:, None] * true + np.sqrt(1 - r[:, None] ** 2) * other, true


def test_reading_of_truth_follows_the_mean_over_voxels_not_the_median(
    transfer: ModuleType,
) -> None:
    """The estimate's reading (covariances smoothed over voxels, then the median) of voxels whose
    fidelity is known exactly: where the voxels' r is spread symmetrically it is their median;
    where a quarter of the voxels, scattered, lose most of it (a left-skewed spread, as a
    projection that removes some voxels' responses leaves) it is their mean, and reads the
    median low by the mean's share of it."""
    from echoprep.kernels import planted_fidelity as pf

    rng = np.random.default_rng(4)
    shape = (12, 12, 12)
    voxels = np.argwhere(np.ones(shape, bool))
    smoother = pf.Smoother(voxels, shape, [2.0, 2.0, 2.0])
    every = np.ones(len(voxels), bool)
    symmetric = np.clip(0.6 + 0.1 * rng.standard_normal(len(voxels)), 0.0, 0.95)
    got = transfer.reading_of_truth(*_exact_correlation(rng, symmetric, 60), smoother, every)
    assert got["truth_median"] == pytest.approx(float(np.median(symmetric)), abs=1e-9)
    assert got["reading_over_truth"] == pytest.approx(1.0, abs=0.01)
    assert abs(got["truth_skew"]) < 0.2
    skewed = np.where(rng.random(len(voxels)) < 0.25, 0.2, 0.8)
    got = transfer.reading_of_truth(*_exact_correlation(rng, skewed, 60), smoother, every)
    assert got["truth_median"] == pytest.approx(0.8, abs=1e-9)
    assert got["truth_mean"] == pytest.approx(float(skewed.mean()), abs=1e-9)
    assert got["truth_skew"] < -1.0
    assert got["reading_over_mean"] == pytest.approx(1.0, abs=0.02)
    assert got["reading_over_truth"] < 0.85
