"""The anatomy stage on an MP2RAGE UNI T1w: the noise background detected and set to 0 before
N4 and brain extraction (echoprep.stages.anatomy.background, echoprep.kernels.head_mask).

One stage run per module on the simulator's demo-preset UNI (2 mm, 92×110×92: the smallest
simulated T1w whose brain edge is resolved well enough for a 0.95 Dice to mean something; at
4 mm even the untreated UNI scores 0.97): the anatomy only is simulated (about 5 s), the stage
runs N4, deepbet and k-means Atropos without registration (about 20-25 s on 2 cores). Without
the background step the same run scores brain Dice 0.95, GM 0.05, WM 0.34 (docs/anatomy.md).
The other tests use arrays or stop before N4 and cost little.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from echoprep.io.outputs import paths_in, subject_key
from echoprep.io.paths import sidecar_path
from echoprep.kernels import head_mask
from echoprep.kernels.tissue import dice
from echoprep.options import OptionsError
from echoprep.simulate import PRESETS, truth_paths
from echoprep.simulate.anatomy import t1w_image
from echoprep.simulate.anatomy_files import anat_image_path, write_anatomy
from echoprep.stages.anatomy import parse_anatomy_options, run_anatomy
from echoprep.stages.anatomy.background import prepare_background, sidecar_says_uni

OPTIONS = {"segmentation": "kmeans"}  # no registration: the brain mask does not need it


@pytest.fixture(scope="module")
def uni(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("uni")
    bids = root / "bids"
    (t1w,) = write_anatomy(bids, PRESETS["demo"], 0, 1, "mp2rage")
    key = subject_key("01", datatype="anat")
    outputs = paths_in(root / "anat", "anatomy", key, keys=["preproc", "brain_mask", "dseg"])
    record = run_anatomy(t1w, outputs, seed=0, n_threads=2, options=OPTIONS)
    return SimpleNamespace(t1w=t1w, truth=truth_paths(bids, "01"), out=outputs, record=record)


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_stage_on_a_uni_matches_the_truth(uni: SimpleNamespace) -> None:
    truth = _data(uni.truth["T1w_brain_mask"]) > 0
    score = dice(_data(uni.out["brain_mask"]) > 0, truth)
    assert score >= 0.95, f"brain mask Dice {score:.4f} < 0.95"
    labels, seg = _data(uni.truth["T1w_dseg"]), _data(uni.out["dseg"])
    gm, wm = (dice(seg == lab, labels == lab) for lab in (1, 2))
    # N4 fitted to the noise background scales parts of the white matter by 3-4x: GM 0.05 and
    # WM 0.34 without the background step
    assert gm >= 0.65 and wm >= 0.75, f"GM Dice {gm:.3f}, WM Dice {wm:.3f}"


def test_stage_records_what_it_did_to_the_background(uni: SimpleNamespace) -> None:
    background = uni.record["Background"]
    assert background["Suppressed"] is True and background["NoiseBackground"] is True
    assert background["SidecarSaysUNI"] == "ImageType has UNI"
    assert uni.record["Warnings"] == []  # the sidecar says UNI: expected, nothing to warn of
    for key in ("preproc", "brain_mask"):
        side = json.loads(sidecar_path(uni.out[key]).read_text())
        assert side["Background"] == background, key
        assert "MP2RAGE UNI noise background first set to 0" in side["Description"], key
    # the air is 0 in the corrected T1w; the brain is all there
    preproc = _data(uni.out["preproc"])
    brain = _data(uni.truth["T1w_brain_mask"]) > 0
    air = ndimage.distance_transform_edt(~brain, sampling=2.0) > 25
    assert np.all(preproc[air] == 0)
    assert np.mean(preproc[brain] > 0) > 0.999


def test_a_uni_without_sidecar_is_handled_with_a_warning(uni, tmp_path, caplog) -> None:
    """The heuristic alone: the background is suppressed and a warning says why (pinned)."""
    path = tmp_path / "sub-01_T1w.nii.gz"
    shutil.copy(uni.t1w, path)
    data = _data(path).astype(np.float32)
    warnings: list[str] = []
    with caplog.at_level("WARNING", logger="echoprep.stages.anatomy"):
        out, record = prepare_background(path, data, 8.0, "auto", warnings)
    (warning,) = warnings
    assert warning.startswith(
        "sub-01_T1w.nii.gz: the background looks like an MP2RAGE UNI's: noise over the whole "
        "intensity range outside the head (border of the field of view: median roughness 0.29 "
        ">= 0.12, median intensity 0.51 of the 99th percentile >= 0.15), though its sidecar "
        "does not say MP2RAGE or UNI; the voxels without signal were set to 0 before N4 and "
        "brain extraction (anatomy.uni_background: auto)."
    ), warning
    assert "set anatomy.uni_background: keep" in warning and warning in caplog.text
    assert record["Suppressed"] and record["SidecarSaysUNI"] is None
    assert out is not data and np.mean(out == 0) > 0.5
    # keep: nothing changed, and a warning that it was left
    kept: list[str] = []
    same, record = prepare_background(path, data, 8.0, "keep", kept)
    assert same is data and not record["Suppressed"]
    (warning,) = kept
    assert "; kept as it is (anatomy.uni_background: keep): N4, the brain mask" in warning


def test_an_mprage_is_left_untouched_unless_asked(tmp_path: Path) -> None:
    _grid, image, brain, _ = t1w_image(PRESETS["tiny"], 0, 1)
    data = image.astype(np.float32)
    path = tmp_path / "t1w.nii.gz"
    warnings: list[str] = []
    same, record = prepare_background(path, data, 64.0, "auto", warnings)
    assert same is data and warnings == []
    assert record["NoiseBackground"] is False and record["Suppressed"] is False
    assert record["BorderRoughness"] < 0.02 and record["BorderBrightness"] < 0.05
    # suppress: the dark air goes, the brain stays (without a noise background, dark voxels
    # only: at 4 mm an MPRAGE's brain edge against dark bone is as rough as noise)
    out, record = prepare_background(path, data, 64.0, "suppress", warnings)
    assert warnings == [] and record["Suppressed"] is True and record["RoughThreshold"] is None
    assert np.all(out[brain] == data[brain]) and np.mean(out[~brain] == 0) > 0.5


def test_roughness_and_signal_mask_of_a_ball_in_uniform_noise() -> None:
    rng = np.random.default_rng(1)
    shape = (48, 48, 48)
    noise = rng.uniform(0, 4095, shape).astype(np.float32)
    ijk = np.indices(shape) - 23.5
    ball = (ijk**2).sum(axis=0) < 15**2
    image = np.where(ball, 2500 + 60 * rng.standard_normal(shape), noise).astype(np.float32)
    rough = head_mask.roughness(image, 4095.0)
    # median of six |X - Y| of independent uniforms: 1 - 1/sqrt(2) = 0.293 (of the range)
    assert abs(np.median(rough[~ndimage.binary_dilation(ball, iterations=2)]) - 0.293) < 0.01
    assert np.median(rough[ndimage.binary_erosion(ball, iterations=2)]) < 0.03
    stats = head_mask.background_statistics(image)
    assert head_mask.looks_like_noise_background(stats), stats
    mask, record = head_mask.signal_mask(image, 1.0)
    assert dice(mask, ball) > 0.97 and record["Pieces"] == 1
    dark = np.where(ball, image, rng.rayleigh(12.0, shape)).astype(np.float32)
    assert not head_mask.looks_like_noise_background(head_mask.background_statistics(dark))
    assert np.all(head_mask.roughness(np.full(shape, 7.0, np.float32)) == 0)


def test_which_sidecars_say_uni(tmp_path: Path) -> None:
    def says(side: dict | None) -> str | None:
        path = tmp_path / "x_T1w.nii.gz"
        json_path = tmp_path / "x_T1w.json"
        json_path.unlink(missing_ok=True)
        if side is not None:
            json_path.write_text(json.dumps(side))
        return sidecar_says_uni(path)

    assert says({"ImageType": ["DERIVED", "PRIMARY", "M", "UNI", "ND"]}) == "ImageType has UNI"
    assert says({"SeriesDescription": "mp2rage_UNI_Images"}) == (
        "SeriesDescription 'mp2rage_UNI_Images'"
    )
    assert says({"PulseSequenceType": "MP2RAGE"}) == "PulseSequenceType 'MP2RAGE'"
    assert says({"SeriesDescription": "mp2rage_INV2"}) is None
    assert says({"PulseSequenceType": "MPRAGE", "SeriesDescription": "t1_mprage"}) is None
    assert says(None) is None
    (tmp_path / "x_T1w.json").write_text("{not json")
    assert sidecar_says_uni(tmp_path / "x_T1w.nii.gz") is None
    assert anat_image_path(tmp_path, "01", "01").name == "sub-01_ses-01_T1w.nii.gz"


def test_the_option_is_checked() -> None:
    assert parse_anatomy_options(None).uni_background == "auto"
    with pytest.raises(OptionsError, match=r"anatomy.uni_background: 'x' is not one of"):
        parse_anatomy_options({"uni_background": "x"})
