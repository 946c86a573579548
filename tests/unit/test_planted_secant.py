"""The response-free twins of ``benchmarks/planted_secant.py`` (docs/comparison.md, "What the
planted estimate still misreads"): the same draws as the case's data, without the part of the
responses the twin leaves out (a tiny simulated dataset; no workflow is run)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.simulate import simulate_dataset
from echoprep.simulate.truth import truth_paths
from helpers.scripts import load_benchmark

MAG = "sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_echo-2_part-mag_bold.nii.gz"


@pytest.fixture(scope="module")
def secant() -> ModuleType:
    return load_benchmark("planted_secant")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("case")
    simulate_dataset(root / "bids", "tiny", seed=3, subjects=1, sessions=1, runs=1)
    return root


def _img(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, np.float64)


def test_trial_twin_keeps_the_image_means_and_drops_the_trial_variability(
    secant: ModuleType, case: Path, tmp_path: Path
) -> None:
    twin = secant.response_free(case, tmp_path / "twin", "trial")
    data, none = truth_paths(case / "bids", "01", "01"), truth_paths(twin, "01", "01")
    np.testing.assert_array_equal(_img(none["image_means"]), _img(data["image_means"]))
    active = _img(data["active_mask"]) > 0
    trials = pd.read_csv(data["trials"], sep="\t", dtype={"label": str})
    images = pd.read_csv(data["images"], sep="\t", dtype={"label": str})["label"].tolist()
    trials = trials[trials["label"].isin(images)]
    column = [images.index(lab) for lab in trials["label"]]
    means = _img(data["image_means"])[active][:, column]
    betas = _img(none["betas"])[active][:, trials["beta_index"].to_numpy()]
    np.testing.assert_allclose(betas, means, rtol=1e-6, atol=1e-7)  # no trial variability left
    original = _img(data["betas"])[active][:, trials["beta_index"].to_numpy()]
    assert np.abs(original - means).mean() > 0.1 * np.abs(means - means.mean()).mean()
    # the same noise: outside the responding voxels the echoes are the data's, bit for bit
    a, b = _img(case / "bids" / MAG), _img(twin / MAG)
    np.testing.assert_array_equal(a[~active], b[~active])
    assert not np.array_equal(a[active], b[active])


def test_response_free_twin_has_the_same_noise_and_no_response(
    secant: ModuleType, case: Path, tmp_path: Path
) -> None:
    twin = secant.response_free(case, tmp_path / "free", "all")
    active = _img(truth_paths(case / "bids", "01", "01")["active_mask"]) > 0
    a, b = _img(case / "bids" / MAG), _img(twin / MAG)
    np.testing.assert_array_equal(a[~active], b[~active])
    assert np.abs(_img(truth_paths(twin, "01", "01")["betas"])).max() < 1e-6
    shutil.rmtree(twin)


def test_the_data_without_its_image_responses_keeps_the_rest(
    secant: ModuleType, case: Path, tmp_path: Path
) -> None:
    """``--part image-in-data``: the ``-`` echoes are the data less the image means' responses
    (the twin without trial variability less the response-free twin), so the data's noise and
    trial-to-trial part stay, and the difference from the data is the image responses alone."""
    twin = secant.response_free(case, tmp_path / "bids-noimageresponse", "image")
    with_means = _img(tmp_path / "bids-notrialvariability" / MAG)
    none = _img(tmp_path / "bids-noresponse" / MAG)
    data = _img(case / "bids" / MAG)
    active = _img(truth_paths(case / "bids", "01", "01")["active_mask"]) > 0
    got = data - _img(twin / MAG)
    np.testing.assert_allclose(got, with_means - none, atol=1e-3)
    np.testing.assert_array_equal(got[~active], 0.0)
    # the image responses are there, and the twin is not the response-free one (the
    # trial-to-trial part stays in it)
    assert np.abs(got[active]).max() > 1.0
    assert np.abs(_img(twin / MAG) - none)[active].max() > 1.0


def test_the_planted_voxels_are_the_designs(secant: ModuleType, tmp_path: Path) -> None:
    """``--only-planted-voxels`` cuts the true responses where the workflow's planting is cut:
    at the voxels the session's design plants."""
    design = tmp_path / "results/planted/sub-01/ses-02/func/x_desc-planted_design.npz"
    design.parent.mkdir(parents=True)
    voxels = np.array([[0, 1, 2], [3, 0, 1]], np.int32)
    np.savez(design, voxels=voxels, shape=np.array([4, 2, 3], np.int32))
    mask = secant.planted_voxels(tmp_path, "02")
    assert mask.shape == (4, 2, 3) and mask.sum() == 2
    assert mask[0, 1, 2] and mask[3, 0, 1]
