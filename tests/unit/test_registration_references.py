"""The reference images of the spatial stage (docs/registration.md): each run's SBRef as the
motion reference (``spatial.motion_reference``) and each subject's T2w as the registration
target (``spatial.registration_target``): discovery, the plan, the steps, and accuracy on the
simulator (tiny preset: 8 mm voxels, motion, distortion, fieldmaps; about 30 s)."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.bids import BIDSInputError, discover
from echoprep.io.images import StageInputError
from echoprep.io.outputs import paths_in, run_key, subject_key
from echoprep.io.paths import bids_path, sidecar_path
from echoprep.kernels.geometry.transforms import apply_matrix, rigid_matrix, rigid_params
from echoprep.simulate import simulate_dataset, truth_paths
from echoprep.stages import spatial
from helpers.bidstree import default_affine, make_bids_tree, t1w_path, write_nifti
from helpers.plans import make_plan

SHAPE = (6, 7, 5)
RUN1 = {"sub": "01", "ses": "01", "task": "images", "run": "01"}
COLUMNS = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def _sbref(root: Path, run: str = "01", echo: int = 2, part: str | None = None, **kw) -> Path:
    path = bids_path(
        root,
        RUN1 | {"run": run, "echo": echo, **({"part": part} if part else {})},
        "sbref",
        ".nii.gz",
    )
    shape = kw.pop("shape", SHAPE)
    write_nifti(path, shape, kw.pop("affine", default_affine(shape)))
    return path


# ---------------------------------------------------------------------------------------------
# discovery


def test_sbrefs_found_in_either_spelling_only_when_asked(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds")
    raw = _sbref(root, "01")
    laion = _sbref(root, "02", part="mag")
    _sbref(root, "01", echo=1)  # another echo: not the reference echo's
    assert all(r.sbref is None for r in discover(root).runs)  # default: not looked for
    runs = discover(root, sbref_echo=2).runs
    assert [r.sbref for r in runs] == [raw, laion]


def test_runs_told_apart_by_an_acquisition_entity_get_their_own_sbref(tmp_path: Path) -> None:
    """run-01 acquired with ``ce-gd`` and without (two runs): each gets the SBRef with its own
    entities, not the other's, and no duplicate is reported."""
    root = make_bids_tree(tmp_path / "ds")
    func = root / "sub-01/ses-01/func"
    for f in sorted(func.glob("*_run-01_*bold*")):
        f.with_name(f.name.replace("_run-01", "_ce-gd_run-01")).write_bytes(f.read_bytes())
    plain = _sbref(root, "01")
    gd = plain.with_name(plain.name.replace("_run-01", "_ce-gd_run-01"))
    gd.write_bytes(plain.read_bytes())
    runs = discover(root, sbref_echo=2).runs
    assert [(r.label, r.sbref) for r in runs] == [("01", plain), ("ce-gd_run-01", gd), ("02", None)]


def test_an_sbref_on_another_grid_is_a_warning_with_auto_a_problem_with_sbref(
    tmp_path: Path,
) -> None:
    root = make_bids_tree(tmp_path / "ds")
    other = _sbref(root, "01", shape=(8, 7, 5))
    shifted = default_affine(SHAPE)
    shifted[0, 3] += 0.5
    _sbref(root, "02", affine=shifted)
    ds = discover(root, sbref_echo=2)
    assert [r.sbref for r in ds.runs] == [None, None]
    assert sum("on another grid than its run" in w for w in ds.warnings) == 2
    with pytest.raises(BIDSInputError) as info:
        discover(root, sbref_echo=2, require_sbref=True)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].file.endswith(other.name) and "shape (8, 7, 5)" in problems[0].found
    assert "an affine differing by up to 0.5 mm" in problems[1].found
    assert "spatial.motion_reference: bold" in problems[1].fix


def test_sbref_required_and_malformed(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds")
    _sbref(root, "01", shape=(*SHAPE, 3))
    with pytest.raises(BIDSInputError) as info:
        discover(root, sbref_echo=2, require_sbref=True)
    found = {Path(p.file).name.split("_run-")[1][:2]: p for p in info.value.problems}
    assert "shape (6, 7, 5, 3)" in found["01"].found  # several volumes: always a problem
    assert found["02"].found == "no *_sbref.nii[.gz] with the run's entities"


def test_t2w_found_in_an_anatomy_session_only_when_asked(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", t1w="PrismaAnat")
    with pytest.raises(BIDSInputError) as info:
        discover(root, registration_target="T2w")
    assert "spatial.registration_target" in info.value.problems[0].fix
    assert discover(root, registration_target="auto").t2w == {}
    t2w = t1w_path(root, "01", "PrismaAnat").with_name("sub-01_ses-PrismaAnat_T2w.nii.gz")
    write_nifti(t2w, (9, 8, 7), default_affine((9, 8, 7), 0.8))  # another grid: legal
    assert discover(root).t2w == {}  # default: not looked for
    assert discover(root, registration_target="auto").t2w == {"01": t2w}


def test_several_t2w_images_the_first_with_a_warning_or_the_one_anatomy_t2w_names(
    tmp_path: Path,
) -> None:
    """As for the T1w: the first T2w, a warning naming the others and ``anatomy.t2w``;
    ``anatomy.t2w``'s entities pick another; entities none has are a problem."""
    root = make_bids_tree(tmp_path / "ds", t1w="PrismaAnat")
    anat = t1w_path(root, "01", "PrismaAnat").parent
    for run in ("1", "2"):
        write_nifti(
            anat / f"sub-01_ses-PrismaAnat_run-{run}_T2w.nii.gz",
            (9, 8, 7),
            default_affine((9, 8, 7), 0.8),
        )
    ds = discover(root, registration_target="auto")
    assert ds.t2w["01"].name == "sub-01_ses-PrismaAnat_run-1_T2w.nii.gz"
    (warning,) = [w for w in ds.warnings if "T2w images" in w]
    assert warning.startswith(
        "sub-01/ses-PrismaAnat/anat/sub-01_ses-PrismaAnat_run-1_T2w.nii.gz: the T2w of sub-01, "
        "the first of its 2 T2w images"
    )
    assert warning.endswith(
        "To use another, name its entities in anatomy.t2w, e.g. --config "
        '\'anatomy={t2w: {ses: "PrismaAnat", run: "2"}}\'.'
    )
    chosen = discover(root, registration_target="auto", t2w_entities={"run": 2})
    assert chosen.t2w["01"].name == "sub-01_ses-PrismaAnat_run-2_T2w.nii.gz"
    with pytest.raises(BIDSInputError, match=r"with the entities of anatomy.t2w \(acq-SPACE\)"):
        discover(root, registration_target="auto", t2w_entities={"acq": "SPACE"})


def test_the_plan_passes_an_sbref_and_a_t2w_only_when_used(tmp_path: Path) -> None:
    root = make_bids_tree(tmp_path / "ds", data=False)
    sbref = _sbref(root, "02", part="mag")
    t2w = bids_path(root, {"sub": "01"}, "T2w", ".nii.gz", datatype="anat")
    write_nifti(t2w, (9, 8, 7), default_affine((9, 8, 7), 0.8))
    wc = SimpleNamespace(run_prefix="sub-01_ses-01_task-images_run-02", subject="01")
    for choice, used in (("auto", True), ("sbref", None), ("bold", False)):
        if choice == "sbref":  # run 01 has none
            with pytest.raises(BIDSInputError):
                make_plan(root, tmp_path / choice, spatial={"motion_reference": choice})
            continue
        plan = make_plan(
            root,
            tmp_path / choice,
            spatial={"motion_reference": choice, "registration_target": "auto"},
        )
        inputs = plan.spatial.geometry_inputs(plan.ctx.run_of(wc))
        args = plan.spatial.geometry_args(plan.ctx.run_of(wc), None)
        assert (inputs.get("sbref") == str(sbref)) is used
        assert ("--sbref" in args) is used
        assert "sbref" not in plan.spatial.geometry_inputs(
            plan.ctx.run_of(SimpleNamespace(run_prefix="sub-01_ses-01_task-images_run-01"))
        )
    auto = make_plan(root, tmp_path / "t2", spatial={"registration_target": "auto"})
    files = auto.spatial._subject_inputs(wc)
    assert files["t2w"] == str(t2w)
    assert auto.spatial._subject_params(wc, SimpleNamespace(**files, keys=files.keys)).startswith(
        "--t2w"
    )
    t1 = make_plan(root, tmp_path / "t1", spatial={"registration_target": "T1w"})
    assert "t2w" not in t1.spatial._subject_inputs(wc)


# ---------------------------------------------------------------------------------------------
# the steps on the simulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("references")
    bids = simulate_dataset(
        base / "bids", "tiny", seed=0, subjects=1, runs=2, motion=True, fieldmap=True, t2w=True
    )
    ds = discover(bids, cache_dir=base / "idx", sbref_echo=2, registration_target="auto")
    return {"bids": bids, "ds": ds, "base": base, "truth": truth_paths(bids, "01")}


def _geometry(sim, kind: str) -> list[dict]:
    out = sim["base"] / kind
    geo: list[dict] = []
    for i, run in enumerate(sim["ds"].runs):
        paths = paths_in(out, "spatial", run_key(run.entities))
        spatial.run_geometry(
            run.echoes[1].mag,
            paths,
            repetition_time=run.repetition_time,
            slice_timing=run.slice_timing,
            fieldmap=None if run.fieldmap is None else run.fieldmap.as_spec(),
            pe_direction=run.pe_direction,
            readout_time=run.total_readout_time,
            reference_boldref=None if i == 0 else geo[0]["boldref"],
            sbref=run.sbref if kind == "sbref" else None,
            # the SBRef only where asked (the default is bold: docs/registration.md)
            options={"motion_reference": "auto"} if kind == "sbref" else None,
        )
        geo.append(paths)
    return geo


def _motion_error(sim, geo: list[dict]) -> float:
    """Median over volumes of the largest volume-to-volume translation error (mm)."""
    errs = []
    for i, g in enumerate(geo):
        x = spatial.load_geometry(g["xfm"])
        c, est = x["center"], x["vol_from_ref"]
        table = pd.read_csv(sim["truth"]["motion"][i], sep="\t")[COLUMNS].to_numpy()
        truth = rigid_matrix(table, c)
        err = (
            rigid_params(est @ np.linalg.inv(est[0]), c)[1:]
            - rigid_params(truth @ np.linalg.inv(truth[0]), c)[1:]
        )
        errs += list(np.abs(err[:, :3]).max(1))
    return float(np.median(errs))


def test_the_sbref_is_the_motion_reference_and_is_recorded(sim) -> None:
    runs = sim["ds"].runs
    assert all(r.sbref is not None for r in runs)  # the simulator writes them
    bold, sbref = _geometry(sim, "bold"), _geometry(sim, "sbref")
    side = json.loads(sidecar_path(Path(sbref[0]["boldref"])).read_text())
    assert side["MotionReference"] == {"Image": str(runs[0].sbref), "Kind": "sbref"}
    assert str(runs[0].sbref) in json.dumps(side["Sources"])
    old = json.loads(sidecar_path(Path(bold[0]["confounds"])).read_text())["MotionReference"]
    assert old["Kind"] == "bold volume" and len(old["Volumes"]) == 5
    # the SBRef is in the position of volume 0: its motion is about the identity
    vol0 = spatial.load_geometry(sbref[0]["xfm"])["vol_from_ref"][0]
    assert np.abs(vol0[:3, 3]).max() < 0.5
    # at least as accurate as the robust mean of the volumes (tiny: 0.18 vs 0.19 mm)
    assert _motion_error(sim, sbref) <= _motion_error(sim, bold) * 1.1


def test_an_sbref_on_another_grid_is_refused_by_the_step(sim, tmp_path) -> None:
    run = sim["ds"].runs[0]
    img = nib.load(run.sbref)
    bad = tmp_path / "sub-01_sbref.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), bad)
    with pytest.raises(StageInputError, match=r"spatial\.motion_reference: bold"):
        spatial.run_geometry(
            run.echoes[1].mag,
            {"boldref": tmp_path / "b.nii.gz"},
            repetition_time=run.repetition_time,
            slice_timing=run.slice_timing,
            sbref=bad,
            options={"motion_reference": "auto"},
        )


def test_the_t2w_target_is_composed_into_t1w_space(sim) -> None:
    geo = _geometry(sim, "t2w")
    tp = sim["truth"]
    records = {}
    for target in ("T1w", "T2w"):
        subject = paths_in(sim["base"] / f"grid-{target}", "spatial_subject", subject_key("01"))
        # in a fresh process, as a job runs it: the stage asks ITK for one thread (Mattes MI
        # is reproducible only on one), which holds only where ITK's pool is not yet made;
        # in a test worker another test may have made it with 2 threads (fits then 0.7-1.2 mm)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            records[target] = pool.submit(
                spatial.subject_grid,
                geo[0]["boldref"],
                sim["ds"].t1w["01"],
                tp["T1w_brain_mask"],
                subject,
                t2w_file=sim["ds"].t2w["01"] if target == "T2w" else None,
            ).result()
        records[target]["xfm"] = np.loadtxt(subject["xfm"])
    t2 = records["T2w"]["Registration"]
    assert t2["Target"] == "T2w" and t2["T2w"] == str(sim["ds"].t2w["01"])
    # the simulator's T2w is in T1w space: the rigid fit finds about the identity
    assert t2["T2wToT1wShiftMm"] < 1.0
    composed = np.asarray(t2["RefFromT2w"]) @ np.asarray(t2["T2wFromT1w"])
    assert np.allclose(composed, records["T2w"]["xfm"], atol=1e-6)
    assert records["T1w"]["Registration"]["Target"] == "T1w"
    # the output grid does not change with the target
    assert records["T1w"]["GridShape"] == records["T2w"]["GridShape"]
    # both land within the accuracy of the T1w target at 8 mm (about 1-2.5 mm RMS)
    pose = np.array(json.loads(tp["bold_to_T1w"].read_text())["Matrix"])
    mask = nib.load(tp["T1w_brain_mask"])
    pts = apply_matrix(mask.affine, np.argwhere(np.asarray(mask.dataobj) > 0))
    x = spatial.load_geometry(geo[0]["xfm"])
    truth = rigid_matrix(pd.read_csv(tp["motion"][0], sep="\t")[COLUMNS].to_numpy(), x["center"])
    for target in ("T1w", "T2w"):
        full = x["vol_from_ref"] @ records[target]["xfm"]
        d = apply_matrix(full[0], pts) - apply_matrix(truth[0] @ np.linalg.inv(pose), pts)
        assert np.sqrt(np.mean(np.sum(d * d, -1))) < 3.0, target
