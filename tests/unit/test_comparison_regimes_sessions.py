"""The helpers of ``benchmarks/comparison_regimes.py`` for cases of several sessions (no
workflow is run): case names, session labels, and the truth averaged over the comparison's
sessions."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from helpers.scripts import load_benchmark


@pytest.fixture(scope="module")
def regimes() -> ModuleType:
    return load_benchmark("comparison_regimes")


def test_case_names_keep_one_session_cases_and_mark_more(regimes: ModuleType) -> None:
    assert regimes.case_name("default", 0, None, False) == "default_seed0_runspreset"
    assert regimes.case_name("smooth", 2, 4, True, 1) == "smooth_seed2_runs4_motion"
    assert regimes.case_name("smooth", 2, 4, False, 2) == "smooth_seed2_runs4_ses2"
    assert regimes.case_name("smooth", 2, 4, True, 3) == "smooth_seed2_runs4_motion_ses3"
    assert regimes.case_name("smooth", 2, 4, False, 2, True) == "smooth_seed2_runs4_spatial_ses2"
    assert regimes.case_name("smooth", 2, 4, True, 1, True) == "smooth_seed2_runs4_motion"
    # a planted source other than the configuration's (--source) gets its own folder
    name = regimes.case_name("strong", 1, None, False, 1, True, "other_runs")
    assert name == "strong_seed1_runspreset_spatial_src-other_runs"
    assert regimes.session_labels(1) == ["01"]
    assert regimes.session_labels(3) == ["01", "02", "03"]


def test_mean_over_sessions_averages_every_entry(regimes: ModuleType) -> None:
    one = {"r_truth": {"raw-single": 0.2, "nordic-optcom": 0.4}, "r_trials": {"raw-single": 0.1}}
    two = {"r_truth": {"raw-single": 0.4, "nordic-optcom": 0.1}, "r_trials": {"raw-single": 0.3}}
    mean = regimes.mean_over_sessions([one, two])
    assert mean["r_truth"] == pytest.approx({"raw-single": 0.3, "nordic-optcom": 0.25})
    assert mean["r_trials"] == pytest.approx({"raw-single": 0.2})
    # one session: its numbers exactly
    assert regimes.mean_over_sessions([one]) == one
    # NaN sessions are left out (as the comparison's group means); all NaN stays NaN
    nan = {
        "r_truth": {"raw-single": math.nan, "nordic-optcom": 0.3},
        "r_trials": {"raw-single": math.nan},
    }
    mixed = regimes.mean_over_sessions([one, nan])
    assert mixed["r_truth"] == pytest.approx({"raw-single": 0.2, "nordic-optcom": 0.35})
    assert math.isnan(regimes.mean_over_sessions([nan, nan])["r_trials"]["raw-single"])
    # a session without scores (bias terms without held-out files): none
    assert regimes.mean_over_sessions([one, {}]) == {}
    assert regimes.mean_over_sessions([]) == {}


def test_variant_means_of_the_comparison_table(regimes: ModuleType) -> None:
    single = pd.DataFrame(
        {"subject": ["01", "01"], "session": ["01", "01"], "variant": ["a", "b"], "x": [1.0, 2.0]}
    )
    pd.testing.assert_frame_equal(regimes.variant_means(single), single.set_index("variant"))
    both = pd.DataFrame(
        {
            "subject": ["01"] * 4,
            "session": ["01", "01", "02", "02"],
            "variant": ["a", "b", "a", "b"],
            "x": [1.0, 2.0, 3.0, math.nan],
        }
    )
    means = regimes.variant_means(both)
    assert list(means.index) == ["a", "b"]
    assert means.loc["a", "x"] == 2.0 and means.loc["b", "x"] == 2.0


def _write_case(root, sessions: dict[str, dict[str, float]], noise: float) -> None:
    """A kept case's comparison folder: the subject's variants table (``planted_r`` per
    session) and its planted replicates (replicate 0 the estimate, 1..50 a bootstrap whose
    replicates scatter by ``noise`` around it, the same draw for every variant)."""
    folder = root / "comparison" / "sub-01"
    folder.mkdir(parents=True)
    rows, reps = [], []
    rng = np.random.default_rng(0)
    shifts = rng.standard_normal((len(sessions), 51)) * noise
    shifts[:, 0] = 0.0
    for i, (ses, values) in enumerate(sessions.items()):
        for variant, r in values.items():
            rows.append(
                {
                    "subject": "01",
                    "session": ses,
                    "variant": variant,
                    "planted_r": r,
                    "planted_source": "other_sessions",
                }
            )
            for k in range(51):
                # the two variants' replicates move together but for a small paired part
                own = 0.001 * (k % 5) if variant == "nordic-optcom" else 0.0
                reps.append(
                    {
                        "subject": "01",
                        "session": ses,
                        "variant": variant,
                        "replicate": k,
                        "planted_r": r + shifts[i, k] + own,
                        "planted_trial_r": r,
                    }
                )
    pd.DataFrame(rows).to_csv(
        folder / "sub-01_task-images_desc-variants_comparison.tsv", sep="\t", index=False
    )
    pd.DataFrame(reps).to_csv(
        folder / "sub-01_task-images_desc-planted_comparison.tsv", sep="\t", index=False
    )


def test_pairwise_shown_uses_the_verdicts_standard_error(regimes: ModuleType, tmp_path) -> None:
    # the same mean lead of raw-optcom over nordic-optcom (0.10, beyond the 0.09 bound of
    # responses from the other sessions) with a small bootstrap SE: shown where the two
    # sessions agree, not where they disagree (the verdict's SE is the larger of the
    # bootstrap's and that of the spread over subject-sessions, ``margins.pair_se``)
    agree = {
        "01": {"raw-optcom": 0.50, "nordic-optcom": 0.40},
        "02": {"raw-optcom": 0.52, "nordic-optcom": 0.42},
    }
    disagree = {
        "01": {"raw-optcom": 0.50, "nordic-optcom": 0.47},
        "02": {"raw-optcom": 0.52, "nordic-optcom": 0.35},
    }
    for name, sessions, shown in (("agree", agree, True), ("disagree", disagree, False)):
        out = tmp_path / name
        _write_case(out, sessions, noise=0.01)
        pair = regimes.pairwise_shown(out)["raw-optcom>nordic-optcom"]
        assert pair["lead"] == pytest.approx(0.10)
        assert pair["beyond_noise"] is shown and pair["shown"] is shown
        if not shown:
            # the spread over the two sessions: |0.03 - 0.17| / sqrt(2) / sqrt(2)
            assert pair["se"] == pytest.approx(0.07)
        else:
            assert pair["se"] < 0.01


def test_a_lean_case_keeps_what_the_pool_reads_and_cannot_be_rescored(
    regimes: ModuleType, tmp_path
) -> None:
    """``--lean``: the intermediate series, the held-out image means and the simulated raw BOLD
    images go; the truth, the sidecars, the GLM outputs, the planted design and the comparison
    stay; a rescore of the case is refused with a message that names it."""
    work = tmp_path / "default_seed0_runs4_spatial_ses2"
    func = "sub-01/ses-01/func"
    gone = [
        f"results/nordic/{func}/sub-01_ses-01_task-images_echo-1_desc-nordic_bold.nii.gz",
        f"results/preproc-raw/{func}/sub-01_ses-01_task-images_echo-1_desc-preproc_bold.nii.gz",
        f"results/preproc-nordic/{func}/x_bold.nii.gz",
        f"results/combine-raw/{func}/x_desc-optcom_bold.nii.gz",
        f"results/combine-nordic/{func}/x_desc-optcom_bold.nii.gz",
        f"results/glmsingle-raw-optcom/{func}/x_stat-effect_desc-HeldoutImagemeans_statmap.nii.gz",
        f"bids/{func}/sub-01_ses-01_task-images_run-1_echo-1_part-mag_bold.nii.gz",
    ]
    kept = [
        f"bids/{func}/sub-01_ses-01_task-images_run-1_echo-1_part-mag_bold.json",
        f"bids/{func}/sub-01_ses-01_task-images_run-1_events.tsv",
        "bids/dataset_description.json",
        "bids/derivatives/truth/sub-01/ses-01/func/x_desc-imagemeans_statmap.nii.gz",
        f"results/glmsingle-raw-optcom/{func}/x_stat-effect_desc-SingletrialBetas_statmap.nii.gz",
        f"results/glmsingle-raw-optcom/{func}/x_stat-effect_desc-plantedBetas_statmap.nii.gz",
        f"results/planted/{func}/x_design.npz",
        "results/comparison/sub-01/sub-01_desc-planted_comparison.tsv",
    ]
    for rel in gone + kept:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(b"x" * 10)
    assert regimes.prune_case(work) == 10 * len(gone)
    assert not any((work / rel).exists() for rel in gone)
    assert all((work / rel).exists() for rel in kept)
    assert not (work / "results" / "nordic").exists()

    args = regimes.argparse.Namespace(sessions=2, motion=False, spatial=True, source=None)
    args.rescore = True
    with pytest.raises(SystemExit, match=r"kept with --lean.*cannot recompute"):
        regimes.run_case(args, "default", 0, 4, tmp_path)
    with pytest.raises(SystemExit):
        regimes.main(["--lean", "--regimes", "default"])  # --lean needs --keep


def test_the_planted_summary_reports_the_voxels_mean_beside_their_median(
    regimes: ModuleType,
) -> None:
    """The case is judged against the median (``r_truth_roi``); where the rows carry the mean
    (``r_truth_mean_roi``) the error and the NORDIC-dependent bias against it are reported
    beside."""
    variants = ["raw-single", "raw-optcom", "nordic-single", "nordic-optcom"]
    df = pd.DataFrame(
        {
            "planted_r": [0.40, 0.50, 0.52, 0.55],
            "planted_trial_r": [0.2, 0.2, 0.2, 0.2],
            "r_truth_roi": [0.40, 0.50, 0.56, 0.60],
            "r_trial_img_roi": [0.2, 0.2, 0.2, 0.2],
        },
        index=pd.Index(variants, name="variant"),
    )
    plain = regimes._planted_summary(df, {})
    assert plain["nordic_bias"] == pytest.approx(-0.045)
    assert plain["mae"] == pytest.approx(0.09 / 4)
    assert "mae_vs_mean" not in plain
    df["r_truth_mean_roi"] = [0.41, 0.50, 0.52, 0.54]
    both = regimes._planted_summary(df, {})
    assert both["nordic_bias"] == plain["nordic_bias"] and both["mae"] == plain["mae"]
    assert both["mae_vs_mean"] == pytest.approx(0.02 / 4)
    assert both["nordic_bias_vs_mean"] == pytest.approx(0.005 - (-0.005))
