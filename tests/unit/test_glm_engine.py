"""GLMsingle engine end to end on synthetic sessions that are not in the repository.

Sessions come from :mod:`echoprep.simulate.glm_session` (seeded): 12 x 10 x 5 voxels, four
runs of unequal length (140-160 volumes at TR 1.9 s), 40 conditions x 3 repeats, a voxel-wise
library HRF, shared "physiological" noise. Checked here: GLMsingle's keys and shapes, invariance
to ``chunklen`` and to V x T input, determinism, the internal consistency of every type (HRF
choice, pcnum rule, fraction choice, autoscale identity), the percent-BOLD rules, every
special case of docs/glm.md §10 and our decisions (extra regressors at every level,
brainexclude = exclude, plain-list xvalscheme), and ground truth.

Ground truth (``GROUND_TRUTH_SESSION``): median over active voxels of the correlation across
trials with the true betas, and test-retest reliability = median over active voxels of the mean,
over the three pairs of repeats, of the correlation across conditions between the betas of
repeat a and repeat b (type A has one beta per voxel, so the ordering is B < C < D). Measured:
truth r B 0.601 < C 0.671 < D 0.685; reliability B 0.337 < C 0.428 < D 0.449.
"""

from __future__ import annotations

import warnings
from functools import cache, partial

import numpy as np
import pytest

from echoprep.kernels.glm import REQUIRED_OPTIONS
from echoprep.kernels.glm import fit_glmsingle as _fit_glmsingle
from echoprep.options import section_defaults
from echoprep.simulate.glm_session import SyntheticSession, make_session

#: The engine options at the config schema's defaults (the engine takes them all explicitly).
ENGINE_DEFAULTS = {k: v for k, v in section_defaults("glm").items() if k in REQUIRED_OPTIONS}
#: One BLAS thread: the products are small, and the test machine is shared.
fit_glmsingle = partial(_fit_glmsingle, n_threads=1, **ENGINE_DEFAULTS)

SHAPE = (12, 10, 5)
RUNS = [140, 150, 160, 150]
GROUND_TRUTH_SESSION = {"seed": 1, "noise_pct": 2.5}
FIXED = {"brainR2": 1.0, "pcR2cutoff": 1.0}


@cache
def _session(seed: int = 1, noise_pct: float = 2.5) -> SyntheticSession:
    return make_session(SHAPE, RUNS, 40, 3, seed=seed, noise_pct=noise_pct)


@cache
def _fit(key: str) -> dict:
    s = _session()
    opts = dict(CASES[key])
    data = opts.pop("_data", s.data)
    design = opts.pop("_design", s.design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_glmsingle(design, data, s.stimdur, s.tr, **opts)


def _extra_regressors() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [np.cumsum(rng.standard_normal((t, 2)), axis=0) for t in RUNS]


CASES: dict[str, dict] = {
    "default": {},
    "lss": {"wantlss": 1},
    "fixed": {"pcstop": -2, "fracs": 0.5},
    "frac1": {"fracs": 1},
    "nodenoise": {"wantglmdenoise": 0},
    "rawpct": {"wantpercentbold": 0, "wantfithrfr2run": 0},
    "canonical": {"wantlibrary": 0},
    "lists": {**FIXED, "xvalscheme": [[0, 1], [2], [3]], "sessionindicator": [1, 1, 2, 2]},
    "arrays": {
        **FIXED,
        "xvalscheme": [np.array([0, 1]), np.array([2]), np.array([3])],
        "sessionindicator": np.array([1, 1, 2, 2]),
    },
}


def _flat(a: np.ndarray, n_lead: int = 3) -> np.ndarray:
    return a.reshape(-1, *a.shape[n_lead:])


def _rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


# ---------------------------------------------------------------------------------------------
# outputs


def test_outputs_have_glmsingle_keys_and_shapes() -> None:
    out = _fit("default")
    n, r, h, k = 120, 4, 20, 10
    a, b, c, d = out["typea"], out["typeb"], out["typec"], out["typed"]
    assert a["onoffR2"].shape == SHAPE and a["betasmd"].shape == (*SHAPE, 1)
    assert b["FitHRFR2"].shape == (*SHAPE, h) and b["FitHRFR2run"].shape == (*SHAPE, r, h)
    assert b["HRFindex"].dtype == np.int64 and b["HRFindex"].max() < h
    assert b["HRFindexrun"].shape == (*SHAPE, r) and b["betasmd"].shape == (*SHAPE, n)
    for t in (c, d):
        assert t["betasmd"].shape == (*SHAPE, n) and t["betasmd"].dtype == np.float32
        assert t["glmbadness"].shape == (*SHAPE, k + 1) and t["xvaltrend"].shape == (k + 1,)
        assert t["noisepool"].dtype == bool and t["pcvoxels"].dtype == bool
        assert [p.shape for p in t["pcregressors"]] == [(x, k + 1) for x in RUNS]
        assert t["R2run"].shape == (*SHAPE, r) and isinstance(t["pcnum"], int)
    assert d["rrbadness"].shape == (*SHAPE, 20) and d["scaleoffset"].shape == (*SHAPE, 2)
    info = out["designinfo"]
    s = _session()
    assert np.array_equal(info["stimorder"], s.trial_condition)
    assert np.array_equal(info["trialrun"], s.trial_run)
    assert info["condcounts"].tolist() == [3] * 40 and info["numtrialrun"].sum() == n
    # unequal runs get their own polynomial degree: 4.4, 4.75, 5.07, 4.75 min
    assert out["params"]["maxpolydeg"] == [2, 2, 3, 2]
    assert out["params"]["brainR2"] == out["params"]["pcR2cutoff"]  # the tail threshold


def test_chunklen_and_2d_input_do_not_change_results() -> None:
    s = _session()
    ref = _fit("default")
    out = fit_glmsingle(
        s.design, [d.reshape(-1, d.shape[-1]) for d in s.data], s.stimdur, s.tr, chunklen=97
    )
    for t in ("typea", "typeb", "typec", "typed"):
        for key, val in ref[t].items():
            got = out[t][key]
            if isinstance(val, list):
                for p, q in zip(val, got, strict=True):
                    np.testing.assert_allclose(p, q, atol=2e-4)
                continue
            val = np.asarray(val)
            if val.ndim >= 3:
                val = _flat(val)
            assert np.shape(got) == val.shape, (t, key)
            if val.dtype in (bool, np.int64) or key in ("FRACvalue", "pcnum"):
                assert np.array_equal(got, val), (t, key)
            else:
                np.testing.assert_allclose(got, val, rtol=1e-4, atol=2e-4, err_msg=f"{t} {key}")


def test_same_inputs_give_identical_outputs_and_inputs_are_not_modified() -> None:
    s = _session()
    before = [d.copy() for d in s.data]
    a = _fit("default")
    b = fit_glmsingle(s.design, s.data, s.stimdur, s.tr)
    for t in ("typeb", "typed"):
        assert np.array_equal(a[t]["betasmd"], b[t]["betasmd"])
    assert a["params"]["brainR2"] == b["params"]["brainR2"]
    for x, y in zip(before, s.data, strict=True):
        assert np.array_equal(x, y)


# ---------------------------------------------------------------------------------------------
# internal consistency


def test_type_b_picks_the_library_hrf_with_the_highest_pooled_r2() -> None:
    b = _fit("default")["typeb"]
    fit = _flat(b["FitHRFR2"])
    idx = _flat(b["HRFindex"], 3)
    assert np.array_equal(idx, np.argmax(fit, axis=1))
    np.testing.assert_array_equal(_flat(b["R2"]), fit.max(axis=1))
    run = _flat(b["FitHRFR2run"])
    np.testing.assert_array_equal(_flat(b["R2run"]), run[np.arange(idx.size), :, idx])
    assert np.array_equal(_flat(b["HRFindexrun"]), np.argmax(run, axis=2))


def test_noise_pool_and_pcnum_follow_their_rules() -> None:
    out = _fit("default")
    c = out["typec"]
    meanvol = _flat(out["typea"]["meanvol"])
    onoff = _flat(out["typea"]["onoffR2"])
    thr = out["params"]["brainR2"]
    bright = meanvol > 0.1 * np.percentile(meanvol, 99)
    assert np.array_equal(_flat(c["noisepool"]), bright & (onoff < thr))
    assert np.array_equal(_flat(c["pcvoxels"]), onoff > thr)
    bad = _flat(c["glmbadness"])
    trend = -np.median(bad[_flat(c["pcvoxels"])], axis=0)
    np.testing.assert_allclose(c["xvaltrend"], trend, rtol=1e-6)
    g = trend - trend[0]
    expected = int(np.flatnonzero(1.05 * g >= g.max())[0]) if g.max() > 0 else 0
    assert c["pcnum"] == expected and c["pcnum"] > 0  # the shared noise is worth removing


def test_type_d_picks_the_fraction_with_least_badness_and_autoscales_onto_ols() -> None:
    out = _fit("default")
    c, d = out["typec"], out["typed"]
    fracs = np.linspace(1, 0.05, 20)
    rr = _flat(d["rrbadness"])
    np.testing.assert_allclose(_flat(d["FRACvalue"]), fracs[np.argmin(rr, axis=1)], atol=1e-6)
    assert len(np.unique(d["FRACvalue"])) > 5  # a per-voxel choice
    # ridge shrinks: the fit is below that of OLS in most voxels (R² is of the task part
    # against the data without PCs removed, so not in every voxel); autoscale keeps the sign
    assert np.mean(_flat(d["R2"]) <= _flat(c["R2"]) + 1e-3) > 0.9
    assert np.all(d["scaleoffset"][..., 0] > 0)
    # autoscale: the final betas are the least-squares fit of the OLS (type C) betas
    # over trials, so their mean matches and their residual is uncorrelated with them
    bc = _flat(c["betasmd"]).astype(np.float64)
    bd = _flat(d["betasmd"]).astype(np.float64)
    np.testing.assert_allclose(bd.mean(axis=1), bc.mean(axis=1), rtol=1e-3, atol=1e-3)
    resid = bc - bd
    cov = ((resid - resid.mean(1, keepdims=True)) * (bd - bd.mean(1, keepdims=True))).mean(1)
    assert np.abs(cov).max() < 1e-3 * bd.var(axis=1).max()


def test_fixed_pcs_and_a_single_fraction_skip_cross_validation() -> None:
    d = _fit("fixed")["typed"]
    assert d["pcnum"] == 2
    assert np.isnan(d["glmbadness"]).all() and np.isnan(d["xvaltrend"]).all()
    assert np.all(d["FRACvalue"] == 0.5) and np.isnan(d["rrbadness"]).all()
    assert d["rrbadness"].shape == (*SHAPE, 1)


def test_fraction_1_makes_type_d_equal_type_c() -> None:
    out = _fit("frac1")
    np.testing.assert_allclose(out["typed"]["betasmd"], out["typec"]["betasmd"], rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    assert np.all(out["typed"]["FRACvalue"] == 1.0)
    np.testing.assert_allclose(out["typed"]["scaleoffset"][..., 0], 1.0, atol=1e-5)


def test_percent_bold_rules() -> None:
    pct, raw = _fit("default"), _fit("rawpct")
    meanvol = pct["typea"]["meanvol"][..., None]
    np.testing.assert_allclose(raw["typeb"]["betasmd"], pct["typeb"]["betasmd"] * meanvol / 100,
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(raw["typea"]["betasmd"], pct["typea"]["betasmd"] * meanvol / 100,
                               rtol=1e-5)  # fmt: skip
    assert "FitHRFR2run" not in raw["typeb"]  # optional, large
    np.testing.assert_array_equal(raw["typeb"]["FitHRFR2"], pct["typeb"]["FitHRFR2"])
    # C and D are always in percent of |meanvol|
    for t in ("typec", "typed"):
        np.testing.assert_array_equal(raw[t]["betasmd"], pct[t]["betasmd"])


def test_canonical_hrf_everywhere_without_the_library() -> None:
    out = _fit("canonical")
    b = out["typeb"]
    assert b["FitHRFR2"].shape == (*SHAPE, 1) and np.all(b["HRFindex"] == 0)
    # the same as a one-column library holding the canonical HRF
    s = _session()
    lib = out["params"]["hrftoassume"][:, None]
    same = fit_glmsingle(s.design, s.data, s.stimdur, s.tr, hrflibrary=lib)
    for t in ("typeb", "typed"):
        np.testing.assert_array_equal(same[t]["betasmd"], out[t]["betasmd"])


def test_lss_changes_only_the_type_b_betas() -> None:
    ols, lss = _fit("default"), _fit("lss")
    assert not np.allclose(lss["typeb"]["betasmd"], ols["typeb"]["betasmd"], atol=1e-2)
    np.testing.assert_array_equal(lss["typeb"]["R2"], ols["typeb"]["R2"])
    np.testing.assert_array_equal(lss["typed"]["betasmd"], ols["typed"]["betasmd"])


def test_without_glmdenoise_type_d_uses_no_pcs() -> None:
    out = _fit("nodenoise")
    assert "typec" not in out and out["typed"]["pcnum"] == 0
    assert "noisepool" not in out["typed"]
    d, b = out["typed"], out["typeb"]
    one = d["FRACvalue"] == 1.0
    # frac 1 with 0 PCs is the type-B OLS fit (both in percent here)
    np.testing.assert_allclose(d["betasmd"][one], b["betasmd"][one], rtol=1e-4, atol=1e-4)


def test_all_zero_voxels_are_allowed_and_give_nan_not_warnings() -> None:
    s = _session()
    data = [d.copy() for d in s.data]
    for d in data:
        d[:2] = 0.0  # a masked background
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fit_glmsingle(s.design, data, s.stimdur, s.tr, **FIXED)
    for t, r2 in (("typea", "onoffR2"), ("typeb", "R2"), ("typec", "R2"), ("typed", "R2")):
        assert np.isnan(out[t]["betasmd"][:2]).all() and np.isnan(out[t][r2][:2]).all(), t
        assert np.isfinite(out[t]["betasmd"][2:]).all(), t
    assert np.all(out["typeb"]["HRFindex"][:2] == 0) and np.all(out["typed"]["FRACvalue"][:2] == 1)
    assert not out["typec"]["noisepool"][:2].any()


# ---------------------------------------------------------------------------------------------
# our decisions


def test_xvalscheme_and_sessionindicator_accept_plain_lists() -> None:
    a, b = _fit("lists"), _fit("arrays")
    assert a["typed"]["pcnum"] == b["typed"]["pcnum"]
    np.testing.assert_array_equal(a["typed"]["glmbadness"], b["typed"]["glmbadness"])
    np.testing.assert_array_equal(a["typed"]["betasmd"], b["typed"]["betasmd"])
    # the folds matter: different from leave-one-run-out
    assert not np.allclose(a["typed"]["glmbadness"], _fit("default")["typed"]["glmbadness"])


def test_brainexclude_mask_excludes_voxels_from_the_noise_pool() -> None:
    s = _session()
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:6] = True
    out = fit_glmsingle(s.design, s.data, s.stimdur, s.tr, brainexclude=mask, **FIXED)
    pool = out["typec"]["noisepool"]
    assert pool.any() and not (pool & mask).any()
    ref = _fit("lists")["typec"]["noisepool"]  # same thresholds, nothing excluded
    assert np.array_equal(pool, ref & ~mask)


def test_extra_regressors_are_nuisance_terms_at_every_pc_level() -> None:
    """A confound given as an extra regressor leaves every beta and badness unchanged.

    The confound is added (large) only to voxels excluded from the noise pool and from the xval
    summary, so the PCs and pcnum cannot change through it; with one HRF (the choice of HRF
    uses R² against the data with only polynomials removed, which sees the confound), the
    single-trial betas of types B-D,
    the GLMdenoise badness at every PC level (including 0) and the chosen fractions must then be
    identical with and without the confound in the data.
    """
    s = _session()
    extra = _extra_regressors()
    mask = np.zeros(SHAPE, dtype=bool)
    mask[::2] = True
    # one HRF: R² (task part only, against data with only the polynomials removed) sees the
    # confound, so with a library the HRF choice could move
    opts = dict(
        FIXED, extra_regressors=extra, brainexclude=mask, pcR2cutoffmask=~mask, wantlibrary=0
    )
    confounded = []
    for d, z in zip(s.data, extra, strict=True):
        d2 = d.copy()
        d2[mask] += (40.0 * (z - z.mean(axis=0)) @ np.array([1.0, -0.5])).astype(np.float32)
        confounded.append(d2)
    clean = fit_glmsingle(s.design, s.data, s.stimdur, s.tr, **opts)
    dirty = fit_glmsingle(s.design, confounded, s.stimdur, s.tr, **opts)
    assert clean["typec"]["pcnum"] == dirty["typec"]["pcnum"]
    for t in ("typeb", "typec"):
        np.testing.assert_allclose(dirty[t]["betasmd"][mask], clean[t]["betasmd"][mask],
                                   rtol=1e-3, atol=2e-3, err_msg=t)  # fmt: skip
    np.testing.assert_allclose(dirty["typec"]["glmbadness"][mask],
                               clean["typec"]["glmbadness"][mask], rtol=1e-3)  # fmt: skip
    np.testing.assert_allclose(dirty["typed"]["rrbadness"][mask],
                               clean["typed"]["rrbadness"][mask], rtol=1e-3)  # fmt: skip
    # near-ties of the fraction choice may flip with float32 rounding; compare the rest
    same = dirty["typed"]["FRACvalue"][mask] == clean["typed"]["FRACvalue"][mask]
    assert same.mean() >= 0.99, same.mean()
    np.testing.assert_allclose(
        dirty["typed"]["betasmd"][mask][same],
        clean["typed"]["betasmd"][mask][same],
        rtol=1e-3,
        atol=2e-3,
    )
    # control: without the extra regressors the confound does change the betas
    opts.pop("extra_regressors")
    plain = fit_glmsingle(s.design, confounded, s.stimdur, s.tr, **opts)
    err = np.abs(plain["typeb"]["betasmd"][mask] - clean["typeb"]["betasmd"][mask]).mean()
    assert err > 0.1, err


# ---------------------------------------------------------------------------------------------
# special cases (docs/glm.md §10)


def test_single_run_fits_a_and_b_and_warns_that_c_and_d_are_off() -> None:
    s = _session()
    with pytest.warns(
        UserWarning,
        match=r"no condition occurs in more than one run.*GLMdenoise "
        r"is switched off \(set pcstop = -B.*ridge regression is switched off",
    ):
        out = fit_glmsingle(s.design[1], s.data[1], s.stimdur, s.tr)
    assert {k for k in out if k.startswith("type")} == {"typea", "typeb"}
    assert out["typeb"]["betasmd"].shape == (*SHAPE, 30)
    # fixed PCs and a single fraction need no repeats
    out = fit_glmsingle(s.design[1], s.data[1], s.stimdur, s.tr, pcstop=-1, fracs=0.6)
    assert out["typec"]["pcnum"] == 1 and np.all(out["typed"]["FRACvalue"] == 0.6)


def test_conditions_that_never_repeat_across_runs_switch_off_cross_validation() -> None:
    s = _session()
    design = []
    for r, m in enumerate(s.design):  # give every run its own condition labels
        m2 = np.zeros((m.shape[0], 4 * m.shape[1]))
        m2[:, r * m.shape[1] : (r + 1) * m.shape[1]] = m
        design.append(m2)
    with pytest.warns(UserWarning, match=r"no condition occurs in more than one run"):
        out = fit_glmsingle(design, s.data, s.stimdur, s.tr)
    assert "typec" not in out and "typed" not in out
    assert np.all(out["designinfo"]["condinruns"][out["designinfo"]["condcounts"] > 0] == 1)


def test_singleton_conditions_are_estimated_but_do_not_block_cross_validation() -> None:
    s = _session()
    design = [m.copy() for m in s.design]
    t = np.flatnonzero(design[0].any(axis=1))[0]
    design[0][t] = 0
    design[0] = np.hstack([design[0], np.zeros((design[0].shape[0], 1))])
    design[0][t, -1] = 1  # a new condition seen once
    design[1:] = [np.hstack([m, np.zeros((m.shape[0], 1))]) for m in design[1:]]
    out = fit_glmsingle(design, s.data, s.stimdur, s.tr, **FIXED)
    assert out["designinfo"]["condcounts"][-1] == 1
    assert np.isfinite(out["typed"]["betasmd"][..., 0]).all()


# ---------------------------------------------------------------------------------------------
# ground truth


def _reliability(betas: np.ndarray, cond: np.ndarray) -> float:
    rep = np.zeros_like(cond)
    for c in np.unique(cond):
        idx = np.flatnonzero(cond == c)
        rep[idx] = np.arange(idx.size)
    per_rep = []
    for k in range(3):
        idx = np.flatnonzero(rep == k)
        per_rep.append(betas[:, idx[np.argsort(cond[idx])]])
    pairs = [(0, 1), (0, 2), (1, 2)]
    return float(np.median(np.mean([_rowcorr(per_rep[i], per_rep[j]) for i, j in pairs], 0)))


def test_ground_truth_improves_from_b_to_c_to_d() -> None:
    s = _session(**GROUND_TRUTH_SESSION)
    out = _fit("default")
    act = s.active
    truth = s.true_betas[act].astype(np.float64)
    r, rel = {}, {}
    for t in "bcd":
        b = _flat(out[f"type{t}"]["betasmd"])[act].astype(np.float64)
        r[t] = float(np.median(_rowcorr(b, truth)))
        rel[t] = _reliability(b, s.trial_condition)
    msg = f"truth r {r}, reliability {rel}"
    assert r["b"] < r["c"] < r["d"], msg
    assert rel["b"] < rel["c"] < rel["d"], msg
    assert r["d"] > 0.6, msg
