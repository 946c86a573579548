"""The oracle plantings of ``benchmarks/planted_oracle.py`` (docs/comparison.md, "What the
planted estimate still misreads"): which case a kept folder is, and what each oracle puts in
place of the design's planted pattern and time courses (known answers on a small synthetic
design; no workflow is run)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.kernels.glm.hrf import FINE_DT
from echoprep.simulate.design import HRF_PEAKS, hrf_table
from echoprep.simulate.truth import truth_paths
from helpers.scripts import load_benchmark


@pytest.fixture(scope="module")
def oracle() -> ModuleType:
    return load_benchmark("planted_oracle")


@pytest.fixture(scope="module")
def regimes() -> ModuleType:
    return load_benchmark("comparison_regimes")


@pytest.mark.parametrize(
    ("kwargs", "flags"),
    [
        ({"runs": None, "motion": False}, []),
        ({"runs": 4, "motion": False}, ["--runs", "4"]),
        (
            {"runs": 4, "motion": False, "sessions": 2, "spatial": True},
            ["--runs", "4", "--spatial", "--sessions", "2"],
        ),
        (
            {"runs": 12, "motion": False, "spatial": True, "source": "other_runs"},
            ["--runs", "12", "--spatial", "--source", "other_runs"],
        ),
        ({"runs": 6, "motion": True}, ["--runs", "6", "--motion"]),
    ],
)
def test_case_args_rescore_the_case_comparison_regimes_kept(
    oracle: ModuleType, regimes: ModuleType, kwargs: dict, flags: list[str], tmp_path: Path
) -> None:
    name = regimes.case_name("lowdim_shared", 3, **kwargs)
    args = oracle.case_args(tmp_path / name)
    assert args[:7] == [
        "--regimes",
        "lowdim_shared",
        "--seed",
        "3",
        "--keep",
        str(tmp_path),
        "--rescore",
    ]
    assert args[7:] == flags


def test_case_args_name_what_a_folder_should_be_called(oracle: ModuleType) -> None:
    with pytest.raises(SystemExit, match=r"expected a folder named <regime>_seed<S>"):
        oracle.case_args(Path("/tmp/not_a_case"))


def _case(tmp_path: Path, n_images: int = 30) -> tuple[Path, dict, np.ndarray, np.ndarray]:
    """A case folder with the truth files the oracle reads and a design over 4 x 4 x 4 voxels
    whose planted pattern is 2 x the centred true image means plus noise."""
    rng = np.random.default_rng(0)
    shape = (4, 4, 4)
    paths = truth_paths(tmp_path / "bids", "01", "01")
    labels = [f"img{i:03d}" for i in range(n_images)]
    means = rng.standard_normal((*shape, n_images)) + 3.0  # a mean evoked level of about 3
    peak = rng.uniform(HRF_PEAKS[0], HRF_PEAKS[-1], shape)
    for key, data in (("image_means", means), ("hrf_peak", peak)):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), paths[key])
    pd.DataFrame({"label": labels}).to_csv(paths["images"], sep="\t", index=False)
    voxels = np.argwhere(np.ones(shape, bool)).astype(np.int32)
    true = means[tuple(voxels.T)]
    order = rng.permutation(n_images)  # the design's images in another order than the truth's
    centred = true[:, order] - true[:, order].mean(axis=1, keepdims=True)
    planted = 2.0 * centred + 0.1 * rng.standard_normal(centred.shape)
    design = {
        "voxels": voxels,
        "images": np.asarray([labels[i] for i in order]),
        "planted": planted.astype(np.float32),
        "truth": planted.astype(np.float32),
        "curves": np.ones((525, 20), np.float32),
        "hrf": np.zeros(len(voxels), np.int16),
        "stimdur": np.float64(2.5),
        "source": np.asarray("other_sessions"),
    }
    return tmp_path, design, true[:, order], peak[tuple(voxels.T)]


def test_truth_oracle_plants_the_noise_free_means_at_the_patterns_scale(
    oracle: ModuleType, tmp_path: Path
) -> None:
    case, design, true, _ = _case(tmp_path)
    out, gain = oracle.oracle_design(case, design, "01", "truth")
    assert gain == pytest.approx(2.0, abs=0.01)
    centred = true - true.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out["planted"], gain * centred, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["curves"], design["curves"])  # the time courses kept
    np.testing.assert_array_equal(out["truth"], design["truth"])  # and half B


def test_shape_oracle_plants_the_simulators_curves_and_keeps_the_pattern(
    oracle: ModuleType, tmp_path: Path
) -> None:
    case, design, _, peak = _case(tmp_path)
    out, _ = oracle.oracle_design(case, design, "01", "shape")
    np.testing.assert_array_equal(out["planted"], design["planted"])
    nearest = np.abs(peak[:, None] - HRF_PEAKS[None, :]).argmin(axis=1)
    np.testing.assert_array_equal(out["hrf"], nearest)
    times, table = hrf_table(2.5)
    at = round(6.0 / FINE_DT)  # 6 s after the onset
    column = int(nearest[0])
    assert out["curves"][at, column] == pytest.approx(
        np.interp(6.0, times, table[column]), abs=1e-6
    )
    assert out["curves"].max() == pytest.approx(1.0, abs=1e-3)  # peak 1, as the design's


def test_level_oracle_keeps_each_voxels_mean_evoked_response(
    oracle: ModuleType, tmp_path: Path
) -> None:
    case, design, true, _ = _case(tmp_path)
    out, gain = oracle.oracle_design(case, design, "01", "truth-shape-level")
    np.testing.assert_allclose(out["planted"], gain * true, rtol=1e-5, atol=1e-4)
    assert out["planted"].mean() == pytest.approx(2.0 * 3.0, abs=0.3)
