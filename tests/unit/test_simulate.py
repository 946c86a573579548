"""The simulated 7T multi-echo BIDS dataset: layout, reproducibility and ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.paths import bids_path, sidecar_path
from echoprep.simulate import PRESETS, simulate_dataset, truth_paths
from echoprep.simulate.design import hrf_index, hrf_table, slice_timing

TES = (0.011, 0.02882, 0.04662)
RUN = {"sub": "01", "ses": "01", "task": "images", "run": "01"}


def _bold(root: Path, echo: int, part: str = "mag", run: str = "01", sub: str = "01") -> Path:
    ents = RUN | {"sub": sub, "run": run, "echo": str(echo), "part": part}
    return bids_path(root, ents, "bold", ".nii.gz")


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _detrended(x: np.ndarray) -> np.ndarray:
    """Remove a quadratic trend along the last axis."""
    t = np.linspace(-1, 1, x.shape[-1])
    basis = np.stack([np.ones_like(t), t, t**2], axis=1)
    proj = np.eye(len(t)) - basis @ np.linalg.pinv(basis)
    return x @ proj.T


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_plus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same dataset written again, then a second subject added with subject_offset."""
    root = tmp_path_factory.mktemp("sim") / "plus"
    simulate_dataset(root, "tiny", seed=0)
    simulate_dataset(root, "tiny", seed=0, subject_offset=1)
    return root


@pytest.fixture(scope="module")
def options(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run with head motion and fieldmaps, magnitude only."""
    root = tmp_path_factory.mktemp("sim") / "options"
    return simulate_dataset(root, "tiny", seed=3, runs=1, motion=True, fieldmap=True, phase=False)


def test_raw_layout_headers_and_sidecars(tiny: Path) -> None:
    p = PRESETS["tiny"]
    desc = json.loads((tiny / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw"
    assert desc["GeneratedBy"][0]["Name"] == "echoprep"
    truth_desc = json.loads((tiny / "derivatives/truth/dataset_description.json").read_text())
    assert truth_desc["DatasetType"] == "derivative"
    assert (tiny / "task-images_events.json").exists()
    assert (tiny / "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz").exists()
    assert pd.read_csv(tiny / "participants.tsv", sep="\t")["participant_id"].tolist() == ["sub-01"]

    for run in ("01", "02"):
        for echo in (1, 2, 3):
            for part in ("mag", "phase"):
                path = _bold(tiny, echo, part, run)
                img = nib.load(path)
                assert img.shape == (*p.shape, p.n_volumes)
                assert img.get_data_dtype() == np.int16
                hdr = img.header
                assert hdr.get_zooms() == pytest.approx((8.0, 8.0, 8.0, 1.9))
                assert hdr.get_xyzt_units() == ("mm", "sec")
                assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
                raw_hdr = nib.Nifti1Header.from_fileobj(nib.openers.ImageOpener(path))
                assert float(raw_hdr["scl_slope"]) == 1.0
                side = json.loads(sidecar_path(path).read_text())
                assert side["EchoTime"] == TES[echo - 1]
                assert side["RepetitionTime"] == 1.9
                assert side["TaskName"] == "images"
                assert side["MagneticFieldStrength"] == 7
                assert side["PhaseEncodingDirection"] == "j-"
                assert side["TotalReadoutTime"] > 0 and side["EffectiveEchoSpacing"] > 0
                assert len(side["SliceTiming"]) == p.shape[2]
                assert max(side["SliceTiming"]) < 1.9
                assert (side.get("Units") == "arbitrary") == (part == "phase")
    mag = np.asarray(nib.load(_bold(tiny, 1)).dataobj)
    brain = nib.load(truth_paths(tiny, "01")["brain_mask"]).get_fdata() > 0
    assert 1000 < np.median(mag[brain]) < 3000
    phase = np.asarray(nib.load(_bold(tiny, 1, "phase")).dataobj)
    assert phase.min() == -4096 and phase.max() == 4095


def test_phase_difference_follows_the_true_field(tiny: Path) -> None:
    tp = truth_paths(tiny, "01")
    brain = nib.load(tp["brain_mask"]).get_fdata() > 0
    field = nib.load(tp["fieldmap_hz"]).get_fdata()[brain]
    ph = [
        np.asarray(nib.load(_bold(tiny, e, "phase")).dataobj)[brain] * np.pi / 4096 for e in (1, 2)
    ]
    # averaged over the run: the frequency drift (a few Hz) averages out
    measured = np.angle(np.exp(1j * (ph[1] - ph[0])).mean(axis=-1))
    expected = np.angle(np.exp(2j * np.pi * field * (TES[1] - TES[0])))
    err = np.angle(np.exp(1j * (measured - expected)))
    assert np.median(np.abs(err)) < 0.1


def test_same_seed_gives_identical_bytes_and_adding_a_subject_changes_nothing(
    tiny: Path, tiny_plus: Path
) -> None:
    first, second = _files(tiny), _files(tiny_plus)
    assert any(k.endswith("_bold.nii.gz") for k in first)
    for name, content in first.items():
        if name == "participants.tsv":
            continue
        assert second[name] == content, name
    added = set(second) - set(first)
    assert added and all(k.startswith(("sub-02", "derivatives/truth/sub-02")) for k in added)
    table = pd.read_csv(tiny_plus / "participants.tsv", sep="\t")
    assert table["participant_id"].tolist() == ["sub-01", "sub-02"]
    # the new subject is a different head
    t2_1 = nib.load(truth_paths(tiny_plus, "01")["T2star"]).get_fdata()
    t2_2 = nib.load(truth_paths(tiny_plus, "02")["T2star"]).get_fdata()
    assert not np.array_equal(t2_1, t2_2)
    with pytest.raises(FileExistsError, match="sub-02"):
        simulate_dataset(tiny_plus, "tiny", seed=0, subject_offset=1)


def test_another_seed_gives_other_data(tiny: Path, tmp_path: Path) -> None:
    other = simulate_dataset(tmp_path / "seed1", "tiny", seed=1, runs=1)
    assert _bold(other, 2).read_bytes() != _bold(tiny, 2).read_bytes()
    a = np.asarray(nib.load(_bold(other, 2)).dataobj, float)
    b = np.asarray(nib.load(_bold(tiny, 2)).dataobj, float)
    assert np.abs(a - b).mean() > 10


def test_refuses_foreign_or_existing_folders(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match="sub-01"):
        simulate_dataset(tiny, "tiny")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        simulate_dataset(tmp_path, "tiny")
    with pytest.raises(ValueError, match="unknown preset"):
        simulate_dataset(tmp_path / "x", "huge")
    with pytest.raises(ValueError, match="preset 'tiny'"):
        simulate_dataset(tiny, "demo", subject_offset=5)


def test_log_linear_t2star_fit_recovers_truth(tiny: Path) -> None:
    tp = truth_paths(tiny, "01")
    brain = nib.load(tp["brain_mask"]).get_fdata() > 0
    gm = nib.load(tp["gm_mask"]).get_fdata() > 0
    truth = nib.load(tp["T2star"]).get_fdata()
    means = np.stack([nib.load(_bold(tiny, e)).get_fdata().mean(-1)[brain] for e in (1, 2, 3)])
    design = np.stack([np.ones(3), -np.asarray(TES)], axis=1)
    coef = np.linalg.lstsq(design, np.log(means), rcond=None)[0]
    fit = 1 / coef[1]
    assert np.median(np.abs(fit - truth[brain])) < 0.002
    assert np.median(fit[gm[brain]]) == pytest.approx(np.median(truth[gm]), abs=0.001)
    assert 0.026 < np.median(truth[gm]) < 0.032


def test_tsnr_is_thermal_dominated_and_echo_combination_helps(tiny: Path) -> None:
    tp = truth_paths(tiny, "01")
    gm = nib.load(tp["gm_mask"]).get_fdata() > 0
    t2 = nib.load(tp["T2star"]).get_fdata()[gm]
    data = [nib.load(_bold(tiny, e)).get_fdata()[gm] for e in (1, 2, 3)]

    def tsnr(x: np.ndarray) -> float:
        return float(np.median(x.mean(-1) / _detrended(x).std(-1)))

    snr = [tsnr(d) for d in data]
    assert snr[0] > snr[1] > snr[2]
    assert 20 < snr[1] < 40
    w = np.stack([te * np.exp(-te / t2) for te in TES], axis=1)
    w /= w.sum(axis=1, keepdims=True)
    combined = sum(w[:, [e]] * data[e] for e in range(3))
    assert tsnr(combined) > 1.2 * snr[1]


def test_events_design(tiny: Path) -> None:
    p = PRESETS["tiny"]
    runs = []
    for run in ("01", "02"):
        path = bids_path(tiny, RUN | {"run": run}, "events", ".tsv")
        ev = pd.read_csv(path, sep="\t", keep_default_na=False)
        assert list(ev.columns) == ["onset", "duration", "trial_type", "stim_name"]
        assert (ev["duration"] == 2.5).all()
        assert np.allclose(np.diff(ev["onset"]), 3.0)
        assert ev["onset"].iloc[0] >= 4.0
        assert p.n_volumes * p.tr - (ev["onset"].iloc[-1] + 3.0) >= 12.0
        on_grid = np.isclose((ev["onset"] / p.tr) % 1, 0, atol=1e-6)
        assert on_grid.mean() < 0.5
        blank = ev["trial_type"] == "blank"
        assert 0.05 < blank.mean() < 0.12
        assert (ev.loc[blank, "stim_name"] == "n/a").all()
        assert ev.loc[~blank, "stim_name"].str.fullmatch(r"img\d{4,}").all()
        runs.append(ev)
    session = pd.concat(runs)
    images = session[session["trial_type"] != "blank"]
    counts = images["stim_name"].value_counts()
    assert counts.min() >= 2 and counts.max() <= 3
    first = ~images["stim_name"].duplicated()
    assert (images.loc[first.to_numpy(), "trial_type"] == "new").all()
    assert (images.loc[~first.to_numpy(), "trial_type"] == "old").all()
    # repeats fall in different runs
    assert (
        runs[0]["stim_name"].isin(runs[1]["stim_name"]) | (runs[0]["trial_type"] == "blank")
    ).all()


def test_truth_files_and_noise_ceiling_formula(tiny: Path) -> None:
    tp = truth_paths(tiny, "01", "01")
    expected = {
        "T2star",
        "S0",
        "brain_mask",
        "gm_mask",
        "active_mask",
        "g_factor",
        "betas",
        "trials",
        "s",
        "t",
        "nc",
        "T1w_brain_mask",
        "T1w_dseg",
        "fieldmap_hz",
        "hrf_peak",
    }
    assert expected <= set(tp)
    assert tp["motion"] is None
    rois = [k for k in tp if k.startswith("roi_")]
    assert "roi_visual" in rois
    assert len(tp["artifact"]) == 2  # one artefact course per run
    for key, value in tp.items():
        for path in value if key == "artifact" else [] if key == "motion" else [value]:
            assert path.exists(), key
            assert sidecar_path(path).exists(), key
    assert "Units" in json.loads(sidecar_path(tp["betas"]).read_text())
    g = nib.load(tp["g_factor"]).get_fdata()
    assert 1.0 <= g.min() and g.max() <= 1.6

    active = nib.load(tp["active_mask"]).get_fdata() > 0
    s = nib.load(tp["s"]).get_fdata()
    t = nib.load(tp["t"]).get_fdata()
    nc = nib.load(tp["nc"]).get_fdata()
    trials = pd.read_csv(tp["trials"], sep="\t", keep_default_na=False)
    assert trials["beta_index"].tolist() == list(range(len(trials)))
    n_c = trials["label"].value_counts().to_numpy()
    sa, ta = s[active], t[active]
    recomputed = 100 * sa**2 / (sa**2 + ta**2 * np.mean(1 / n_c))
    assert np.allclose(nc[active], recomputed, atol=1e-3)
    assert (nc[~active] == 0).all() and (s[~active] == 0).all()
    assert 20 < np.median(nc[active]) < 90

    # the betas carry the stated signal and trial-to-trial variances
    betas = nib.load(tp["betas"]).get_fdata()[active]
    assert betas.shape[1] == len(trials)
    groups = trials.groupby("label").indices
    within = np.mean([betas[:, i].var(axis=1, ddof=1) for i in groups.values()], axis=0)
    means = np.stack([betas[:, i].mean(axis=1) for i in groups.values()], axis=1)
    signal = means.var(axis=1) - within * np.mean(1 / n_c)
    assert np.median(within / t[active] ** 2) == pytest.approx(1, abs=0.15)
    assert np.median(signal) == pytest.approx(np.median(s[active] ** 2), rel=0.25)
    # peak BOLD of a mean single-trial response at echo 2 is 1-3 %
    peak = 100 * (np.exp(TES[1] * betas.mean(axis=1)) - 1)
    assert 1 < np.median(peak) < 3


def test_active_voxels_show_the_evoked_response(tiny: Path) -> None:
    tp = truth_paths(tiny, "01")
    active = nib.load(tp["active_mask"]).get_fdata() > 0
    frontal = nib.load(tp["roi_frontal"]).get_fdata() > 0
    betas = nib.load(tp["betas"]).get_fdata()[active]
    k = hrf_index(nib.load(tp["hrf_peak"]).get_fdata()[active])
    z = np.argwhere(active)[:, 2]
    trials = pd.read_csv(tp["trials"], sep="\t", keep_default_na=False)
    trials = trials[trials["run"] == 1]
    p = PRESETS["tiny"]
    times, table = hrf_table(p.stim_duration)
    st = slice_timing(p.shape[2], p.multiband, p.tr)
    lag = (
        (np.arange(p.n_volumes) * p.tr)[None, :, None]
        + st[z][:, None, None]
        - trials["onset"].to_numpy()
    )
    pred = np.zeros((len(k), p.n_volumes))
    for i in range(len(k)):
        h = np.interp(lag[i], times, table[k[i]], left=0, right=0)
        pred[i] = h @ betas[i, trials["beta_index"].to_numpy()]
    data = nib.load(_bold(tiny, 2)).get_fdata()
    y = _detrended(data[active])
    r_active = np.corrcoef(y.mean(0), _detrended(pred).mean(0))[0, 1]
    r_frontal = np.corrcoef(_detrended(data[frontal]).mean(0), _detrended(pred).mean(0))[0, 1]
    assert r_active > 0.7
    assert abs(r_frontal) < 0.4
    # amplitude: the signal increase matches -TE * dR2* (slope ~1)
    rel = _detrended(data[active] / data[active].mean(-1, keepdims=True))
    model = _detrended(TES[1] * pred)
    assert np.sum(rel * model) / np.sum(model**2) == pytest.approx(1, abs=0.15)


def test_motion_fieldmap_and_magnitude_only(options: Path) -> None:
    assert not _bold(options, 1, "phase").exists()
    assert _bold(options, 1, "mag").exists()
    tp = truth_paths(options, "01")
    assert tp["motion"] is not None and len(tp["motion"]) == 1
    motion = pd.read_csv(tp["motion"][0], sep="\t")
    assert list(motion.columns) == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    assert len(motion) == PRESETS["tiny"].n_volumes
    trans = motion[["trans_x", "trans_y", "trans_z"]].to_numpy()
    rot = motion[["rot_x", "rot_y", "rot_z"]].to_numpy()
    assert 0 < np.abs(trans).max() <= 0.5 and 0 < np.abs(rot).max() <= np.deg2rad(0.5)
    assert np.abs(np.diff(trans, axis=0)).max() > 0

    fents = {"sub": "01", "ses": "01", "run": "01"}
    phasediff = bids_path(options, fents, "phasediff", ".nii.gz", "fmap")
    side = json.loads(sidecar_path(phasediff).read_text())
    assert side["EchoTime2"] - side["EchoTime1"] == pytest.approx(0.00102)
    assert side["IntendedFor"]
    for target in side["IntendedFor"]:
        assert (options / target.removeprefix("bids::")).exists()
    for kind in ("magnitude1", "magnitude2"):
        assert bids_path(options, fents, kind, ".nii.gz", "fmap").exists()
    brain = nib.load(tp["brain_mask"]).get_fdata() > 0
    field = nib.load(tp["fieldmap_hz"]).get_fdata()[brain]
    measured = np.asarray(nib.load(phasediff).dataobj)[brain] * np.pi / 4096
    hz = measured / (2 * np.pi * (side["EchoTime2"] - side["EchoTime1"]))
    assert np.median(np.abs(hz - field)) < 10


def test_presets_and_slice_timing() -> None:
    assert set(PRESETS) >= {"tiny", "demo", "laion"}
    laion = PRESETS["laion"]
    assert laion.shape == (90, 110, 72) and laion.voxel_size == 1.8
    assert laion.n_runs == 12 and laion.n_volumes == 163 and laion.tr == 1.9
    assert laion.tes == TES
    assert 1000 <= laion.n_runs * laion.trials_per_run <= 1200
    with pytest.raises(AttributeError):
        laion.n_runs = 3  # type: ignore[misc]
    st = slice_timing(72, 3, 1.9)
    assert np.allclose(st[:24], st[24:48]) and np.allclose(st[:24], st[48:])
    assert len(np.unique(st)) == 24 and st.min() == 0 and st.max() < 1.9
    assert st[1] > st[2]  # interleaved


def test_sessions_and_truth_paths_without_session(tiny: Path, tmp_path: Path) -> None:
    assert truth_paths(tiny, "01") == truth_paths(tiny, "01", "01")
    fresh = truth_paths(tmp_path / "none", "07")
    assert fresh["T2star"].name == "sub-07_ses-01_desc-truth_T2starmap.nii.gz"

    root = simulate_dataset(tmp_path / "two", "tiny", seed=0, sessions=2, runs=1)
    assert sorted(p.name for p in root.glob("sub-01/ses-*/anat/*_T1w.nii.gz")) == [
        "sub-01_ses-01_T1w.nii.gz"
    ]
    shown = []
    for ses in ("01", "02"):
        ev = bids_path(root, RUN | {"ses": ses}, "events", ".tsv")
        names = pd.read_csv(ev, sep="\t", keep_default_na=False)["stim_name"]
        shown.append(set(names[names != "n/a"]))
        assert truth_paths(root, "01", ses)["betas"].exists()
    assert shown[0] and shown[1] and not shown[0] & shown[1]
    with pytest.raises(ValueError, match="session"):
        truth_paths(root, "01")
