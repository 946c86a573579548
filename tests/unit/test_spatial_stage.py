"""Spatial stage (echoprep.stages.spatial) against the simulator's ground truth.

Two simulated datasets, each processed once per module:

- ``tiny`` (8 mm, motion, distortion, fieldmaps; ~5 s): fieldmap correction, the echoes' shared
  transform chain and one interpolation, file layout, errors;
- ``demo`` reduced to 1 subject x 2 runs (4 mm, motion, distortion, fieldmaps; ~40 s): the
  accuracy targets of issue 6 (motion <= 0.2 mm / 0.2 deg, BOLD->T1w <= 1 mm RMS over the
  brain, run 2 aligned to run 1). At tiny's 8 mm voxels rotations are recovered to
  0.15-0.16 deg and BOLD->T1w to 1.1-1.2 mm, so the targets are checked at 4 mm (measured
  there: 0.036-0.077 mm, 0.026-0.036 deg, 0.21-0.28 mm).

The BOLD->T1w registration is given the raw T1w and the truth brain mask (the anatomy stage has
its own tests), so the registration is what is measured.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.bids import discover
from echoprep.io.images import StageInputError
from echoprep.io.outputs import path_in, paths_in, run_key, subject_key
from echoprep.io.paths import sidecar_path
from echoprep.kernels.geometry.transforms import apply_matrix, rigid_matrix, rigid_params
from echoprep.options import OptionsError, section_defaults
from echoprep.simulate import simulate_dataset, truth_paths
from echoprep.stages import spatial

MOTION_COLUMNS = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def _fieldmap_desc(run) -> dict | None:
    return None if run.fieldmap is None else run.fieldmap.as_spec()


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _process(bids: Path, out: Path, *, resample_runs: int = 0) -> dict:
    """Geometry of every run, the subject grid, and the echoes of the first runs resampled."""
    ds = discover(bids, cache_dir=out / "index")
    runs = ds.runs
    geo = []
    for i, run in enumerate(runs):
        paths = paths_in(out / "spatial", "spatial", run_key(run.entities))
        spatial.run_geometry(
            run.echoes[1].mag,
            paths,
            repetition_time=run.repetition_time,
            slice_timing=run.slice_timing,
            fieldmap=_fieldmap_desc(run),
            pe_direction=run.pe_direction,
            readout_time=run.total_readout_time,
            reference_boldref=None if i == 0 else geo[0]["boldref"],
            n_threads=2,
        )
        geo.append(paths)
    tp = truth_paths(bids, "01")
    subject = paths_in(out / "spatial", "spatial_subject", subject_key("01"))
    spatial.subject_grid(geo[0]["boldref"], ds.t1w["01"], tp["T1w_brain_mask"], subject)
    echoes = []
    for i in range(resample_runs):
        run = runs[i]
        key = run_key(run.entities)
        outs = [
            path_in(out / "preproc-raw", "preproc.bold", key, space="T1w", echo=e.echo)
            for e in run.echoes
        ]
        spatial.resample_run(
            [e.mag for e in run.echoes],
            geo[i]["xfm"],
            subject["boldref"],
            outs,
            ref_xfm_file=subject["xfm"],
            echo_times=run.echo_times,
            n_threads=2,
        )
        echoes.append(outs)
    return {"ds": ds, "runs": runs, "geo": geo, "subject": subject, "truth": tp, "echoes": echoes}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("spatial_tiny")
    bids = simulate_dataset(base / "bids", "tiny", seed=0, motion=True, fieldmap=True)
    before = _tree(bids)
    res = _process(bids, base / "out", resample_runs=1)
    res.update(bids=bids, base=base, before=before)
    return res


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("spatial_demo")
    bids = simulate_dataset(base / "bids", "demo", seed=0, subjects=1, runs=2, motion=True)
    res = _process(bids, base / "out")
    res.update(bids=bids, base=base)
    return res


def _truth_motion(path: Path, center: np.ndarray) -> np.ndarray:
    table = pd.read_csv(path, sep="\t")
    return rigid_matrix(table[MOTION_COLUMNS].to_numpy(), center)


# ---------------------------------------------------------------------------------------------
# accuracy (demo geometry, 4 mm)


def test_motion_recovered_within_0p2_mm_and_deg(demo):
    for i, run in enumerate(demo["runs"]):
        g = spatial.load_geometry(demo["geo"][i]["xfm"])
        c = g["center"]
        truth = _truth_motion(demo["truth"]["motion"][i], c)
        est = g["vol_from_ref"]
        # volume-to-volume motion: independent of the reference position
        e = rigid_params(est @ np.linalg.inv(est[0]), c)[1:]
        t = rigid_params(truth @ np.linalg.inv(truth[0]), c)[1:]
        err = np.abs(e - t)
        assert err[:, :3].mean() <= 0.2, (run.run, err[:, :3].mean())
        assert np.rad2deg(err[:, 3:]).mean() <= 0.2, (run.run, np.rad2deg(err[:, 3:]).mean())


def test_bold_to_t1w_rms_error_below_1mm_for_every_run(demo):
    """The whole map T1w world -> position in volume t (motion, run -> run 1, run 1 -> T1w)
    against the truth ``M_t inv(P)``, RMS over the truth T1w brain, averaged over volumes.
    Run 2 passes only if it is aligned to run 1."""
    tp = demo["truth"]
    pose = np.array(json.loads(tp["bold_to_T1w"].read_text())["Matrix"])
    mask = nib.load(tp["T1w_brain_mask"])
    pts = apply_matrix(mask.affine, np.argwhere(np.asarray(mask.dataobj) > 0))
    ref_from_t1w = np.loadtxt(demo["subject"]["xfm"])
    for i, run in enumerate(demo["runs"]):
        g = spatial.load_geometry(demo["geo"][i]["xfm"])
        truth = _truth_motion(tp["motion"][i], g["center"]) @ np.linalg.inv(pose)
        full = g["vol_from_ref"] @ g["run_from_ref"] @ ref_from_t1w
        rms = [
            np.sqrt(
                np.mean(np.sum((apply_matrix(full[k], pts) - apply_matrix(truth[k], pts)) ** 2, -1))
            )
            for k in range(0, len(full), 5)
        ]
        assert float(np.mean(rms)) <= 1.0, (run.run, np.mean(rms))
    assert not np.allclose(spatial.load_geometry(demo["geo"][1]["xfm"])["run_from_ref"], np.eye(4))


# ---------------------------------------------------------------------------------------------
# tiny: distortion, the chain, layout


def test_fieldmap_correction_reduces_distortion_error_by_70_percent(tiny):
    tp = tiny["truth"]
    true_vsm = np.asarray(nib.load(tp["vsm"]).dataobj, np.float64)
    brain = np.asarray(nib.load(tp["brain_mask"]).dataobj) > 0
    for geo in tiny["geo"]:
        vsm = spatial.load_geometry(geo["xfm"])["vsm"]
        assert vsm.shape == true_vsm.shape
        before = np.abs(true_vsm[brain]).mean()  # error without correction
        after = np.abs(vsm[brain] - true_vsm[brain]).mean()
        assert after <= 0.3 * before, (before, after)
        # the run's sidecar states the method (and, without a fieldmap, why none was applied)
        fmap = json.loads(sidecar_path(geo["confounds"]).read_text())["FieldmapCorrection"]
        assert (fmap["Applied"], fmap["Method"], fmap["Kind"]) == (
            True,
            "static fieldmap",
            "phasediff",
        )


def test_echoes_share_one_chain_and_are_interpolated_once(tiny):
    outs = tiny["echoes"][0]
    sidecars = [json.loads(sidecar_path(p).read_text()) for p in outs]
    digests = {s["Resampling"]["TransformChainDigest"] for s in sidecars}
    assert len(digests) == 1
    for s in sidecars:
        assert s["Resampling"]["InterpolationsPerVolume"] == 1
        assert s["Resampling"]["InterpolatedOnce"] is True
        assert s["Resampling"]["TransformChain"] == sidecars[0]["Resampling"]["TransformChain"]
        assert s["Resampling"]["TransformChain"]["SusceptibilityDistortionCorrection"] is True
    # verified on the chain itself: rebuilt from the run's files, it has the recorded digest
    geo = spatial.load_geometry(tiny["geo"][0]["xfm"])
    grid = nib.load(tiny["subject"]["boldref"])
    chain = spatial.build_chain(geo, grid.shape, grid.affine, np.loadtxt(tiny["subject"]["xfm"]))
    assert chain.digest == digests.pop()
    img = nib.load(outs[0])
    assert img.shape == (*grid.shape, chain.n_volumes)
    assert np.allclose(img.affine, grid.affine)
    assert img.header.get_zooms()[3] == pytest.approx(tiny["runs"][0].repetition_time)


def test_outputs_layout_confounds_and_sidecars(tiny):
    geo = tiny["geo"][0]
    name = "sub-01_ses-01_task-images_run-01"
    assert geo["confounds"].name == f"{name}_desc-confounds_timeseries.tsv"
    assert geo["confounds"].parent.as_posix().endswith("spatial/sub-01/ses-01/func")
    conf = pd.read_csv(geo["confounds"], sep="\t")
    # fMRIPrep's columns: each parameter with its derivative and squares, FD, the cosine basis
    expanded = [
        f"{m}{s}"
        for m in MOTION_COLUMNS
        for s in ("", "_derivative1", "_derivative1_power2", "_power2")
    ]
    assert list(conf.columns) == [*expanded, "framewise_displacement", "cosine00"]
    assert np.isnan(conf["rot_x_derivative1"][0])
    assert np.allclose(conf["trans_x_derivative1"][1:], np.diff(conf["trans_x"]), atol=1e-5)
    side = json.loads(sidecar_path(geo["confounds"]).read_text())
    assert side["trans_x_power2"]["Units"] == "mm^2" and side["cosine00"]["Units"] == "arbitrary"
    assert (
        np.isnan(conf["framewise_displacement"][0])
        and conf["framewise_displacement"][1:].ge(0).all()
    )
    assert "n/a" in geo["confounds"].read_text().splitlines()[1]
    sub = tiny["subject"]
    assert sub["boldref"].as_posix().endswith("spatial/sub-01/func/sub-01_space-T1w_boldref.nii.gz")
    assert sub["brain_mask"].name == "sub-01_space-T1w_desc-brain_mask.nii.gz"
    mask = nib.load(sub["brain_mask"])
    assert mask.shape == nib.load(sub["boldref"]).shape and np.asarray(mask.dataobj).sum() > 100
    for path in [*geo.values(), *sub.values(), *tiny["echoes"][0]]:
        side = json.loads(sidecar_path(path).read_text())
        assert side["Sources"] and "Parameters" in side and "echoprep" in side["SoftwareVersions"]
    echo = tiny["echoes"][0][1]
    assert echo.as_posix().endswith(
        "preproc-raw/sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_echo-2_space-T1w_"
        "desc-preproc_bold.nii.gz"
    )


def test_resampled_echo_matches_the_motion_free_truth_in_the_brain(tiny):
    """Echo 2 resampled into the T1w grid correlates with the truth S0·exp(-TE/T2*) there."""
    tp = tiny["truth"]
    s0 = nib.load(tp["S0"])
    t2 = np.asarray(nib.load(tp["T2star"]).dataobj, np.float64)
    te = tiny["runs"][0].echo_times[1]
    expected = np.asarray(s0.dataobj) * np.exp(-te / np.where(t2 > 0, t2, np.inf))
    pose = np.array(json.loads(tp["bold_to_T1w"].read_text())["Matrix"])
    out = nib.load(tiny["echoes"][0][1])
    mean = np.asarray(out.dataobj, np.float64).mean(-1)
    # truth on the output grid: output (T1w world) -> BOLD world -> truth voxel
    from scipy import ndimage

    ijk = np.indices(out.shape[:3]).reshape(3, -1).astype(float)
    q = np.linalg.inv(s0.affine) @ np.linalg.inv(pose) @ out.affine
    truth = ndimage.map_coordinates(expected, q[:3, :3] @ ijk + q[:3, 3:4], order=1)
    brain = np.asarray(nib.load(tiny["subject"]["brain_mask"]).dataobj).ravel() > 0
    r = np.corrcoef(mean.ravel()[brain], truth[brain])[0, 1]
    assert r > 0.8, r


def _subject_step_in_a_fresh_process(tiny, out: Path, itk_threads: str | None) -> dict:
    """``echoprep spatial subject`` (the rule's command) on tiny's reference run; the output
    files' bytes by key. ``itk_threads``: ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS in the job's
    environment (None: unset, ITK then uses every core)."""
    env = {k: v for k, v in os.environ.items() if k != "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"}
    if itk_threads is not None:
        env["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = itk_threads
    outs = paths_in(out, "spatial_subject", subject_key("01"))
    cmd = [
        sys.executable, "-m", "echoprep", "spatial", "subject",
        "--boldref", str(tiny["geo"][0]["boldref"]),
        "--t1w", str(tiny["ds"].t1w["01"]),
        "--mask", str(tiny["truth"]["T1w_brain_mask"]),
        "--seed", "0", "--threads", "2",
        "--out", *(f"{k}={v}" for k, v in outs.items()),
    ]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return {key: path.read_bytes() for key, path in outs.items()}


def test_bold_to_t1w_registration_is_reproducible_across_processes(tiny, tmp_path):
    """Same inputs and seed, two fresh processes: byte-identical matrix and images, also when
    the job's environment asks ITK for 4 threads (a cluster job's setting): the stage runs the
    registration on one ITK thread, because the Mattes metric is not reproducible on several
    (measured on tiny: 0.1 mm / 0.25 deg between two 4-thread runs with the same seed)."""
    a = _subject_step_in_a_fresh_process(tiny, tmp_path / "a", None)
    b = _subject_step_in_a_fresh_process(tiny, tmp_path / "b", "4")
    assert a.keys() == b.keys() == {"boldref", "brain_mask", "xfm"}
    for key in a:
        assert a[key] == b[key], f"{key} differs between two runs"
    xfm = np.loadtxt(path_in(tmp_path / "a", "spatial_subject.xfm", subject_key("01")))
    assert xfm.shape == (4, 4) and not np.allclose(xfm, np.eye(4))


def _named(text: str) -> dict:
    """A sidecar's JSON with every string that holds a ``/`` cut to its last part (a path or a
    BIDS URI to its file name)."""
    return json.loads(re.sub(r'"[^"]*/([^"/]*)"', r'"\1"', text))


def test_one_job_for_every_echo_writes_what_each_echo_alone_writes(tiny, tmp_path):
    """The workflow resamples every echo of a run in one job (one chain for all): an echo
    resampled alone gives the same image, header and sidecar."""
    run, subject = tiny["runs"][0], tiny["subject"]
    for k in (0, 2):
        out = tmp_path / f"echo{k}.nii.gz"
        spatial.resample_run(
            [run.echoes[k].mag], tiny["geo"][0]["xfm"], subject["boldref"], [out],
            ref_xfm_file=subject["xfm"], echo_times=[run.echo_times[k]], n_threads=2,
        )  # fmt: skip
        together = tiny["echoes"][0][k]
        a, b = nib.load(out), nib.load(together)
        assert a.header.binaryblock == b.header.binaryblock
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        # the same sidecar but for how it names files: paths (out lies in no dataset) or BIDS
        # URIs (together lies in a derivative folder); compared by file name
        alone, joint = (_named(sidecar_path(p).read_text()) for p in (out, together))
        assert alone == joint


def test_native_output_grid(tiny, tmp_path):
    run = tiny["runs"][1]
    grid = tiny["geo"][0]["boldref"]  # the reference run's native grid
    out = [tmp_path / "echo1.nii.gz"]
    (rec,) = spatial.resample_run([run.echoes[0].mag], tiny["geo"][1]["xfm"], grid, out)
    img = nib.load(out[0])
    assert img.shape[:3] == nib.load(grid).shape
    assert rec["TransformChain"]["RefFromOutput"] != np.eye(4).tolist()  # run 2 -> run 1


def test_input_dataset_untouched(tiny):
    assert _tree(tiny["bids"]) == tiny["before"]


# ---------------------------------------------------------------------------------------------
# errors


def _run_geometry(run, out: Path, **kw):
    base = {
        "repetition_time": run.repetition_time,
        "slice_timing": run.slice_timing,
        "fieldmap": _fieldmap_desc(run),
        "pe_direction": run.pe_direction,
        "readout_time": run.total_readout_time,
    }
    base.update(kw)
    paths = paths_in(out, "spatial", run_key(run.entities))
    return spatial.run_geometry(run.echoes[1].mag, paths, **base)


def test_error_fieldmap_shape_mismatch(tiny, tmp_path):
    run = tiny["runs"][0]
    mag = nib.load(run.fieldmap.magnitude)
    bad = tmp_path / "magnitude1.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(mag.dataobj)[:-2], mag.affine), bad)
    fm = {**_fieldmap_desc(run), "magnitude": str(bad)}
    with pytest.raises(StageInputError) as exc:
        _run_geometry(run, tmp_path, fieldmap=fm)
    msg = str(exc.value)
    assert msg.startswith(
        f"{bad}: expected a fieldmap magnitude image (of its phasediff) on the grid of "
        f"{run.fieldmap.image} (shape {nib.load(run.fieldmap.image).shape[:3]}"
    )
    assert f"found shape {nib.load(bad).shape[:3]}" in msg
    assert msg.endswith("Fix: pair the fieldmap images of the same acquisition.")


def test_error_missing_phase_encoding_metadata(tiny, tmp_path):
    run = tiny["runs"][0]
    with pytest.raises(StageInputError) as exc:
        _run_geometry(run, tmp_path, pe_direction=None)
    msg = str(exc.value)
    assert msg.startswith(f"{run.echoes[1].mag}: expected PhaseEncodingDirection and ")
    assert "found PhaseEncodingDirection=None, TotalReadoutTime=" in msg
    assert "set spatial.fieldmap: false" in msg


def test_a_run_without_slice_timing_is_not_corrected_unless_resampled_in_time(
    tiny, tmp_path, caplog
):
    """SliceTiming is recommended, not required, in BIDS: without it the run is processed
    uncorrected, with a warning naming it and the record saying so; only resampling in time
    (spatial.tr_out) needs it, and then the error names the file and both fixes."""
    run = tiny["runs"][0]
    with caplog.at_level(logging.WARNING, logger="echoprep.stages.spatial.series"):
        record = _run_geometry(run, tmp_path / "none", slice_timing=None, fieldmap=None)
    assert record["SliceTimingCorrected"] is False and "StartTime" not in record
    assert record["RepetitionTime"] == run.repetition_time
    assert f"{run.echoes[1].mag}: no SliceTiming in the BOLD sidecar" in caplog.text
    corrected = _run_geometry(run, tmp_path / "with", fieldmap=None)
    assert corrected["SliceTimingCorrected"] is True
    with pytest.raises(StageInputError) as exc:
        _run_geometry(
            run, tmp_path / "tr", slice_timing=None, fieldmap=None, options={"tr_out": 1.0}
        )
    assert str(exc.value) == (
        f"{run.echoes[1].mag}: expected SliceTiming in the BOLD sidecar to resample the series "
        "in time (spatial.tr_out: 1 s); found none. Fix: add SliceTiming (s, one per slice) or "
        "unset spatial.tr_out."
    )


def test_error_volume_count_differs_from_the_geometry(tiny, tmp_path):
    run = tiny["runs"][0]
    with pytest.raises(StageInputError, match=r"expected 90 volumes \(after dropping 2\)"):
        spatial.resample_run(
            [run.echoes[0].mag],
            tiny["geo"][0]["xfm"],
            tiny["subject"]["boldref"],
            [tmp_path / "x.nii.gz"],
            ref_xfm_file=tiny["subject"]["xfm"],
            drop_volumes=2,
        )


def test_error_unknown_option():
    # checked against the config schema (echoprep.options), before any computation
    with pytest.raises(
        OptionsError, match=r"unknown key\(s\) \['bogus'\]; allowed keys of 'spatial'"
    ):
        spatial.run_geometry("missing.nii.gz", {}, repetition_time=1.0, options={"bogus": 1})
    with pytest.raises(OptionsError, match=r"spatial.output_space: 'MNI' is not one of"):
        spatial.subject_grid("a", "b", "c", {}, options={"output_space": "MNI"})
    with pytest.raises(OptionsError, match=r"spatial.interpolation_order: 6 is greater than"):
        spatial.parse_spatial_options({"interpolation_order": 6})


def test_cli_parses_every_step():
    from echoprep.cli import build_parser

    p = build_parser()
    args = p.parse_args(
        ["spatial", "run", "--echo", "e.nii.gz", "--tr", "1.9", "--out", "confounds=c.tsv"]
    )
    assert args.spatial_step == "run" and args.tr == 1.9
    args = p.parse_args(
        ["spatial", "resample", "--echo", "e.nii.gz", "--geometry", "g.npz", "--grid", "b.nii.gz",
         "--out", "bold=o.nii.gz"]
    )  # fmt: skip
    assert args.spatial_step == "resample"
    assert os.fspath(args.geometry) == "g.npz"
    # one bold=PATH per echo; unknown keys and options are refused before any file is read
    args.out = ["bold=a.nii.gz", "bold=b.nii.gz"]
    with pytest.raises(SystemExit, match=r"one bold=PATH per --echo \(1\); got 2"):
        args.func(args)
    args.out = ["echo=o.nii.gz"]
    with pytest.raises(SystemExit, match=r"--out expects bold=PATH, got 'echo=o.nii.gz'"):
        args.func(args)
    args.out, args.options_json = ["bold=o.nii.gz"], '{"keep_echos": false}'
    with pytest.raises(OptionsError, match=r"^--options-json: 1 problem"):
        args.func(args)


def test_motion_levels_follow_the_voxel_size():
    from echoprep.kernels.geometry.motion import DEFAULT_LEVELS

    assert spatial.motion_levels(np.diag([1.8, 1.8, 1.8, 1.0])) == DEFAULT_LEVELS
    assert [k for _, k in spatial.motion_levels(np.diag([8.0, 8.0, 8.0, 1.0]))] == [1, 1, 1]


def test_stage_options_take_the_stage_keys_of_the_config_section():
    section = {"enabled": True, "keep_echoes": False, "tr_out": 1.0, "fieldmap": False}
    assert spatial.stage_options(section) == {"tr_out": 1.0, "fieldmap": False}
    # the whole section is accepted too; the sidecars record the steps' keys only
    opts = spatial.parse_spatial_options(section)
    assert opts.tr_out == 1.0 and opts.keep_echoes is False
    recorded = spatial.recorded_options(opts)
    assert list(recorded) == list(spatial.STAGE_KEYS)
    given = {**section_defaults("spatial"), **section}
    assert recorded == {k: v for k, v in given.items() if k not in ("enabled", "keep_echoes")}
