"""Reversed phase-encoding ("PEPOLAR") fieldmaps: the field estimator, discovery of ``epi``
pairs, the spatial stage's field and the simulator's pairs (docs/distortion.md)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.bids import BIDSInputError, discover
from echoprep.kernels.geometry.pepolar import pepolar_field
from echoprep.simulate import simulate_dataset
from echoprep.simulate.geometry import distort
from echoprep.stages.spatial.run import load_fieldmap_hz


def _phantom(shape=(36, 44, 18)):
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    head = (x**2 + y**2 / 1.2 + z**2 < 0.8).astype(float)
    image = head * (1 + 0.5 * np.sin(6 * x) * np.cos(5 * y) + 0.3 * np.cos(7 * z))
    field = 60 * np.exp(-((x - 0.2) ** 2 + (y - 0.4) ** 2 + z**2) / 0.2) - 20 * y  # Hz
    return image, field, head > 0


@pytest.mark.parametrize(
    "axis, sign_a, times, scale",
    [(1, 1, (0.03, 0.03), 1.0), (1, -1, (0.03, 0.02), 1.0), (0, 1, (0.03, 0.03), 4.0)],
    ids=["j-first", "j-minus-first-other-readout", "i-axis-large-shifts"],
)
def test_a_known_field_is_recovered_from_a_noise_free_pair(axis, sign_a, times, scale):
    """Two images distorted in opposite directions by a known field (signal-conserving, as
    the scanner): the field is recovered to a hundredth of a voxel in the head, also for
    different readout times and shifts of up to 6 voxels."""
    image, field, head = _phantom()
    field = scale * field
    t_a, t_b = times
    move = np.moveaxis  # the simulator distorts along axis 1
    a = move(distort(move(image, axis, 1), move(sign_a * field * t_a, axis, 1)), 1, axis)
    b = move(distort(move(image, axis, 1), move(-sign_a * field * t_b, axis, 1)), 1, axis)
    est, reliable = pepolar_field(a, b, axis, sign_a, times, blur_voxels=0)
    inside = head & reliable
    assert inside.sum() > 0.95 * head.sum()
    err_vox = np.abs(est - field)[inside] * max(times)
    assert np.abs(field).max() * max(times) > (5 if scale > 1 else 1.2)  # shifts tested
    assert np.median(err_vox) < 0.005 and np.percentile(err_vox, 95) < 0.05


def test_noise_costs_a_few_hundredths_of_a_voxel():
    image, field, head = _phantom()
    t = 0.03
    rng = np.random.default_rng(0)
    a = distort(image, field * t) + 0.03 * rng.standard_normal(image.shape)
    b = distort(image, -field * t) + 0.03 * rng.standard_normal(image.shape)
    est, reliable = pepolar_field(a, b, 1, 1, (t, t))
    err_vox = np.abs(est - field)[head & reliable] * t
    assert np.median(err_vox) < 0.03 and np.percentile(err_vox, 95) < 0.12
    # swapping the images is the same as swapping the sign
    est2, _ = pepolar_field(b, a, 1, -1, (t, t))
    np.testing.assert_allclose(est2, est, atol=1e-3)


def test_the_estimator_refuses_what_it_cannot_use():
    img = np.ones((4, 5, 6))
    with pytest.raises(ValueError, match=r"two 3D images of one shape; found \(4, 5, 6\) and"):
        pepolar_field(img, np.ones((4, 5, 7)), 1, 1, (0.03, 0.03))
    with pytest.raises(ValueError, match=r"axis in 0\.\.2 and sign ±1; found 3, 1"):
        pepolar_field(img, img, 3, 1, (0.03, 0.03))
    with pytest.raises(ValueError, match=r"readout times must be > 0 s; found \(0.0, 0.03\)"):
        pepolar_field(img, img, 1, 1, (0.0, 0.03))


@pytest.fixture(scope="module")
def pair_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pepolar") / "bids"
    simulate_dataset(root, "tiny", runs=2, fieldmap=True, fieldmap_kind="epi")
    return root


def test_the_simulator_writes_a_pair_per_run(pair_dataset):
    fmap = pair_dataset / "sub-01" / "ses-01" / "fmap"
    names = sorted(p.name for p in fmap.glob("*.nii.gz"))
    assert names == [
        f"sub-01_ses-01_dir-{d}_run-{r}_epi.nii.gz" for d in ("AP", "PA") for r in ("01", "02")
    ]
    ap = json.loads((fmap / "sub-01_ses-01_dir-AP_run-01_epi.json").read_text())
    pa = json.loads((fmap / "sub-01_ses-01_dir-PA_run-01_epi.json").read_text())
    assert (ap["PhaseEncodingDirection"], pa["PhaseEncodingDirection"]) == ("j-", "j")
    assert ap["TotalReadoutTime"] == pa["TotalReadoutTime"] > 0
    assert all("run-01" in t for t in ap["IntendedFor"])
    description = json.loads((pair_dataset / "dataset_description.json").read_text())
    assert description["echoprepSimulation"]["fieldmap_kind"] == "epi"


def test_a_pair_is_one_fieldmap_of_its_run_and_its_field_is_the_truth(pair_dataset):
    ds = discover(pair_dataset)
    for run in ds.runs:
        fm = run.fieldmap
        assert fm is not None and fm.kind == "epi"
        assert [(p.name, d) for p, d, _ in fm.epi] == [
            (f"sub-01_ses-01_dir-PA_run-{run.run}_epi.nii.gz", "j"),
            (f"sub-01_ses-01_dir-AP_run-{run.run}_epi.nii.gz", "j-"),
        ]
        assert set(fm.files) == {p for p, _, _ in fm.epi}
    spec = ds.runs[0].fieldmap.as_spec()
    hz, affine, mask = load_fieldmap_hz(spec["image"], spec["kind"], epi=spec["epi"])
    truth_path = (
        pair_dataset
        / "derivatives/truth/sub-01/ses-01/func/sub-01_ses-01_desc-truth_fieldmap.nii.gz"
    )
    truth = nib.load(truth_path)
    np.testing.assert_allclose(affine, truth.affine)
    trt = spec["epi"][0][2]
    err_vox = np.abs(hz - truth.get_fdata())[mask] * trt
    assert mask is not None and mask.mean() > 0.2
    assert np.median(err_vox) < 0.05


def test_without_intended_for_the_sessions_only_pair_is_used(tmp_path):
    root = tmp_path / "bids"
    simulate_dataset(root, "tiny", runs=1, fieldmap=True, fieldmap_kind="epi")
    for side in (root / "sub-01/ses-01/fmap").glob("*.json"):
        meta = json.loads(side.read_text())
        meta.pop("IntendedFor")
        side.write_text(json.dumps(meta))
    (run,) = discover(root).runs
    assert run.fieldmap is not None and run.fieldmap.kind == "epi"


def test_a_pair_without_readout_time_or_of_one_direction_is_named(tmp_path):
    root = tmp_path / "bids"
    simulate_dataset(root, "tiny", runs=1, fieldmap=True, fieldmap_kind="epi")
    fmap = root / "sub-01/ses-01/fmap"
    side = fmap / "sub-01_ses-01_dir-PA_run-01_epi.json"
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "PhaseEncodingDirection": "j-"}))
    with pytest.raises(BIDSInputError) as err:
        discover(root)
    (problem,) = err.value.problems
    assert problem.expected == (
        "epi fieldmaps of sub-01 ses-01 task-images run-01 in the two directions of one "
        "phase-encoding axis (e.g. j and j-)"
    )
    assert problem.found == (
        "directions j- in sub-01_ses-01_dir-AP_run-01_epi.nii.gz, "
        "sub-01_ses-01_dir-PA_run-01_epi.nii.gz"
    )
    side.write_text(json.dumps({k: v for k, v in meta.items() if k != "TotalReadoutTime"}))
    with pytest.raises(BIDSInputError) as err:
        discover(root)
    (problem,) = err.value.problems
    assert problem.file.endswith("fmap/sub-01_ses-01_dir-PA_run-01_epi.json")
    assert problem.found == "PhaseEncodingDirection = 'j', TotalReadoutTime = None"
    assert "spatial.fieldmap: false" in problem.fix
    assert discover(root, use_fieldmaps=False).runs[0].fieldmap is None


def test_the_plan_says_the_runs_are_corrected_with_their_pair(pair_dataset, tmp_path):
    from helpers.plans import make_plan

    plan = make_plan(pair_dataset, tmp_path)
    assert plan.sdc_summary() == (
        "Distortion correction: 2 of 2 run(s) with their fieldmap (pepolar; 2 by IntendedFor)."
    )
    # the geometry job reads both images of the pair (a changed image reruns it)
    run = plan.dataset.runs[0]
    assert plan.spatial.geometry_inputs(run)["fieldmap"] == [str(p) for p, _, _ in run.fieldmap.epi]


def test_a_run_with_both_a_gre_fieldmap_and_a_pair_takes_the_preferred_one(tmp_path):
    """Legal BIDS: one GRE fieldmap and one reversed phase-encoding pair intended for the same
    run. Not refused: the GRE one by default, the pair with spatial.sdc: pepolar."""
    import shutil

    from helpers.plans import make_plan

    gre = tmp_path / "gre"
    simulate_dataset(gre, "tiny", runs=1, fieldmap=True)
    both = tmp_path / "both"
    simulate_dataset(both, "tiny", runs=1, fieldmap=True, fieldmap_kind="epi")
    for f in (gre / "sub-01/ses-01/fmap").iterdir():
        shutil.copy(f, both / "sub-01/ses-01/fmap" / f.name)
    (run,) = discover(both).runs
    assert run.fieldmap is not None and run.fieldmap.kind == "phasediff"
    (run,) = discover(both, prefer_fieldmap="epi").runs
    assert run.fieldmap is not None and run.fieldmap.kind == "epi"
    plan = make_plan(both, tmp_path / "p", spatial={"sdc": "pepolar"})
    assert plan.sdc_summary() == (
        "Distortion correction: 1 of 1 run(s) with their fieldmap (spatial.sdc: pepolar; 1 by "
        "IntendedFor)."
    )
