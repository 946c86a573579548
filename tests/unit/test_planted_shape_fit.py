"""``benchmarks/planted_shape_fit.py``: how close the planted time courses are to the
simulator's (known answers on a small synthetic design; no workflow is run)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

from echoprep.kernels.glm.hrf import FINE_DT
from echoprep.simulate.design import HRF_PEAKS, hrf_index, hrf_table
from echoprep.simulate.truth import truth_paths
from helpers.scripts import load_benchmark


@pytest.fixture(scope="module")
def shape_fit() -> ModuleType:
    return load_benchmark("planted_shape_fit")


def _case(tmp_path: Path, curves: np.ndarray, hrf: np.ndarray | None = None) -> Path:
    """A case whose simulator drew a peak time per voxel of a 4 x 4 x 4 grid (half of it in
    the ROI) and whose design plants ``curves`` (column ``hrf``: by default the voxel's true
    library entry)."""
    rng = np.random.default_rng(0)
    shape = (4, 4, 4)
    peak = rng.uniform(HRF_PEAKS[0], HRF_PEAKS[-1], shape)
    truth = truth_paths(tmp_path / "bids", "01", "01")
    truth["hrf_peak"].parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(peak.astype(np.float32), np.eye(4)), truth["hrf_peak"])
    voxels = np.argwhere(np.ones(shape, bool)).astype(np.int32)
    if hrf is None:
        hrf = hrf_index(peak[tuple(voxels.T)])
    path = tmp_path / "results/planted/sub-01/ses-01/func/x_desc-planted_design.npz"
    path.parent.mkdir(parents=True)
    np.savez(
        path,
        voxels=voxels,
        curves=curves.astype(np.float32),
        hrf=np.asarray(hrf, np.int16),
        roi=np.arange(len(voxels)) % 2 == 0,
        stimdur=np.float64(2.5),
    )
    return tmp_path


def _simulator_curves(shift: float = 0.0) -> np.ndarray:
    times, table = hrf_table(2.5)
    fine = np.arange(525) * FINE_DT
    return np.stack([np.interp(fine - shift, times, h, left=0, right=0) for h in table], axis=1)


def test_the_simulators_own_curves_score_one(shape_fit: ModuleType, tmp_path: Path) -> None:
    case = _case(tmp_path, _simulator_curves())
    fit = shape_fit.session_fit(case / "bids", next(case.rglob("*design.npz")), "01")
    assert fit["voxels"] == 64
    assert fit["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert fit["roi_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert fit["peak_error_s"] == 0.0 and fit["peak_error_sd_s"] == 0.0
    assert fit["hrf_choice_r"] == pytest.approx(1.0)
    assert 0.9 < fit["best_one_curve"] < 1.0  # the voxels' curves differ


def test_a_late_curve_reads_late_and_one_curve_for_all_at_best(
    shape_fit: ModuleType, tmp_path: Path
) -> None:
    late = _simulator_curves(shift=1.0)  # every curve 1 s late
    case = _case(tmp_path, late)
    fit = shape_fit.session_fit(case / "bids", next(case.rglob("*design.npz")), "01")
    assert fit["peak_error_s"] == pytest.approx(1.0, abs=FINE_DT)
    assert fit["cosine"] < 0.99
    # one column given to every voxel, the choice unrelated to the truth
    other = tmp_path / "one"
    one = np.repeat(_simulator_curves()[:, [10]], 20, axis=1)
    case = _case(other, one, hrf=np.arange(64) % 20)
    fit_one = shape_fit.session_fit(case / "bids", next(case.rglob("*design.npz")), "01")
    assert fit_one["cosine"] <= fit_one["best_one_curve"] + 1e-9
    assert abs(fit_one["hrf_choice_r"]) < 0.5
