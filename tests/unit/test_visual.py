"""Kernel of the visually responsive ROI: calibrated run-level test on correlated betas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from echoprep.kernels import visual

# --------------------------------------------------------------------------------------------
# synthetic single-trial betas of a fast design (3 s trials, TR 1.9 s, a few blank gaps)

TR = 1.9


def _design(m: int, rng: np.random.Generator) -> np.ndarray:
    """``(T, m + 2)`` least-squares single-trial design: m trials every 3 s (a 6 s gap before
    every 8th: the blanks), canonical double-gamma HRF, then a constant and a linear drift."""
    onsets = []
    t = 6.0
    for i in range(m):
        if i % 8 == 7:
            t += 3.0  # a blank trial: nothing modelled
        onsets.append(t + rng.uniform(-0.2, 0.2))
        t += 3.0
    n_vol = int((t + 16.0) / TR)
    fine = np.arange(0, n_vol * TR, 0.1)
    h = stats.gamma.pdf(np.arange(0, 30, 0.1), 6) - stats.gamma.pdf(np.arange(0, 30, 0.1), 16) / 6
    cols = []
    for o in onsets:
        box = ((fine >= o) & (fine < o + 2.5)).astype(float)
        cols.append(np.convolve(box, h)[: fine.size][:: round(TR / 0.1)][:n_vol])
    x = np.stack(cols, 1)
    x /= x.max()
    drift = np.linspace(-1, 1, n_vol)
    return np.column_stack([x, np.ones(n_vol), drift])


def _betas(
    n_vox: int,
    n_runs: int,
    m: int,
    *,
    effect: np.ndarray | float = 0.0,
    seed: int = 0,
    ar: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """``(V, n_runs * m)`` least-squares single-trial betas of AR(1) noise (+ ``effect`` in every
    trial) and the run labels. Voxel noise SDs differ (lognormal, SD 0.4)."""
    rng = np.random.default_rng(seed)
    scale = np.exp(0.4 * rng.standard_normal(n_vox))
    effect = np.broadcast_to(np.asarray(effect, float), (n_vox,))
    out = []
    for _ in range(n_runs):
        x = _design(m, rng)
        n_vol = x.shape[0]
        e = np.empty((n_vox, n_vol))
        e[:, 0] = rng.standard_normal(n_vox)
        for k in range(1, n_vol):
            e[:, k] = ar * e[:, k - 1] + np.sqrt(1 - ar**2) * rng.standard_normal(n_vox)
        y = scale[:, None] * e + effect[:, None] * x[:, :m].sum(1)[None]
        out.append(np.linalg.lstsq(x, y.T, rcond=None)[0][:m].T)
    return np.concatenate(out, 1), np.repeat(np.arange(n_runs).astype(str), m)


# --------------------------------------------------------------------------------------------
# calibration under the null, and detection


@pytest.mark.parametrize("n_runs", [2, 4])
def test_null_false_positive_rate_is_nominal_and_trial_t_is_not(n_runs):
    """Null correlated betas: run-level p < 0.05 in 5 % of voxels (tolerance 1.5 points for
    8000 voxels: binomial SD 0.24 points); the trial-level t that treats betas as independent
    is far off its nominal rate (measured: p < 0.05 in 15.5 %, t > 3 in 3.4 % against 0.18 %)."""
    b, runs = _betas(8000, n_runs, 40, seed=n_runs)
    test = visual.run_level_test(b, runs)
    assert 0.035 <= np.mean(test.p < 0.05) <= 0.065
    assert 0.004 <= np.mean(test.p < 0.01) <= 0.018
    # the former statistic: nominal rates of a t over all trials
    t_all = b.mean(1) / (b.std(1, ddof=1) / np.sqrt(b.shape[1]))
    naive = stats.t.sf(t_all, b.shape[1] - 1)
    assert np.mean(naive < 0.05) > 0.12
    # t > 3 (the former threshold, the one-run form of leave_one_run_out_t): 10x its nominal
    one_run = visual.leave_one_run_out_t(b, np.zeros(b.shape[1]))
    assert one_run == pytest.approx(t_all)
    assert np.mean(one_run > 3.0) > 10 * stats.t.sf(3.0, b.shape[1] - 1)
    # FDR at 5 % on pure noise selects (almost) nothing
    assert visual.select_responsive(test.p, 0.05, "fdr")[0].sum() <= 5


def test_effect_is_detected_and_gls_beats_the_plain_mean():
    """10 % of voxels respond (0.8 noise SD per trial): FDR 5 % finds most of them with few
    false positives; the plain mean of the collinear trials finds fewer, and leaves more of the
    trials' correlation to the design effect (measured: recall 0.94 vs 0.88, kappa0 1.2 vs
    2.5)."""
    rng = np.random.default_rng(3)
    n_vox = 4000
    active = rng.random(n_vox) < 0.1
    b, runs = _betas(n_vox, 4, 40, effect=np.where(active, 0.8, 0.0), seed=7)
    gls = visual.run_level_test(b, runs)
    sel, cut = visual.select_responsive(gls.p, 0.05, "fdr")
    recall = (sel & active).sum() / active.sum()
    precision = (sel & active).sum() / sel.sum()
    assert recall > 0.9
    assert precision > 0.9
    assert 0 < cut <= 0.05
    plain = visual.run_level_test(b, runs, weighting="mean")
    recall_plain = (visual.select_responsive(plain.p, 0.05)[0] & active).sum() / active.sum()
    assert recall_plain < recall - 0.03
    assert plain.design_effect > 1.5 * gls.design_effect
    assert gls.effective_trials < b.shape[1]  # correlated trials are worth fewer


def test_run_weights_recover_the_onoff_amplitude():
    """Errors ~ (X'X)^-1 (least squares, white noise): the GLS weights are X'X 1 / 1'X'X1."""
    rng = np.random.default_rng(0)
    x = _design(24, rng)
    # trial regressors with the constant and drift projected out (what their betas see)
    xt = x[:, :24] - x[:, 24:] @ np.linalg.lstsq(x[:, 24:], x[:, :24], rcond=None)[0]
    cov = np.linalg.inv(xt.T @ xt)
    errs = rng.multivariate_normal(np.zeros(24), cov, size=20000)
    w, _, c = visual.run_weights(errs, np.zeros(20000), shrinkage=0.0)
    expected = xt.T @ xt @ np.ones(24)
    expected /= expected.sum()
    assert w.sum() == pytest.approx(1.0)
    assert np.corrcoef(w, expected)[0, 1] > 0.97
    assert c > 0


def test_moderation_prior_known_answers():
    rng = np.random.default_rng(1)
    d, d2 = 3, 150
    # one design effect for every voxel: d0 infinite, kappa0 recovered
    f = 2.0 * (rng.chisquare(d, 50000) / d) / (rng.chisquare(d2, 50000) / d2)
    d0, k0 = visual.moderation_prior(np.log(f), d, d2)
    assert np.isinf(d0) or d0 > 200
    assert k0 == pytest.approx(2.0, rel=0.03)
    # design effects spread as 1/kappa ~ chi2_8 / (8 * 2): d0 about 8
    kappa = 1 / (rng.chisquare(8, 50000) / (8 * 2.0))
    f = kappa * (rng.chisquare(d, 50000) / d) / (rng.chisquare(d2, 50000) / d2)
    d0, k0 = visual.moderation_prior(np.log(f), d, d2)
    assert d0 == pytest.approx(8, rel=0.25)
    assert k0 == pytest.approx(2.0, rel=0.1)


def test_fdr_by_hand():
    # Benjamini-Hochberg, m = 5, alpha 0.05: thresholds 0.01 0.02 0.03 0.04 0.05; sorted
    # p 0.001 0.012 0.035 0.039 0.2 -> largest k with p_(k) <= k alpha / m is k = 4
    p = np.array([0.039, 0.2, 0.001, 0.035, 0.012, np.nan])
    sel, cut = visual.fdr_mask(p, 0.05)
    assert sel.tolist() == [True, False, True, True, True, False]
    assert cut == pytest.approx(0.039)
    sel, cut = visual.fdr_mask(np.array([0.5, 0.9]), 0.05)
    assert not sel.any() and cut == 0.0
    # Bonferroni: 0.05 / 5 finite tests
    sel, cut = visual.select_responsive(p, 0.05, "bonferroni")
    assert cut == pytest.approx(0.01)
    assert sel.tolist() == [False, False, True, False, False, False]


def test_run_level_test_errors():
    b = np.zeros((5, 6))
    with pytest.raises(ValueError, match="at least 2 runs"):
        visual.run_level_test(b + np.arange(6), np.zeros(6))
    with pytest.raises(ValueError, match="expected \\(V, N\\) betas and N run labels"):
        visual.run_level_test(b, np.zeros(5))
    with pytest.raises(ValueError, match="at least 3 voxels"):
        visual.run_level_test(b, np.repeat(["1", "2"], 3))
    with pytest.raises(ValueError, match="weighting"):
        visual.run_level_test(b, np.repeat(["1", "2"], 3), weighting="median")
    with pytest.raises(ValueError, match="alpha"):
        visual.fdr_mask(np.array([0.1]), 1.5)
