"""GLMsingle engine (kernel) design: single-trial bookkeeping, design matrices, polynomial basis."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from echoprep.kernels.glm.design import (
    as_run_list,
    convolved_trials,
    default_maxpolydeg,
    orthonormal_extension,
    polynomial_basis,
    trial_design,
)


def _design(n_vols: int, onsets: list[tuple[int, int]], n_cond: int) -> np.ndarray:
    m = np.zeros((n_vols, n_cond))
    for t, c in onsets:
        m[t, c] = 1
    return m


def test_maxpolydeg_is_half_the_run_minutes_rounded_half_up() -> None:
    assert default_maxpolydeg(150, 1.9) == 2  # 4.75 min
    assert default_maxpolydeg(474, 1.0) == 4  # 7.9 min
    assert default_maxpolydeg(300, 1.0) == 3  # 5.0 min -> 2.5 -> 3 (half up, MATLAB)
    assert default_maxpolydeg(60, 1.0) == 1  # 1 min -> 0.5 -> 1
    assert default_maxpolydeg(30, 1.0) == 0


def test_polynomial_basis_is_an_orthonormal_basis_of_the_vandermonde_span() -> None:
    p = polynomial_basis(150, 3)
    assert p.shape == (150, 4)
    np.testing.assert_allclose(p.T @ p, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(p[:, 0], 1 / np.sqrt(150))
    x = np.linspace(-1, 1, 150)
    vander = np.stack([x**d for d in range(4)], axis=1)
    resid = vander - p @ (p.T @ vander)
    assert np.abs(resid).max() < 1e-12
    # Gram-Schmidt order: column d is orthogonal to all lower degrees, and a polynomial of degree d
    assert abs(np.polyfit(x, p[:, 2], 3)[0]) < 1e-10
    with pytest.raises(ValueError, match="maxpolydeg 5 is too high"):
        polynomial_basis(5, 5)


def test_trials_are_numbered_chronologically_by_run_then_volume() -> None:
    runs = [
        _design(20, [(12, 0), (3, 2), (7, 1)], 3),
        _design(15, [(1, 2), (5, 0)], 3),
    ]
    td = trial_design(runs, tr=2.0)
    assert td.stimorder.tolist() == [2, 1, 0, 2, 0]
    assert td.trialrun.tolist() == [0, 0, 0, 1, 1]
    assert td.trialonset.tolist() == [3, 7, 12, 1, 5]
    assert td.runslices == (slice(0, 3), slice(3, 5))
    assert td.condcounts.tolist() == [2, 1, 2]
    assert td.condinruns.tolist() == [2, 1, 2]
    assert td.numtrialrun.tolist() == [3, 2]
    np.testing.assert_allclose(td.endbuffers, [(19 - 12) * 2.0, (14 - 5) * 2.0])
    assert td.any_repeats_across_runs()
    info = td.as_dict()
    assert set(info) >= {"stimorder", "condcounts", "condinruns", "endbuffers", "numtrialrun"}


def test_sparse_and_boolean_designs_are_accepted() -> None:
    m = _design(10, [(2, 0), (6, 1)], 2)
    runs = as_run_list(sp.csr_matrix(m))
    assert len(runs) == 1 and np.array_equal(runs[0], m)
    assert np.array_equal(as_run_list([m.astype(bool)])[0], m)


def test_convolved_trials_shift_and_truncate_the_hrf() -> None:
    h = np.array([0.0, 0.5, 1.0, 0.25])
    x = convolved_trials(np.array([1, 8]), h, 10)
    assert x.shape == (10, 2)
    np.testing.assert_array_equal(x[:, 0], [0, 0, 0.5, 1.0, 0.25, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(x[:, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5])  # cut at the end
    # the sum over trials equals the convolution of the onset train
    onsets = np.zeros(10)
    onsets[[1, 8]] = 1
    np.testing.assert_allclose(x.sum(axis=1), np.convolve(onsets, h)[:10])


def test_orthonormal_extension_drops_collinear_columns_in_order() -> None:
    rng = np.random.default_rng(0)
    base = polynomial_basis(50, 1)
    a = rng.standard_normal(50)
    cols = np.stack([a, 2 * a + base[:, 0], rng.standard_normal(50), base[:, 1]], axis=1)
    q, count = orthonormal_extension(base, cols)
    assert q.shape == (50, 2)
    assert count.tolist() == [0, 1, 1, 2, 2]
    np.testing.assert_allclose(np.hstack([base, q]).T @ np.hstack([base, q]), np.eye(4), atol=1e-12)
