"""NORDIC diagnostics: known answers of the kernels, the stage's table, the NORDIC sidecar."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from echoprep.io.bids_uri import content_reference
from echoprep.io.outputs import get
from echoprep.io.tables import read_diagnostics_table
from echoprep.kernels import diagnostics as kd
from echoprep.kernels.quality import neighbour_correlation
from echoprep.stages import diagnostics as sd


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each volume of a 4D array (periodic edges: stationary field)."""
    return np.stack(
        [ndimage.gaussian_filter(x[..., k], sigma, mode="wrap") for k in range(x.shape[-1])], -1
    )


# ---------------------------------------------------------------------------------------------
# kernels


def test_white_removed_part_has_no_neighbour_correlation():
    rng = np.random.default_rng(0)
    after = 100 + rng.standard_normal((16, 16, 12, 40))
    before = after + 5 * rng.standard_normal(after.shape)
    r = kd.removed_neighbour_correlation(before, after, np.ones((16, 16, 12), bool), chunk=7)
    assert np.all(np.abs(r) < 0.02)


def test_smoothed_removed_part_has_the_gaussian_neighbour_correlation():
    """White noise smoothed with a Gaussian of SD s has neighbour correlation exp(-1/(4 s^2))
    along every axis; the block-wise computation equals the one-shot one of quality.py."""
    rng = np.random.default_rng(1)
    removed = _smooth(rng.standard_normal((20, 20, 16, 24)), 1.0)
    after = np.full(removed.shape, 50.0)
    mask = np.ones(removed.shape[:3], bool)
    mask[:2] = False
    r = kd.removed_neighbour_correlation(after + removed, after, mask, chunk=5)
    np.testing.assert_allclose(r, math.exp(-0.25), atol=0.03)
    ref = [neighbour_correlation(removed, mask, a) for a in range(3)]
    np.testing.assert_allclose(r, ref, rtol=1e-9)


def test_pattern_fwhm_of_a_known_gaussian_and_its_ratio():
    """A white field smoothed with a Gaussian of SD s has a kernel FWHM of 2.3548 s (voxels);
    the estimate is in mm (2 mm voxels) and doubling s doubles it."""
    rng = np.random.default_rng(2)
    white = rng.standard_normal((32, 32, 32, 10))
    mask = np.ones(white.shape[:3], bool)
    fwhm = {}
    for s in (1.0, 2.0):
        per_axis, fwhm[s] = kd.pattern_fwhm(_smooth(white, s), mask, (2.0, 2.0, 2.0))
        np.testing.assert_allclose(per_axis, 2 * 2.3548 * s, rtol=0.06)
    assert fwhm[2.0] / fwhm[1.0] == pytest.approx(2.0, rel=0.06)
    assert math.isnan(kd.pattern_fwhm(white, np.zeros_like(mask))[1])


def test_image_patterns_average_repeats_and_remove_the_voxel_mean():
    betas = np.array([[1.0, 3.0, 10.0, 2.0, 4.0]])  # images a a b c c
    labels = np.array(["a", "a", "b", "c", "c"])
    # means a=2, b=10, c=3; voxel mean 5
    np.testing.assert_allclose(kd.image_patterns(betas, labels), [[-3.0, 5.0, -2.0]])
    with pytest.raises(ValueError, match="one label per trial"):
        kd.image_patterns(betas, labels[:3])


def test_amplitude_ratio_of_a_scaled_copy():
    rng = np.random.default_rng(3)
    raw = 1.5 + rng.standard_normal((50, 40))
    assert kd.ratio(kd.evoked_amplitude(0.82 * raw), kd.evoked_amplitude(raw)) == pytest.approx(
        0.82
    )
    assert math.isnan(kd.ratio(1.0, -0.2))  # a ratio to a negative amplitude means nothing


def test_tsnr_gain_of_halved_noise():
    rng = np.random.default_rng(4)
    drift = np.linspace(0, 30, 200)  # removed by the Legendre fit
    raw = 500 + drift + 10 * rng.standard_normal((6, 6, 4, 200))
    nordic = 500 + drift + 5 * rng.standard_normal((6, 6, 4, 200))
    mask = np.ones((6, 6, 4), bool)
    mask[0] = False
    a, _, gain, n = kd.median_ratio(kd.tsnr_map(raw), kd.tsnr_map(nordic), mask)
    assert a == pytest.approx(50, rel=0.05) and gain == pytest.approx(2.0, rel=0.05)
    assert n == mask.sum()


def test_tsnr_is_the_least_squares_residual_sd_and_0_for_a_constant_series():
    """The projection formula gives what an explicit least-squares detrend gives; a constant
    series (legal data, e.g. 0 outside another tool's mask, or a fixed value) has tSNR 0, not
    the mean over a rounding residual."""
    from echoprep.kernels.quality import detrend, legendre_basis, tsnr

    rng = np.random.default_rng(7)
    x = 800 + np.linspace(-20, 40, 90) ** 2 / 50 + 5 * rng.standard_normal((40, 90))
    sd = detrend(x, legendre_basis(90, 3)).std(axis=-1)
    assert np.allclose(tsnr(x), x.mean(axis=-1) / sd, rtol=1e-10)
    series = np.full((3, 2, 2, 90), 1234.5678, np.float32)
    series[0, 0, 0] = x[0]
    out = kd.tsnr_map(series)
    assert out[0, 0, 0] == pytest.approx(x[0].mean() / sd[0], rel=1e-6)
    assert np.count_nonzero(out) == 1


def test_tsnr_map_and_image_patterns_do_not_depend_on_blocks_or_memory_order():
    rng = np.random.default_rng(8)
    series = (500 + 10 * rng.standard_normal((5, 4, 7, 30))).astype(np.float32)
    whole = kd.tsnr_map(series, chunk=7)
    assert np.array_equal(kd.tsnr_map(series, chunk=2), whole)
    assert np.array_equal(kd.tsnr_map(np.asfortranarray(series), chunk=3), whole)
    betas = rng.standard_normal((5, 4, 3, 12)).astype(np.float32)
    labels = np.array(list("abcabcaxyzzz"))
    one = kd.image_patterns(betas, labels, chunk=1)
    assert np.array_equal(kd.image_patterns(np.asfortranarray(betas), labels, chunk=4), one)
    # the known answer: per sorted label the mean of its trials, less each voxel's mean
    keys = sorted(set(labels))
    means = np.stack([betas[..., labels == k].astype(np.float64).mean(-1) for k in keys], -1)
    assert np.allclose(one, means - means.mean(-1, keepdims=True), atol=1e-12)


def test_edge_share_flags_a_ring_of_high_values():
    shape = (20, 20, 20)
    zz, yy, xx = np.meshgrid(*[np.arange(n) - 9.5 for n in shape], indexing="ij")
    support = (xx**2 + yy**2 + zz**2) < 8**2
    nc = np.where(support, 20.0, 0.0)
    inner = ndimage.binary_erosion(support)
    ring = support & ~inner
    plausible = kd.edge_share(nc, support)
    assert plausible["edge_share"] == 0 and plausible["edge_voxels"] == ring.sum()
    nc[ring] = 90.0
    flagged = kd.edge_share(nc, support)
    assert flagged["edge_share"] == 1.0 and flagged["interior_share"] == 0.0
    # a brain mask smaller than the support: the voxels outside it count as edge too
    brain = (xx**2 + yy**2 + zz**2) < 6**2
    assert kd.edge_share(nc, support, brain=brain)["edge_voxels"] > ring.sum()


# ---------------------------------------------------------------------------------------------
# stage


_AFFINE = np.diag([2.0, 2, 2, 1])


def _save(path, data, affine=_AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
    return path


def _fit(tmp_path, name, betas, labels, mask, session="01", combine="single", nordic="raw"):
    b = _save(tmp_path / f"{name}_betas.nii.gz", betas)
    t = tmp_path / f"{name}_trials.tsv"
    pd.DataFrame({"beta_index": range(len(labels)), "label": labels, "run": "1"}).to_csv(
        t, sep="\t", index=False
    )
    m = _save(tmp_path / f"{name}_mask.nii.gz", mask.astype(np.uint8))
    return sd.GlmFit(session, combine, nordic, b, t, m)


@pytest.fixture
def session(tmp_path):
    """Betas of 12 images x 3 repeats: smooth image patterns (SD 1 voxel) + a positive evoked
    response in the ROI; a brain mask, an ROI, one run's series and two NORDIC sidecars."""
    rng = np.random.default_rng(5)
    shape = (16, 16, 12)
    labels = np.repeat([f"im{i:02d}" for i in range(12)], 3)
    patterns = _smooth(rng.standard_normal((*shape, 12)), 1.0)
    betas = patterns[..., np.repeat(np.arange(12), 3)] + 0.05 * rng.standard_normal((*shape, 36))
    brain = np.zeros(shape, bool)
    brain[2:14, 2:14, 2:10] = True
    roi = np.zeros(shape, bool)
    roi[4:12, 4:12, 3:8] = True
    betas[roi] += 2.0
    betas[~brain] = 0
    raw_series = 800 + 8 * rng.standard_normal((*shape, 60))
    nordic_series = 800 + 2 * rng.standard_normal((*shape, 60))
    sidecars = []
    for k, nn in enumerate(([0.01, 0.02, 0.0], [0.03, 0.0, 0.02])):
        p = tmp_path / f"nordic_{k}.json"
        p.write_text(json.dumps({"NORDIC": {"RemovedPart": {"NeighbourCorrelation": nn}}}))
        sidecars.append(p)
    return {
        "betas": betas,
        "labels": labels,
        "brain": brain,
        "roi_file": _save(tmp_path / "roi.nii.gz", roi.astype(np.uint8)),
        "brain_file": _save(tmp_path / "brain.nii.gz", brain.astype(np.uint8)),
        "tsnr": sd.TsnrPair(
            "01",
            "single",
            _save(tmp_path / "raw_bold.nii.gz", raw_series),
            _save(tmp_path / "nordic_bold.nii.gz", nordic_series),
        ),
        "sidecars": {"01": sidecars},
    }


def test_table_of_a_scaled_copy_and_a_smoothed_copy(tmp_path, session):
    s = session
    raw = _fit(tmp_path, "raw_single", s["betas"], s["labels"], s["brain"])
    scaled = _fit(
        tmp_path, "nordic_single", 0.8 * s["betas"], s["labels"], s["brain"], nordic="nordic"
    )
    raw_o = _fit(tmp_path, "raw_optcom", s["betas"], s["labels"], s["brain"], combine="optcom")
    blurred = _smooth(s["betas"], 1.0) * s["brain"][..., None]
    smooth = _fit(
        tmp_path,
        "nordic_optcom",
        blurred,
        s["labels"],
        s["brain"],
        combine="optcom",
        nordic="nordic",
    )
    output = get("diagnostics.tsv")
    out = output.path(tmp_path, output.subject_key("01", "images"))
    assert out.relative_to(tmp_path).as_posix() == (
        "reports/sub-01/sub-01_task-images_desc-nordic_diagnostics.tsv"
    )
    sd.run_diagnostics(
        "01",
        out,
        roi=s["roi_file"],
        brain=s["brain_file"],
        tsnr_pairs=[s["tsnr"]],
        glm_fits=[raw, scaled, raw_o, smooth],
        nordic_sidecars=s["sidecars"],
    )
    table = read_diagnostics_table(out)
    assert list(table.columns) == list(sd.COLUMNS)
    assert list(table["combine"]) == ["single", "optcom"]
    single, optcom = table.iloc[0], table.iloc[1]
    assert single["amplitude_ratio"] == pytest.approx(0.8, abs=1e-3)
    assert single["amplitude_raw"] == pytest.approx(2.0, abs=0.1)
    assert single["fwhm_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert single["tsnr_gain"] == pytest.approx(4.0, rel=0.05) and single["n_runs"] == 1
    assert single["roi_voxels"] == 8 * 8 * 5
    # smoothing the patterns again with SD 1: kernel SD 1 -> sqrt(2), FWHM x 1.41 (brain edges
    # and the ROI step lower it a little)
    assert optcom["fwhm_ratio"] > 1.25 and optcom["fwhm_roi_ratio"] > 1.25
    # blurring spreads the ROI's step response into its surroundings: the mean inside falls
    assert 0.5 < optcom["amplitude_ratio"] < 0.9
    assert math.isnan(optcom["tsnr_gain"]) and optcom["n_runs"] == 0
    np.testing.assert_allclose(
        table[["removed_nn_x", "removed_nn_y", "removed_nn_z"]].to_numpy(float)[0],
        [0.02, 0.01, 0.01],
    )
    side = json.loads(out.with_suffix(".json").read_text())
    roi = content_reference(s["roi_file"])  # outside every dataset: name + digest
    assert side["amplitude_ratio"]["Description"] and roi in side["Sources"]
    from echoprep.report.diagnostics import reading

    text = " ".join(reading(table))
    assert "NORDIC kept 80 % of the evoked amplitude in the visual ROI" in text
    assert "made them smoother" in text and "spatially white" in text
    assert "× 4.0" in text  # the tSNR gain, 2 decimals


def test_without_both_variants_the_stage_says_why(tmp_path, session):
    s = session
    raw = _fit(tmp_path, "raw_single", s["betas"], s["labels"], s["brain"])
    with pytest.raises(sd.StageInputError, match="NORDIC both off and on"):
        sd.diagnostics_table("01", roi=s["roi_file"], brain=s["brain_file"], glm_fits=[raw])


def test_masks_on_another_grid_are_named(tmp_path, session):
    s = session
    raw = _fit(tmp_path, "raw_single", s["betas"], s["labels"], s["brain"])
    nor = _fit(tmp_path, "nordic_single", s["betas"], s["labels"], s["brain"], nordic="nordic")
    bad = _save(tmp_path / "roi_bad.nii.gz", np.ones((8, 8, 6), np.uint8))
    with pytest.raises(
        sd.StageInputError,
        match=r"roi_bad\.nii\.gz: expected a visual ROI mask on the grid of .* found shape "
        r"\(8, 8, 6\).* Fix: pass the subject's masks on its functional grid",
    ):
        sd.diagnostics_table("01", roi=bad, brain=s["brain_file"], glm_fits=[raw, nor])


def test_cli_writes_the_table(tmp_path, session):
    from echoprep.cli import main

    s = session
    raw = _fit(tmp_path, "raw_single", s["betas"], s["labels"], s["brain"])
    nor = _fit(tmp_path, "nordic_single", s["betas"], s["labels"], s["brain"], nordic="nordic")
    out = tmp_path / "d.tsv"
    argv = [
        "diagnostics",
        "--subject",
        "01",
        "--roi",
        str(s["roi_file"]),
        "--brain",
        str(s["brain_file"]),
        "--out",
        f"tsv={out}",
    ]
    for f in (raw, nor):
        argv += ["--glm", "01", "single", f.nordic, str(f.betas), str(f.trials), str(f.mask)]
    argv += ["--tsnr", "01", "single", str(s["tsnr"].raw), str(s["tsnr"].nordic)]
    argv += ["--nordic-json", "01", str(s["sidecars"]["01"][0])]
    assert main(argv) == 0
    row = read_diagnostics_table(out).iloc[0]
    assert row["amplitude_ratio"] == pytest.approx(1.0) and row["removed_nn_y"] == 0.02


# ---------------------------------------------------------------------------------------------
# NORDIC stage sidecar


def test_nordic_sidecar_records_a_white_removed_part(tmp_path):
    """NORDIC of a low-rank series plus white complex noise removes about white noise: the
    neighbour correlation of the removed part is near 0 along every axis."""
    from echoprep.stages.nordic import run_nordic

    rng = np.random.default_rng(6)
    shape = (20, 18, 10, 40)
    space = rng.random((np.prod(shape[:3]), 2))
    time = np.stack([np.ones(shape[3]), np.sin(np.linspace(0, 6, shape[3]))])
    clean = 800 * (1 + 0.05 * space @ time).reshape(shape)
    noisy = clean + 20 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    aff = np.diag([1.8, 1.8, 1.8, 1.0])
    nib.save(nib.Nifti1Image(np.abs(noisy).astype(np.float32), aff), tmp_path / "mag.nii.gz")
    nib.save(nib.Nifti1Image(np.angle(noisy).astype(np.float32), aff), tmp_path / "ph.nii.gz")
    outs = {k: tmp_path / "out" / f"{k}.nii.gz" for k in ("bold", "gfactor", "removed")}
    record = run_nordic(
        tmp_path / "mag.nii.gz", tmp_path / "ph.nii.gz", outs, options={"phase_units": "radians"}
    )
    side = json.loads((tmp_path / "out" / "bold.json").read_text())
    part = side["NORDIC"]["RemovedPart"]
    assert part == record["RemovedPart"] and part["Voxels"] > 0.9 * np.prod(shape[:3])
    assert all(abs(v) < 0.05 for v in part["NeighbourCorrelation"]), part
    assert sd.removed_whiteness([tmp_path / "out" / "bold.json"]) == pytest.approx(
        part["NeighbourCorrelation"]
    )
