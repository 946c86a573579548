"""Gradient nonlinearity composed into the one-shot resampling (kernels/geometry/resampling
Chain's gradient_warp; stages/spatial/gradients; docs/gradients.md): an image distorted by a
known displacement and moved by a known head motion is restored by one interpolation, and not
without the warp; the susceptibility shift is the tissue's; a chain without the warp is the
chain it was before (same digest, bitwise the same samples); the fieldmap unwarping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from echoprep.kernels.geometry import Chain, native_grid, resample
from echoprep.kernels.geometry.gradients import (
    GradientCoefficients,
    displacement,
    grid_displacement,
    invert_displacement,
)
from echoprep.stages.spatial.gradients import PAD_VOXELS, unwarp_fieldmap

SHAPE = (30, 34, 26)
VOX = 4.0


def _affine() -> np.ndarray:
    """4 mm grid centred on the isocentre (the scanner frame)."""
    a = np.diag([VOX, VOX, VOX, 1.0])
    a[:3, 3] = -(np.asarray(SHAPE) - 1) / 2 * VOX
    return a


def _coil() -> GradientCoefficients:
    """Synthetic terms of orders 2, 3 and 5 (five times a head coil's): 1-3 mm displacements
    at 50-70 mm from isocentre."""
    return GradientCoefficients.from_terms(
        250.0,
        {
            ("x", "A", 3, 1): -0.4,
            ("y", "B", 3, 1): -0.4,
            ("z", "A", 3, 0): -0.6,
            ("x", "A", 5, 1): -0.25,
            ("z", "A", 2, 0): 0.15,
        },
    )


def _tissue(points: np.ndarray) -> np.ndarray:
    """A smooth test object at true positions ``(N, 3)`` mm (wavelengths of 40-60 mm)."""
    x, y, z = points.T
    return (
        100
        + 30 * np.sin(x / 9.0 + 0.3) * np.cos(y / 11.0)
        + 20 * np.cos(z / 8.0 - y / 15.0)
        + 10 * np.sin((x + z) / 12.0)
    )


def _translation(shift: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = shift
    return m


def _rotation_x(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    m = np.eye(4)
    m[1:3, 1:3] = [[c, -s], [s, c]]
    return m


def _acquired(coil: GradientCoefficients, moves: np.ndarray) -> np.ndarray:
    """The raw series: the tissue at reference position ``x`` is at ``p = M_t x`` in volume
    ``t`` and shown at ``p + d(p)``. At raw voxel centre ``y`` the image holds the tissue at
    ``inv(M_t) g^-1(y)`` (``g^-1`` by fixed-point iteration)."""
    a = _affine()
    ijk = np.indices(SHAPE, dtype=np.float64).reshape(3, -1)
    y = (a[:3, :3] @ ijk + a[:3, 3:4]).T
    p, _ = invert_displacement(coil, y)
    out = np.empty((*SHAPE, len(moves)), np.float32)
    for t, m in enumerate(moves):
        x = (np.linalg.inv(m) @ np.c_[p, np.ones(len(p))].T)[:3].T
        out[..., t] = _tissue(x).reshape(SHAPE)
    return out


def test_composed_chain_restores_an_image_distorted_by_a_known_warp():
    coil = _coil()
    a = _affine()
    moves = np.stack([np.eye(4), _translation([2.0, -1.5, 1.0]), _rotation_x(2.0)])
    series = _acquired(coil, moves)
    warp, waff = grid_displacement(coil, SHAPE, a, pad=PAD_VOXELS)
    grid = native_grid(SHAPE, a)
    plain = Chain(SHAPE, a, moves, grid)
    corrected = Chain(SHAPE, a, moves, grid, gradient_warp=warp, gradient_affine=waff)
    ijk = np.indices(SHAPE, dtype=np.float64).reshape(3, -1)
    truth = _tissue((a[:3, :3] @ ijk + a[:3, 3:4]).T).reshape(SHAPE)
    inner = np.zeros(SHAPE, bool)
    inner[4:-4, 4:-4, 4:-4] = True
    d = np.linalg.norm(
        warp[PAD_VOXELS:-PAD_VOXELS, PAD_VOXELS:-PAD_VOXELS, PAD_VOXELS:-PAD_VOXELS], axis=-1
    )
    assert np.percentile(d[inner], 95) > 1.0  # a warp of mm: the uncorrected error is visible
    err = {}
    for name, chain in (("plain", plain), ("corrected", corrected)):
        out, rec = resample(series, chain, n_threads=1)
        assert rec.interpolations == len(moves)  # still one interpolation per volume
        err[name] = np.abs(out - truth[..., None])[inner].max()
    assert err["corrected"] < 0.5, err  # the object spans about +-60 around 100
    assert err["plain"] > 8 * err["corrected"], err
    assert corrected.describe()["GradientNonlinearityCorrection"] is True
    assert plain.describe()["GradientNonlinearityCorrection"] is False
    assert corrected.digest != plain.digest


def test_gradient_shift_is_evaluated_at_the_true_position_and_added_to_the_sdc_shift():
    coil = _coil()
    a = _affine()
    moves = np.stack([np.eye(4), _rotation_x(3.0) @ _translation([1.0, 2.0, -1.0])])
    rng = np.random.default_rng(1)
    vsm = ndimage.gaussian_filter(rng.normal(0, 20, SHAPE), 3).astype(np.float32)
    warp, waff = grid_displacement(coil, SHAPE, a, pad=PAD_VOXELS)
    grid = native_grid(SHAPE, a)
    sdc = Chain(SHAPE, a, moves, grid, vsm=vsm, pe_axis=1)
    both = Chain(
        SHAPE, a, moves, grid, vsm=vsm, pe_axis=1, gradient_warp=warp, gradient_affine=waff
    )
    ijk = np.indices(SHAPE, dtype=np.float64).reshape(3, -1)
    for t, m in enumerate(moves):
        p = (m @ a @ np.r_[ijk, np.ones((1, ijk.shape[1]))])[:3]  # true positions, no SDC
        expected = np.linalg.inv(a)[:3, :3] @ displacement(coil, p.T).T
        got = both.volume_coordinates(t) - sdc.volume_coordinates(t)
        inside = np.all((p.T > a[:3, 3] - 2 * VOX) & (p.T < -a[:3, 3] + 2 * VOX), axis=1)
        # trilinear interpolation of a smooth field on 4 mm voxels: well below 0.01 voxel
        assert np.abs(got - expected)[:, inside].max() < 0.01
        assert np.abs(expected).max() > 0.3  # a shift worth checking


def test_a_chain_without_the_warp_is_the_chain_it_was():
    rng = np.random.default_rng(7)
    shape = (12, 14, 10)
    a = np.diag([3.0, 3.0, 3.0, 1.0])
    a[:3, 3] = -np.asarray(shape) * 1.5
    moves = np.tile(np.eye(4), (3, 1, 1))
    moves[:, :3, 3] = np.round(rng.normal(0, 1, (3, 3)), 3)
    vsm = np.round(rng.normal(0, 0.5, shape), 3).astype(np.float32)
    series = rng.normal(100, 10, (*shape, 3)).astype(np.float32)
    grid = native_grid(shape, a)
    chain = Chain(shape, a, moves, grid, vsm=vsm, pe_axis=1)
    # the digest of this chain as computed before the warp existed (commit e415c3f)
    assert chain.digest == "ec6b174d97972f4148de033cc1c82875d3244a716b66c06d1099c9b9af506e37"
    zero = Chain(
        shape, a, moves, grid, vsm=vsm, pe_axis=1,
        gradient_warp=np.zeros((*shape, 3), np.float32), gradient_affine=a,
    )  # fmt: skip
    out, _ = resample(series, chain, n_threads=1)
    out_zero, _ = resample(series, zero, n_threads=1)
    assert np.array_equal(out, out_zero)  # the warp path adds exactly nothing for d = 0
    assert zero.digest != chain.digest


def test_chain_refuses_a_bad_warp():
    a = _affine()
    grid = native_grid(SHAPE, a)
    with pytest.raises(ValueError, match="go together"):
        Chain(SHAPE, a, np.eye(4)[None], grid, gradient_warp=np.zeros((4, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"\(gx, gy, gz, 3\)"):
        Chain(
            SHAPE, a, np.eye(4)[None], grid,
            gradient_warp=np.zeros((4, 4, 4)), gradient_affine=a,
        )  # fmt: skip


def test_fieldmap_is_taken_at_the_displaced_position():
    coil = _coil()
    a = _affine()
    ijk = np.indices(SHAPE, dtype=np.float64).reshape(3, -1)
    p = (a[:3, :3] @ ijk + a[:3, 3:4]).T
    field = lambda q: 60 * np.sin(q[:, 0] / 15.0) + 3.0 * q[:, 2]  # noqa: E731 (Hz)
    y, _ = invert_displacement(coil, p)  # acquired: the field at true p shown at p + d(p)
    acquired = field(y).reshape(SHAPE).astype(np.float32)
    hz, mask = unwarp_fieldmap(acquired, a, np.ones(SHAPE, bool), coil, "HFS")
    inner = (slice(5, -5),) * 3
    truth = field(p).reshape(SHAPE)
    before = np.abs(acquired - truth)[inner].max()
    after = np.abs(hz - truth)[inner].max()
    assert before > 2.0  # Hz
    assert after < 0.2 * before, (before, after)
    assert mask is not None and mask.all()


# ---------------------------------------------------------------------------------------------
# the plan: which runs, the plan line, a missing coefficient file


def _plan_with(tmp_path, files: dict[str, str], sidecars: dict[str, dict]):
    """A 1-subject, 2-run plan whose first echoes' sidecars get ``sidecars[run]`` added."""
    import json

    from echoprep.io.paths import sidecar_path
    from helpers.bidstree import make_bids_tree
    from helpers.plans import make_plan

    root = tmp_path / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01",), runs=("01", "02"), data=False)
    plan = make_plan(root, tmp_path / "out", spatial={"gradient_coefficients": files})
    for run in plan.dataset.runs:
        side = sidecar_path(run.echoes[0].mag)
        meta = json.loads(side.read_text()) if side.exists() else {}
        meta |= sidecars.get(run.run or "", {})
        side.write_text(json.dumps(meta))
    return plan


def test_plan_line_without_coefficients(tmp_path):
    plan = _plan_with(tmp_path, {}, {})
    assert plan.gradient_summary() == (
        "Gradient nonlinearity: not corrected (spatial.gradient_coefficients is empty)."
    )
    run = plan.dataset.runs[0]
    assert "--gradient-json" not in plan.spatial.geometry_args(run, None)
    assert "gradient" not in plan.spatial.geometry_inputs(run)


def test_scanner_corrected_runs_are_skipped_and_the_plan_line_says_why(tmp_path):
    from echoprep.io.gradients import write_grad

    coil = write_grad(tmp_path / "coil.grad", _coil())
    plan = _plan_with(
        tmp_path,
        {"MAGNETOM Terra.X": str(coil)},
        {
            "01": {
                "ManufacturersModelName": "MAGNETOM Terra.X",
                "NonlinearGradientCorrection": True,
            },
            "02": {
                "ManufacturersModelName": "MAGNETOM Terra.X",
                "NonlinearGradientCorrection": False,
            },
        },
    )
    run1, run2 = plan.dataset.runs
    assert plan.gradient_summary() == (
        "Gradient nonlinearity: 1 of 2 run(s) corrected; 1 skipped, NonlinearGradientCorrection "
        "true (corrected on the scanner): sub-01_ses-01_task-images_run-01; 0 of 1 anatomical "
        "image(s) corrected; 1 skipped, no coefficient file for their scanner: "
        "sub-01_ses-01_T1w."
    )  # the T1w has no sidecar: no scanner (tests/unit/test_gradient_anatomy.py)
    assert plan.gradients.choice(run1).spec() is None
    assert "--gradient-json" not in plan.spatial.geometry_args(run1, None)
    assert plan.gradients.choice(run2).spec() == {
        "coefficients": str(coil),
        "patient_position": "HFS",
    }
    assert plan.spatial.geometry_inputs(run2)["gradient"] == str(coil)
    assert "--gradient-json" in plan.spatial.geometry_args(run2, None)


def test_runs_of_another_scanner_are_skipped(tmp_path):
    from echoprep.io.gradients import write_grad

    coil = write_grad(tmp_path / "coil.grad", _coil())
    plan = _plan_with(
        tmp_path,
        {"MAGNETOM Prisma": str(coil)},
        {"01": {"ManufacturersModelName": "MAGNETOM Terra.X"}},
    )
    assert plan.gradient_summary() == (
        "Gradient nonlinearity: 0 of 2 run(s) corrected; 2 skipped, no coefficient file for "
        "their scanner: sub-01_ses-01_task-images_run-01, sub-01_ses-01_task-images_run-02; "
        "0 of 1 anatomical image(s) corrected; 1 skipped, no coefficient file for their "
        "scanner: sub-01_ses-01_T1w."
    )
    star = _plan_with(tmp_path / "star", {"*": str(coil)}, {})
    assert star.gradient_summary() == (
        "Gradient nonlinearity: 2 of 2 run(s) corrected; 1 of 1 anatomical image(s) corrected."
    )


def test_a_missing_coefficient_file_is_a_plan_error(tmp_path):
    from echoprep.plan import PlanError

    missing = tmp_path / "nowhere" / "coil.grad"
    plan = _plan_with(tmp_path, {"*": str(missing)}, {})
    message = (
        f"spatial.gradient_coefficients['*']: expected a Siemens .grad coefficient file; found "
        f"no file at {missing}. Fix: give the path of the coil's .grad file "
        "(docs/gradients.md), or remove the '*' entry to leave its runs uncorrected."
    )
    with pytest.raises(PlanError) as err:
        plan.gradient_summary()
    assert str(err.value) == message
    with pytest.raises(PlanError, match=r"spatial\.gradient_coefficients"):
        plan.spatial.geometry_inputs(plan.dataset.runs[0])


# ---------------------------------------------------------------------------------------------
# the stage: geometry file, sidecars, resampling


def test_stage_records_and_applies_the_warp(tmp_path):
    import json

    import nibabel as nib

    from echoprep.io.bids import discover
    from echoprep.io.gradients import write_grad
    from echoprep.io.paths import sidecar_path
    from echoprep.simulate import simulate_dataset
    from echoprep.stages.spatial.resample import resample_run
    from echoprep.stages.spatial.run import run_geometry

    bids = simulate_dataset(tmp_path / "bids", "tiny", runs=1, motion=True)
    (run,) = discover(bids).runs
    coil = write_grad(tmp_path / "coil.grad", _coil())
    results = {}
    for name, gradient in (
        ("plain", None),
        ("corrected", {"coefficients": str(coil), "patient_position": "HFS"}),
    ):
        work = tmp_path / name
        work.mkdir()
        outputs = {"boldref": work / "boldref.nii.gz", "xfm": work / "xfm.npz"}
        record = run_geometry(
            run.echoes[1].mag,
            outputs,
            repetition_time=run.repetition_time,
            slice_timing=run.slice_timing,
            gradient=gradient,
        )
        out = work / "bold.nii.gz"
        (res,) = resample_run([run.echoes[1].mag], outputs["xfm"], outputs["boldref"], [out])
        side = json.loads(sidecar_path(out).read_text())
        results[name] = (record, res, side, np.asarray(nib.load(out).dataobj))
    record, res, side, corrected = results["corrected"]
    assert record["GradientNonlinearity"]["Applied"] is True
    assert record["GradientNonlinearity"]["Coefficients"] == str(coil)
    assert record["GradientNonlinearity"]["MaxOrder"] == 5
    assert record["GradientNonlinearity"]["PatientPosition"] == "HFS"
    assert res["TransformChain"]["GradientNonlinearityCorrection"] is True
    assert res["GradientNonlinearity"]["R0"] == 250.0
    assert any(str(s).endswith("coil.grad") for s in side["Sources"])
    record, res, side, plain = results["plain"]
    assert record["GradientNonlinearity"] == {"Applied": False}
    assert res["TransformChain"]["GradientNonlinearityCorrection"] is False
    assert not any(str(s).endswith("coil.grad") for s in side["Sources"])
    assert np.abs(corrected - plain).max() > 1.0  # the warp moved the samples
