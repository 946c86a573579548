"""Noise-ceiling stage: session maps (z-scored per run), subject maps (z-scored per session),
per-repeat-count maps, R² mean, sidecars, and a check against the simulator's truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.events import mixed_repeat_counts, read_trials, stimulus_counts
from echoprep.io.images import StageInputError
from echoprep.io.outputs import get, path_in, paths_in, subject_key
from echoprep.kernels.noiseceiling import expected_noise_ceiling, noise_ceiling
from echoprep.options import section_defaults
from echoprep.simulate import simulate_dataset
from echoprep.stages.glm import DEFAULT_OUTPUTS, run_glm, session_key
from echoprep.stages.noiseceiling import (
    repeats_noise_ceiling,
    session_noise_ceiling,
    subject_noise_ceiling,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (4, 3, 2)


def _session(
    folder: Path,
    labels: list[str],
    runs: list[str],
    *,
    signal: float,
    noise: float,
    seed: int,
    session: str = "01",
    offset: float = 0.0,
) -> tuple[Path, Path, Path]:
    """Betas (4D), trials.tsv and a mask (last x-slab outside) of a synthetic session."""
    rng = np.random.default_rng(seed)
    stimuli = sorted(set(labels))
    resp = {s: rng.normal(size=SHAPE) * signal for s in stimuli}
    betas = np.stack(
        [resp[lab] + rng.normal(size=SHAPE) * noise + offset for lab in labels], axis=-1
    )
    mask = np.ones(SHAPE, bool)
    mask[-1] = False
    folder.mkdir(parents=True, exist_ok=True)
    bpath = folder / f"ses{session}_betas.nii.gz"
    nib.save(nib.Nifti1Image(betas.astype(np.float32), AFFINE), bpath)
    mpath = folder / f"ses{session}_mask.nii.gz"
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), AFFINE), mpath)
    tpath = folder / f"ses{session}_trials.tsv"
    pd.DataFrame(
        {
            "session": session,
            "run": runs,
            "beta_index": range(len(labels)),
            "label": labels,
            "onset": np.arange(len(labels)) * 3.0,
        }
    ).to_csv(tpath, sep="\t", index=False)
    return bpath, tpath, mpath


def _design(n_stim: int, reps: int, n_runs: int) -> tuple[list[str], list[str]]:
    labels = [f"s{i}" for _ in range(reps) for i in range(n_stim)]
    runs = [f"{1 + (k * n_runs) // len(labels):02d}" for k in range(len(labels))]
    return labels, runs


def test_session_map_matches_the_kernel_zscored_per_run(tmp_path: Path) -> None:
    labels, runs = _design(20, 3, 3)
    b, t, m = _session(tmp_path, labels, runs, signal=1.0, noise=0.7, seed=1, offset=5.0)
    out = tmp_path / "nc.nii.gz"
    session_noise_ceiling(b, t, out, mask_file=m, space="T1w")
    nc = nib.load(out).get_fdata()
    mask = nib.load(m).get_fdata() > 0
    expect = noise_ceiling(nib.load(b).get_fdata()[mask], labels, runs)
    assert np.allclose(nc[mask], expect.nc, atol=1e-4)
    assert np.all(nc[~mask] == 0)
    side = json.loads(out.with_name("nc.json").read_text())
    assert side["ZScoring"] == "per run" and side["Space"] == "T1w"
    assert side["NoiseCeilingType"] == "repeat-averaged response"
    assert side["MeanInverseRepeats"] == pytest.approx(1 / 3) and side["StimuliUsed"] == 20
    assert side["RepeatCounts"] == {"3": 20} and len(side["Sources"]) == 3
    # signal var 1, noise var 0.49: ncsnr^2 ~ 2, NC ~ 100 * 2 / (2 + 1/3) ~ 86 %
    assert 70 < np.median(nc[mask]) < 95


def test_only_repeated_stimuli_count_and_no_repeats_is_an_error(tmp_path: Path) -> None:
    labels, runs = _design(10, 2, 2)
    labels2 = [*labels, "once-a", "once-b"]
    runs2 = [*runs, "02", "02"]
    b, t, m = _session(tmp_path / "a", labels2, runs2, signal=1.0, noise=0.5, seed=2)
    session_noise_ceiling(b, t, tmp_path / "a" / "nc.nii.gz", mask_file=m)
    side = json.loads((tmp_path / "a" / "nc.json").read_text())
    assert side["StimuliUsed"] == 10 and side["RepeatCounts"] == {"2": 10}
    b, t, m = _session(tmp_path / "b", ["x", "y", "z"], ["01"] * 3, signal=1, noise=1, seed=3)
    with pytest.raises(StageInputError, match=r"no stimulus is shown 2 or more times") as err:
        session_noise_ceiling(b, t, tmp_path / "b" / "nc.nii.gz", mask_file=m)
    assert str(t) in str(err.value)


def test_betas_and_trials_must_match(tmp_path: Path) -> None:
    labels, runs = _design(5, 2, 2)
    b, _, m = _session(tmp_path, labels, runs, signal=1, noise=1, seed=4)
    t = tmp_path / "short_trials.tsv"
    pd.DataFrame({"run": ["01"] * 3, "beta_index": range(3), "label": ["a", "a", "b"]}).to_csv(
        t, sep="\t", index=False
    )
    with pytest.raises(StageInputError, match=r"one volume per trial of .*short_trials.tsv \(3\)"):
        session_noise_ceiling(b, t, tmp_path / "nc.nii.gz", mask_file=m)


def test_mask_of_another_fit_is_refused(tmp_path: Path) -> None:
    labels, runs = _design(5, 2, 2)
    b, t, m = _session(tmp_path, labels, runs, signal=1, noise=1, seed=4)
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), np.diag([3.0, 3.0, 3.0, 1.0])), m)
    with pytest.raises(
        StageInputError,
        match=r"ses01_mask.nii.gz: expected a mask on the grid of .*ses01_betas.nii.gz .*"
        r"Fix: pass the GLMsingle mask of the same fit\.",
    ):
        session_noise_ceiling(b, t, tmp_path / "nc.nii.gz", mask_file=m)


def test_subject_maps_zscore_per_session_with_mixed_repeats(tmp_path: Path) -> None:
    # session 1: s0-s9 twice; session 2: s0-s4 twice more and s10-s14 twice -> 4 and 2 repeats
    l1, r1 = _design(10, 2, 2)
    l2 = [f"s{i}" for i in [*range(5), *range(10, 15)]] * 2
    r2 = ["01"] * 10 + ["02"] * 10
    b1, t1, m1 = _session(tmp_path, l1, r1, signal=1, noise=0.6, seed=5, session="01")
    b2, t2, m2 = _session(tmp_path, l2, r2, signal=1, noise=0.6, seed=6, session="02", offset=30)
    r2maps = []
    for i, value in enumerate((10.0, 30.0)):
        p = tmp_path / f"r2_{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.full(SHAPE, value, np.float32), AFFINE), p)
        r2maps.append(p)
    counts = stimulus_counts_from(l1 + l2)
    assert mixed_repeat_counts(counts) == [2, 4]
    # the paths the plan gives the subject job (output registry)
    key = subject_key("01", "images")
    where = {"space": "T1w", "nordic": "nordic", "combine": "optcom"}
    maps = ("allrep", "r2mean", "ncsnr")
    outs = {k: get(f"noiseceiling.{k}").path(tmp_path, key, **where) for k in maps}
    for n in (2, 4):
        outs[f"rep{n}"] = get("noiseceiling.nrep").path(tmp_path, key, nrep=n, **where)
    assert (
        outs["allrep"].name == "sub-01_task-images_space-T1w_desc-NoiseceilingAllrep_statmap.nii.gz"
    )
    assert outs["rep4"].name == "sub-01_task-images_space-T1w_desc-Noiseceiling4rep_statmap.nii.gz"
    assert (
        outs["r2mean"].name
        == "sub-01_task-images_space-T1w_stat-rsquare_desc-R2mean_statmap.nii.gz"
    )
    written = subject_noise_ceiling(
        [b1, b2], [t1, t2], outs, mask_files=[m1, m2], r2_files=r2maps, space="T1w"
    )
    mask = nib.load(m1).get_fdata() > 0
    betas = np.concatenate([nib.load(b).get_fdata()[mask] for b in (b1, b2)], axis=1)
    expect = noise_ceiling(betas, l1 + l2, [0] * len(l1) + [1] * len(l2))
    allrep = nib.load(written["allrep"]).get_fdata()
    assert np.allclose(allrep[mask], expect.nc, atol=1e-4) and np.all(allrep[~mask] == 0)
    assert expect.repeat_counts == {2: 10, 4: 5}
    side = json.loads(outs["allrep"].with_name(outs["allrep"].name[:-7] + ".json").read_text())
    assert side["ZScoring"] == "per session" and side["RepeatCounts"] == {"2": 10, "4": 5}
    assert side["MeanInverseRepeats"] == pytest.approx((10 * 0.5 + 5 * 0.25) / 15)
    rep4 = nib.load(written["rep4"]).get_fdata()
    assert np.allclose(rep4[mask], expect.at_repeats(4), atol=1e-4)
    assert np.all(rep4[mask] >= nib.load(written["rep2"]).get_fdata()[mask] - 1e-6)
    assert np.allclose(nib.load(written["r2mean"]).get_fdata()[mask], 20.0)
    # the N-rep map from the ncsnr map alone equals the one computed with the betas
    again = repeats_noise_ceiling(written["ncsnr"], 4, tmp_path / "rep4.nii.gz", space="T1w")
    assert np.allclose(nib.load(again).get_fdata(), rep4, atol=1e-4)
    side = json.loads((tmp_path / "rep4.json").read_text())
    assert side["NoiseCeilingType"] == "average of 4 repeats" and side["ZScoring"] == "per session"


def stimulus_counts_from(labels: list[str]) -> dict[str, int]:
    return {lab: labels.count(lab) for lab in set(labels)}


def test_sessions_on_different_grids_are_refused(tmp_path: Path) -> None:
    labels, runs = _design(5, 2, 2)
    b1, t1, _ = _session(tmp_path / "a", labels, runs, signal=1, noise=1, seed=7)
    b2, t2, _ = _session(tmp_path / "b", labels, runs, signal=1, noise=1, seed=8)
    img = nib.load(b2)
    nib.save(nib.Nifti1Image(img.get_fdata(), np.diag([3.0, 3.0, 3.0, 1.0])), b2)
    with pytest.raises(
        StageInputError,
        match=r"b/ses01_betas.nii.gz: expected a betas image on the grid of .*a/ses01_betas.nii.gz"
        r".*cross-session noise ceiling.*T1w space",
    ):
        subject_noise_ceiling([b1, b2], [t1, t2], {"allrep": tmp_path / "x.nii.gz"})


def test_stimulus_counts_from_events(tmp_path: Path) -> None:
    rows = "onset\tduration\ttrial_type\tstim_name\n0\t2\tnew\ta\n3\t2\tblank\tn/a\n6\t2\told\ta\n"
    (tmp_path / "r1.tsv").write_text(rows + "9\t2\tnew\tb\n")
    (tmp_path / "r2.tsv").write_text(rows)
    glm = section_defaults("glm")
    counts = stimulus_counts(
        [tmp_path / "r1.tsv", tmp_path / "r2.tsv"],
        label_column=glm["label_column"],
        blank_trial_types=glm["blank_trial_types"],
    )
    assert counts == {"a": 4, "b": 1}
    assert mixed_repeat_counts(counts) == []  # b is shown once: it does not count
    assert mixed_repeat_counts({"a": 4, "b": 2, "c": 1}) == [2, 4]
    assert stimulus_counts(
        [tmp_path / "r1.tsv"], label_column="trial_type", blank_trial_types=[]
    ) == {
        "new": 2,
        "blank": 1,
        "old": 1,
    }


def test_session_names(tmp_path: Path) -> None:
    path = path_in(tmp_path, "noiseceiling.nc", session_key("01", "02", "images"), space="T1w")
    assert path == tmp_path / "sub-01" / "ses-02" / "func" / (
        "sub-01_ses-02_task-images_space-T1w_desc-Noiseceiling_statmap.nii.gz"
    )


def test_noise_ceiling_on_the_simulator_truth(tmp_path: Path) -> None:
    """Tiny preset, echo 2: the session map against the expected ceiling of the estimated betas
    (docs/noise-ceiling.md §4: regress estimated on true betas). Per-voxel estimates from 46
    images x 2 are noisy, so the ROI medians are compared; measured 5.6 points on the tiny
    preset (the issue-5 acceptance of <= 3 points is on the demo preset:
    benchmarks/noiseceiling_truth.py)."""
    root = simulate_dataset(tmp_path / "bids", "tiny", seed=0)
    func = root / "sub-01" / "ses-01" / "func"
    ses = "sub-01_ses-01_task-images"
    bold = [func / f"{ses}_run-0{r}_echo-2_part-mag_bold.nii.gz" for r in (1, 2)]
    events = [func / f"{ses}_run-0{r}_events.tsv" for r in (1, 2)]
    outs = paths_in(
        tmp_path / "glm", "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS
    )
    run_glm(bold, events, outs, run_labels=["01", "02"], session="01")
    nc_path = path_in(tmp_path / "glm", "noiseceiling.nc", session_key("01", "01", "images"))
    session_noise_ceiling(outs["betas"], outs["trials"], nc_path, mask_file=outs["mask"])
    truth = root / "derivatives" / "truth" / "sub-01" / "ses-01" / "func"
    active = nib.load(truth / f"{ses}_desc-truthActive_mask.nii.gz").get_fdata() > 0
    est = nib.load(outs["betas"]).get_fdata()[active]
    true = nib.load(truth / f"{ses}_stat-effect_desc-truthBetas_statmap.nii.gz").get_fdata()[active]
    s = nib.load(truth / f"{ses}_desc-truthS_statmap.nii.gz").get_fdata()[active]
    t = nib.load(truth / f"{ses}_desc-truthT_statmap.nii.gz").get_fdata()[active]
    trials = read_trials(outs["trials"])
    k = float(np.mean(1.0 / trials["label"].value_counts().to_numpy()))
    expected = expected_noise_ceiling(est, true, s, t, k)
    nc = nib.load(nc_path).get_fdata()[active]
    assert abs(np.median(nc) - np.median(expected)) < 8.0
    outside = nib.load(outs["mask"]).get_fdata() == 0
    assert np.all(nib.load(nc_path).get_fdata()[outside] == 0)
