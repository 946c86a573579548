"""Gradient nonlinearity of the anatomy and the SBRefs (docs/gradients.md, "Anatomy and
SBRefs"): the T1w (anatomy stage) and the T2w (registration target) are corrected with the
coefficient file of their own scanner, on their own grid, before anything else uses them; the
plan decides from each image's own sidecar and says so in its line; an SBRef motion reference
becomes a corrected boldref like the volumes' mean does. Synthetic images and stand-ins for
ANTs and deepbet: every test takes a few seconds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from echoprep.io.gradients import correct_image, write_grad
from echoprep.io.paths import sidecar_path
from echoprep.kernels.geometry.gradients import (
    GradientCoefficients,
    displacement,
    invert_displacement,
    unwarp_image,
)

TERRA, PRISMA = "MAGNETOM Terra.X", "MAGNETOM Prisma"
#: A 4 mm grid about the isocentre holding the whole synthetic head (176 x 200 x 160 mm).
SHAPE = (44, 50, 40)


def _coil(scale: float = 1.0) -> GradientCoefficients:
    """Synthetic terms of orders 2, 3 and 5: 1-3 mm displacements at 50-70 mm from the
    isocentre (five times a head coil's, as in test_gradient_unwarp.py)."""
    terms = {
        ("x", "A", 3, 1): -0.4,
        ("y", "B", 3, 1): -0.4,
        ("z", "A", 3, 0): -0.6,
        ("x", "A", 5, 1): -0.25,
        ("z", "A", 2, 0): 0.15,
    }
    return GradientCoefficients.from_terms(250.0, {k: v * scale for k, v in terms.items()})


def _grid(shape: tuple[int, int, int], vox: float) -> np.ndarray:
    """A grid centred on the isocentre (the scanner frame)."""
    a = np.diag([vox, vox, vox, 1.0])
    a[:3, 3] = -(np.asarray(shape) - 1) / 2 * vox
    return a


def _centres(shape: tuple[int, int, int], a: np.ndarray) -> np.ndarray:
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (a[:3, :3] @ ijk + a[:3, 3:4]).T


def _head(points: np.ndarray, contrast: float = 1.0) -> np.ndarray:
    """A smooth head-like object at true positions ``(N, 3)`` mm: a textured ellipsoid
    (semi-axes 70, 80, 65 mm, edge about 6 mm wide) on a zero background."""
    x, y, z = points.T
    radius = np.sqrt((x / 70.0) ** 2 + (y / 80.0) ** 2 + (z / 65.0) ** 2)
    inside = 1.0 / (1.0 + np.exp((radius - 1.0) / 0.08))
    texture = (
        100
        + 30 * contrast * np.sin(x / 9.0 + 0.3) * np.cos(y / 11.0)
        + 20 * np.cos(z / 8.0 - y / 15.0)
        + 10 * contrast * np.sin((x + z) / 12.0)
    )
    return inside * texture


def _acquired(coil: GradientCoefficients, points: np.ndarray, contrast: float = 1.0) -> np.ndarray:
    """What the scanner writes at voxel centres ``y``: the object at ``g^-1(y)``,
    ``g(p) = p + d(p)`` (fixed-point iteration)."""
    return _head(invert_displacement(coil, points)[0], contrast)


def _errors(coil: GradientCoefficients, shape, vox):
    """(uncorrected, corrected) max error inside the head, and the corrected image."""
    a = _grid(shape, vox)
    pts = _centres(shape, a)
    raw = _acquired(coil, pts).reshape(shape).astype(np.float32)
    truth = _head(pts).reshape(shape)
    fixed, largest = unwarp_image(raw, a, coil)
    inner = truth > 50  # the head, away from its edge
    return np.abs(raw - truth)[inner].max(), np.abs(fixed - truth)[inner].max(), largest


# ---------------------------------------------------------------------------------------------
# the correction of a whole image


def test_an_anatomical_image_distorted_by_a_known_warp_is_restored():
    before, after, largest = _errors(_coil(), SHAPE, 4.0)
    assert largest > 3.0  # mm: a warp worth correcting
    assert before > 10.0  # on a texture of about +-60 around 100
    assert after < 0.1 * before, (before, after)


def test_the_slab_evaluation_is_one_cubic_interpolation_at_p_plus_d():
    coil = _coil()
    shape = (17, 19, 13)
    a = _grid(shape, 5.0)
    rng = np.random.default_rng(3)
    data = rng.normal(size=shape).astype(np.float32)
    pts = _centres(shape, a)
    coords = np.indices(shape, dtype=np.float64).reshape(3, -1)
    coords = coords + np.linalg.inv(a)[:3, :3] @ displacement(coil, pts).T
    expected = ndimage.map_coordinates(data, coords, order=3, mode="nearest").reshape(shape)
    for chunk in (7, 300, 1 << 16):  # slabs of one plane, of several, the whole image
        got, _ = unwarp_image(data, a, coil, chunk=chunk)
        assert np.abs(got - expected).max() < 1e-5
    zero = GradientCoefficients.from_terms(250.0, {})
    same, largest = unwarp_image(data, a, zero)
    assert largest == 0.0 and np.abs(same - data).max() < 1e-5  # d = 0: the image itself
    with pytest.raises(ValueError, match="3D"):
        unwarp_image(data[..., None], a, coil)


def test_correct_image_records_the_file_and_refuses_an_unknown_position(tmp_path):
    coil = write_grad(tmp_path / "prisma.grad", _coil())
    shape = (12, 13, 11)
    a = _grid(shape, 6.0)
    data = _head(_centres(shape, a)).reshape(shape)
    out, record, path = correct_image(data, a, {"coefficients": str(coil)}, "T1w")
    assert out.dtype == np.float32 and out.shape == shape and path == coil
    assert record["Applied"] is True and record["Coefficients"] == str(coil)
    assert record["PatientPosition"] == "HFS" and record["Image"] == "T1w"
    assert record["MaxOrder"] == 5 and record["MaxDisplacementMm"] > 1.0
    with pytest.raises(Exception, match=r"set PatientPosition in the T2w sidecar"):
        correct_image(data, a, {"coefficients": str(coil), "patient_position": "FFS"}, "T2w")


# ---------------------------------------------------------------------------------------------
# the anatomy stage (N4, deepbet and Atropos replaced by stand-ins: the stage's own steps run)


@pytest.fixture
def stand_ins(monkeypatch):
    """N4 = identity, deepbet = a threshold, Atropos = intensity terciles (darkest first)."""
    from echoprep.stages.anatomy import run as anatomy_run

    def atropos(image, mask, *args, **kwargs):
        cuts = np.percentile(image[mask > 0], [33.3, 66.7])
        labels = np.digitize(image, cuts)
        return np.stack([(labels == k) & (mask > 0) for k in range(3)]).astype(np.float32)

    monkeypatch.setattr(anatomy_run.ants, "n4_bias_correction", lambda data, *a, **k: (data, 1))
    monkeypatch.setattr(
        anatomy_run.deepbet, "brain_mask", lambda data, *a: (data > 60).astype(np.uint8)
    )
    monkeypatch.setattr(anatomy_run.ants, "atropos", atropos)


def test_anatomy_stage_corrects_the_t1w_first_and_records_it(tmp_path, stand_ins):
    from echoprep.io.outputs import paths_in, subject_key
    from echoprep.stages.anatomy import run_anatomy

    coil = _coil()
    grad = write_grad(tmp_path / "prisma.grad", coil)
    shape = SHAPE
    a = _grid(shape, 4.0)
    pts = _centres(shape, a)
    raw = _acquired(coil, pts).reshape(shape).astype(np.float32)
    truth = _head(pts).reshape(shape)
    t1w = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(raw, a), t1w)
    sidecar_path(t1w).write_text(json.dumps({"ManufacturersModelName": PRISMA}))
    opts = {"segmentation": "kmeans"}
    preproc, sides = {}, {}
    for name, gradient in (("plain", None), ("corrected", {"coefficients": str(grad)})):
        keys = ("preproc", "brain_mask", "dseg")
        all_outs = paths_in(tmp_path / name, "anatomy", subject_key("01", datatype="anat"))
        outs = {k: all_outs[k] for k in keys}
        record = run_anatomy(t1w, outs, options=opts, gradient=gradient)
        preproc[name] = np.asarray(nib.load(outs["preproc"]).dataobj)
        sides[name] = {k: json.loads(sidecar_path(outs[k]).read_text()) for k in keys}
        assert ("GradientNonlinearity" in record) is (gradient is not None)
    inner = truth > 50
    before = np.abs(preproc["plain"] - truth)[inner].max()
    after = np.abs(preproc["corrected"] - truth)[inner].max()
    assert after < 0.1 * before, (before, after)
    # not corrected: the T1w as it was (N4 = identity here), nothing recorded
    assert np.array_equal(preproc["plain"], raw)
    for side in sides["plain"].values():
        assert "GradientNonlinearity" not in side
        assert not any(s.endswith(".grad") for s in side["Sources"])
    # corrected before anything else: the preproc is exactly the corrected T1w
    expected, record, _ = correct_image(raw, a, {"coefficients": str(grad)}, "T1w")
    assert np.array_equal(preproc["corrected"], expected)
    for side in sides["corrected"].values():
        assert side["GradientNonlinearity"] == record
        assert str(grad) in side["Sources"]


def test_the_anatomy_command_passes_the_gradient(monkeypatch):
    from echoprep.stages import anatomy

    calls = {}
    monkeypatch.setattr(anatomy, "run_anatomy", lambda t1w, outs, **kw: calls.update(kw))
    parser = anatomy.add_arguments(argparse.ArgumentParser())
    spec = {"coefficients": "a.grad", "patient_position": "HFP"}
    args = parser.parse_args(
        ["--t1w", "t.nii.gz", "--gradient-json", json.dumps(spec), "--out", "preproc=p.nii.gz"]
    )
    assert anatomy.run_from_args(args) == 0
    assert calls["gradient"] == spec


# ---------------------------------------------------------------------------------------------
# the T2w as the registration target (spatial_subject)


def test_the_t2w_target_is_corrected_before_registration(tmp_path, monkeypatch):
    from echoprep.stages import spatial
    from echoprep.stages.spatial import subject
    from echoprep.stages.spatial.options import parse_spatial_options

    coil = _coil()
    grad = write_grad(tmp_path / "prisma.grad", coil)
    shape = SHAPE
    a = _grid(shape, 4.0)
    pts = _centres(shape, a)
    raw = _acquired(coil, pts, contrast=-1.0).reshape(shape).astype(np.float32)
    t2w = tmp_path / "sub-01_T2w.nii.gz"
    nib.save(nib.Nifti1Image(raw, a), t2w)
    seen = {}

    def register(fixed, fixed_affine, moving, moving_affine, **kw):
        seen["moving"] = np.asarray(moving)
        return SimpleNamespace(moving_from_fixed=np.eye(4), transform="rigid")

    monkeypatch.setattr(subject.ants, "register_cross_modal", register)
    opts = parse_spatial_options({})
    t1 = _head(pts).reshape(shape).astype(np.float32)
    spec = {"coefficients": str(grad), "patient_position": "HFS"}
    (image, _), record = subject._t2w_target(t2w, t1, a, opts, 1, spec)
    truth = _head(pts, contrast=-1.0).reshape(shape)
    inner = truth > 50
    assert np.array_equal(seen["moving"], image)  # registered: the corrected T2w
    assert np.abs(image - truth)[inner].max() < 0.1 * np.abs(raw - truth)[inner].max()
    assert record["GradientNonlinearity"]["Coefficients"] == str(grad)
    assert record["GradientNonlinearity"]["Image"] == "T2w"
    (plain, _), plain_record = subject._t2w_target(t2w, t1, a, opts, 1)
    assert np.array_equal(plain, raw) and "GradientNonlinearity" not in plain_record
    # the command line
    calls = {}
    monkeypatch.setattr(spatial, "subject_grid", lambda *a, **kw: calls.update(kw))
    parser = spatial.add_arguments(argparse.ArgumentParser())
    words = ["subject", "--boldref", "b", "--t1w", "t", "--mask", "m", "--t2w", str(t2w)]
    words += ["--t2w-gradient-json", json.dumps(spec), "--out", "boldref=x"]
    assert spatial.run_from_args(parser.parse_args(words)) == 0
    assert calls["t2w_gradient"] == spec


# ---------------------------------------------------------------------------------------------
# the SBRef as the motion reference


def test_a_boldref_built_from_an_sbref_is_corrected(tmp_path):
    """The SBRef (the motion reference with spatial.motion_reference: sbref) is acquired with
    the same gradients on the same grid: the boldref made from it lands where the undistorted
    truth is (the same correction as a boldref from the volumes' mean)."""
    from echoprep.stages.spatial.run import run_geometry

    coil = _coil()
    grad = write_grad(tmp_path / "terra.grad", coil)
    shape = SHAPE
    a = _grid(shape, 4.0)
    pts = _centres(shape, a)
    # the SBRef has another contrast than the volumes: the boldref must be the SBRef's
    sbref_raw = _acquired(coil, pts, contrast=-1.0).reshape(shape).astype(np.float32)
    bold_raw = _acquired(coil, pts).reshape(shape).astype(np.float32)
    echo = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(np.repeat(bold_raw[..., None], 4, axis=3), a), echo)
    sbref = tmp_path / "sbref.nii.gz"
    nib.save(nib.Nifti1Image(sbref_raw, a), sbref)
    truth = _head(pts, contrast=-1.0).reshape(shape)
    inner = truth > 50
    options = {"motion_reference": "sbref", "slice_timing": False}
    errors, records = {}, {}
    for name, gradient in (("plain", None), ("corrected", {"coefficients": str(grad)})):
        out = tmp_path / name / "boldref.nii.gz"
        out.parent.mkdir()
        records[name] = run_geometry(
            echo,
            {"boldref": out},
            repetition_time=2.0,
            gradient=gradient,
            options=options,
            sbref=sbref,
        )
        boldref = np.asarray(nib.load(out).dataobj)
        errors[name] = np.abs(boldref - truth)[inner].max()
    assert records["corrected"]["MotionReference"]["Kind"] == "sbref"
    assert records["corrected"]["GradientNonlinearity"]["Applied"] is True
    assert records["plain"]["GradientNonlinearity"] == {"Applied": False}
    assert errors["plain"] > 10.0, errors
    assert errors["corrected"] < 0.1 * errors["plain"], errors


# ---------------------------------------------------------------------------------------------
# the plan: each anatomical image's own scanner and flag, the plan line, no config


def _plan(tmp_path: Path, files: dict[str, str], t1w: dict, t2w: dict | None = None, **spatial):
    """A 1-subject, 2-run plan on 7T BOLD runs (Terra) with the T1w (and a T2w, when given)
    sidecars ``t1w`` and ``t2w``."""
    from echoprep.io.paths import bids_path
    from helpers.bidstree import default_affine, make_bids_tree, t1w_path, write_nifti
    from helpers.plans import make_plan

    root = tmp_path / "bids"
    make_bids_tree(root, data=False)
    sidecar_path(t1w_path(root, "01", "01")).write_text(json.dumps(t1w))
    if t2w is not None:
        image = bids_path(root, {"sub": "01"}, "T2w", ".nii.gz", datatype="anat")
        write_nifti(image, (9, 8, 7), default_affine((9, 8, 7), 0.8))
        sidecar_path(image).write_text(json.dumps(t2w))
        spatial["registration_target"] = "auto"
    plan = make_plan(root, tmp_path / "out", spatial={"gradient_coefficients": files, **spatial})
    for run in plan.dataset.runs:
        side = sidecar_path(run.echoes[0].mag)
        side.write_text(
            json.dumps(json.loads(side.read_text()) | {"ManufacturersModelName": TERRA})
        )
    return plan


def _inputs(files: dict) -> SimpleNamespace:
    return SimpleNamespace(**files, keys=files.keys)


def test_the_anatomy_from_another_scanner_gets_its_own_coefficient_file(tmp_path):
    terra = write_grad(tmp_path / "terra.grad", _coil())
    prisma = write_grad(tmp_path / "prisma.grad", _coil(0.5))
    plan = _plan(
        tmp_path,
        {TERRA: str(terra), PRISMA: str(prisma)},
        {"ManufacturersModelName": PRISMA, "PatientPosition": "HFP"},
        t2w={"ManufacturersModelName": PRISMA},
    )
    wc = SimpleNamespace(subject="01")
    assert all(plan.gradients.choice(r).coefficients == str(terra) for r in plan.dataset.runs)
    files = plan.anatomy._inputs(wc)
    assert files["gradient"] == str(prisma)
    args = plan.anatomy._params(wc, _inputs(files))
    spec = {"coefficients": str(prisma), "patient_position": "HFP"}
    assert args == f"--gradient-json '{json.dumps(spec, sort_keys=True)}'"
    subject = plan.spatial._subject_inputs(wc)
    assert subject["t2w_gradient"] == str(prisma)
    spec["patient_position"] = "HFS"
    assert plan.spatial._subject_params(wc, _inputs(subject)).endswith(
        f"--t2w-gradient-json '{json.dumps(spec, sort_keys=True)}'"
    )
    assert plan.gradient_summary() == (
        "Gradient nonlinearity: 2 of 2 run(s) corrected; 2 of 2 anatomical image(s) corrected."
    )
    # the rule: the coefficient file an input of the anatomy job, its spec a derived param
    rule = plan.spec("anatomy")
    assert rule.input == {} and rule.input_function(wc) == files
    assert rule.params["args"] == plan.anatomy._params


def test_a_scanner_corrected_anatomy_is_skipped_and_the_plan_line_says_why(tmp_path):
    terra = write_grad(tmp_path / "terra.grad", _coil())
    plan = _plan(
        tmp_path,
        {"*": str(terra)},
        {"ManufacturersModelName": PRISMA, "NonlinearGradientCorrection": True},
        t2w={"ManufacturersModelName": PRISMA, "NonlinearGradientCorrection": False},
    )
    wc = SimpleNamespace(subject="01")
    files = plan.anatomy._inputs(wc)
    assert "gradient" not in files and plan.anatomy._params(wc, _inputs(files)) == ""
    assert plan.spatial._subject_inputs(wc)["t2w_gradient"] == str(terra)  # "*": any scanner
    assert plan.gradient_summary() == (
        "Gradient nonlinearity: 2 of 2 run(s) corrected; 1 of 2 anatomical image(s) "
        "corrected; 1 skipped, NonlinearGradientCorrection true (corrected on the scanner): "
        "sub-01_ses-01_T1w."
    )
    only_terra = _plan(tmp_path / "terra", {TERRA: str(terra)}, {"ManufacturersModelName": PRISMA})
    assert "gradient" not in only_terra.anatomy._inputs(wc)
    assert only_terra.gradient_summary() == (
        "Gradient nonlinearity: 2 of 2 run(s) corrected; 0 of 1 anatomical image(s) "
        "corrected; 1 skipped, no coefficient file for their scanner: sub-01_ses-01_T1w."
    )
    # dcm2niix copies the DICOM ImageType: Siemens marks DIS3D (and DIS2D) what the scanner
    # corrected, also when the sidecar has no NonlinearGradientCorrection
    dis3d = {"ManufacturersModelName": PRISMA, "ImageType": ["ORIGINAL", "M", "NORM", "DIS3D"]}
    by_type = _plan(tmp_path / "dis3d", {"*": str(terra)}, dis3d)
    assert "gradient" not in by_type.anatomy._inputs(wc)
    assert by_type.gradient_summary().endswith(
        "1 skipped, ImageType DIS3D (corrected in 3D on the scanner): sub-01_ses-01_T1w."
    )
    native = _plan(
        tmp_path / "native", {"*": str(terra)}, {}, output_space="native"
    )  # no anatomy stage: nothing said of the anatomy
    assert native.gradient_summary() == "Gradient nonlinearity: 2 of 2 run(s) corrected."


def test_without_coefficients_the_anatomy_jobs_are_unchanged(tmp_path):
    plan = _plan(tmp_path, {}, {"ManufacturersModelName": PRISMA}, t2w={})
    wc = SimpleNamespace(subject="01")
    files = plan.anatomy._inputs(wc)
    assert files == {"t1w": plan.anatomy.t1w(wc)}
    assert plan.anatomy._params(wc, _inputs(files)) == ""
    subject = plan.spatial._subject_inputs(wc)
    assert "t2w_gradient" not in subject
    assert plan.spatial._subject_params(wc, _inputs(subject)) == _words(["--t2w", subject["t2w"]])
    assert plan.gradient_summary() == (
        "Gradient nonlinearity: not corrected (spatial.gradient_coefficients is empty)."
    )


def _words(args: list[str]) -> str:
    from echoprep.plan.context import words

    return words(args)
