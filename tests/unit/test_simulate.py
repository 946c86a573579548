"""The simulated 7T multi-echo BIDS dataset: layout, reproducibility and ground truth."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from echoprep.io.paths import bids_path, sidecar_path
from echoprep.simulate import PRESETS, seeds, simulate_dataset, truth_paths
from echoprep.simulate.acquisition import total_readout_time
from echoprep.simulate.anatomy import subject_anatomy, t1w_pose
from echoprep.simulate.design import hrf_index, hrf_table, slice_timing
from echoprep.simulate.geometry import (
    distort,
    distort_signal,
    distortion_operator,
    rigid_matrix,
)
from echoprep.simulate.signal import build_run, motion_parameters, parameters, run_volumes

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
    """One run with head motion, fieldmaps and distortion, magnitude only."""
    root = tmp_path_factory.mktemp("sim") / "options"
    return simulate_dataset(root, "tiny", seed=3, runs=1, motion=True, fieldmap=True, phase=False)


@pytest.fixture(scope="module")
def distorted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same run (same noise) with and without EPI distortion, no motion."""
    base = tmp_path_factory.mktemp("sim")
    on = simulate_dataset(base / "on", "tiny", seed=0, runs=1, fieldmap=True)
    off = simulate_dataset(base / "off", "tiny", seed=0, runs=1, fieldmap=True, distortion=False)
    return on, off


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run with head motion, undistorted."""
    return simulate_dataset(
        tmp_path_factory.mktemp("sim") / "moving", "tiny", seed=0, runs=1, motion=True
    )


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
    new = ("sub-02", "derivatives/truth/sub-02", "derivatives/freesurfer/sub-02")
    assert added and all(k.startswith(new) for k in added)
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


def test_cli_refusals_are_messages_in_command_line_terms(tiny: Path, tmp_path: Path, capsys):
    """An existing subject, --runs 0: exit 2 with the fix as flags, no traceback."""
    from echoprep.cli import main as cli_main

    assert cli_main(["simulate", str(tiny), "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"echoprep simulate: {tiny} already has sub-01. Fix:")
    assert "--subject-offset 1" in err and "Traceback" not in err
    assert cli_main(["simulate", str(tmp_path / "z"), "--runs", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "echoprep simulate: --runs (runs=): expected at least 1; found 0\n"


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
        "vsm",
        "bold_to_T1w",
        "bold_to_T1w_itk",
    }
    assert expected <= set(tp)
    assert tp["motion"] is None
    assert tp["vsm"] is None  # tiny is not distorted by default
    rois = [k for k in tp if k.startswith("roi_")]
    assert "roi_visual" in rois
    assert len(tp["artifact"]) == 2  # one artefact course per run
    for key, value in tp.items():
        for path in value if key == "artifact" else [] if value is None else [value]:
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
    assert 0.2 < np.abs(trans).max() <= 2.0 and 0 < np.abs(rot).max() <= np.deg2rad(2.0)
    assert np.abs(np.diff(trans, axis=0)).max() > 0
    assert tp["vsm"] is not None  # fieldmaps written: the BOLD is distorted

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


# ---------------------------------------------------------------------------------------------
# spatial ground truth: head motion, EPI distortion, T1w pose


def _complex(root: Path, echo: int) -> np.ndarray:
    """The complex series of one echo (from part-mag and part-phase)."""
    mag = nib.load(_bold(root, echo)).get_fdata()
    phase = np.asarray(nib.load(_bold(root, echo, "phase")).dataobj) * np.pi / 4096
    return mag * np.exp(1j * phase)


def _world_resample(
    data: np.ndarray, affine: np.ndarray, target: tuple, target_affine: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Sample ``data`` (on ``affine``) at the world points ``m @ x`` of the target grid's voxel
    centres ``x`` (trilinear, 0 outside)."""
    vox = np.linalg.inv(affine) @ m @ target_affine
    return ndimage.affine_transform(data, vox[:3, :3], vox[:3, 3], target, order=1)


def test_motion_is_realistic_bounded_and_deterministic() -> None:
    p = PRESETS["laion"]
    assert (p.motion_max_mm, p.motion_max_deg) == (2.0, 2.0)
    assert PRESETS["laion"].motion and not PRESETS["tiny"].motion and not PRESETS["demo"].motion
    peaks = []
    for seed in range(4):
        for run in range(1, 13):
            m = motion_parameters(p, seeds.rng(seed, 1, 1, run, seeds.MOTION), p.n_volumes)
            again = motion_parameters(p, seeds.rng(seed, 1, 1, run, seeds.MOTION), p.n_volumes)
            assert np.array_equal(m, again)
            assert np.abs(m[:, :3]).max() <= 2.0
            assert np.abs(m[:, 3:]).max() <= np.deg2rad(2.0)
            peaks.append((np.abs(m[:, :3]).max(), np.rad2deg(np.abs(m[:, 3:]).max())))
            # framewise displacement (Power et al., 50 mm sphere): mostly smooth, with jerks
            d = np.diff(m, axis=0)
            fd = np.abs(d[:, :3]).sum(axis=1) + 50 * np.abs(d[:, 3:]).sum(axis=1)
            assert fd.max() > 4 * np.median(fd)
            assert np.median(fd) < 0.2
    trans, rot = np.array(peaks).T
    assert 0.8 < np.median(trans) < 1.8 and 0.8 < np.median(rot) < 1.8
    assert trans.max() > 1.5 and rot.max() > 1.5


def test_motion_truth_predicts_the_volumes_and_the_sbref(moving: Path) -> None:
    """The documented convention (M_t x = c + R (x - c) + d, R = Rz Ry Rx, c = RotationCenter)
    moves the truth image onto the raw volume; the identity or the inverse do not."""
    tp = truth_paths(moving, "01")
    side = json.loads(sidecar_path(tp["motion"][0]).read_text())
    centre = np.array(side["RotationCenter"])
    s0_img = nib.load(tp["S0"])
    aff = s0_img.affine
    assert np.allclose(centre, aff[:3, :3] @ ((np.array(s0_img.shape) - 1) / 2) + aff[:3, 3])
    t2s = nib.load(tp["T2star"]).get_fdata()
    clean = np.where(t2s > 0, s0_img.get_fdata() * np.exp(-TES[0] / np.maximum(t2s, 1e-6)), 0)
    head = clean > 100
    motion = pd.read_csv(tp["motion"][0], sep="\t").to_numpy()
    bold = nib.load(_bold(moving, 1)).get_fdata()

    def residual(image: np.ndarray, m: np.ndarray) -> float:
        pred = _world_resample(clean, aff, clean.shape, aff, np.linalg.inv(m))
        return float(np.sqrt(np.mean((image - pred)[head] ** 2)))

    size = np.abs(motion[:, :3]).max(axis=1) + np.rad2deg(np.abs(motion[:, 3:]).max(axis=1))
    for t in np.argsort(size)[-3:]:  # the three most displaced volumes
        m_t = rigid_matrix(motion[t], centre)
        right = residual(bold[..., t], m_t)
        assert right < 0.5 * residual(bold[..., t], np.eye(4))
        assert right < 0.5 * residual(bold[..., t], np.linalg.inv(m_t))
    sbref = nib.load(bids_path(moving, RUN | {"echo": "1"}, "sbref", ".nii.gz")).get_fdata()
    m_0 = rigid_matrix(motion[0], centre)
    assert residual(sbref, m_0) < 0.5 * residual(sbref, np.eye(4))


def _task_run(beta_sd: float = 0.5) -> tuple:
    """The preset tiny's run 1 with trials every 4 s (betas 1 +- ``beta_sd`` s^-1) and its
    random head motion, noise-free."""
    p = PRESETS["tiny"]
    anat = subject_anatomy(p, 0, 1)
    onsets = np.arange(4.0, p.n_volumes * p.tr - 20, 4.0)
    betas = np.random.default_rng(1).normal(1.0, beta_sd, (int(anat.active.sum()), len(onsets)))
    model = build_run(p, anat, onsets, betas, seed=0, subject=1, session=1, run=1, motion=True)
    return p, anat, dataclasses.replace(model, noise_sd=np.zeros_like(model.noise_sd))


def _still(model: object) -> object:
    return dataclasses.replace(model, motion=None, task_timing=None)


def _translated(model: object, z_mm: float) -> object:
    motion = np.zeros_like(model.motion)
    motion[:, 2] = z_mm
    return dataclasses.replace(model, motion=motion)


def _noise_free_series(p: object, model: object, te: float = TES[1]) -> np.ndarray:
    blocks = run_volumes(model, (te,), [np.random.default_rng(0)], p.chunk_volumes, phase=False)
    return np.concatenate([b[0][0] for b in blocks]).astype(np.float64)  # (T, x, y, z)


def test_realigning_with_the_true_motion_restores_every_active_voxels_time_course() -> None:
    """A Fourier-encoded image of a head moved by a fraction of a voxel is the band-limited
    (sinc) shift of the still image, not a blend of neighbours: realigned with the true
    transforms (cubic B-spline, as the spatial stage resamples), each active voxel's noise-free
    time course matches the motion-free run. Moving the maps trilinearly instead low-passes
    every volume by a position-dependent amount (measured: median r 0.962, 10th percentile
    0.872 on this run; cubic: 0.993, 0.967)."""
    p, anat, model = _task_run(beta_sd=1.0)
    img, ref = _noise_free_series(p, model), _noise_free_series(p, _still(model))
    a = model.affine
    back = np.empty_like(img)
    for t in range(len(img)):
        vox = np.linalg.inv(a) @ rigid_matrix(model.motion[t], model.center) @ a
        back[t] = ndimage.affine_transform(img[t], vox[:3, :3], vox[:3, 3], order=3)

    def r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = x - x.mean(0), y - y.mean(0)
        return (x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0))

    active = anat.active
    realigned = r(back[:, active], ref[:, active])
    assert np.median(realigned) > 0.985
    assert np.percentile(realigned, 10) > 0.95
    assert np.percentile(r(img[:, active], ref[:, active]), 10) < 0.9  # the motion is not small


def test_a_head_at_rest_is_imaged_the_same_with_the_motion_model_on() -> None:
    """Zero motion through the motion path (maps moved by the identity, the response formed
    per scanner slice) gives the motion-free run's volumes."""
    p, _, model = _task_run()
    a, b = _noise_free_series(p, _still(model)), _noise_free_series(p, _translated(model, 0.0))
    assert np.abs(a - b).max() <= 1  # int16 rounding


def test_moved_content_carries_the_response_of_the_slice_it_is_imaged_in() -> None:
    """A head moved up by exactly one slice: scanner slice z + 1 holds head slice z, and its
    evoked response is sampled at slice z + 1's acquisition time (interleaved multiband:
    neighbouring slices are about TR / 2 apart), not at the time head slice z had at rest."""
    p, _, model = _task_run()
    model = _translated(model, p.voxel_size)
    te = TES[1]
    got = _noise_free_series(p, model, te)
    timing = model.task_timing
    n = p.n_volumes
    s0, r2s, _ = parameters(model, 0, n)  # head frame, response at each voxel's own slice time
    r2_base = r2s.copy()
    r2_base[model.task_rows] += model.task
    act = np.unravel_index(model.head_idx[model.task_rows], model.shape)
    keep = act[2] < model.shape[2] - 1
    rows = model.task_rows[keep]
    src = np.stack([timing.at(int(i), 0, n) for i in np.unique(timing.slice_index)])
    here = timing.slice_index[act[2][keep] + 1]  # time of the slice the content is imaged in
    own = timing.slice_index[act[2][keep]]
    cols = np.flatnonzero(keep)
    right = s0[rows] * np.exp(-te * (r2_base[rows] - src[here, cols]))
    wrong = s0[rows] * np.exp(-te * (r2_base[rows] - src[own, cols]))
    imaged = got[:, act[0][keep], act[1][keep], act[2][keep] + 1].T  # (n_act, T)
    assert np.abs(imaged - right).max() <= 1.0  # int16 rounding
    assert np.median(np.abs(imaged - wrong).max(axis=1)) > 5


def test_motion_and_distortion_are_reproducible(options: Path, tmp_path: Path) -> None:
    again = simulate_dataset(
        tmp_path / "again", "tiny", seed=3, runs=1, motion=True, fieldmap=True, phase=False
    )
    first, second = _files(options), _files(again)
    assert first.keys() == second.keys()
    for name, content in first.items():
        assert second[name] == content, name


def test_distortion_operator_known_answers() -> None:
    ny = 40
    point = np.zeros((1, ny, 1))
    point[0, 10, 0] = 1.0
    # a constant shift of 2.3 voxels: the content lands 70 / 30 % in voxels 12 / 13
    out = distort(point, np.full((1, ny, 1), 2.3))[0, :, 0]
    assert np.flatnonzero(out).tolist() == [12, 13]
    assert out[12] == pytest.approx(0.7, abs=1e-6) and out[13] == pytest.approx(0.3, abs=1e-6)
    assert np.sum(out * np.arange(ny)) == pytest.approx(12.3, abs=1e-6)
    # negative shifts move towards -j and wrap around the field of view
    point[0, 10, 0], point[0, 1, 0] = 0.0, 1.0
    out = distort(point, np.full((1, ny, 1), -2.3))[0, :, 0]
    assert np.flatnonzero(out).tolist() == [38, 39]
    assert out[38] == pytest.approx(0.3, abs=1e-6)
    # an edge moves by the shift: its half-height crossing goes from 19.5 to 21.0
    edge = np.zeros((1, ny, 1))
    edge[0, 20:35] = 1.0
    out = distort(edge, np.full((1, ny, 1), 1.5))[0, :, 0]
    assert np.interp(0.5, out[15:25], np.arange(15, 25)) == pytest.approx(21.0, abs=1e-6)

    # a smooth shift: content conserved per column, intensity divided by the Jacobian, and the
    # standard correction (sample at j + s(j), multiply by 1 + ds/dj) restores the object
    j = np.arange(120.0)
    shift = 3.0 * np.sin(2 * np.pi * j / 120)
    obj = np.exp(-(((j - 60) / 25) ** 2))
    out = distort(obj[None, :, None], shift[None, :, None])[0, :, 0]
    assert out.sum() == pytest.approx(obj.sum(), rel=1e-6)
    jac = 1 + np.gradient(shift)
    assert jac.min() < 0.85 and jac.max() > 1.15
    expected = np.interp(j, j + shift, obj / jac)  # the true intensity at j lands at j + s(j)
    assert np.abs(out - expected)[10:110].max() < 0.01
    corrected = np.interp(j + shift, j, out) * jac
    assert np.abs(corrected - obj)[10:110].max() < 0.01
    assert np.abs(out - obj).max() > 0.1  # the distortion is not negligible
    # complex signal: magnitudes are redistributed, phases averaged with magnitude weights
    mag, phase = np.zeros(6), np.zeros(6)
    mag[[1, 2]], phase[[1, 2]] = 1.0, [0.0, 1.0]
    op = distortion_operator(np.full((1, 6, 1), 0.5))
    out_mag, out_phase = distort_signal(mag, phase, op)
    assert np.allclose(out_mag, [0, 0.5, 1.0, 0.5, 0, 0], atol=1e-6)
    assert np.allclose(out_phase[1:4], [0.0, 0.5, 1.0], atol=1e-6)
    # the operator is linear, column-wise, and its weights sum to one per source voxel
    field = np.random.default_rng(0).normal(0, 1.5, (3, 30, 4))
    op = distortion_operator(field)
    assert np.allclose(op.sum(axis=0), 1.0, atol=1e-6)


def test_distorted_bold_follows_the_truth_vsm(distorted: tuple[Path, Path]) -> None:
    """Same noise with and without distortion: the distorted series is the undistorted one
    moved by the truth VSM (sign, size, Jacobian) at every echo, and its phase carries the
    field of the signal that landed in each voxel."""
    on, off = distorted
    tp = truth_paths(on, "01")
    assert truth_paths(off, "01")["vsm"] is None
    vsm = nib.load(tp["vsm"]).get_fdata().astype(np.float32)
    field = nib.load(tp["fieldmap_hz"]).get_fdata()
    side = json.loads(sidecar_path(_bold(on, 1)).read_text())
    vside = json.loads(sidecar_path(tp["vsm"]).read_text())
    assert side["PhaseEncodingDirection"] == vside["PhaseEncodingDirection"] == "j-"
    assert vside["TotalReadoutTime"] == side["TotalReadoutTime"]
    assert vside["Units"] == "voxels"
    assert np.allclose(vsm, -side["TotalReadoutTime"] * field, atol=1e-4)
    brain = nib.load(tp["brain_mask"]).get_fdata() > 0
    assert np.abs(vsm[brain]).max() > 0.5  # tiny: up to about 1 voxel (8 mm voxels)

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.abs(x[brain]) ** 2)))

    for echo in (1, 2, 3):
        a = nib.load(_bold(on, echo)).get_fdata().mean(axis=-1)
        b = nib.load(_bold(off, echo)).get_fdata().mean(axis=-1)
        change = rms(a - b)
        assert change > 0.02 * rms(b)
        assert rms(a - distort(b, vsm)) < 0.1 * change
        assert rms(a - distort(b, -vsm)) > 0.5 * change
        # the magnitude of every PE column is conserved (up to the Rician noise floor)
        cols = np.abs(a.sum(axis=1) - b.sum(axis=1))
        assert cols.max() < 5e-3 * b.sum(axis=1).max()
    # the phase difference of echoes 1 and 2 follows the field carried along with the signal
    weight = nib.load(_bold(off, 1)).get_fdata().mean(axis=-1)
    carried = distort(weight * field, vsm) / np.maximum(distort(weight, vsm), 1e-3)
    measured = np.angle((_complex(on, 2) * np.conj(_complex(on, 1))).mean(axis=-1))
    for fmap, bound in ((carried, (0, 0.05)), (field, (0.2, np.inf))):
        err = np.angle(np.exp(1j * (measured - 2 * np.pi * (TES[1] - TES[0]) * fmap)))
        assert bound[0] < np.percentile(np.abs(err[brain]), 95) < bound[1]
    # the SBRef is distorted too, the GRE fieldmap images are not
    sb_on = bids_path(on, RUN | {"echo": "2"}, "sbref", ".nii.gz")
    sb_off = bids_path(off, RUN | {"echo": "2"}, "sbref", ".nii.gz")
    a, b = nib.load(sb_on).get_fdata(), nib.load(sb_off).get_fdata()
    assert rms(a - distort(b, vsm)) < 0.25 * rms(a - b) < 0.25 * rms(a - distort(b, -vsm))
    for kind in ("magnitude1", "phasediff"):
        fmap = {"sub": "01", "ses": "01", "run": "01"}
        assert (
            bids_path(on, fmap, kind, ".nii.gz", "fmap").read_bytes()
            == bids_path(off, fmap, kind, ".nii.gz", "fmap").read_bytes()
        )
    params = json.loads((on / "dataset_description.json").read_text())["echoprepSimulation"]
    assert params["distortion"] is True


def test_the_field_moves_with_the_head(options: Path) -> None:
    """With motion, volume t is distorted by the truth VSM moved by the volume's M_t."""
    p = PRESETS["tiny"]
    tp = truth_paths(options, "01")
    vsm_img = nib.load(tp["vsm"])
    vsm, aff = vsm_img.get_fdata(), vsm_img.affine
    side = json.loads(sidecar_path(tp["motion"][0]).read_text())
    motion = pd.read_csv(tp["motion"][0], sep="\t").to_numpy()
    anat = subject_anatomy(p, 3, 1)
    model = build_run(
        p,
        anat,
        np.array([]),
        np.zeros((int(anat.active.sum()), 0)),
        seed=3,
        subject=1,
        session=1,
        run=1,
        motion=True,
        distortion=True,
    )
    assert model.readout_time == total_readout_time(p)
    assert np.allclose(model.shift_map(), vsm, atol=1e-5)
    for t in (0, int(np.argmax(np.abs(motion).sum(axis=1)))):
        m = np.linalg.inv(aff) @ np.linalg.inv(rigid_matrix(motion[t], side["RotationCenter"]))
        m = m @ aff
        moved = ndimage.affine_transform(vsm, m[:3, :3], m[:3, 3], order=1, mode="nearest")
        assert np.abs(model.shift_map(t) - moved).max() < 1e-3
        assert np.abs(moved - vsm).max() > 0.01

    # the generated volume t is the moved head distorted by the moved VSM (noise-free check)
    quiet = dataclasses.replace(model, noise_sd=np.zeros_like(model.noise_sd))
    t = int(np.argmax(np.abs(motion).sum(axis=1)))

    def volume(m: object) -> np.ndarray:
        rngs = [np.random.default_rng(0)]
        blocks = list(run_volumes(m, (TES[0],), rngs, p.chunk_volumes, phase=False))
        return blocks[t // p.chunk_volumes][0][0][t % p.chunk_volumes].astype(float)

    got = volume(quiet)
    straight = volume(dataclasses.replace(quiet, readout_time=0.0))
    head = straight > 100
    right = np.abs(got - distort(straight, quiet.shift_map(t)))[head]
    static = np.abs(got - distort(straight, quiet.shift_map()))[head]
    assert right.max() < 2  # int16 rounding
    assert static.max() > 10 * right.max()


def test_b0_field_gives_realistic_7t_shifts_at_laion_geometry() -> None:
    p = PRESETS["laion"]
    trt = total_readout_time(p)
    assert trt == pytest.approx(0.00059 / 3 * 109, rel=1e-4)
    anat = subject_anatomy(p, 0, 1)
    shift = -trt * anat.b0_hz
    brain = anat.brain_mask
    s = np.abs(shift[brain])
    assert np.median(s) < 0.5
    assert np.mean(s < 1) > 0.85
    assert 3 < s.max() < 8  # several voxels near the sinuses / ear canals
    jac = 1 + np.gradient(shift, axis=1)
    assert jac[anat.head_mask].min() > 0.3  # compression without fold-over
    assert jac[brain].max() > 1.2 and jac[brain].min() < 0.8


def test_t1w_pose_truth(tiny: Path, tiny_plus: Path) -> None:
    tp = truth_paths(tiny, "01")
    xfm = json.loads(tp["bold_to_T1w"].read_text())
    pose = np.array(xfm["Matrix"])
    rot = pose[:3, :3]
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-9) and np.linalg.det(rot) > 0
    assert np.allclose(np.array(xfm["InverseMatrix"]) @ pose, np.eye(4), atol=1e-9)
    angle = np.rad2deg(np.arccos((np.trace(rot) - 1) / 2))
    assert angle == pytest.approx(xfm["RotationAngleDeg"]) and 3 <= angle <= 7
    assert 4 <= np.linalg.norm(xfm["Translation"]) <= 9
    c = np.array(xfm["RotationCenter"])
    assert np.allclose(pose[:3, 3], c - rot @ c + xfm["Translation"])
    assert np.array_equal(pose, t1w_pose(0, 1)[0])
    assert not np.allclose(pose, t1w_pose(1, 1)[0])
    other = np.array(json.loads(truth_paths(tiny_plus, "02")["bold_to_T1w"].read_text())["Matrix"])
    assert not np.allclose(pose, other)

    # the T1w truth mask, taken through the pose, lies on the BOLD-grid truth mask
    bold_mask = nib.load(tp["brain_mask"])
    t1w_mask = nib.load(tp["T1w_brain_mask"])
    target = nib.load(tp["brain_mask"]).get_fdata() > 0

    def dice(m: np.ndarray) -> float:
        warped = _world_resample(
            t1w_mask.get_fdata(), t1w_mask.affine, target.shape, bold_mask.affine, m
        )
        warped = warped >= 0.5
        return 2 * float((warped & target).sum()) / (warped.sum() + target.sum())

    assert dice(pose) > 0.97
    assert dice(pose) > dice(np.eye(4)) + 0.03
    assert dice(pose) > dice(np.linalg.inv(pose)) + 0.03

    # the ITK file maps T1w LPS points to BOLD LPS points (resampling BOLD onto T1w grids)
    sitk = pytest.importorskip("SimpleITK")
    itk = sitk.ReadTransform(str(tp["bold_to_T1w_itk"]))
    flip = np.array([-1.0, -1.0, 1.0])
    for y in ([10.0, -30.0, 25.0], [-40.0, 20.0, -10.0]):
        got = np.array(itk.TransformPoint(tuple(flip * y))) * flip
        assert np.allclose(got, (np.linalg.inv(pose) @ [*y, 1.0])[:3], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# response model (echoprep.simulate.response)


def _response_hashes(response=None) -> tuple[str, str, tuple[int, ...]]:
    """sha256 of the tiny preset's truth arrays (seed 0) and of run 1's echo-2 int16 data, and
    that data's sums and sums of squares (magnitude, phase) as int64."""
    import hashlib

    from echoprep.simulate.design import session_design, single_trial_betas

    p = PRESETS["tiny"]
    anat = subject_anatomy(p, 0, 1, response)
    design = session_design(p, p.n_runs, 0, 1, 1)
    truth = single_trial_betas(anat, design, 0, 1, 1, response)
    h = hashlib.sha256()
    for key in ("betas", "mu", "s", "t", "images"):
        h.update(np.ascontiguousarray(truth[key]).tobytes())
    images = design[design["image"] >= 0].reset_index(drop=True)
    cols = np.flatnonzero(images["run"].to_numpy() == 1)
    model = build_run(
        p,
        anat,
        images["onset"].to_numpy()[cols],
        truth["betas"][:, cols],
        seed=0,
        subject=1,
        session=1,
        run=1,
        motion=False,
        response=response,
    )
    g = hashlib.sha256()
    rng = [seeds.rng(0, 1, 1, 1, seeds.NOISE, 2)]
    sums = np.zeros(4, np.int64)
    for block in run_volumes(model, (TES[1],), rng, p.chunk_volumes):
        g.update(block[0][0].tobytes())
        g.update(block[0][1].tobytes())
        for i, part in enumerate(block[0][:2]):
            x = np.asarray(part, np.int64)
            sums[i] += x.sum()
            sums[2 + i] += (x * x).sum()
    return h.hexdigest(), g.hexdigest(), tuple(int(v) for v in sums)


def test_default_response_model_reproduces_the_historical_simulator() -> None:
    """Taken with the simulator before the response model existed: the default model, given or
    not, must give the same data, another must not. The truth arrays match bit for bit. The
    int16 data match bit for bit on the CPUs the hashes were taken on; numpy's AVX-512 paths
    round a few phase values the other way (43 of 777,600 by one count, measured), so on other
    CPUs the data's sums and sums of squares must match to 1e-6 (another noise model moves them
    by far more)."""
    from echoprep.simulate.response import DEFAULT, REGIMES

    truth_hash = "375dd51ec6cfd3e372db54cba4e3fcf5c03a44bc1de9903bb9e4853d46e278e3"
    data_hash = "3c3773bc5b2377cda6caa8eb60ee7cece8bf63b9abca0d5254d7b386fa617acd"
    # magnitude and phase sums, then sums of squares, of those historical bytes
    data_sums = np.array([458823148, 159856671, 516386636990, 4269470163947], np.float64)

    def same_data(got: tuple[str, str, tuple[int, ...]]) -> bool:
        if got[1] == data_hash:
            return True
        return bool(np.all(np.abs(np.array(got[2]) - data_sums) <= 1e-6 * np.abs(data_sums)))

    now = _response_hashes()
    assert now[0] == truth_hash and same_data(now)
    assert _response_hashes(DEFAULT) == now  # bit for bit on one machine
    assert DEFAULT.voxel_sd == 0.7 and REGIMES["default"] is DEFAULT
    other = _response_hashes("thermal")
    assert other[0] == truth_hash and not same_data(other)  # same truth, other noise


def _pairs(lag_mm: float, n: int = 3000, seed: int = 7) -> np.ndarray:
    """``n`` random points spread over a 600 mm cube and, after them, the same points moved
    by ``lag_mm`` along x: shape (2n, 3), mm (spread out, so the fields are sampled
    ergodically)."""
    pts = np.random.default_rng(seed).uniform(-300, 300, (n, 3))
    return np.concatenate([pts, pts + np.array([lag_mm, 0.0, 0.0])])


def _pair_corr(values: np.ndarray) -> float:
    """Mean over point pairs (rows i and n + i of ``values``, (2n, C)) of their correlation
    across the columns (images or trials)."""
    v = (values - values.mean(1, keepdims=True)) / values.std(1, keepdims=True)
    n = len(v) // 2
    return float(np.mean(v[:n] * v[n:]))


def _sinc_model(wavelength: float, r: float) -> float:
    """Correlation of a :func:`random_field` of ``wavelength`` (wavenumber jitter 0.7-1.3) at
    distance ``r`` (mm): the mean of sin(k r)/(k r)."""
    k = 2 * np.pi / wavelength * np.linspace(0.7, 1.3, 201)
    return float(np.mean(np.sin(k * r) / (k * r)))


def _responses(model, lag_mm: float, n_images: int = 300, seed: int = 0) -> np.ndarray:
    from echoprep.simulate.anatomy import random_field
    from echoprep.simulate.response import image_responses

    r = np.random.default_rng(seed)
    coords = _pairs(lag_mm)
    fields = [
        random_field(r, r.uniform(*model.feature_wavelength_mm)) for _ in range(model.n_features)
    ]
    weights = np.stack([f(coords) for f in fields], axis=1)
    feats = r.standard_normal((model.n_features, n_images))
    return image_responses(model, weights, feats, r.standard_normal((len(coords), n_images)))


@pytest.mark.parametrize("voxel_fraction", [0.0, 0.5, 0.9])
def test_response_smooth_fraction_comes_out_as_asked(voxel_fraction) -> None:
    """At 1 mm the smooth part (wavelength 20 mm) correlates sinc(2 pi/20) ~ 0.98 between
    neighbours and the voxel-specific part 0, so the neighbour correlation across images is
    ~0.98 x the smooth fraction; z is standardised per voxel."""
    from echoprep.simulate.response import ResponseModel

    model = ResponseModel(
        n_features=32, feature_wavelength_mm=(20.0, 20.0), voxel_fraction=voxel_fraction
    )
    z = _responses(model, 1.0)
    assert np.allclose(z.mean(1), 0, atol=1e-9) and np.allclose(z.std(1), 1)
    measured = _pair_corr(z)
    expected = _sinc_model(20.0, 1.0) * model.smooth_fraction
    assert abs(measured - expected) < 0.03, (measured, expected)


@pytest.mark.parametrize("wavelength", [8.0, 24.0])
def test_response_correlation_length_comes_out_as_asked(wavelength) -> None:
    """Fully smooth responses: the correlation at 2 and 4 mm matches the plane-wave model
    mean_k sin(k r)/(k r), k = 2 pi / wavelength x U(0.7, 1.3), within 0.06; the half-correlation
    distance is ~0.30 x wavelength."""
    from echoprep.simulate.response import ResponseModel

    model = ResponseModel(
        n_features=32, feature_wavelength_mm=(wavelength, wavelength), voxel_fraction=0.0
    )
    for r in (2.0, 4.0):
        measured, expected = _pair_corr(_responses(model, r)), _sinc_model(wavelength, r)
        assert abs(measured - expected) < 0.04, (r, measured, expected)


@pytest.mark.parametrize("q", [0.0, 0.6])
def test_trial_variability_smooth_fraction_comes_out_as_asked(q) -> None:
    from echoprep.simulate.anatomy import random_field
    from echoprep.simulate.response import ResponseModel, trial_noise

    model = ResponseModel(trial_smooth_fraction=q, trial_wavelength_mm=20.0)
    r = np.random.default_rng(1)
    coords = _pairs(1.0)
    white = r.standard_normal((len(coords), 300), dtype=np.float32)
    smooth = np.stack([random_field(r, 20.0)(coords) for _ in range(300)], axis=1)
    eps = trial_noise(model, white, smooth)
    assert abs(float(eps.var()) - 1) < 0.05
    assert abs(_pair_corr(eps) - q * _sinc_model(20.0, 1.0)) < 0.03


def test_simulated_mu_structure_amplitude_and_noise_follow_the_model() -> None:
    """On the tiny anatomy (8 mm): the true image means of the voxel-specific regime are
    far less correlated between neighbouring active voxels than the default's; the amplitude
    scale multiplies s (and mu's mean); thermal_scale multiplies the noise SD; the feature
    spectrum concentrates the image space (first PC share)."""
    from echoprep.simulate.design import session_design, single_trial_betas
    from echoprep.simulate.response import REGIMES, ResponseModel

    p = PRESETS["tiny"]
    design = session_design(p, p.n_runs, 0, 1, 1)

    def neighbour_corr(response) -> tuple[float, dict]:
        anat = subject_anatomy(p, 0, 1, response)
        truth = single_trial_betas(anat, design, 0, 1, 1, response)
        vol = np.full((*anat.grid.shape, truth["mu"].shape[1]), np.nan)
        vol[anat.active] = truth["mu"]
        a, b = vol[:-1].reshape(-1, vol.shape[-1]), vol[1:].reshape(-1, vol.shape[-1])
        ok = ~np.isnan(a[:, 0]) & ~np.isnan(b[:, 0])
        c = [np.corrcoef(x, y)[0, 1] for x, y in zip(a[ok], b[ok], strict=True)]
        return float(np.mean(c)), truth

    c_default, t_default = neighbour_corr(None)
    c_voxel, _ = neighbour_corr("voxel")
    assert c_default > 0.3 and c_voxel < 0.15, (c_default, c_voxel)  # measured 0.43, 0.05
    strong = ResponseModel(amplitude_scale=6.0)
    _, t_strong = neighbour_corr(strong)
    assert np.allclose(t_strong["s"], 6 * t_default["s"], rtol=1e-5)
    assert np.allclose(t_strong["mu"].mean(1), 6 * t_default["mu"].mean(1), rtol=1e-4)
    flat = ResponseModel(n_features=16, voxel_fraction=0.0)
    steep = ResponseModel(n_features=16, voxel_fraction=0.0, feature_spectrum=2.0)
    share = []
    for m in (flat, steep):
        mu = neighbour_corr(m)[1]["mu"].astype(np.float64)
        mu = mu - mu.mean(1, keepdims=True)
        sv = np.linalg.svd(mu, compute_uv=False) ** 2
        share.append(sv[0] / sv.sum())
    assert share[1] > share[0] + 0.2, share
    anat = subject_anatomy(p, 0, 1)
    noisy = build_run(
        p,
        anat,
        np.array([10.0]),
        t_default["betas"][:, :1],
        seed=0,
        subject=1,
        session=1,
        run=1,
        motion=False,
        response=REGIMES["strong"],
    )
    assert np.allclose(noisy.noise_sd, 4.5 * p.noise_sigma * anat.gfactor, rtol=1e-6)


def test_response_regime_is_recorded_and_checked(tmp_path: Path) -> None:
    """A non-default regime is recorded in the parameters; the truth image means equal the
    expected betas (their SD over images is the truth S map, ddof 0); adding a subject with
    another model or an unknown regime is refused."""
    from echoprep.cli import main as cli_main
    from echoprep.simulate.response import REGIMES

    root = simulate_dataset(tmp_path / "v", "tiny", seed=0, runs=1, response="voxel")
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["echoprepSimulation"]["response"] == REGIMES["voxel"].as_dict()
    tp = truth_paths(root, "01")
    means = nib.load(tp["image_means"]).get_fdata()
    s_map = nib.load(tp["s"]).get_fdata()
    active = nib.load(tp["active_mask"]).get_fdata() > 0
    images = pd.read_csv(tp["images"], sep="\t")
    assert means.shape[-1] == len(images) and images["volume_index"].tolist() == list(
        range(len(images))
    )
    assert np.allclose(means[active].std(axis=1), s_map[active], rtol=1e-4)
    assert np.all(means[~active] == 0)
    side = json.loads(sidecar_path(tp["image_means"]).read_text())
    assert side["ResponseModel"]["name"] == "voxel"
    with pytest.raises(ValueError, match="response model"):
        simulate_dataset(root, "tiny", seed=0, runs=1, subject_offset=1)
    with pytest.raises(ValueError, match="unknown response regime"):
        simulate_dataset(tmp_path / "x", "tiny", response="nope")
    assert cli_main(["simulate", str(tmp_path / "y"), "--response", "nope"]) == 2
