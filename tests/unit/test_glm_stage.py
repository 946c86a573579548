"""GLM stage on the simulator's tiny dataset: outputs, names, trials table, sidecars, known
answers against the truth, pinned bad-input errors, and the upstream-engine adapter."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.adapters import glmsingle as glm_upstream
from echoprep.io.bids_uri import raw_root
from echoprep.io.events import MIN_RESPONSE_S, read_trials
from echoprep.io.images import StageInputError, float_image
from echoprep.io.outputs import paths_in
from echoprep.options import OptionsError, option_names, options_dict, section_defaults
from echoprep.simulate import simulate_dataset
from echoprep.stages.glm import (
    DEFAULT_OUTPUTS,
    ENGINE_OPTIONS,
    OUTPUTS,
    STAGE_SETTINGS,
    GlmOptions,
    parse_glm_options,
    run_glm,
    session_key,
)

SES = "sub-01_ses-01_task-images"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny preset (1 subject, 2 runs x 90 volumes, 46 images x 2), about 2 s."""
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "bids", "tiny", seed=0)


def _inputs(root: Path) -> tuple[list[Path], list[Path]]:
    func = root / "sub-01" / "ses-01" / "func"
    bold = [func / f"{SES}_run-0{r}_echo-2_part-mag_bold.nii.gz" for r in (1, 2)]
    events = [func / f"{SES}_run-0{r}_events.tsv" for r in (1, 2)]
    return bold, events


def _truth(root: Path, name: str) -> Path:
    return root / "derivatives" / "truth" / "sub-01" / "ses-01" / "func" / f"{SES}_{name}"


@pytest.fixture(scope="module")
def fitted(tiny, tmp_path_factory) -> dict[str, Path]:
    """One fit of the tiny session (echo 2, T1w-space names), shared by the output tests."""
    out = tmp_path_factory.mktemp("glm") / "glmsingle-raw-single"
    bold, events = _inputs(tiny)
    paths = paths_in(
        out, "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS, space="T1w"
    )
    return run_glm(bold, events, paths, space="T1w", run_labels=["01", "02"], session="01", seed=0)


def test_output_names_mirror_laion(tmp_path: Path) -> None:
    paths = paths_in(
        tmp_path, "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS, space="T1w"
    )
    folder = tmp_path / "sub-01" / "ses-01" / "func"
    assert {k: p.relative_to(folder).as_posix() for k, p in paths.items()} == {
        "betas": f"{SES}_space-T1w_stat-effect_desc-SingletrialBetas_statmap.nii.gz",
        "trials": f"{SES}_desc-SingletrialBetas_trials.tsv",
        "r2": f"{SES}_space-T1w_stat-rsquare_desc-R2_statmap.nii.gz",
        "onoff_r2": f"{SES}_space-T1w_stat-rsquare_desc-OnoffR2_statmap.nii.gz",
        "hrfindex": f"{SES}_space-T1w_desc-HRFindex_dseg.nii.gz",
        "fracridge": f"{SES}_space-T1w_desc-Fracridge_statmap.nii.gz",
        "mask": f"{SES}_space-T1w_desc-GLMsingle_mask.nii.gz",
        "summary": f"{SES}_desc-GLMsingle_summary.json",
    }
    native = paths_in(tmp_path, "glm", session_key("01", None, "images"), keys=["betas", "model"])
    assert native["betas"] == tmp_path / "sub-01" / "func" / (
        "sub-01_task-images_stat-effect_desc-SingletrialBetas_statmap.nii.gz"
    )
    assert native["model"].name == "sub-01_task-images_desc-GLMsingle_model.h5"
    assert set(DEFAULT_OUTPUTS) == set(OUTPUTS) - {"model", "betas_typeb"}
    typeb = paths_in(
        tmp_path, "glm", session_key("01", "01", "images"), space="T1w", keys=["betas_typeb"]
    )
    assert typeb["betas_typeb"] == folder / (
        f"{SES}_space-T1w_stat-effect_desc-SingletrialBetasTypeB_statmap.nii.gz"
    )


def test_outputs_trials_and_sidecars(tiny, fitted) -> None:
    betas = nib.load(fitted["betas"])
    mask = nib.load(fitted["mask"]).get_fdata() > 0
    ref = nib.load(_inputs(tiny)[0][0])
    assert betas.shape == (*ref.shape[:3], 92) and np.allclose(betas.affine, ref.affine)
    data = betas.get_fdata()
    assert np.all(data[~mask] == 0) and np.isfinite(data).all()
    # trials.tsv: the image trials of both runs (blanks out), chronological, 0-based indices
    trials = read_trials(fitted["trials"])
    assert list(trials.columns[:5]) == ["session", "run", "beta_index", "label", "onset"]
    assert trials["beta_index"].tolist() == list(range(92))
    assert set(trials["session"]) == {"01"} and trials["run"].tolist() == ["01"] * 46 + ["02"] * 46
    truth = pd.read_csv(_truth(tiny, "desc-truth_trials.tsv"), sep="\t", dtype={"label": str})
    assert trials["label"].tolist() == truth["label"].tolist()
    assert np.allclose(trials["onset"], truth["onset"])
    for r in ("01", "02"):
        assert trials.loc[trials["run"] == r, "onset"].is_monotonic_increasing
    hrf = nib.load(fitted["hrfindex"])
    assert np.issubdtype(hrf.get_data_dtype(), np.integer)
    h = np.asarray(hrf.dataobj)
    assert h.min() >= 0 and h.max() <= 19
    frac = nib.load(fitted["fracridge"]).get_fdata()
    assert np.all((frac[mask] > 0) & (frac[mask] <= 1)) and np.all(frac[~mask] == 0)
    r2 = nib.load(fitted["r2"]).get_fdata()
    assert np.nanmax(r2[mask]) > 10  # active voxels are explained
    summary = json.loads(fitted["summary"].read_text())
    assert summary["ModelType"] == "FITHRF_GLMDENOISE_RR" and summary["Engine"] == "echoprep"
    assert summary["Device"] == "cpu (NumPy)" and summary["Options"]["device"] == "cpu"
    assert summary["NumberOfTrials"] == 92 and summary["NumberOfConditions"] == 46
    assert [r["run"] for r in summary["RunsUsed"]] == ["01", "02"]
    assert isinstance(summary["pcnum"], int) and summary["Options"]["wantfracridge"] == 1
    assert set(summary["Timings_s"]) == {"load_s", "fit_s", "write_s"}
    assert summary["MaskSource"] == "brainthresh" and summary["VoxelsFitted"] == int(mask.sum())
    for key in ("betas", "r2", "hrfindex", "fracridge", "mask", "onoff_r2"):
        side = json.loads(Path(str(fitted[key]).replace(".nii.gz", ".json")).read_text())
        assert side["Space"] == "T1w" and len(side["Sources"]) == 4
        assert "echoprep" in side["SoftwareVersions"] and side["Device"] == "cpu (NumPy)"
    side = json.loads(Path(str(fitted["betas"]).replace(".nii.gz", ".json")).read_text())
    assert side["Units"].startswith("% BOLD") and side["NumberOfTrials"] == 92
    side = json.loads(fitted["trials"].with_suffix(".json").read_text())
    raw = [f"bids:raw:{e.relative_to(raw_root(e)).as_posix()}" for e in _inputs(tiny)[1]]
    assert side["beta_index"] and side["Sources"] == raw  # BIDS URIs
    assert side["Parameters"]["label_column"] and side["Parameters"]["run_labels"] == ["01", "02"]
    assert "echoprep" in side["SoftwareVersions"]


def test_type_d_betas_correlate_with_the_true_betas(tiny, fitted) -> None:
    active = nib.load(_truth(tiny, "desc-truthActive_mask.nii.gz")).get_fdata() > 0
    true = nib.load(_truth(tiny, "stat-effect_desc-truthBetas_statmap.nii.gz")).get_fdata()
    est = nib.load(fitted["betas"]).get_fdata()[active]
    true = true[active]
    tc = true - true.mean(1, keepdims=True)
    ec = est - est.mean(1, keepdims=True)
    r = (tc * ec).sum(1) / np.sqrt((tc**2).sum(1) * (ec**2).sum(1))
    # measured 0.33 (echo 2 alone, 2 repeats; the truth noise ceiling of the tiny preset is low)
    assert np.median(r) > 0.25
    # and the brainthresh mask covers the active voxels
    assert np.all(nib.load(fitted["mask"]).get_fdata()[active] > 0)


def test_given_brain_mask_limits_the_fit(tiny, tmp_path: Path) -> None:
    bold, events = _inputs(tiny)
    mask = _truth(tiny, "desc-truthActive_mask.nii.gz")
    paths = paths_in(
        tmp_path,
        "glm",
        session_key("01", "01", "images"),
        keys=["betas", "trials", "summary", "mask"],
    )
    run_glm(bold, events, paths, mask=mask, options={"n_pcs": 2})
    fitted = nib.load(paths["mask"]).get_fdata() > 0
    assert np.array_equal(fitted, nib.load(mask).get_fdata() > 0)
    summary = json.loads(paths["summary"].read_text())
    assert summary["MaskSource"] == str(mask) and summary["Options"]["n_pcs"] == 2


# ---------------------------------------------------------------------------------------------
# bad input


def _copy_run(src: Path, dst: Path, edit) -> Path:
    img = nib.load(src)
    nib.save(float_image(edit(img.get_fdata(dtype=np.float32)), img), dst)
    side = src.with_name(src.name.replace(".nii.gz", ".json"))
    dst.with_name(dst.name.replace(".nii.gz", ".json")).write_text(side.read_text())
    return dst


def _outputs(tmp_path: Path) -> dict[str, Path]:
    return paths_in(
        tmp_path / "out", "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS
    )


def test_nans_name_the_run_and_voxel_count(tiny, tmp_path: Path) -> None:
    bold, events = _inputs(tiny)

    def poke(d):
        d[10, 12, 9, 5] = np.nan
        d[11, 12, 9, :] = np.nan
        d[10, 13, 9, 7] = np.inf
        return d

    bad = _copy_run(bold[1], tmp_path / "run2.nii.gz", poke)
    with pytest.raises(StageInputError, match=r"NaN or Inf in run 02 \(.*run2.nii.gz\): 3 voxels"):
        run_glm([bold[0], bad], events, _outputs(tmp_path), run_labels=["01", "02"])
    out = _outputs(tmp_path)
    run_glm([bold[0], bad], events, out, run_labels=["01", "02"], options={"nan_policy": "exclude"})
    summary = json.loads(out["summary"].read_text())
    assert summary["NonfiniteVoxelsExcluded"] == 3
    assert nib.load(out["mask"]).get_fdata()[10, 12, 9] == 0


def test_constant_voxels_are_left_out_of_the_fit_and_reported(
    tiny, fitted, tmp_path: Path, caplog
) -> None:
    """A block of voxels all 0 in run 02 only (as outside tedana's mask of that run): legal data,
    left out of the fit (not an error under the default NaN policy), warned and recorded."""
    bold, events = _inputs(tiny)
    brain = nib.load(fitted["mask"]).get_fdata() > 0
    # a 3x3x1 block in the middle of the brain, every voxel of it fitted before
    centre = np.round(np.argwhere(brain).mean(0)).astype(int)
    block = (slice(centre[0] - 1, centre[0] + 2), slice(centre[1] - 1, centre[1] + 2), centre[2])
    assert brain[block].all()

    def zero(d):
        d[block] = 0.0
        return d

    zeroed = _copy_run(bold[1], tmp_path / "run2.nii.gz", zero)
    out = _outputs(tmp_path)
    with caplog.at_level("WARNING", logger="echoprep.stages.glm"):
        run_glm(
            [bold[0], zeroed],
            events,
            out,
            mask=fitted["mask"],
            run_labels=["01", "02"],
            options={"n_pcs": 1},
        )
    assert (
        "leaving 9 voxels out of the fit: their series is constant (e.g. all 0, outside another "
        "tool's mask) in some run (run 02: 9); they have no data there"
    ) in caplog.text
    expected = brain.copy()
    expected[block] = False
    assert np.array_equal(nib.load(out["mask"]).get_fdata() > 0, expected)
    assert np.all(nib.load(out["betas"]).get_fdata()[block] == 0)
    summary = json.loads(out["summary"].read_text())
    assert summary["ConstantVoxelsExcluded"] == 9
    assert summary["ConstantVoxelsByRun"] == {"01": 0, "02": 9}
    assert summary["NonfiniteVoxelsExcluded"] == 0
    assert summary["VoxelsFitted"] == int(brain.sum()) - 9
    side = json.loads(Path(str(out["mask"]).replace(".nii.gz", ".json")).read_text())
    assert side["ConstantVoxelsByRun"] == {"01": 0, "02": 9}


def test_type_b_reference_betas(tiny, tmp_path: Path) -> None:
    """``--stop-at typeb`` (no GLMdenoise, no ridge) gives the type-B betas of the full fit,
    one volume per trial in the trials table's order; type D's ridge shrinks them."""
    from echoprep.cli import main

    bold, events = _inputs(tiny)
    key = session_key("01", "01", "images")
    full = paths_in(
        tmp_path / "full", "glm", key, keys=["betas", "betas_typeb", "trials", "summary", "mask"]
    )
    run_glm(bold, events, full, run_labels=["01", "02"], options={"n_pcs": 2})
    ref = paths_in(tmp_path / "ref", "glm", key, keys=["betas_typeb"])["betas_typeb"]
    argv = ["glm", "--bold", *map(str, bold), "--events", *map(str, events)]
    argv += ["--run-labels", "01", "02", "--mask", str(full["mask"]), "--stop-at", "typeb"]
    argv += ["--options-json", json.dumps({"n_pcs": 2}), "--out", f"betas_typeb={ref}"]
    assert main(argv) == 0
    assert sorted(p.name for p in ref.parent.iterdir()) == sorted(
        [ref.name, ref.name.replace(".nii.gz", ".json")]
    )
    mask = nib.load(full["mask"]).get_fdata() > 0
    b = nib.load(ref).get_fdata()
    assert b.shape[3] == len(read_trials(full["trials"])) == 92
    assert np.all(b[~mask] == 0)
    assert np.allclose(b[mask], nib.load(full["betas_typeb"]).get_fdata()[mask], atol=1e-4)
    d = nib.load(full["betas"]).get_fdata()[mask]
    shrink = np.linalg.norm(d, axis=1) / np.linalg.norm(b[mask], axis=1)
    assert np.median(shrink) < 0.95
    side = json.loads(Path(str(ref).replace(".nii.gz", ".json")).read_text())
    assert side["ModelType"] == "FITHRF" and side["NumberOfTrials"] == 92
    assert side["Parameters"]["wantglmdenoise"] == 0 and side["Parameters"]["wantfracridge"] == 0
    assert "no GLMdenoise PCs, no ridge" in side["Description"]
    # known answer: type-B betas follow the true single-trial betas in the active voxels
    active = nib.load(_truth(tiny, "desc-truthActive_mask.nii.gz")).get_fdata() > 0
    true = nib.load(_truth(tiny, "stat-effect_desc-truthBetas_statmap.nii.gz")).get_fdata()[active]
    est = b[active]
    tc = true - true.mean(1, keepdims=True)
    ec = est - est.mean(1, keepdims=True)
    r = (tc * ec).sum(1) / np.sqrt((tc**2).sum(1) * (ec**2).sum(1))
    # measured 0.18 (type D of the same fit: 0.33; single trials without ridge are noisier)
    assert np.median(r) > 0.12


def test_a_run_stopped_early_is_fitted_without_its_late_trials(
    tiny, tmp_path: Path, caplog
) -> None:
    """Run 2 cut to 40 of its 90 volumes (legal: a scan stopped before its events ended): the
    GLM fits it, its trials with less than MIN_RESPONSE_S of data after their onset are left
    out of the design and the trial table, the betas of the trials kept are of the session's
    usual size, and the job's log names the run, both files and both lengths."""
    bold, events = _inputs(tiny)
    short = _copy_run(bold[1], tmp_path / "short.nii.gz", lambda d: d[..., :40])
    blanks = section_defaults("glm")["blank_trial_types"]
    onsets = [
        t.loc[~t["trial_type"].isin(blanks), "onset"].to_numpy()
        for t in (pd.read_csv(e, sep="\t") for e in events)
    ]
    after = (40 - 1 - np.floor(onsets[1] / 1.9 + 0.5)) * 1.9  # data after each onset, s
    kept_run2 = int((after >= MIN_RESPONSE_S).sum())
    assert 0 < kept_run2 < len(onsets[1])
    with caplog.at_level("WARNING"):
        out = run_glm([bold[0], short], events, _outputs(tmp_path), run_labels=["01", "02"])
    trials = read_trials(out["trials"])
    assert (trials["run"].astype(str) == "01").sum() == len(onsets[0])
    assert (trials["run"].astype(str) == "02").sum() == kept_run2
    betas = nib.load(out["betas"]).get_fdata()
    assert betas.shape[3] == len(trials)
    size = np.abs(betas).reshape(-1, betas.shape[3]).max(0)  # each trial's largest |beta|
    # measured: 1.3e3-2.7e3 for every kept trial; 4.7e5 and 1.6e8 for the two trials 3.8 s and
    # 1.9 s before the end when they were fitted
    assert size.max() < 10 * np.median(size)
    msg = caplog.text
    assert "run 02:" in msg and str(events[1]) in msg and str(short) in msg
    assert "40 volumes x 1.9 s = 76 s" in msg and "left out of the design" in msg
    # the engine's warning of a short end names the run by its label, with its seconds
    end = after[after >= MIN_RESPONSE_S].min()
    assert end < 8.0
    assert f"run-02 ({round(end, 1):g} s): less than 8 s of data after the run's last onset" in msg
    assert "run-01 (" not in msg


def test_events_without_durations_are_fitted_as_brief_events_with_a_warning(
    tiny, tmp_path: Path, caplog
) -> None:
    """BIDS allows ``duration`` n/a: the fit models the trials as brief events (stimdur 0)
    and says so in its log and its summary's Warnings, with the setting that fixes it."""
    bold, events = _inputs(tiny)
    without = []
    for e in events:
        table = pd.read_csv(e, sep="\t")
        table["duration"] = "n/a"
        without.append(tmp_path / e.name)
        table.to_csv(without[-1], sep="\t", index=False)
    with caplog.at_level("WARNING"):
        out = run_glm(bold, without, _outputs(tmp_path), run_labels=["01", "02"])
    summary = json.loads(Path(out["summary"]).read_text())
    (note,) = [w for w in summary["Warnings"] if "no trial durations" in w]
    assert note.startswith("no trial durations in the events (duration n/a or no duration")
    assert "set glm.stimdur to the stimulus duration in s" in note and note in caplog.text
    assert summary["StimulusDuration_s"] == 0.0


def test_overlapping_onsets_are_refused(tiny, tmp_path: Path) -> None:
    bold, events = _inputs(tiny)
    table = pd.read_csv(events[0], sep="\t")
    table["onset"] = table["onset"].astype(float)
    table.loc[1, "onset"] = table.loc[0, "onset"] + 0.5  # starts in the same volume
    clash = tmp_path / "clash_events.tsv"
    table.to_csv(clash, sep="\t", index=False)
    with pytest.raises(StageInputError, match=r"expected at most one trial per volume") as err:
        run_glm(bold, [clash, events[1]], _outputs(tmp_path))
    assert str(clash) in str(err.value)


def _run_unique_events(events: list[Path], tmp_path: Path) -> list[Path]:
    """Each run's images renamed so that no condition occurs in more than one run."""
    out = []
    for r, path in enumerate(events, start=1):
        table = pd.read_csv(path, sep="\t", keep_default_na=False)
        images = table["trial_type"] != "blank"
        table.loc[images, "stim_name"] = f"r{r}-" + table.loc[images, "stim_name"].astype(str)
        dst = tmp_path / f"unique_run{r}_events.tsv"
        table.to_csv(dst, sep="\t", index=False)
        out.append(dst)
    return out


def test_conditions_without_repeats_across_runs(tiny, tmp_path: Path, caplog) -> None:
    """GLMsingle semantics (docs/glm.md §10): types C and D are switched off (betas of type B)
    unless pcstop <= 0 and fracs is a single value."""
    bold, _ = _inputs(tiny)
    events = _run_unique_events(_inputs(tiny)[1], tmp_path)
    out = _outputs(tmp_path)
    with caplog.at_level("WARNING"):
        run_glm(bold, events, out, options={"n_pcs": 2})
    summary = json.loads(out["summary"].read_text())
    assert summary["ModelType"] == "FITHRF" and summary["ConditionsInSeveralRuns"] == 0
    assert any("no condition occurs in more than one run" in w for w in summary["Warnings"])
    assert "type D was not computed" in caplog.text
    assert np.all(
        nib.load(out["fracridge"]).get_fdata()[nib.load(out["mask"]).get_fdata() > 0] == 1
    )
    out2 = paths_in(
        tmp_path / "fixed", "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS
    )
    run_glm(bold, events, out2, options={"n_pcs": 2, "pcstop": -1, "fracs": 0.5})
    summary = json.loads(out2["summary"].read_text())
    assert summary["ModelType"] == "FITHRF_GLMDENOISE_RR" and summary["pcnum"] == 1


def test_hdf5_without_h5py_says_how_to_fix(tiny, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    bold, events = _inputs(tiny)
    out = paths_in(
        tmp_path, "glm", session_key("01", "01", "images"), keys=[*DEFAULT_OUTPUTS, "model"]
    )
    with pytest.raises(StageInputError, match=r"needs the optional package h5py.*glm.hdf5: false"):
        run_glm(bold, events, out, options={"hdf5": True, "n_pcs": 1})


def test_unknown_engine_is_refused(tiny, tmp_path: Path) -> None:
    bold, events = _inputs(tiny)
    with pytest.raises(
        OptionsError, match=r"glm.engine: 'spm' is not one of \['echoprep', 'glmsingle'\]"
    ):
        run_glm(bold, events, _outputs(tmp_path), options={"engine": "spm"})


def test_unknown_options_are_refused_not_ignored(tiny, tmp_path: Path) -> None:
    bold, events = _inputs(tiny)
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['numpcstotry'\]") as err:
        run_glm(bold, events, _outputs(tmp_path), options={"numpcstotry": 3, "n_pcs": -1})
    assert "glm.n_pcs" in str(err.value)  # every problem at once
    assert not (tmp_path / "out").exists()


def test_options_come_from_the_schema_section() -> None:
    """One frozen object with the glm section's keys; engine options plus stage settings plus
    the workflow's own key cover the section; defaults are the schema's."""
    assert {f for f in GlmOptions.__dataclass_fields__} == set(option_names("glm"))
    assert set(ENGINE_OPTIONS) | set(STAGE_SETTINGS) | {"all_sessions_variants"} == set(
        option_names("glm")
    )
    opts = parse_glm_options({"fracs": [1, 0.5], "n_pcs": 2})
    defaults = section_defaults("glm")
    assert opts.fracs == (1, 0.5) and opts.n_pcs == 2
    assert list(opts.blank_trial_types) == defaults["blank_trial_types"]
    assert options_dict(opts)["fracs"] == [1, 0.5]
    assert parse_glm_options(opts) is opts


# ---------------------------------------------------------------------------------------------
# upstream adapter


def test_upstream_engine_missing_names_the_fix(tiny, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "glmsingle", None)
    monkeypatch.setitem(sys.modules, "glmsingle.glmsingle", None)
    bold, events = _inputs(tiny)
    fix = r"envs/glmsingle.yaml.*pip install 'glmsingle @ git\+https://github.com/cvnlab/"
    with pytest.raises(ImportError, match=fix + r".*glm.engine: echoprep"):
        run_glm(bold, events, _outputs(tmp_path), options={"engine": "glmsingle"})


def _fake_glmsingle(monkeypatch, calls: dict) -> None:
    class GLM_single:
        def __init__(self, params):
            calls["params"] = params

        def fit(self, design, data, stimdur, tr, outputdir=None, figuredir=None):
            print("*** FITTING TYPE-D MODEL (GLMDENOISE_RR) ***")  # upstream's progress text
            calls.update(
                design=design,
                data=data,
                stimdur=stimdur,
                tr=tr,
                outputdir=outputdir,
                figuredir=figuredir,
                cwd=os.getcwd(),
            )
            v = data[0].shape[0]
            n = int(sum(d.sum() for d in design))
            betas = np.arange(v * n, dtype=np.float32).reshape(v, 1, 1, n) / (v * n)
            return {
                "typea": {"onoffR2": np.full((v, 1, 1), 3.0), "meanvol": np.ones((v, 1, 1))},
                "typeb": {"betasmd": np.zeros((v, 1, 1, n)), "R2": np.zeros((v, 1, 1))},
                "typed": {
                    "betasmd": betas,
                    "R2": np.full((v, 1, 1), 7.0),
                    "HRFindex": np.full((v, 1, 1), 4),
                    "FRACvalue": np.full((v, 1, 1), 0.35),
                    "pcnum": 2,
                    "pcregressors": [np.zeros((90, 11)), np.zeros((90, 11))],
                },
            }

    pkg = types.ModuleType("glmsingle")
    mod = types.ModuleType("glmsingle.glmsingle")
    mod.GLM_single = GLM_single
    pkg.glmsingle = mod
    monkeypatch.setitem(sys.modules, "glmsingle", pkg)
    monkeypatch.setitem(sys.modules, "glmsingle.glmsingle", mod)


def test_upstream_adapter_call_and_output_mapping(
    tiny, tmp_path: Path, monkeypatch, capsys
) -> None:
    calls: dict = {}
    _fake_glmsingle(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)
    bold, events = _inputs(tiny)
    out = _outputs(tmp_path)
    options = {"engine": "glmsingle", "fracs": [1, 0.5], "xvalscheme": [[0], [1]], "n_pcs": 3}
    run_glm(bold, events, out, options=options, run_labels=["01", "02"])
    params = calls["params"]
    assert params["wantfileoutputs"] == [0, 0, 0, 0] and params["wantmemoryoutputs"] == [1] * 4
    assert isinstance(params["fracs"], np.ndarray) and params["n_pcs"] == 3
    assert all(isinstance(f, np.ndarray) for f in params["xvalscheme"])
    assert "seed" not in params and "engine" not in params and "chunklen" in params
    assert calls["stimdur"] == 2.5 and calls["tr"] == 1.9 and calls["figuredir"] is None
    assert [d.shape for d in calls["design"]] == [(90, 46), (90, 46)]
    assert calls["data"][0].ndim == 2 and calls["data"][0].dtype == np.float32
    # upstream ran in a private folder that is gone; nothing was left in the working directory
    assert calls["cwd"] != str(tmp_path) and not Path(calls["cwd"]).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # its progress text went to stderr (the job's log), not to the workflow's console
    printed = capsys.readouterr()
    assert "FITTING TYPE-D" in printed.err and "FITTING TYPE-D" not in printed.out
    mask = nib.load(out["mask"]).get_fdata() > 0
    v = int(mask.sum())
    betas = nib.load(out["betas"]).get_fdata()
    assert betas.shape[3] == 92
    assert np.allclose(betas[mask], np.arange(v * 92).reshape(v, 92) / (v * 92), atol=1e-6)
    assert np.all(nib.load(out["hrfindex"]).get_fdata()[mask] == 4)
    assert np.allclose(nib.load(out["fracridge"]).get_fdata()[mask], 0.35)
    assert np.allclose(nib.load(out["onoff_r2"]).get_fdata()[mask], 3.0)
    summary = json.loads(out["summary"].read_text())
    assert summary["Engine"] == "glmsingle" and summary["pcnum"] == 2
    assert summary["ModelType"] == "FITHRF_GLMDENOISE_RR"


def test_upstream_params_translation() -> None:
    p = glm_upstream.upstream_params(
        {"brainR2": None, "pcstop": -2, "brainthresh": [99, 0.1], "n_threads": 2}
    )
    assert "brainR2" not in p and p["pcstop"] == -2 and p["brainthresh"] == [99.0, 0.1]
    assert "n_threads" not in p
    mapped = glm_upstream.map_results(
        {"typed": {"R2": np.zeros((5, 1, 1)), "betasmd": np.zeros((5, 1, 1, 3)), "pcnum": 1}}, 5
    )
    assert mapped["typed"]["R2"].shape == (5,) and mapped["typed"]["betasmd"].shape == (5, 3)
    assert mapped["typed"]["pcnum"] == 1


def test_cli_runs_the_stage(tiny, tmp_path: Path) -> None:
    from echoprep.cli import main

    bold, events = _inputs(tiny)
    out = _outputs(tmp_path)
    argv = ["glm", "--bold", *map(str, bold), "--events", *map(str, events)]
    argv += ["--run-labels", "01", "02", "--session", "01", "--space", "T1w"]
    argv += ["--options-json", json.dumps({"n_pcs": 1, "all_sessions_variants": []})]
    argv += ["--out", *(f"{k}={v}" for k, v in out.items())]
    assert main(argv) == 0
    assert read_trials(out["trials"])["session"].iloc[0] == "01"
    assert json.loads(out["summary"].read_text())["Space"] == "T1w"
