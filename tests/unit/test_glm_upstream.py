"""``glm.engine: glmsingle`` runs upstream GLMsingle 1.2 and agrees with our engine.

Upstream is a black box here: installed from its wheel (``../shared/wheels``, by ``make
setup``), run through the stage (:func:`echoprep.stages.glm.run_glm`, the adapter
:mod:`echoprep.adapters.glmsingle`) and its files compared with our engine's on the same small
simulated session. Without the package the comparison skips, saying why.

The session: the simulator's tiny preset (2 runs x 90 volumes, 46 images x 2, TR 1.9 s), echo 2,
fitted on two slices of the true brain mask (571 voxels, 100 of them truly active) so that
upstream's fit takes seconds; ``brainR2 = pcR2cutoff = 1`` on both sides (upstream's tail
threshold is not seeded, docs/glm.md §15), one BLAS thread. Measured (2026-11-26): the same
number of GLMdenoise PCs (1); the same HRF index in every voxel; the same ridge fraction in 99.5 %
of the voxels; per truly active voxel the correlation of the 92 single-trial betas with our
engine's has median 0.999999 (smallest 0.99999); over all voxels and trials correlation
0.99999 and least-squares slope 1.00006; R² differences median 0.003 percentage points. The
tolerances below are two orders looser, and still fail for the mix-ups an adapter could make:
trials in another order (median correlation about 0.0) or betas in other units (slope far from
1).
"""

from __future__ import annotations

import importlib.util
import json
import tomllib
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoprep.adapters.sources import GLMSINGLE_REQUIREMENT, GLMSINGLE_SOURCE
from echoprep.io.events import read_trials
from echoprep.io.outputs import paths_in
from echoprep.simulate import simulate_dataset
from echoprep.stages.glm import DEFAULT_OUTPUTS, run_glm, session_key

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT.parent / "shared" / "wheels"
SES = "sub-01_ses-01_task-images"
#: Slices of the tiny preset's brain kept for the fit (z index).
SLICES = (6, 7)
#: Options of both engines (upstream's tail threshold is not seeded: fixed on both sides).
OPTIONS = {"brainR2": 1.0, "pcR2cutoff": 1.0}

# tolerances (measured values in the module docstring)
MIN_MEDIAN_VOXEL_R = 0.999  # truly active voxels: betas across trials, per voxel
MIN_P5_VOXEL_R = 0.99
MIN_OVERALL_R = 0.999
SLOPE_TOLERANCE = 0.01  # upstream's betas against ours, through the origin
MIN_SAME_HRF = 0.95  # fraction of voxels with the same library HRF
MIN_SAME_FRAC = 0.95  # fraction of voxels with the same ridge fraction
MAX_MEDIAN_R2_DIFF = 0.1  # percentage points


def _upstream_missing() -> str | None:
    """Why upstream GLMsingle cannot run here, or None."""
    if importlib.util.find_spec("glmsingle") is not None:
        return None
    wheels = sorted(WHEELS.glob("glmsingle-*.whl"))
    if wheels:
        return (
            f"upstream GLMsingle is not installed, but {wheels[0]} is there: run `make setup`"
            " (it installs the extra glmsingle from ../shared/wheels)"
        )
    return (
        f"upstream GLMsingle is not installed and its wheel is absent ({WHEELS} has no"
        " glmsingle-*.whl; it is not on the package index): `make setup` installs it where"
        f" ../shared/wheels has it, or `.venv/bin/pip install '{GLMSINGLE_REQUIREMENT}'`"
    )


needs_upstream = pytest.mark.skipif(
    _upstream_missing() is not None, reason=str(_upstream_missing())
)


def test_the_source_pin_is_pyprojects():
    """One pin: the adapter's source (named in messages) is pyproject.toml's, which
    envs/lock.py writes into envs/glmsingle.yaml; the commit is the 1.2 wheel's (1ab54a6)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["echoprep"]["git-sources"]["glmsingle"] == GLMSINGLE_SOURCE
    assert "glmsingle==1.2" in pyproject["project"]["optional-dependencies"]["glmsingle"]
    url, commit = GLMSINGLE_SOURCE.rsplit("@", 1)
    assert url == "git+https://github.com/cvnlab/GLMsingle.git"
    assert len(commit) == 40 and commit.startswith("1ab54a6")
    assert f"glmsingle @ {GLMSINGLE_SOURCE}" in (ROOT / "envs" / "glmsingle.yaml").read_text()


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Both engines' outputs of the tiny session on the two-slice mask."""
    root = tmp_path_factory.mktemp("upstream")
    bids = simulate_dataset(root / "bids", "tiny", seed=0)
    func = bids / "sub-01" / "ses-01" / "func"
    bold = [func / f"{SES}_run-0{r}_echo-2_part-mag_bold.nii.gz" for r in (1, 2)]
    events = [func / f"{SES}_run-0{r}_events.tsv" for r in (1, 2)]
    truth = bids / "derivatives" / "truth" / "sub-01" / "ses-01" / "func"
    brain = nib.load(truth / "sub-01_ses-01_desc-truthBrain_mask.nii.gz")
    keep = np.zeros(brain.shape, dtype=bool)
    keep[:, :, list(SLICES)] = True
    mask = root / "mask.nii.gz"
    data = (np.asarray(brain.dataobj) > 0) & keep
    nib.Nifti1Image(data.astype(np.uint8), brain.affine).to_filename(mask)
    out: dict[str, dict[str, Path]] = {}
    for engine in ("echoprep", "glmsingle"):
        paths = paths_in(
            root / engine, "glm", session_key("01", "01", "images"), keys=DEFAULT_OUTPUTS
        )
        run_glm(
            bold,
            events,
            paths,
            mask=mask,
            options={"engine": engine, **OPTIONS},
            run_labels=["01", "02"],
            session="01",
            seed=0,
            n_threads=1,
        )
        out[engine] = paths
    out["truth"] = {"active": truth / f"{SES}_desc-truthActive_mask.nii.gz"}
    return out


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).get_fdata())


def _voxel_r(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Per voxel (row), the correlation of the betas across trials (columns)."""
    a = ours - ours.mean(1, keepdims=True)
    b = theirs - theirs.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def _betas_agree(ours: np.ndarray, theirs: np.ndarray, active: np.ndarray) -> list[str]:
    """The betas checks; returns what failed (empty when they agree)."""
    r = _voxel_r(ours[active], theirs[active])
    slope = float((ours * theirs).sum() / (ours * ours).sum())
    overall = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
    failed = []
    if not (np.median(r) >= MIN_MEDIAN_VOXEL_R and np.percentile(r, 5) >= MIN_P5_VOXEL_R):
        failed.append(f"per-voxel r median {np.median(r):.6f}, 5th pct {np.percentile(r, 5):.6f}")
    if overall < MIN_OVERALL_R:
        failed.append(f"overall r {overall:.6f}")
    if abs(slope - 1) > SLOPE_TOLERANCE:
        failed.append(f"slope {slope:.5f}")
    return failed


@needs_upstream
def test_upstream_is_the_pinned_version():
    assert metadata.version("glmsingle") == "1.2"


@needs_upstream
def test_upstream_engine_agrees_with_ours(fits):
    ours, theirs = fits["echoprep"], fits["glmsingle"]
    mask = _data(ours["mask"]) > 0
    assert np.array_equal(mask, _data(theirs["mask"]) > 0) and mask.sum() == 571
    active = (_data(fits["truth"]["active"]) > 0)[mask]
    assert active.sum() == 100
    # the same trials in the same order, and both summaries say which engine
    assert read_trials(ours["trials"]).equals(read_trials(theirs["trials"]))
    summaries = {e: json.loads(fits[e]["summary"].read_text()) for e in ("echoprep", "glmsingle")}
    assert [s["Engine"] for s in summaries.values()] == ["echoprep", "glmsingle"]
    assert {s["ModelType"] for s in summaries.values()} == {"FITHRF_GLMDENOISE_RR"}
    assert summaries["echoprep"]["pcnum"] == summaries["glmsingle"]["pcnum"]
    # betas: per active voxel across trials, all voxels and trials, scale
    b_ours, b_theirs = _data(ours["betas"])[mask], _data(theirs["betas"])[mask]
    assert b_ours.shape == b_theirs.shape == (571, 92)
    assert _betas_agree(b_ours, b_theirs, active) == []
    # library HRF and ridge fraction per voxel, R²
    same_hrf = np.mean(_data(ours["hrfindex"])[mask] == _data(theirs["hrfindex"])[mask])
    assert same_hrf >= MIN_SAME_HRF
    frac = np.abs(_data(ours["fracridge"])[mask] - _data(theirs["fracridge"])[mask])
    assert np.mean(frac < 1e-6) >= MIN_SAME_FRAC
    r2 = np.abs(_data(ours["r2"])[mask] - _data(theirs["r2"])[mask])
    assert np.median(r2) <= MAX_MEDIAN_R2_DIFF


@needs_upstream
def test_the_tolerances_catch_an_adapter_mix_up(fits):
    """Trials in another order (runs swapped, or reversed within the session) or betas in
    other units (fractions, not percent) fail the same checks."""
    mask = _data(fits["echoprep"]["mask"]) > 0
    active = (_data(fits["truth"]["active"]) > 0)[mask]
    ours = _data(fits["echoprep"]["betas"])[mask]
    theirs = _data(fits["glmsingle"]["betas"])[mask]
    runs_swapped = np.concatenate([theirs[:, 46:], theirs[:, :46]], axis=1)
    for wrong in (runs_swapped, theirs[:, ::-1], theirs / 100):
        assert _betas_agree(ours, wrong, active) != []
