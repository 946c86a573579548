"""Analysis mask (one per session, shared by every GLM variant): known answers on small
synthetic runs -- the intersection over variants and runs, the brain-mask and bright-voxel
rules, the NaN policy, pinned warning and error texts, the CLI -- and the visual ROI kept
inside it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.images import StageInputError
from echoprep.io.outputs import get
from echoprep.options import OptionsError, section_defaults
from echoprep.stages.glm import session_key
from echoprep.stages.glm.mask import analysis_mask, run_analysis_mask
from echoprep.stages.rois import run_visual_roi

SHAPE = (6, 5, 4)
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])
#: The rule options at the config schema's defaults (glm.brainthresh, glm.nan_policy).
RULES = {k: section_defaults("glm")[k] for k in ("brainthresh", "nan_policy")}


def _series(seed: int, level: float = 1000.0, n: int = 20) -> np.ndarray:
    """``SHAPE + (n,)`` positive noisy series (no constant voxel)."""
    rng = np.random.default_rng(seed)
    return (level + 10.0 * rng.standard_normal((*SHAPE, n))).astype(np.float32)


def _save(data: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), AFFINE), path)
    return path


def _brain(tmp_path: Path) -> Path:
    """Brain = every voxel but the x = 0 plane (20 voxels outside, 100 inside)."""
    brain = np.ones(SHAPE, np.uint8)
    brain[0] = 0
    return _save(brain, tmp_path / "brain.nii.gz")


def test_output_name_comes_from_the_registry(tmp_path: Path) -> None:
    mask = get("analysis_mask.mask")
    path = mask.path(tmp_path, session_key("01", "02", "images"), space="T1w")
    assert path == tmp_path / "glmsingle-analysis" / "sub-01" / "ses-02" / "func" / (
        "sub-01_ses-02_task-images_space-T1w_desc-analysis_mask.nii.gz"
    )
    native = mask.path(tmp_path, session_key("01", None, "images"))
    assert native.name == "sub-01_task-images_desc-analysis_mask.nii.gz"


def test_mask_is_the_intersection_over_variants_and_runs(tmp_path: Path, caplog) -> None:
    # raw-single: run 2 is all 0 in a 2x2x1 block (like outside tedana's mask of that run)
    a1, a2 = _series(1), _series(2)
    a2[2:4, 1:3, 1] = 0.0
    # raw-denoised: run 1 is constant (not 0) in another 2-voxel block; one zero block lies
    # outside the brain (x = 0) and must not be counted
    b1, b2 = _series(3), _series(4)
    b1[4, 3:5, 2] = 7.0
    b2[0, :, :] = 0.0
    runs = {
        "raw-single": [_save(a1, tmp_path / "a1.nii.gz"), _save(a2, tmp_path / "a2.nii.gz")],
        "raw-denoised": [_save(b1, tmp_path / "b1.nii.gz"), _save(b2, tmp_path / "b2.nii.gz")],
    }
    out = tmp_path / "out" / "mask.nii.gz"
    with caplog.at_level(logging.WARNING):
        run_analysis_mask(
            runs, out, brain_mask=_brain(tmp_path), run_labels={v: ["01", "02"] for v in runs}
        )
    expected = np.ones(SHAPE, bool)
    expected[0] = False
    expected[2:4, 1:3, 1] = False
    expected[4, 3:5, 2] = False
    img = nib.load(out)
    assert np.array_equal(np.asarray(img.dataobj) > 0, expected)
    assert img.get_data_dtype() == np.uint8 and np.allclose(img.affine, AFFINE)
    side = json.loads(out.with_name("mask.json").read_text())
    assert side["Voxels"] == 100 - 6 and side["BrainVoxels"] == 100
    assert side["ExcludedVoxels"] == {
        "raw-single": {
            "01": {"constant": 0, "nonfinite": 0},
            "02": {"constant": 4, "nonfinite": 0},
        },
        "raw-denoised": {
            "01": {"constant": 2, "nonfinite": 0},
            "02": {"constant": 0, "nonfinite": 0},
        },
    }
    assert side["ConstantVoxelsExcluded"] == 6 and side["Type"] == "Brain"
    assert len(side["Sources"]) == 5 and side["Parameters"]["nan_policy"] == "error"
    assert (
        "leaving 6 voxels out of the analysis mask: their series is constant (e.g. all 0, "
        "outside another tool's mask) in some run (run raw-single 02: 4; run raw-denoised 01: "
        "2); they have no data there"
    ) in caplog.text


def test_one_variant_gets_its_own_runs_only(tmp_path: Path) -> None:
    a1 = _series(1)
    a1[3, 3, 3] = 0.0
    mask, _, info = analysis_mask(
        {"nordic-optcom": [_save(a1, tmp_path / "a1.nii.gz")]},
        brain_mask=_brain(tmp_path),
        **RULES,
    )
    assert int(mask.sum()) == 99 and not mask[3, 3, 3]
    assert info["ExcludedVoxels"] == {"nordic-optcom": {"1": {"constant": 1, "nonfinite": 0}}}


def test_bright_voxel_rule_is_applied_per_variant_and_intersected(tmp_path: Path) -> None:
    # without a brain mask: GLMsingle's rule (mean > 0.1 x 99th percentile) on each variant's
    # mean; variant A is dark in the x = 5 plane, variant B in the y = 0 plane
    a = _series(1)
    a[5] = 1.0 + np.abs(a[5]) * 1e-3
    b = _series(2, level=50.0)
    b[:, 0] = 0.5 + np.abs(b[:, 0]) * 1e-3
    mask, _, info = analysis_mask(
        {
            "raw-single": [_save(a, tmp_path / "a.nii.gz")],
            "raw-optcom": [_save(b, tmp_path / "b.nii.gz")],
        },
        **RULES,
    )
    expected = np.ones(SHAPE, bool)
    expected[5] = False
    expected[:, 0] = False
    assert np.array_equal(mask, expected)
    assert info["BrainVoxelsByVariant"] == {"raw-single": 100, "raw-optcom": 96}
    assert info["BrainVoxels"] == int(expected.sum()) and "brainthresh" in info["MaskSource"]


def test_nan_follows_the_glm_nan_policy(tmp_path: Path) -> None:
    a = _series(1)
    a[2, 2, 2, 3] = np.nan
    a[0, 1, 1, 3] = np.inf  # outside the brain: ignored
    runs = {"raw-single": [_save(a, tmp_path / "a.nii.gz")]}
    with pytest.raises(StageInputError) as err:
        analysis_mask(runs, brain_mask=_brain(tmp_path), **RULES)
    assert str(err.value) == (
        "expected finite BOLD values in every brain voxel; found NaN or Inf in raw-single run 1 "
        f"({tmp_path / 'a.nii.gz'}): 1 voxels. Fix: provide a brain mask that leaves these "
        "voxels out, or set glm.nan_policy: exclude to drop them from the fit."
    )
    mask, _, info = analysis_mask(
        runs, brain_mask=_brain(tmp_path), **{**RULES, "nan_policy": "exclude"}
    )
    assert int(mask.sum()) == 99 and not mask[2, 2, 2]
    assert info["NonfiniteVoxelsExcluded"] == 1 and info["ConstantVoxelsExcluded"] == 0


def test_runs_on_another_grid_are_refused(tmp_path: Path) -> None:
    a = _save(_series(1), tmp_path / "a.nii.gz")
    other = tmp_path / "b.nii.gz"
    nib.save(nib.Nifti1Image(_series(2)[:5], AFFINE), other)
    with pytest.raises(
        StageInputError,
        match=r"b.nii.gz: expected a BOLD run on the grid of .*a.nii.gz \(shape \(6, 5, 4\), "
        r"affine .*\); found shape \(5, 5, 4\), .*Fix: every variant and run of a session",
    ):
        analysis_mask({"raw-single": [a], "raw-optcom": [other]}, **RULES)


def test_brain_mask_on_another_grid_and_unknown_options_are_refused(tmp_path: Path) -> None:
    a = _save(_series(1), tmp_path / "a.nii.gz")
    shifted = tmp_path / "shifted_brain.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), AFFINE + np.eye(4) * 0.5), shifted)
    with pytest.raises(
        StageInputError,
        match=r"shifted_brain.nii.gz: expected a brain mask on the grid of .*a.nii.gz .*"
        r"Fix: resample the mask to the functional grid\.",
    ):
        analysis_mask({"raw-single": [a]}, brain_mask=shifted, **RULES)
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['brain_thresh'\]"):
        run_analysis_mask({"raw-single": [a]}, tmp_path / "m.nii.gz", options={"brain_thresh": 1})
    assert not (tmp_path / "m.nii.gz").exists()


def test_all_voxels_missing_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    a = _save(np.zeros((*SHAPE, 10), np.float32) + 5.0, tmp_path / "a.nii.gz")
    with pytest.raises(StageInputError, match=r"found none\. Fix: check the runs' masks"):
        analysis_mask({"raw-single": [a]}, brain_mask=_brain(tmp_path), **RULES)


def test_cli_writes_mask_and_sidecar(tmp_path: Path) -> None:
    from echoprep.cli import main

    a1, b1 = _series(1), _series(2)
    b1[1, 1, 1] = 0.0
    pa, pb = _save(a1, tmp_path / "a.nii.gz"), _save(b1, tmp_path / "b.nii.gz")
    out = tmp_path / "m" / "sub-01_desc-analysis_mask.nii.gz"
    argv = ["analysis-mask", "--bold", "raw-single", str(pa), "--bold", "nordic-single", str(pb)]
    argv += ["--run-labels", "01", "--brain-mask", str(_brain(tmp_path)), "--space", "T1w"]
    argv += ["--options-json", json.dumps({"nan_policy": "error", "all_sessions_variants": []})]
    argv += ["--out", f"mask={out}"]
    assert main(argv) == 0
    assert int((nib.load(out).get_fdata() > 0).sum()) == 99
    side = json.loads(out.with_name("sub-01_desc-analysis_mask.json").read_text())
    assert side["Space"] == "T1w" and side["Parameters"]["Variants"] == [
        "raw-single",
        "nordic-single",
    ]
    assert side["ExcludedVoxels"]["nordic-single"]["01"]["constant"] == 1


def test_visual_roi_lies_inside_the_analysis_mask(tmp_path: Path) -> None:
    # ON-OFF method: every brain voxel responds (R² 50 %); the analysis mask leaves out a block
    r2 = np.full(SHAPE, 50.0, np.float32)
    betas = _save(np.ones((*SHAPE, 4), np.float32), tmp_path / "betas.nii.gz")
    onoff = _save(r2, tmp_path / "onoff.nii.gz")
    analysed = np.ones(SHAPE, np.uint8)
    analysed[2:4, 1:3, :] = 0
    amask = _save(analysed, tmp_path / "analysis.nii.gz")
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"RunsUsed": [], "ExcludedEvents": 0}))
    trials = tmp_path / "trials.tsv"
    trials.write_text("session\trun\tbeta_index\tlabel\n")
    out = tmp_path / "roi.nii.gz"
    run_visual_roi(
        betas,
        trials,
        summary,
        out,
        onoff_r2=onoff,
        brain_mask=_brain(tmp_path),
        analysis_mask=amask,
        options={"visual": {"method": "onoff"}},
    )
    roi = np.asarray(nib.load(out).dataobj) > 0
    expected = analysed.astype(bool)
    expected[0] = False
    assert np.array_equal(roi, expected)
    assert str(amask) in json.loads(out.with_name("roi.json").read_text())["Sources"]


def test_runs_without_data_found_along_time_in_either_memory_order() -> None:
    """NaN, +-Inf, constant and all-NaN voxels of a Fortran-ordered run (nibabel's order) are
    classified as in a C-ordered one."""
    from echoprep.kernels.glm.voxels import run_without_data

    data = _series(3)
    data[0, 0, 0, 4] = np.nan
    data[1, 0, 0, 7] = np.inf
    data[2, 0, 0, 2] = -np.inf
    data[3, 0, 0] = np.nan  # no value at all
    data[4, 0, 0] = 0.0  # outside another tool's mask
    data[5, 0, 0] = 17.5
    data[0, 1, 0, :3] = np.nan  # NaN and constant: counted as NaN only
    data[0, 1, 0, 3:] = 2.0
    expected_bad = np.zeros(SHAPE, bool)
    expected_bad[[0, 1, 2, 3, 0], [0, 0, 0, 0, 1], 0] = True
    expected_flat = np.zeros(SHAPE, bool)
    expected_flat[[4, 5], 0, 0] = True
    for arr in (data, np.asfortranarray(data)):
        bad, flat = run_without_data(arr)
        assert np.array_equal(bad, expected_bad)
        assert np.array_equal(flat, expected_flat)
