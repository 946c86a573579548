"""GLMsingle engine building blocks against direct (slow, obvious) implementations.

Frisch-Waugh-Lovell projection vs joint OLS, per-run blocks vs the stacked problem, task-only
R², banded trial products, fractional ridge (norm fractions, ridge closed form), autoscale vs
lstsq, the vectorised cross-validation badness vs a loop over folds and test trials, LSS vs a
per-trial fit, noise PCs vs an SVD, and the seeded tail threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.glm.design import (
    convolved_trials,
    orthonormal_extension,
    polynomial_basis,
)
from echoprep.kernels.glm.fit import (
    gram_pinv_eigh,
    lss_betas,
    r2_percent,
    solver,
    sse,
    trial_products,
)
from echoprep.kernels.glm.hrf import hrf_library
from echoprep.kernels.glm.noise import normalised_rows, principal_components
from echoprep.kernels.glm.ridge import alpha_grid, autoscale, fraction_alphas, shrinkage
from echoprep.kernels.glm.threshold import tail_threshold
from echoprep.kernels.glm.xval import badness, build_cross_validation, reference

RNG = np.random.default_rng(20260101)


def _run_problem(t: int = 80, n: int = 12, n_extra: int = 2, v: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.choice(np.arange(2, t - 8), n, replace=False))
    x = convolved_trials(onsets, hrf_library(3.0, 1.9)[:, 9], t)
    poly = polynomial_basis(t, 2)
    extra = rng.standard_normal((t, n_extra))
    y = rng.standard_normal((v, t)) + 3.0 * (x @ rng.standard_normal((n, v))).T + 50.0
    return onsets, x, poly, extra, y


def _poly_project(poly, a):
    return a - poly @ (poly.T @ a)


def test_projection_betas_equal_joint_ols_with_nuisance_regressors() -> None:
    _, x, poly, extra, y = _run_problem()
    joint = np.hstack([x, poly, extra])
    ref = np.linalg.lstsq(joint, y.T, rcond=None)[0][: x.shape[1]].T
    q, _ = orthonormal_extension(poly, extra)
    xw = _poly_project(poly, x)
    yw = _poly_project(poly, y.T).T
    sol = solver(xw, q)
    d = yw @ xw
    e = yw @ q
    beta = sol.ols(sol.coefs(d, e))
    np.testing.assert_allclose(beta, ref, rtol=1e-8, atol=1e-9)
    # without extra regressors: the whitener gives the same betas and the fitted sum of squares
    sol0 = solver(xw)
    t = d @ sol0.whitener()
    np.testing.assert_allclose(t @ sol0.whitener().T, sol0.ols(d), rtol=1e-9, atol=1e-10)
    fitted = np.einsum("ij,ij->i", t, t)
    direct = ((sol0.ols(d) @ xw.T) ** 2).sum(axis=1)
    np.testing.assert_allclose(fitted, direct, rtol=1e-9)


def test_run_blocks_equal_the_stacked_multi_run_problem() -> None:
    runs = [_run_problem(t=70 + 5 * r, n=9 + r, seed=r) for r in range(3)]
    n_tot = sum(r[1].shape[1] for r in runs)
    rows, cols, big_y = [], 0, []
    blocks = []
    for _, x, poly, extra, y in runs:
        t, n = x.shape
        rows.append((t, n, cols))
        cols += n
        big_y.append(y.T)
        blocks.append((x, poly, extra))
    t_tot = sum(r[0] for r in rows)
    n_nuis = sum(p.shape[1] + e.shape[1] for _, p, e in blocks)
    big = np.zeros((t_tot, n_tot + n_nuis))
    r0, c_nuis = 0, n_tot
    for (t, n, c0), (x, poly, extra) in zip(rows, blocks, strict=True):
        big[r0 : r0 + t, c0 : c0 + n] = x
        nz = np.hstack([poly, extra])
        big[r0 : r0 + t, c_nuis : c_nuis + nz.shape[1]] = nz
        r0 += t
        c_nuis += nz.shape[1]
    ref = np.linalg.lstsq(big, np.vstack(big_y), rcond=None)[0][:n_tot].T
    ours = []
    for _, x, poly, extra, y in runs:
        q, _ = orthonormal_extension(poly, extra)
        xw = _poly_project(poly, x)
        yw = _poly_project(poly, y.T).T
        sol = solver(xw, q)
        ours.append(sol.ols(sol.coefs(yw @ xw, yw @ q)))
    np.testing.assert_allclose(np.hstack(ours), ref, rtol=1e-8, atol=1e-9)


def test_task_only_r2_from_sufficient_statistics_equals_the_direct_residual() -> None:
    _, x, poly, extra, y = _run_problem()
    q, _ = orthonormal_extension(poly, extra)
    xw = _poly_project(poly, x)
    yw = _poly_project(poly, y.T).T
    sol = solver(xw, q)
    d = yw @ xw
    beta = sol.ols(sol.coefs(d, yw @ q))
    ss = (yw**2).sum(axis=1)
    direct = ((yw - beta @ xw.T) ** 2).sum(axis=1)  # task part only, polynomials removed
    np.testing.assert_allclose(sse(ss, beta, d, sol.gw), direct, rtol=1e-9)
    r2 = r2_percent(direct, ss)
    assert np.all((r2 > 0) & (r2 < 100))
    assert np.isnan(r2_percent(np.zeros(1), np.zeros(1)))[0]


def test_banded_trial_products_equal_the_dense_design_products() -> None:
    onsets = np.array([0, 3, 9, 17, 28, 29])
    lib = hrf_library(3.0, 1.9)[:, [0, 7, 19]]
    y = RNG.standard_normal((5, 30)).astype(np.float32)
    prods = trial_products(y, onsets, np.ascontiguousarray(lib.T, dtype=np.float32))
    assert prods.shape == (6, 3, 5)
    for h in range(3):
        dense = y.astype(np.float64) @ convolved_trials(onsets, lib[:, h], 30)
        np.testing.assert_allclose(prods[:, h, :].T, dense, rtol=1e-5, atol=1e-5)


def test_gram_pseudo_inverse_by_eigh_equals_pinv_and_zeroes_empty_regressors() -> None:
    x = RNG.standard_normal((40, 6))
    x[:, 4] = 0.0
    g = x.T @ x
    np.testing.assert_allclose(gram_pinv_eigh(g), np.linalg.pinv(g), rtol=1e-9, atol=1e-12)
    assert np.all(gram_pinv_eigh(g)[4] == 0)
    sol = solver(x)
    assert sol.s.min() == 0.0  # the all-zero column has a zero singular value
    np.testing.assert_allclose(sol.gram_pinv(), np.linalg.pinv(g), rtol=1e-9, atol=1e-12)


def test_fracridge_hits_the_requested_norm_fractions_and_is_a_ridge_solution() -> None:
    x = RNG.standard_normal((120, 25))
    x[:, 1] += 2 * x[:, 0]
    y = RNG.standard_normal((120, 40)) + x @ RNG.standard_normal((25, 40))
    u, s, wt = np.linalg.svd(x, full_matrices=False)
    b = ((u.T @ y) / s[:, None]).T  # rotated OLS coefficients (V x n)
    fracs = np.linspace(1, 0.05, 20)
    alphas = fraction_alphas(s**2, b, fracs)
    assert np.all(alphas[:, 0] == 0) and np.all(np.diff(alphas, axis=1) > 0)
    ols = b @ wt
    for k, f in enumerate(fracs):
        beta = (b * shrinkage(s**2, alphas[:, k])) @ wt
        ratio = np.linalg.norm(beta, axis=1) / np.linalg.norm(ols, axis=1)
        assert np.abs(ratio - f).max() < 0.005, (f, np.abs(ratio - f).max())
    # the rotated path is the ridge closed form at that alpha
    v, k = 3, 7
    a = alphas[v, k]
    closed = np.linalg.solve(x.T @ x + a * np.eye(25), x.T @ y[:, v])
    np.testing.assert_allclose((b[v] * s**2 / (s**2 + a)) @ wt, closed, rtol=1e-8, atol=1e-10)
    # grid: 0 then 10^(0.2 j) (an aligned lattice), spanning 1e-2 min s² .. 1e4 max s²
    grid = alpha_grid(s**2)
    assert grid[0] == 0
    steps = np.log10(grid[1:]) / 0.2
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert grid[1] <= 1e-2 * s.min() ** 2 and grid[-1] * 10**0.2 >= 1e4 * s.max() ** 2
    # a voxel with a zero OLS solution gets alpha 0, not NaN
    assert np.all(fraction_alphas(s**2, np.zeros((1, 25)), fracs) == 0)


def test_autoscale_closed_form_equals_lstsq_and_rejects_negative_scales() -> None:
    ridge = RNG.standard_normal((30, 50))
    ols = 1.7 * ridge + 0.3 + 0.2 * RNG.standard_normal((30, 50))
    ols[0] = -ridge[0] + 0.1 * RNG.standard_normal(50)  # negative relation
    ridge[1] = 2.0  # constant: no unique fit
    scale, offset = autoscale(ols, ridge)
    for v in range(2, 30):
        design = np.stack([ridge[v], np.ones(50)], axis=1)
        ref = np.linalg.lstsq(design, ols[v], rcond=None)[0]
        np.testing.assert_allclose([scale[v], offset[v]], ref, rtol=1e-10, atol=1e-12)
    assert (scale[0], offset[0]) == (1.0, 0.0)
    assert (scale[1], offset[1]) == (1.0, 0.0)


def _badness_naive(betas, trialrun, stimorder, folds, run_session):
    """Loop over folds and test trials, exactly as the definition reads."""
    trial_session = np.asarray(run_session)[trialrun]
    b0 = betas[0]
    zs = [np.zeros_like(b0) for _ in betas]
    for s in np.unique(trial_session):
        idx = np.flatnonzero(trial_session == s)
        mu = b0[:, idx].mean(axis=1, keepdims=True)
        sd = b0[:, idx].std(axis=1, ddof=1, keepdims=True)
        for z, b in zip(zs, betas, strict=True):
            z[:, idx] = (b[:, idx] - mu) / sd
    out = np.zeros((b0.shape[0], len(betas)))
    for fold in folds:
        test = np.flatnonzero(np.isin(trialrun, fold))
        train = np.flatnonzero(~np.isin(trialrun, fold))
        for i in test:
            match = train[stimorder[train] == stimorder[i]]
            for level, z in enumerate(zs):
                out[:, level] += ((z[:, match] - zs[0][:, i : i + 1]) ** 2).sum(axis=1)
    return out


@pytest.mark.parametrize(
    ("folds", "sessions"),
    [
        ([[0], [1], [2], [3]], [1, 1, 1, 1]),  # leave one run out
        ([[0, 1], [2, 3]], [1, 1, 2, 2]),  # two-run folds, two sessions
        ([[3], [0, 2]], [5, 1, 5, 1]),  # a run never tested, interleaved sessions
    ],
)
def test_vectorised_badness_equals_the_naive_loop(folds, sessions) -> None:
    rng = np.random.default_rng(3)
    trialrun = np.repeat(np.arange(4), [7, 6, 8, 5])
    stimorder = rng.integers(0, 9, trialrun.size)  # unequal repeats, some singletons
    betas = [rng.standard_normal((6, trialrun.size)) for _ in range(4)]
    betas[2] = 0.5 * betas[0] + 0.1  # shrunken version of the reference
    folds_a = [np.array(f) for f in folds]
    cv = build_cross_validation(trialrun, stimorder, folds_a, np.array(sessions))
    ref = reference(betas[0], cv)
    ours = np.stack([badness(b.astype(np.float32), cv, ref) for b in betas], axis=1)
    naive = _badness_naive(
        [b.astype(np.float32).astype(np.float64) for b in betas],
        trialrun,
        stimorder,
        folds,
        sessions,
    )
    np.testing.assert_allclose(ours, naive, rtol=1e-5)
    assert cv.informative


def test_lss_betas_equal_per_trial_two_regressor_fits() -> None:
    _, x, poly, extra, y = _run_problem(n=8)
    q, _ = orthonormal_extension(poly, extra)
    xw = _poly_project(poly, x)
    yw = _poly_project(poly, y.T).T
    sol = solver(xw, q)
    ours = lss_betas(sol.coefs(yw @ xw, yw @ q), sol.gram())
    nuis = np.hstack([poly, extra])
    for j in range(x.shape[1]):
        others = np.delete(x, j, axis=1).sum(axis=1)
        design = np.column_stack([x[:, j], others, nuis])
        ref = np.linalg.lstsq(design, y.T, rcond=None)[0][0]
        np.testing.assert_allclose(ours[:, j], ref, rtol=1e-8, atol=1e-9)
    # a single-trial run: the "other trials" regressor is empty, LSS = OLS
    one = solver(xw[:, :1], q)
    c1 = one.coefs(yw @ xw[:, :1], yw @ q)
    np.testing.assert_allclose(lss_betas(c1, one.gram()), one.ols(c1), rtol=1e-10)


def test_noise_pcs_are_the_leading_left_singular_vectors_with_unit_sd() -> None:
    poly = polynomial_basis(60, 2)
    series = RNG.standard_normal((200, 60)) @ np.diag(np.linspace(3, 1, 60))
    series[5] = 0.0  # an all-zero voxel contributes nothing
    yw = _poly_project(poly, series.T).T
    n = normalised_rows(yw)
    assert np.all(n[5] == 0)
    pcs = principal_components(n.T @ n, 4)
    u = np.linalg.svd(n.T, full_matrices=False)[0][:, :4]
    for k in range(4):
        assert abs(np.corrcoef(pcs[:, k], u[:, k])[0, 1]) > 1 - 1e-10
        assert pcs[:, k].std(ddof=1) == pytest.approx(1.0)
        assert pcs[np.argmax(np.abs(pcs[:, k])), k] > 0
    np.testing.assert_allclose(poly.T @ pcs, 0, atol=1e-10)  # no drift left in the PCs


def test_tail_threshold_is_seeded_and_separates_the_components() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.2, 0.3, 5000), rng.normal(15, 5, 800), [np.nan]])
    a = tail_threshold(values, seed=1)
    assert tail_threshold(values, seed=1) == a
    assert 1.0 < a < 8.0
    assert np.isnan(tail_threshold(np.array([np.nan])))
    assert tail_threshold(np.full(10, 3.0)) == 3.0
