"""The simulator's nonlinear gradient coil (echoprep.simulate.gradient_coil)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from echoprep.io.gradients import read_grad
from echoprep.kernels.geometry.gradients import displacement
from echoprep.simulate import simulate_dataset
from echoprep.simulate.anatomy import functional_grid, subject_anatomy
from echoprep.simulate.gradient_coil import coil, coil_path, true_positions
from echoprep.simulate.presets import PRESETS
from echoprep.simulate.signal import build_run, reference_image
from echoprep.simulate.truth import motion_path, run_field_path


def _grid_points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return affine[:3, :3] @ ijk + affine[:3, 3:4]


def test_true_positions_invert_the_coil() -> None:
    """``p + d(p) = q`` at every voxel centre ``q`` of the demo grid, to 1e-5 mm, and the coil
    moves them by millimetres (a realistic whole-body coil over a head's field of view)."""
    grid = functional_grid(PRESETS["demo"])
    q = _grid_points(grid.shape, grid.affine)
    p = true_positions(grid.shape, grid.affine)
    assert np.abs(p + displacement(coil(), p.T).T - q).max() < 1e-5
    moved = np.sqrt(((p - q) ** 2).sum(axis=0))
    assert 0.3 < np.median(moved) < 1.5
    assert 2.0 < moved.max() < 5.0


def test_an_image_acquired_with_the_coil_is_restored_by_sampling_at_p_plus_d() -> None:
    """The still head imaged with the coil and then sampled at ``p + d(p)`` (what the
    correction does with the coil's file) matches the head imaged with a linear coil far better
    than the image as acquired, and sampling at ``p - d(p)`` (the wrong direction) makes it
    worse: the simulator warps by the model the correction inverts. (What remains is the
    simulator forming the image from maps interpolated at 8 mm, not from an image.)"""
    p = PRESETS["tiny"]
    anat = subject_anatomy(p, 0, 1)
    n_act = int(anat.active.sum())
    args = (p, anat, np.array([10.0]), np.ones((n_act, 1)))
    kw = {"seed": 0, "subject": 1, "session": 1, "run": 1, "motion": False}
    points = true_positions(anat.grid.shape, anat.grid.affine)
    warped = reference_image(build_run(*args, **kw, gradient_points=points), p.tes[1])
    linear = reference_image(build_run(*args, **kw), p.tes[1])
    a = anat.grid.affine
    q = _grid_points(anat.grid.shape, a)
    d = displacement(coil(), q.T).T
    inv = np.linalg.inv(a)
    head = anat.head_mask

    def error(sign: float) -> float:
        coords = inv[:3, :3] @ (q + sign * d) + inv[:3, 3:4]
        out = ndimage.map_coordinates(warped, coords, order=3, mode="nearest")
        return float(np.abs(out.reshape(warped.shape) - linear)[head].mean())

    before = error(0.0)
    assert before > 0.02 * linear[head].mean()  # the coil changes the image
    assert error(1.0) < 0.5 * before  # measured 0.46
    assert error(-1.0) > 1.5 * before  # measured 1.78


def test_a_dataset_with_the_coil_carries_its_file_flags_and_truth(tmp_path: Path) -> None:
    """The coil's .grad file is in code/gradients and reads back as the coil; BOLD, SBRef and
    fieldmap sidecars say NonlinearGradientCorrection false (not corrected on the scanner, as
    every simulated image); the motion and the field of every
    volume are in the truth even without head motion; EPI fieldmaps are refused with a fix."""
    root = simulate_dataset(
        tmp_path / "bids", "tiny", runs=1, fieldmap=True, gradient_nonlinearity=True
    )
    read = read_grad(coil_path(root))
    assert np.allclose(read.cosine, coil().cosine) and np.allclose(read.sine, coil().sine)
    func = root / "sub-01" / "ses-01" / "func"
    fmap = root / "sub-01" / "ses-01" / "fmap"
    sidecars = [*func.glob("*_bold.json"), *func.glob("*_sbref.json"), *fmap.glob("*.json")]
    assert len(sidecars) > 6
    assert all(json.loads(s.read_text())["NonlinearGradientCorrection"] is False for s in sidecars)
    motion = np.loadtxt(motion_path(root, "01", "01", "01"), skiprows=1)
    assert motion.shape == (PRESETS["tiny"].n_volumes, 6) and not motion.any()
    field = nib.load(run_field_path(root, "01", "01", "01"))
    assert field.shape[3] == PRESETS["tiny"].n_volumes
    params = json.loads((root / "dataset_description.json").read_text())["echoprepSimulation"]
    assert params["gradient_nonlinearity"]["Coefficients"] == (
        "code/gradients/echoprep_simulated_coil.grad"
    )
    with pytest.raises(ValueError, match="--gradient-nonlinearity with --fieldmap-kind epi"):
        simulate_dataset(
            tmp_path / "epi", "tiny", fieldmap=True, fieldmap_kind="epi", gradient_nonlinearity=True
        )


def test_without_the_coil_the_dataset_is_unchanged(tmp_path: Path) -> None:
    """No coil: no code/ folder, no gradient parameter."""
    root = simulate_dataset(tmp_path / "bids", "tiny", runs=1)
    assert not (root / "code").exists()
    params = json.loads((root / "dataset_description.json").read_text())["echoprepSimulation"]
    assert "gradient_nonlinearity" not in params
