"""GLMsingle engine against upstream GLMsingle (Python v1.2) outputs and the simulated truth.

Fixture ``small_4runs`` of the reference fixtures (``../shared/fixtures/glmsingle/``, present
only in the development checkout): 20 x 20 x 10 voxels, 4 runs x 150 volumes
(TR 1.9 s), 40 conditions x 3 repeats, stimdur 3 s; upstream ran FITHRF_GLMDENOISE_RR with its
defaults and ``brainR2 = pcR2cutoff = 1.0`` (we pass the same). "Brain voxels" are truth.npz's
``brain`` mask (1192 voxels; the rest is a low, noise-only background of mean 40).

Measured (this implementation, one BLAS thread):

==========================================  ==============  ===================================
metric                                      acceptance      measured
==========================================  ==============  ===================================
pcnum                                       identical       4 = 4 (xvaltrend within 1e-6 rel.)
HRFindex equal, all voxels                  >= 99 %         100 %
FRACvalue equal, brain voxels               >= 95 %         100 % (all voxels 100 %)
type-D betas, per-voxel r, brain median     >= 0.999        0.99999999999 (min 0.9999999999)
type-D R², brain median abs. difference     <= 0.1          8e-6
type-C / type-B betas r, brain median       >= 0.999        0.99999999999 / 0.99999999999
type-C / type-B R², brain median |diff|     <= 0.1          3e-5 / 2e-5
onoffR2 median |diff| / meanvol rel. diff   <= 0.01 / 1e-5  2e-4 / 1.5e-6 (max)
noisepool, pcvoxels                         identical       identical (764, 568 voxels)
==========================================  ==============  ===================================

Ground truth (active voxels, ``truth.npz``): median correlation of the betas with the true betas,
ours vs upstream: B 0.397008 / 0.397008, C 0.522258 / 0.522258, D 0.5480665 / 0.5480669. The
per-voxel differences are float32 rounding (|delta r| <= 1.1e-6, ours higher in 47 % of the
voxels), so "ours >= upstream" is checked within 1e-5. Test-retest reliability (see
``test_glm_engine.py``): B 0.133 < C 0.243 < D 0.258, equal to upstream's to 1e-4.
"""

from __future__ import annotations

import json
from functools import cache, partial
from pathlib import Path

import numpy as np
import pytest

from echoprep.kernels.glm import REQUIRED_OPTIONS
from echoprep.kernels.glm import fit_glmsingle as _fit_glmsingle
from echoprep.options import section_defaults

#: The engine options at the config schema's defaults (the engine takes them all explicitly).
ENGINE_DEFAULTS = {k: v for k, v in section_defaults("glm").items() if k in REQUIRED_OPTIONS}
#: One BLAS thread: the products are small, and the test machine is shared.
fit_glmsingle = partial(_fit_glmsingle, n_threads=1, **ENGINE_DEFAULTS)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "glmsingle"
CASE = "small_4runs"
#: Band within which two medians of correlations count as equal (float32 rounding).
ROUNDING = 1e-5


@cache
def _fixture() -> dict:
    folder = FIXTURES / CASE
    if not folder.is_dir():
        pytest.skip(
            f"GLMsingle reference fixtures not found at {folder} (they live beside the "
            "repository in shared/fixtures, not in a user's clone)"
        )
    import nibabel as nib
    import pandas as pd

    params = json.loads((folder / "params.json").read_text())
    runs = params["runs"]
    files = [folder / f"run-{r:02d}_bold.nii.gz" for r in range(1, runs + 1)]
    data = [np.asarray(nib.load(f).dataobj) for f in files]
    events = pd.read_csv(folder / "design.tsv", sep="\t")
    design = []
    for r in range(1, runs + 1):
        m = np.zeros((data[r - 1].shape[-1], params["n_conditions"]))
        ev = events[events["run"] == r]
        m[ev["onset_volume"].to_numpy(), ev["condition"].to_numpy()] = 1
        design.append(m)
    opts = params["options"]
    ours = fit_glmsingle(
        design,
        data,
        params["stimdur"],
        params["tr"],
        wantlibrary=opts["wantlibrary"],
        wantglmdenoise=opts["wantglmdenoise"],
        wantfracridge=opts["wantfracridge"],
        brainR2=opts["brainR2"],
        pcR2cutoff=opts["pcR2cutoff"],
    )
    ref = dict(np.load(folder / "reference_outputs.npz"))
    truth = dict(np.load(folder / "truth.npz"))
    return {"ours": ours, "ref": ref, "truth": truth, "events": events}


def _rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64) - a.mean(axis=-1, keepdims=True)
    b = b.astype(np.float64) - b.mean(axis=-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def _get(f: dict, t: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(f["ours"][f"type{t}"][key]), f["ref"][f"type{t}_{key}"]


@pytest.mark.parity
def test_trial_order_matches_the_fixture() -> None:
    f = _fixture()
    info = f["ours"]["designinfo"]
    assert np.array_equal(info["stimorder"], f["truth"]["trial_condition"])
    assert np.array_equal(info["stimorder"], f["events"]["condition"].to_numpy())


@pytest.mark.parity
def test_pcnum_noise_pool_and_summary_voxels_are_identical() -> None:
    f = _fixture()
    ours, ref = _get(f, "c", "pcnum")
    assert int(ours) == int(ref), f"pcnum ours {ours}, upstream {ref}"
    ours, ref = _get(f, "c", "xvaltrend")
    np.testing.assert_allclose(ours, ref, rtol=1e-4, err_msg="xvaltrend")
    for key in ("noisepool", "pcvoxels"):
        ours, ref = _get(f, "c", key)
        assert np.array_equal(ours, ref), f"{key}: {int(ours.sum())} vs {int(ref.sum())} voxels"


@pytest.mark.parity
def test_hrf_index_equal_in_99_percent_of_voxels() -> None:
    f = _fixture()
    ours, ref = _get(f, "b", "HRFindex")
    equal = float(np.mean(ours == ref))
    assert equal >= 0.99, f"HRFindex equal in {equal:.2%} of voxels"
    ours, ref = _get(f, "b", "FitHRFR2")
    brain = f["truth"]["brain"]
    diff = float(np.median(np.abs(ours - ref)[brain]))
    assert diff <= 0.01, f"FitHRFR2 median |diff| {diff}"


@pytest.mark.parity
def test_frac_value_equal_in_95_percent_of_brain_voxels() -> None:
    f = _fixture()
    brain = f["truth"]["brain"]
    ours, ref = _get(f, "d", "FRACvalue")
    equal = float(np.mean(np.isclose(ours, ref)[brain]))
    assert equal >= 0.95, f"FRACvalue equal in {equal:.2%} of brain voxels"
    ours, ref = _get(f, "d", "rrbadness")
    rel = float(np.median((np.abs(ours - ref) / np.abs(ref))[brain]))
    assert rel <= 1e-3, f"rrbadness median relative difference {rel}"


@pytest.mark.parity
@pytest.mark.parametrize("t", ["b", "c", "d"])
def test_single_trial_betas_and_r2_match(t) -> None:
    f = _fixture()
    brain = f["truth"]["brain"]
    ours, ref = _get(f, t, "betasmd")
    r = _rowcorr(ours, ref)[brain]
    med = float(np.median(r))
    assert med >= 0.999, f"type {t.upper()} betas: median r {med}, min {r.min()}"
    scale = float(np.median(np.abs(ours[brain]).mean(-1) / np.abs(ref[brain]).mean(-1)))
    assert abs(scale - 1) <= 1e-3, f"type {t.upper()} betas: median scale ratio {scale}"
    ours, ref = _get(f, t, "R2")
    diff = float(np.median(np.abs(ours - ref)[brain]))
    assert diff <= 0.1, f"type {t.upper()} R2: median |diff| {diff}"


@pytest.mark.parity
def test_type_a_and_scale_offset_match() -> None:
    f = _fixture()
    brain = f["truth"]["brain"]
    ours, ref = _get(f, "a", "onoffR2")
    diff = float(np.median(np.abs(ours - ref)[brain]))
    assert diff <= 0.01, f"onoffR2 median |diff| {diff}"
    ours, ref = _get(f, "a", "meanvol")
    rel = float(np.max(np.abs(ours - ref) / ref))
    assert rel <= 1e-5, f"meanvol max relative difference {rel}"
    ours, ref = _get(f, "a", "betasmd")
    diff = float(np.median(np.abs(ours - ref)[brain]))
    assert diff <= 0.01, f"ON-OFF betas median |diff| {diff} (% BOLD)"
    ours, ref = _get(f, "d", "scaleoffset")
    diff = np.median(np.abs(ours - ref)[brain], axis=0)
    assert np.all(diff <= 1e-3), f"scaleoffset median |diff| {diff}"


def _reliability(betas: np.ndarray, cond: np.ndarray) -> float:
    rep = np.zeros_like(cond)
    for c in np.unique(cond):
        idx = np.flatnonzero(cond == c)
        rep[idx] = np.arange(idx.size)
    per_rep = []
    for k in range(3):
        idx = np.flatnonzero(rep == k)
        per_rep.append(betas[:, idx[np.argsort(cond[idx])]])
    pairs = [(0, 1), (0, 2), (1, 2)]
    return float(np.median(np.mean([_rowcorr(per_rep[i], per_rep[j]) for i, j in pairs], 0)))


@pytest.mark.parity
def test_ground_truth_at_least_as_good_as_upstream() -> None:
    f = _fixture()
    act = f["truth"]["active"]
    truth = f["truth"]["true_betas"][act]
    cond = f["truth"]["trial_condition"]
    r, rel = {}, {}
    for t in "bcd":
        ours, ref = _get(f, t, "betasmd")
        r[t] = (float(np.median(_rowcorr(ours[act], truth))),
                float(np.median(_rowcorr(ref[act], truth))))  # fmt: skip
        rel[t] = (_reliability(ours[act], cond), _reliability(ref[act], cond))
    msg = f"(ours, upstream): truth r {r}, reliability {rel}"
    for t in "bcd":
        assert r[t][0] >= r[t][1] - ROUNDING, msg
        assert rel[t][0] >= rel[t][1] - ROUNDING, msg
    assert r["b"][0] < r["c"][0] < r["d"][0], msg
    assert rel["b"][0] < rel["c"][0] < rel["d"][0], msg
