"""The cross-case reading of ``benchmarks/two_session_cases.py`` (docs/comparison.md, "Every
two-session case, read by the verdict's current rules"): known answers on a made-up case (no
workflow is run)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from helpers.scripts import load_benchmark

VARIANTS = [
    "raw-single",
    "raw-optcom",
    "raw-denoised",
    "nordic-single",
    "nordic-optcom",
    "nordic-denoised",
]


@pytest.fixture(scope="module")
def cases() -> ModuleType:
    return load_benchmark("two_session_cases")


def _case(
    truth: list[float],
    est: list[float],
    noise: float = 0.002,
    seed: int = 0,
    source: str | None = "other_sessions",
) -> dict:
    """Six variants with these true and estimated r, 200 bootstrap draws about the estimate
    (independent per variant, SD ``noise``; replicate 0 the estimate, as the planted table has
    it), two sessions that agree, planted from ``source``."""
    rng = np.random.default_rng(seed)
    t = pd.Series(truth, index=VARIANTS)
    e = pd.Series(est, index=VARIANTS)
    reps = pd.DataFrame(
        [
            {"variant": v, "replicate": i, "planted_r": float(x)}
            for v in VARIANTS
            for i, x in enumerate(np.r_[e[v], e[v] + rng.normal(0, noise, 200)])
        ]
    )
    table = pd.DataFrame(
        [
            {"subject": "01", "session": s, "variant": v, "planted_r": e[v]}
            | ({"planted_source": source} if source else {})
            for s in ("01", "02")
            for v in VARIANTS
        ]
    )
    frame = pd.DataFrame(
        {"r_truth_roi": t, "r_truth": t, "recommended": t.index == e.idxmax()}, index=VARIANTS
    )
    frame.index.name = "variant"
    return {"truth": frame, "reps": reps, "table": table}


def test_a_case_read_by_the_verdicts_rules(cases: ModuleType) -> None:
    # every NORDIC variant read 10 % low, the others right
    truth = [0.40, 0.50, 0.45, 0.60, 0.62, 0.30]
    est = [0.40, 0.50, 0.45, 0.54, 0.558, 0.27]
    f = cases.case_figures(_case(truth, est))
    assert f["nordic_read"] == pytest.approx(0.9)
    assert f["bias"] == pytest.approx(np.mean([-0.06, -0.062, -0.03]))
    assert f["mae"] == pytest.approx((0.06 + 0.062 + 0.03) / 6)
    assert f["recommended"] == f["truly_best"] == "nordic-optcom" and f["gap"] == 0
    # true leads >= 0.03 across NORDIC: nordic-single and nordic-optcom over the three
    # NORDIC-off variants (6), the three NORDIC-off ones over nordic-denoised (3)
    assert f["true_leads"] == 9
    # raw-optcom over nordic-denoised: read 0.23 (true 0.20) beyond the 0.09 bound: shown;
    # raw-single over nordic-denoised: read 0.13, shown; nordic-single over raw-optcom: read
    # 0.04, shown (no bound for a NORDIC lead)
    assert f["true_leads_shown"] == 9 and f["false"] == 0
    # a NORDIC-off lead over nordic-optcom read 0.062 above its truth
    assert f["over_read"] == pytest.approx(0.062)
    # every NORDIC variant read low, so each NORDIC lead is read short: by 0.03 at least
    assert f["nordic_over_read"] == pytest.approx(-0.03)
    # leads of a NORDIC-off variant over a NORDIC one truly under 0.03: each NORDIC-off one's
    # over nordic-single and nordic-optcom (truly behind them), read 0.060 and 0.062 above
    # their truth; those over nordic-denoised (truly 0.10-0.20 ahead) do not count
    assert f["over_read_small"] == pytest.approx(0.062)
    # a NORDIC variant's lead truly under 0.03: nordic-denoised's over each NORDIC-off one,
    # read short by 0.03
    assert f["nordic_over_read_small"] == pytest.approx(-0.03)


def test_a_lead_the_truth_reverses_is_counted_false_and_the_bound_holds_leads_back(
    cases: ModuleType,
) -> None:
    truth = [0.40, 0.40, 0.40, 0.45, 0.39, 0.40]
    est = [0.40, 0.40, 0.40, 0.43, 0.46, 0.38]  # nordic-optcom read 0.07 high
    f = cases.case_figures(_case(truth, est))
    # nordic-optcom read ahead of the NORDIC-off variants (no bound for a NORDIC lead) and of
    # nordic-denoised (0.08, beyond the 0.04 bound), truly 0.01 behind each: 4 false; of
    # nordic-single by 0.03, within the bound; nordic-single's true leads over the NORDIC-off
    # variants (0.05, read 0.03) and over nordic-denoised (0.05) shown
    assert f["false"] == 4 and f["shown"] == 8
    assert f["true_leads"] == 3 and f["true_leads_shown"] == 3
    held = cases.case_figures(_case(truth, [0.40, 0.40, 0.40, 0.40, 0.40, 0.40], source=None))
    assert held["true_leads_shown"] == 0
    assert held["held_back"] == {"NORDIC ahead: noise": 3}


def test_pooled_figures(cases: ModuleType) -> None:
    a = cases.case_figures(_case([0.4] * 3 + [0.5] * 3, [0.4] * 3 + [0.45] * 3))
    b = cases.case_figures(_case([0.4] * 6, [0.41] * 6, seed=1))
    p = cases.pooled({"`a` seed 0, 12 runs": a, "`b` seed 0, 6 runs": b})
    assert p["cases"] == 2 and p["bias_mean"] == pytest.approx((-0.05 + 0.0) / 2)
    assert p["bias_within_0.01"] == 1 and p["mae_within_0.02"] == 1
    assert p["twelve_runs_cases"] == 1 and p["twelve_runs_every_true_lead_shown"] == 1
    label = cases.case_label(Path("/x/thermal_seed2_runs12_spatial_ses2"))
    assert label == "`thermal` seed 2, 12 runs"


def test_the_estimate_is_also_read_against_the_voxels_mean_r(cases: ModuleType) -> None:
    # the NORDIC variants' voxels skewed: their median r 0.05 above their mean, the NORDIC-off
    # ones' alike; the estimate reads the mean exactly
    median = [0.40, 0.50, 0.45, 0.60, 0.62, 0.50]
    mean = [0.40, 0.50, 0.45, 0.55, 0.57, 0.45]
    case = _case(median, mean)
    f = cases.case_figures(case)
    assert f["bias"] == pytest.approx(-0.05) and f["mae"] == pytest.approx(0.025)
    assert "mae_vs_mean" not in f  # neither the table's column nor the sessions' truth
    # from each session's truth read from the case's folder (averaged over the sessions)
    per_session = {
        "01": dict(zip(VARIANTS, np.array(mean) - 0.01, strict=True)),
        "02": dict(zip(VARIANTS, np.array(mean) + 0.01, strict=True)),
    }
    g = cases.case_figures(case | {"session_truth_mean": per_session})
    assert g["mae_vs_mean"] == pytest.approx(0.0, abs=1e-12)
    assert g["bias_vs_mean"] == pytest.approx(0.0, abs=1e-12)
    assert g["r_truth_mean_roi"]["nordic-optcom"] == pytest.approx(0.57)
    # the table's column (comparison_regimes.py writes it) comes first: NORDIC read 0.02 high
    with_column = _case(median, mean)
    with_column["truth"]["r_truth_mean_roi"] = np.array(mean) - [0, 0, 0, 0.02, 0.02, 0.02]
    h = cases.case_figures(with_column | {"session_truth_mean": per_session})
    assert h["bias_vs_mean"] == pytest.approx(0.02) and h["mae_vs_mean"] == pytest.approx(0.01)
    # pooled beside the median's figures over the same cases only
    p = cases.pooled({"`a` seed 0, 6 runs": f, "`b` seed 0, 6 runs": g})
    assert p["mean_cases"] == 1
    assert p["mean_cases_bias_within_0.01"] == {"median": 0, "mean": 1}
    assert p["mean_cases_mae_within_0.02"] == {"median": 0, "mean": 1}
    assert p["mean_cases_bias_mean"]["median"] == pytest.approx(-0.05)


def test_the_bound_follows_the_tables_planted_source_else_the_one_given(cases: ModuleType) -> None:
    # raw-optcom truly and estimated 0.10 ahead of every other variant: beyond the 0.04 bound
    # over raw-single and raw-denoised; over the three NORDIC variants beyond the 0.09 bound
    # of responses from the other sessions, within the 0.11 of half A
    truth = [0.40, 0.50, 0.40, 0.40, 0.40, 0.40]

    def shown(source: str | None, fallback: str) -> int:
        return cases.case_figures(_case(truth, truth, source=source), fallback)["shown"]

    assert shown("other_sessions", "session") == 5
    assert shown("session", "other_sessions") == 2
    assert shown(None, "other_sessions") == 5 and shown(None, "session") == 2


def test_cases_from_an_earlier_json_pool_with_the_ones_read_now(
    cases: ModuleType, tmp_path: Path
) -> None:
    a = cases.case_figures(_case([0.4] * 3 + [0.5] * 3, [0.4] * 3 + [0.45] * 3))
    b = cases.case_figures(_case([0.4] * 6, [0.41] * 6, seed=1))
    assert a["planted_r"]["nordic-single"] == pytest.approx(0.45)
    assert a["r_truth_roi"]["nordic-single"] == pytest.approx(0.5)
    # an earlier JSON holds `a` as a JSON written before the pairs were kept had it
    old = {k: v for k, v in a.items() if k not in ("z_same", "z_across", "nordic_lead_shortfall")}
    old["held_back"] = dict(old["held_back"])
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps({"cases": {"`a` seed 0, 12 runs": old}, "pooled": {}}))
    merged = cases.previous_cases(previous) | {"`b` seed 0, 6 runs": b}
    p = cases.pooled(merged)
    both = cases.pooled({"`a` seed 0, 12 runs": a, "`b` seed 0, 6 runs": b})
    # figures per case pool over both cases; figures made of pairs over `b` alone
    for key in ("cases", "bias_mean", "mae_within_0.02", "held_back", "true_leads_shown"):
        assert p[key] == both[key]
    assert p["pair_cases"] == 1 and both["pair_cases"] == 2
    assert p["z_sd"] == cases.pooled({"`b` seed 0, 6 runs": b})["z_sd"]
    with pytest.raises(SystemExit, match="expected a JSON written by --json"):
        cases.previous_cases(tmp_path / "missing.json")


def test_the_error_every_variant_shares_is_told_from_the_rest(
    cases: ModuleType, tmp_path: Path
) -> None:
    truth = [0.40, 0.50, 0.45, 0.60, 0.62, 0.30]
    # every variant read 8 % high: a scale shared by all, nothing beyond it
    f = cases.case_figures(_case(truth, [1.08 * t for t in truth]))
    assert f["shared_scale"] == pytest.approx(1.08)
    assert f["mae_beyond_scale"] == pytest.approx(0.0, abs=1e-12)
    assert f["mae"] == pytest.approx(0.08 * np.mean(truth))
    # the NORDIC variants read 10 % low, the others right: no one scale takes that away; the
    # best (the NORDIC variants' 0.9, which the truth-weighted half of the r lies on) leaves the
    # NORDIC-off variants 1/0.9 high
    est = [0.40, 0.50, 0.45, 0.54, 0.558, 0.27]
    g = cases.case_figures(_case(truth, est))
    assert g["shared_scale"] == pytest.approx(0.9)
    expected = np.mean(np.abs(np.array(est) / 0.9 - np.array(truth)))
    assert g["mae_beyond_scale"] == pytest.approx(expected)
    for s in np.linspace(0.8, 1.2, 81):
        assert np.mean(np.abs(np.array(est) / s - np.array(truth))) >= expected - 1e-12
    # one variant read 0.1 high, the rest right: the scale stays 1, the error is that one's
    h = cases.case_figures(_case(truth, [0.40, 0.60, 0.45, 0.60, 0.62, 0.30]))
    assert h["shared_scale"] == pytest.approx(1.0)
    assert h["mae_beyond_scale"] == pytest.approx(0.1 / 6) == h["mae"]
    # a case from an earlier JSON without them gets them from its per-variant values; one
    # without per-variant values is left out of the pooled figures
    old = {k: v for k, v in f.items() if k not in ("shared_scale", "mae_beyond_scale")}
    bare = {k: v for k, v in g.items() if k not in ("planted_r", "r_truth_roi", "shared_scale")}
    previous = tmp_path / "previous.json"
    previous.write_text(
        json.dumps(
            {
                "cases": {
                    "`a` seed 0, 6 runs": old | {"held_back": {}},
                    "`b` seed 0, 6 runs": bare | {"held_back": {}},
                },
                "pooled": {},
            }
        )
    )
    read = cases.previous_cases(previous)
    assert read["`a` seed 0, 6 runs"]["shared_scale"] == pytest.approx(1.08)
    p = cases.pooled(read)
    assert p["scale_cases"] == 1 and p["mae_beyond_scale_within_0.02"] == 1
    assert p["shared_scale_mean"] == pytest.approx(1.08)


def test_small_over_reads_from_the_per_variant_values_match_the_pairs(cases: ModuleType) -> None:
    truth = [0.40, 0.50, 0.45, 0.60, 0.62, 0.30]
    f = cases.case_figures(_case(truth, [0.40, 0.50, 0.45, 0.54, 0.558, 0.27]))
    again = cases.small_over_reads(f["planted_r"], f["r_truth_roi"])
    assert again["over_read_small"] == pytest.approx(f["over_read_small"]) == 0.062
    assert again["nordic_over_read_small"] == pytest.approx(f["nordic_over_read_small"])
    # every NORDIC-off variant truly 0.2 ahead of every NORDIC one: no NORDIC-off lead truly
    # under 0.03 (NaN); each NORDIC lead (truly -0.2) read right
    far = cases.small_over_reads(
        dict(zip(VARIANTS, [0.5, 0.5, 0.5, 0.3, 0.3, 0.3], strict=True)),
        dict(zip(VARIANTS, [0.5, 0.5, 0.5, 0.3, 0.3, 0.3], strict=True)),
    )
    assert np.isnan(far["over_read_small"]) and far["nordic_over_read_small"] == 0.0


def test_what_an_unbiased_estimate_of_this_precision_would_reach(
    cases: ModuleType, tmp_path: Path
) -> None:
    est = pd.Series([0.40, 0.50, 0.45, 0.60, 0.62, 0.30], index=VARIANTS)
    # a bias SE of 0.01 / 1.96: an unbiased estimate lands within 0.01 in 95 % of cases
    f = cases.bias_within_unbiased(0.01 / 1.959964)
    assert f == {"bias_within_0.01_unbiased": pytest.approx(0.95, abs=1e-6)}
    # every draw 0.01 off every variant (either sign): mean abs. error 0.01, all within 0.02
    signs = np.where(np.arange(40)[:, None] % 2 == 0, 1.0, -1.0) * np.ones((1, 6))
    near = pd.DataFrame(est.to_numpy() + 0.01 * signs, columns=VARIANTS)
    g = cases.noise_figures(est, near)
    assert g["mae_unbiased"] == pytest.approx(0.01)
    assert g["mae_within_0.02_unbiased"] == 1.0
    # 0.03 off: none within 0.02
    far = pd.DataFrame(est.to_numpy() + 0.03 * signs, columns=VARIANTS)
    assert cases.noise_figures(est, far)["mae_within_0.02_unbiased"] == 0.0
    # every variant 5 % high in half the draws and 5 % low in the rest: the shared scale's
    # spread is 0.05 (sample SD of 40 draws of +-0.05)
    scaled = pd.DataFrame(est.to_numpy() * (1 + 0.05 * signs), columns=VARIANTS)
    h = cases.noise_figures(est, scaled)
    assert h["shared_scale_se"] == pytest.approx(0.05 * np.sqrt(40 / 39))
    # per case, from a case read from its folder; pooled as expected counts
    a = cases.case_figures(_case(est.tolist(), est.tolist(), noise=0.002))
    b = cases.case_figures(_case(est.tolist(), est.tolist(), noise=0.05, seed=1))
    assert a["mae_within_0.02_unbiased"] == 1.0 and b["mae_within_0.02_unbiased"] < 0.5
    p = cases.pooled({"`a` seed 0, 6 runs": a, "`b` seed 0, 6 runs": b})
    assert p["drawn_cases"] == 2
    assert p["mae_within_0.02_expected_unbiased"] == pytest.approx(
        a["mae_within_0.02_unbiased"] + b["mae_within_0.02_unbiased"]
    )
    assert p["bias_within_0.01_expected_unbiased"] == pytest.approx(
        a["bias_within_0.01_unbiased"] + b["bias_within_0.01_unbiased"]
    )
    # a case from an earlier JSON without them: the bias figure from its bias_se; no draws
    old = {k: v for k, v in b.items() if "unbiased" not in k and k != "shared_scale_se"}
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps({"cases": {"`b` seed 0, 6 runs": old}, "pooled": {}}))
    read = cases.previous_cases(previous)["`b` seed 0, 6 runs"]
    assert read["bias_within_0.01_unbiased"] == pytest.approx(b["bias_within_0.01_unbiased"])
    assert "mae_unbiased" not in read
    assert cases.pooled({"`b` seed 0, 6 runs": read})["drawn_cases"] == 0


def test_the_sessions_errors_against_the_bootstraps(cases: ModuleType) -> None:
    # two sessions; raw-single's lead over raw-optcom read right in session 01 and 0.03 high
    # in 02; every draw of a session's lead spread +-0.01 about it (SD of the lead's draws
    # 0.01 * sqrt(2) in each session: independent per variant)
    rng = np.random.default_rng(3)
    rows, truth = [], {}
    for ses, shift in (("01", 0.0), ("02", 0.03)):
        truth[ses] = {"raw-single": 0.5, "raw-optcom": 0.4}
        est = {"raw-single": 0.5 + shift, "raw-optcom": 0.4}
        for v, x in est.items():
            draws = x + rng.choice([-0.01, 0.01], 400)
            for i, y in enumerate(np.r_[x, draws]):
                rows.append({"session": ses, "variant": v, "replicate": i, "planted_r": y})
    reps = pd.DataFrame(rows)
    z = cases.session_errors(reps, truth)

    # one pair (raw-optcom < raw-single by name): (err_01 - err_02) with a < b:
    # raw-optcom minus raw-single: session 01 error 0, session 02 error -0.03 -> +0.03
    def lead_draws(ses: str) -> np.ndarray:
        one = reps[(reps.session == ses) & (reps.replicate >= 1)]
        by = one.pivot_table(index="replicate", columns="variant", values="planted_r")
        return (by["raw-optcom"] - by["raw-single"]).to_numpy()

    se = np.hypot(np.std(lead_draws("01"), ddof=1), np.std(lead_draws("02"), ddof=1))
    assert len(z) == 1 and z[0] == pytest.approx(0.03 / se)
    assert 1.4 < z[0] < 1.6  # se about 0.02
    # one session: nothing to compare
    assert cases.session_errors(reps[reps.session == "01"], {"01": truth["01"]}) == []
    # a planted table without sessions (the made-up cases): none; pooled over those that have
    f = cases.case_figures(_case([0.4] * 6, [0.41] * 6) | {"session_truth": truth})
    assert f["session_z"] == []
    p = cases.pooled({"`a` seed 0, 6 runs": f | {"session_z": z}})
    assert p["session_z_cases"] == 1 and p["session_z_sd"] == 0.0
    assert p["session_z_median_abs"] == {"`a` seed 0, 6 runs": pytest.approx(abs(z[0]))}


def _two_sessions(truth: dict[str, dict[str, float]], noise: float, seed: int = 0) -> pd.DataFrame:
    """A planted table of two sessions: per session the truth as the estimate, 400 draws
    about it (independent per variant, SD ``noise``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for ses, t in truth.items():
        for v, x in t.items():
            for i, y in enumerate(np.r_[x, x + rng.normal(0, noise, 400)]):
                rows.append({"session": ses, "variant": v, "replicate": i, "planted_r": y})
    return pd.DataFrame(rows)


def test_what_an_unbiased_estimate_would_show_and_what_holds_it_back(cases: ModuleType) -> None:
    # the bound: raw-optcom truly 0.05 ahead of nordic-single and raw-single 0.04 ahead of
    # nordic-optcom (under 0.09: counted), raw-optcom 0.10 ahead of nordic-optcom (beyond it)
    truth = {"raw-single": 0.44, "raw-optcom": 0.50, "nordic-single": 0.45, "nordic-optcom": 0.40}
    assert cases.bound_held_leads(truth, truth, 0.09) == {"bound_held_leads": 2}
    assert cases.bound_held_leads(truth, truth, 0.03) == {"bound_held_leads": 0}
    # a NORDIC variant truly 0.10 ahead in both sessions, read with SD 0.002: always shown
    ahead = {s: {"raw-single": 0.40, "nordic-single": 0.50} for s in ("01", "02")}
    f = cases.power_unbiased(_two_sessions(ahead, 0.002), ahead, 0.09)
    assert f["power_leads"] == 1 and f["split_held_leads"] == 0
    assert f["power_every_unbiased"] == 1.0 and f["power_every_unbiased_no_bound"] == 1.0
    # the same lead the other way (NORDIC-off ahead by 0.05): within the bound, never shown
    # with it, always without it
    behind = {s: {"raw-single": 0.55, "nordic-single": 0.50} for s in ("01", "02")}
    g = cases.power_unbiased(_two_sessions(behind, 0.002), behind, 0.09)
    assert g["power_every_unbiased"] == 0.0 and g["power_every_unbiased_no_bound"] == 1.0
    # read with SD 0.02 per variant and session: the mean lead is 0.10 + m and the sessions'
    # spread SE |d|, m and d independent N(0, 0.02^2); shown where 0.10 + m > 2 max(0.02, |d|),
    # which holds with probability 0.974 (Monte Carlo): the 1-df spread costs a few per cent
    h = cases.power_unbiased(_two_sessions(ahead, 0.02, seed=1), ahead, 0.09)
    assert h["power_every_unbiased"] == pytest.approx(0.974, abs=0.025)
    # four such sessions: the mean lead's SE 0.01 and the spread's 3 df; shown in 0.99996
    assert h["power_every_unbiased_4_sessions"] == pytest.approx(1.0, abs=0.005)
    # sessions that disagree (truly 0.10 and 0.00, mean 0.05): the spread's SE is 0.05, so
    # the rule holds it back even from an estimate free of noise
    split = {"01": ahead["01"], "02": {"raw-single": 0.45, "nordic-single": 0.45}}
    k = cases.power_unbiased(_two_sessions(split, 0.0005), split, 0.09)
    assert k["power_leads"] == 1 and k["split_held_leads"] == 1
    assert k["power_every_unbiased_no_bound"] == 0.0
    # four sessions that disagree so (0.10, 0.00, 0.10, 0.00): SE 0.029, still held back
    assert k["split_held_leads_4_sessions"] == 1
    assert k["power_every_unbiased_no_bound_4_sessions"] == 0.0
    # no lead of 0.03: nothing counted; one session: nothing
    none = {s: {"raw-single": 0.40, "nordic-single": 0.41} for s in ("01", "02")}
    assert cases.power_unbiased(_two_sessions(none, 0.002), none, 0.09) == {"power_leads": 0}
    one = {"01": ahead["01"]}
    assert cases.power_unbiased(_two_sessions(one, 0.002), one, 0.09) == {}
    # pooled: expected counts over the cases that have such leads
    p = cases.pooled(
        {
            "`a` seed 0, 12 runs": cases.case_figures(_case([0.4] * 6, [0.41] * 6)) | f,
            "`b` seed 0, 12 runs": cases.case_figures(_case([0.4] * 6, [0.41] * 6)) | g,
        }
    )
    assert p["power_cases"] == 2
    assert p["power_every_expected_unbiased"] == pytest.approx(1.0)
    assert p["power_every_expected_unbiased_no_bound"] == pytest.approx(2.0)
    assert p["power_every_expected_unbiased_no_bound_4_sessions"] == pytest.approx(2.0)
    assert p["split_held_leads"] == 0
