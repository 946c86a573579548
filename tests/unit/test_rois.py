"""ROI stage: user ROI folder, nearest-neighbour resampling, visually responsive ROI, ROI tables.

The array code is :mod:`echoprep.kernels.rois` (resampling, selections) and
:mod:`echoprep.kernels.visual` (statistics); the stage is :mod:`echoprep.stages.rois`.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.bids_uri import content_reference
from echoprep.io.images import StageInputError
from echoprep.io.outputs import get
from echoprep.kernels.rois import (
    RIDGE_MODEL,
    resample_nearest,
    select_visual_voxels,
    visual_mask_from_betas,
)
from echoprep.kernels.visual import leave_one_run_out_t
from echoprep.options import OptionsError
from echoprep.stages import rois

# --------------------------------------------------------------------------------------------
# helpers


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
    return path


def _grid(tmp_path: Path, shape=(10, 10, 10), voxel=2.0) -> Path:
    """A functional reference grid at ``voxel`` mm with its first voxel centre at the origin."""
    return _save(tmp_path / "grid.nii.gz", np.zeros(shape, np.float32), np.diag([voxel] * 3 + [1]))


# --------------------------------------------------------------------------------------------
# names


def test_res_label():
    assert rois.res_label(1.8) == "1pt8"
    assert rois.res_label([2.0, 2.0, 2.0]) == "2"
    assert rois.res_label(1.778) == "1pt778"
    assert rois.res_label([1.8, 1.8, 1.8000001]) == "1pt8"
    with pytest.raises(ValueError, match="positive"):
        rois.res_label(0)


def _mask_path(out: str | Path, label: str, res: str, space: str | None = "T1w") -> Path:
    """Subject 01's ROI mask of the visual category, named as the plan names it (registry)."""
    mask = get("rois.mask")
    key = mask.subject_key("01", category="visual")
    return mask.path(out, key, space=space, res=res, label=label)


def test_roi_names_come_from_the_registry():
    p = _mask_path("out", "V1", "1pt8")
    assert p.as_posix() == "out/rois/sub-01/visual/sub-01_space-T1w_res-1pt8_label-V1_mask.nii.gz"
    p = _mask_path("r", "V1", "2", space=None)
    assert p.name == "sub-01_res-2_label-V1_mask.nii.gz"
    assert get("rois.table").file_name("sub-01_ses-01_task-images") == (
        "sub-01_ses-01_task-images_desc-ROIs_summary.tsv"
    )


# --------------------------------------------------------------------------------------------
# the ROI folder


def test_find_roi_files(tmp_path):
    one = np.ones((2, 2, 2), np.uint8)
    _save(tmp_path / "sub-01/visual/sub-01_space-T1w_label-V1_mask.nii.gz", one)
    _save(tmp_path / "sub-02/visual/sub-02_space-T1w_label-V1_mask.nii.gz", one)
    _save(tmp_path / "category/space-MNI152NLin2009aSym_label-FFA_mask.nii.gz", one)
    _save(tmp_path / "space-T1w_label-whole_mask.nii.gz", one)
    found = rois.find_roi_files(tmp_path, "01")
    assert [(f.category, f.label, f.space) for f in found] == [
        ("category", "FFA", "MNI152NLin2009aSym"),
        ("other", "whole", "T1w"),
        ("visual", "V1", "T1w"),
    ]
    assert [(f.category, f.label) for f in rois.find_roi_files(tmp_path, "03")] == [
        ("category", "FFA"),
        ("other", "whole"),
    ]
    assert rois.find_roi_files(None, "01") == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sub-01_space-MNI152NLin6Asym_label-V1_mask.nii.gz", "found space-MNI152NLin6Asym"),
        ("sub-01_label-V1_mask.nii.gz", "found no space entity"),
        ("sub-01_space-T1w_mask.nii.gz", "expected a label-<ROI> entity"),
    ],
)
def test_find_roi_files_bad_names(tmp_path, name, message):
    _save(tmp_path / "sub-01/vis/" / name, np.ones((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=message):
        rois.find_roi_files(tmp_path, "01")


def test_find_roi_files_reserved_and_duplicate(tmp_path):
    one = np.ones((2, 2, 2), np.uint8)
    _save(tmp_path / "visual/space-T1w_label-visuallyResponsive_mask.nii.gz", one)
    with pytest.raises(ValueError, match="is reserved for the ROI echoprep computes"):
        rois.find_roi_files(tmp_path, "01")
    (tmp_path / "visual/space-T1w_label-visuallyResponsive_mask.nii.gz").unlink()
    _save(tmp_path / "vis/space-T1w_label-A_mask.nii.gz", one)
    _save(tmp_path / "sub-01/vis/sub-01_space-T1w_label-A_mask.nii.gz", one)
    with pytest.raises(ValueError, match="one mask per category and label"):
        rois.find_roi_files(tmp_path, "01")
    with pytest.raises(ValueError, match="found no folder"):
        rois.find_roi_files(tmp_path / "nope", "01")


# --------------------------------------------------------------------------------------------
# masks and resampling


def test_check_binary_mask_errors(tmp_path):
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4))
    with pytest.raises(StageInputError, match="found an empty mask"):
        rois.check_binary_mask(img, "m.nii.gz")
    data = np.zeros((3, 3, 3), np.float32)
    data[0, 0, 0], data[1, 1, 1] = 1, 0.5
    with pytest.raises(
        StageInputError, match=r"binary mask \(0 and 1 only\); found values 0, 0.5, 1"
    ):
        rois.check_binary_mask(nib.Nifti1Image(data, np.eye(4)), "m.nii.gz")
    labels = np.zeros((3, 3, 3), np.int16)
    labels[0, 0, 0], labels[2, 2, 2] = 1, 2
    with pytest.raises(StageInputError, match="split a label image"):
        rois.check_binary_mask(nib.Nifti1Image(labels, np.eye(4)), "m.nii.gz")
    with pytest.raises(StageInputError, match="3D binary mask"):
        rois.check_binary_mask(nib.Nifti1Image(np.ones((2, 2, 2, 2), np.uint8), np.eye(4)), "m")


def test_resample_nearest_known_counts():
    # 1 mm cube of side 6 (source indices 2..7) onto a 2 mm grid sharing the origin: target
    # voxel i takes source voxel 2i, so i in {1, 2, 3} per axis -> 27 voxels.
    src = np.zeros((12, 12, 12), np.uint8)
    src[2:8, 2:8, 2:8] = 1
    out = resample_nearest(src, np.eye(4), (6, 6, 6), np.diag([2.0, 2, 2, 1]))
    assert out.sum() == 27
    assert out[1:4, 1:4, 1:4].all()
    # upsampling: one 2 mm voxel becomes 2x2x2 1 mm voxels (centres within half a voxel)
    big = np.zeros((4, 4, 4), np.uint8)
    big[1, 1, 1] = 1
    up = resample_nearest(big, np.diag([2.0, 2, 2, 1]), (8, 8, 8), np.eye(4))
    assert up.sum() == 8
    # a shifted target: outside the source field of view is 0
    shifted = np.eye(4)
    shifted[:3, 3] = 100
    assert resample_nearest(src, np.eye(4), (4, 4, 4), shifted).sum() == 0


def test_run_roi_mask_t1w(tmp_path):
    grid = _grid(tmp_path)
    src = np.zeros((20, 20, 20), np.uint8)
    src[2:8, 2:8, 2:8] = 1
    mask = _save(tmp_path / "in/sub-01_space-T1w_label-V1_mask.nii.gz", src)
    out = _mask_path(tmp_path, "V1", "2")
    rois.run_roi_mask(mask, "T1w", grid, out, category="visual")
    img = nib.load(out)
    assert img.shape == (10, 10, 10)
    assert np.allclose(img.affine, np.diag([2.0, 2, 2, 1]))
    assert img.get_data_dtype() == np.uint8
    assert int(np.asarray(img.dataobj).sum()) == 27
    side = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    assert side["Voxels"] == 27
    assert side["Parameters"]["Interpolation"] == "nearest"
    assert content_reference(mask) in side["Sources"]  # outside every dataset: name + digest


def test_roi_to_grid_errors(tmp_path):
    grid = nib.load(_grid(tmp_path))
    far = np.eye(4)
    far[:3, 3] = 500
    src = _save(tmp_path / "far.nii.gz", np.ones((3, 3, 3), np.uint8), far)
    with pytest.raises(StageInputError, match="none of them falls inside the functional grid"):
        rois.roi_to_grid(src, "T1w", grid)
    ok = _save(tmp_path / "ok.nii.gz", np.ones((3, 3, 3), np.uint8))
    with pytest.raises(StageInputError, match="needs the anatomy stage's"):
        rois.roi_to_grid(ok, rois.TEMPLATE, grid)


def test_roi_to_grid_template_identity_matrix(tmp_path):
    """A template-space mask through a transform (here an identity affine .mat) with ANTs."""
    ants = pytest.importorskip("ants")
    grid = nib.load(_grid(tmp_path))
    src = np.zeros((12, 12, 12), np.uint8)
    src[2:8, 2:8, 2:8] = 1
    path = _save(tmp_path / "mni.nii.gz", src)
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    ants.write_transform(tx, str(tmp_path / "identity.mat"))
    out = rois.roi_to_grid(path, rois.TEMPLATE, grid, xfm_from_template=tmp_path / "identity.mat")
    assert out.sum() == 27


# --------------------------------------------------------------------------------------------
# visually responsive ROI


def test_leave_one_run_out_t_by_hand():
    # one voxel, 3 runs of 2 trials
    b = np.array([[1.0, 3.0, 2.0, 2.0, 5.0, 7.0]])
    runs = np.array(["1", "1", "2", "2", "3", "3"])
    expected = []
    for r in "123":
        x = b[0, runs != r]
        expected.append(x.mean() / (x.std(ddof=1) / np.sqrt(x.size)))
    got = leave_one_run_out_t(b, runs)
    assert got[0] == pytest.approx(min(expected))
    # by hand: run 1 out: 2, 2, 5, 7 -> mean 4, var 6 -> t = 4 / (sqrt(6)/2) = 3.266;
    # run 2 out: 1, 3, 5, 7 -> mean 4, var 20/3 -> t = 3.098; run 3 out: 1, 3, 2, 2 -> mean 2,
    # var 2/3 -> t = 4.899; the minimum is the run-2 fold
    assert got[0] == pytest.approx(4 / (np.sqrt(20 / 3) / 2))
    assert got[0] == pytest.approx(3.0984, abs=1e-4)
    # one run: plain t of all trials
    one = leave_one_run_out_t(b, np.array(["1"] * 6))
    x = b[0]
    assert one[0] == pytest.approx(x.mean() / (x.std(ddof=1) / np.sqrt(6)))
    # constant betas in one fold -> undefined (NaN), even if other folds are fine
    c = np.array([[1.0, 1.0, 1.0, 1.0, 2.0, 3.0]])
    assert np.isnan(leave_one_run_out_t(c, runs)[0])


def test_leave_one_run_out_single_bad_run():
    """A voxel driven by one run only is not selected; a consistent one is."""
    rng = np.random.default_rng(0)
    runs = np.repeat(["1", "2", "3", "4"], 20)
    steady = 1.0 + 0.5 * rng.standard_normal(80)
    one_run = 0.5 * rng.standard_normal(80)
    one_run[:20] += 8.0
    mask, stat = visual_mask_from_betas(np.stack([steady, one_run]), runs, 3.0)
    assert mask.tolist() == [True, False]
    assert stat[0] > 10


def test_select_visual_voxels_returns_its_fallbacks_as_warnings():
    """The kernel logs nothing: the fallbacks come back as warnings, in order."""
    rng = np.random.default_rng(3)
    betas = 1.0 + 0.3 * rng.standard_normal((5, 24))
    common = {"threshold": 3.0, "alpha": 0.05, "correction": "fdr", "min_voxels": 1}
    one = select_visual_voxels(
        betas, np.array(["1"] * 24), method="blank", model_type=None, **common
    )
    assert len(one.warnings) == 1 and one.warnings[0].startswith("one run: no between-run")
    assert one.parameters["Fallback"] == one.warnings[0] and one.mask.all()
    runs = np.repeat(["1", "2", "3"], 8)
    ridge = select_visual_voxels(betas, runs, method="blank", model_type=RIDGE_MODEL, **common)
    assert ridge.warnings[0].startswith("type-D (ridge, autoscaled) betas share")
    assert ridge.parameters["Calibrated"] is False and ridge.parameters["Fallback"] is None
    trials = select_visual_voxels(betas, runs, method="blank_trials", model_type=None, **common)
    assert trials.warnings == () and trials.parameters["Threshold"] == 3.0


def _glm_session(tmp_path: Path, *, blank: bool = True, n_runs: int = 3, per_run: int = 12):
    """Synthetic GLM outputs: 6x6x4 grid, responsive block in x<3 (betas ~ 2 % + noise)."""
    rng = np.random.default_rng(1)
    shape = (6, 6, 4)
    n = n_runs * per_run
    betas = 0.3 * rng.standard_normal((*shape, n)).astype(np.float32)
    betas[:3] += 2.0
    betas[:, :, 3] = 0  # outside the fitted mask
    folder = tmp_path / "glm"
    b = _save(folder / "betas.nii.gz", betas)
    runs = np.repeat([f"{r + 1:02d}" for r in range(n_runs)], per_run)
    trials = folder / "trials.tsv"
    pd.DataFrame(
        {
            "session": "01",
            "run": runs,
            "beta_index": np.arange(n),
            "label": [f"img{i % (n // 2)}" for i in range(n)],
            "onset": np.arange(n) * 3.0,
        }
    ).to_csv(trials, sep="\t", index=False)
    events = []
    for r in range(n_runs):
        ev = folder / f"run-{r + 1}_events.tsv"
        types = ["new"] * per_run + (["blank"] * 2 if blank else [])
        pd.DataFrame({"onset": np.arange(len(types)) * 3.0, "trial_type": types}).to_csv(
            ev, sep="\t", index=False
        )
        events.append({"run": f"{r + 1:02d}", "events": str(ev)})
    summary = folder / "summary.json"
    summary.write_text(
        json.dumps({"Options": {"blank_trial_types": ["blank"]}, "RunsUsed": events})
    )
    r2 = np.zeros(shape, np.float32)
    r2[3:, :, :3] = 20.0  # the ON-OFF R² marks another block: tells the methods apart
    onoff = _save(folder / "onoff.nii.gz", r2)
    return b, trials, summary, onoff


def test_visual_roi_blank(tmp_path):
    """Run-level test (Bonferroni 5 %: no false positive expected among 54 null voxels)."""
    b, trials, summary, onoff = _glm_session(tmp_path)
    out = tmp_path / "rois/sub-01/visual/sub-01_res-2_label-visuallyResponsive_mask.nii.gz"
    rois.run_visual_roi(
        b,
        trials,
        summary,
        out,
        onoff_r2=onoff,
        options={"visual": {"correction": "bonferroni"}},
        variant="raw-single",
    )
    mask = np.asarray(nib.load(out).dataobj).astype(bool)
    expected = np.zeros((6, 6, 4), bool)
    expected[:3, :, :3] = True
    assert (mask == expected).all()
    side = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    par = side["Parameters"]
    assert par["Method"] == "blank"
    assert par["Runs"] == 3
    assert par["BlankTrials"] == 6
    assert par["Variant"] == "raw-single"
    assert par["Alpha"] == 0.05 and par["Correction"] == "bonferroni"
    assert par["PValueCutoff"] == pytest.approx(0.05 / 108)  # 108 testable voxels (z < 3)
    assert par["Calibrated"] is True and par["Fallback"] is None
    assert par["Statistic"].startswith("one-sided moderated run-level t")
    assert par["SignificantVoxels"] == 54
    assert side["Voxels"] == 3 * 6 * 3
    # the former statistic is still available
    old = tmp_path / "old.nii.gz"
    rois.run_visual_roi(
        b, trials, summary, old, options={"visual": {"method": "blank_trials", "threshold": 5.0}}
    )
    assert (np.asarray(nib.load(old).dataobj).astype(bool) == expected).all()
    par = json.loads(old.with_name("old.json").read_text())["Parameters"]
    assert par["Method"] == "blank_trials" and par["Threshold"] == 5.0
    assert par["Calibrated"] is False


def test_visual_roi_fallbacks_are_pinned(tmp_path, caplog):
    b, trials, summary, _ = _glm_session(tmp_path)
    # nothing significant at a tiny alpha: the min_voxels most significant voxels, said so
    out = tmp_path / "v.nii.gz"
    with caplog.at_level("WARNING"):
        rois.run_visual_roi(
            b, trials, summary, out, options={"visual": {"alpha": 1e-300, "min_voxels": 7}}
        )
    par = json.loads(out.with_name("v.json").read_text())["Parameters"]
    message = (
        "0 voxels significant at fdr 1e-300 (fewer than min_voxels 7): the 7 voxels with the "
        "smallest p-values are used, a selection without error control"
    )
    assert par["Fallback"] == message and par["Calibrated"] is False
    assert message in caplog.text
    mask = np.asarray(nib.load(out).dataobj).astype(bool)
    assert mask.sum() == 7 and mask[:3].sum() == 7  # the strongest voxels are the active ones
    # one run: no between-run variance, the trial-level t with its threshold, said so
    b1, trials1, summary1, _ = _glm_session(tmp_path / "one", n_runs=1, per_run=24)
    out1 = tmp_path / "one.nii.gz"
    caplog.clear()
    with caplog.at_level("WARNING"):
        rois.run_visual_roi(b1, trials1, summary1, out1, options={"visual": {"threshold": 5.0}})
    par = json.loads(out1.with_name("one.json").read_text())["Parameters"]
    message = (
        "one run: no between-run variance, so no calibrated test; the trial-level t above 5 is "
        "used (it treats correlated trials as independent)"
    )
    assert par["Fallback"] == message and par["Calibrated"] is False
    assert message in caplog.text
    assert par["Statistic"].startswith("one-sample t-value of all image trials")
    # type-D betas: used, with a warning, and not called calibrated
    b.with_name("betas.json").write_text(json.dumps({"ModelType": "FITHRF_GLMDENOISE_RR"}))
    caplog.clear()
    with caplog.at_level("WARNING"):
        rois.run_visual_roi(b, trials, summary, out)
    assert "type-D (ridge, autoscaled) betas share a per-voxel offset across runs" in caplog.text
    par = json.loads(out.with_name("v.json").read_text())["Parameters"]
    assert par["Calibrated"] is False and par["BetaModel"] == "FITHRF_GLMDENOISE_RR"


def test_visual_roi_onoff_fallback(tmp_path):
    b, trials, summary, onoff = _glm_session(tmp_path, blank=False)
    out = tmp_path / "visual.nii.gz"
    rois.run_visual_roi(
        b, trials, summary, out, onoff_r2=onoff, options={"visual": {"onoff_threshold": 10.0}}
    )
    mask = np.asarray(nib.load(out).dataobj).astype(bool)
    expected = np.zeros((6, 6, 4), bool)
    expected[3:, :, :3] = True
    assert (mask == expected).all()
    side = json.loads(out.with_name("visual.json").read_text())
    assert side["Parameters"]["Method"] == "onoff"
    with pytest.raises(StageInputError, match="needs the type-A ON-OFF R² map; found none"):
        rois.run_visual_roi(b, trials, summary, out)


def test_visual_roi_too_few_voxels(tmp_path):
    b, trials, summary, _ = _glm_session(tmp_path)
    n = rois.parse_roi_options(None).visual.min_voxels  # the schema's default
    with pytest.raises(StageInputError, match=f"expected at least {n} responsive voxels; found 0"):
        rois.run_visual_roi(
            b,
            trials,
            summary,
            tmp_path / "v.nii.gz",
            options={"visual": {"method": "blank_trials", "threshold": 1e6}},
        )


def test_visual_roi_options_come_from_the_schema():
    opts = rois.parse_roi_options({"visual": {"alpha": 0.01}})
    assert opts.visual.alpha == 0.01 and opts.visual.method == "auto"
    assert opts.dir is None and opts.res is None
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['aplha'\] in 'rois.visual'"):
        rois.parse_roi_options({"visual": {"aplha": 0.01}})
    with pytest.raises(OptionsError, match=r"rois.visual.method: 'best' is not one of"):
        rois.parse_roi_options({"visual": {"method": "best"}})
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['visuals'\]; allowed keys"):
        rois.parse_roi_options({"visuals": {}})


def test_visual_roi_masks_on_another_grid_are_refused(tmp_path):
    b, trials, summary, _ = _glm_session(tmp_path)
    other = _save(tmp_path / "brain.nii.gz", np.ones((6, 6, 4), np.uint8), np.diag([2, 2, 2, 1]))
    with pytest.raises(StageInputError) as err:
        rois.run_visual_roi(b, trials, summary, tmp_path / "v.nii.gz", brain_mask=other)
    text = str(err.value)
    assert text.startswith(f"{other}: expected a brain mask on the grid of {b} (shape (6, 6, 4)")
    assert text.endswith("Fix: pass the brain mask of the same functional grid.")


def test_visual_roi_trials_mismatch(tmp_path):
    b, trials, summary, _ = _glm_session(tmp_path)
    t = pd.read_csv(trials, sep="\t").iloc[:-1]
    t.to_csv(trials, sep="\t", index=False)
    with pytest.raises(StageInputError, match="one row per beta volume"):
        rois.run_visual_roi(b, trials, summary, tmp_path / "v.nii.gz")


# --------------------------------------------------------------------------------------------
# ROI table


def test_roi_table(tmp_path):
    nc = np.zeros((4, 4, 4), np.float32)
    nc[0] = [[10, 20, 30, 40]] * 4  # x = 0 slab
    r2 = np.full((4, 4, 4), 5.0, np.float32)
    nc_p = _save(tmp_path / "nc.nii.gz", nc)
    r2_p = _save(tmp_path / "r2.nii.gz", r2)
    a = np.zeros((4, 4, 4), np.uint8)
    a[0, 0, :] = 1  # NC 10, 20, 30, 40
    m1 = _save(_mask_path(tmp_path, "A", "1"), a)
    m2 = _save(
        _mask_path(tmp_path, rois.VISUAL_LABEL, "1"),
        (nc > 15).astype(np.uint8),
    )
    out = tmp_path / get("rois.table").file_name("sub-01_ses-01_task-x")
    rois.run_roi_table(nc_p, [m1, m2], out, r2=r2_p, variant="raw-single")
    t = pd.read_csv(out, sep="\t")
    assert list(t.columns) == list(rois.TABLE_COLUMNS)
    a_row = t.set_index("roi_label").loc["A"]
    assert a_row["voxels"] == 4
    assert a_row["nc_median"] == pytest.approx(25.0)
    assert a_row["nc_mean"] == pytest.approx(25.0)
    assert a_row["r2_median"] == pytest.approx(5.0)
    v_row = t.set_index("roi_label").loc[rois.VISUAL_LABEL]
    assert v_row["voxels"] == 12 and v_row["nc_median"] == pytest.approx(30.0)
    assert v_row["category"] == "visual"
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["nc_median"]["Units"] == "%"
    assert side["Sources"] == [str(nc_p), str(r2_p), str(m1), str(m2)]
    assert side["Parameters"]["Variant"] == "raw-single"
    assert side["Parameters"]["ROIs"] == ["visual/A", f"visual/{rois.VISUAL_LABEL}"]
    assert "echoprep" in side["SoftwareVersions"]


def test_roi_table_grid_mismatch(tmp_path):
    nc_p = _save(tmp_path / "nc.nii.gz", np.zeros((4, 4, 4), np.float32))
    m = _save(tmp_path / "rois/sub-01/x/sub-01_label-A_mask.nii.gz", np.ones((5, 4, 4), np.uint8))
    with pytest.raises(StageInputError) as err:
        rois.run_roi_table(nc_p, [m], tmp_path / "t.tsv")
    assert str(err.value).startswith(
        f"{m}: expected a region-of-interest (ROI) mask on the grid of {nc_p} (shape (4, 4, 4)"
    )
    assert "found shape (5, 4, 4)" in str(err.value)
    assert str(err.value).endswith("Fix: rerun the ROI rules (the functional grid changed?).")


def test_cli_parses(tmp_path, capsys):
    """The rois section arrives whole as --options-json; the legacy one-option flags of the
    visual ROI are gone."""
    from echoprep.cli import build_parser

    b, trials, summary, _ = _glm_session(tmp_path)
    base = ["rois", "visual", "--betas", str(b), "--trials", str(trials)]
    base += ["--summary", str(summary), "--out", f"mask={tmp_path / 'v.nii.gz'}"]
    options = '{"visual": {"method": "blank_trials", "threshold": 5}}'
    args = build_parser().parse_args([*base, "--options-json", options])
    assert args.func(args) == 0
    assert (tmp_path / "v.nii.gz").is_file()
    par = json.loads((tmp_path / "v.json").read_text())["Parameters"]
    assert par["Method"] == "blank_trials" and par["Threshold"] == 5.0
    args.out = str(tmp_path / "v.nii.gz")
    with pytest.raises(SystemExit, match=r"--out expects mask=PATH"):
        args.func(args)
    legacy = {
        "--method": "blank_trials",
        "--threshold": "5",
        "--alpha": "0.01",
        "--correction": "bonferroni",
        "--onoff-threshold": "4",
        "--min-voxels": "3",
    }
    for flag, value in legacy.items():
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, flag, value])
        assert f"unrecognized arguments: {flag} {value}" in capsys.readouterr().err
