"""NORDIC kernel against the reference fixtures, and self-consistency on synthetic cases.

Fixtures (the reference fixtures ``../shared/fixtures/nordic/<case>/``, present only in the
development checkout: the reference NIFTI_NORDIC run under Octave on
synthetic data, with ``params.json``): the fixture's options are mapped to our arguments
(reference defaults where it gives none: ``temporal_phase=1``, ``phase_filter_width=3``), the
reference's threshold is passed explicitly, noise volumes are kept, and the last x-plane (never
covered by the reference, written as 0) is excluded. The int16 case: the reference writes the
denoised magnitude and the g-factor map in the input type, rounded (MATLAB rounds half away
from zero), so our float outputs are rounded the same way before comparing; relative
differences are taken where the reference is non-zero (background voxels whose denoised value
rounds to 0 in int16 have no relative difference).

Measured (this implementation; Pearson r, median / 99th percentile |relative difference|,
g-factor median relative difference):

- complex_float32_defaults: r = 1.0000000, 0.0001 % / 0.014 %, g 0.000 %
- complex_int16_noisevols: r = 1.0000000, 0.0000 % / 0.000 %, g 0.000 %
- magnitude_only_float32: r = 1.0000000, 0.0001 % / 0.007 % (no reference g map)

Synthetic cases (not in the repository): a rank-3 complex series with a smooth phase plus
complex Gaussian noise of known SD, in several shapes (thin slab, odd sizes, magnitude-only,
noise volumes), checked for invariants rather than against the reference.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from echoprep.kernels.nordic import NordicResult
from echoprep.kernels.nordic import nordic as _kernel
from echoprep.options import section_defaults

#: The schema defaults of the kernel's options (the kernel has none; the stage passes them all).
KERNEL_DEFAULTS = {k: v for k, v in section_defaults("nordic").items() if k != "enabled"}


def nordic(magnitude, phase=None, **kwargs):
    """The kernel with the schema defaults of the options not given, unchecked (as the stage
    passes them; invalid values reach the kernel's own checks)."""
    return _kernel(magnitude, phase, **{**KERNEL_DEFAULTS, **kwargs})


FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "nordic"
CASES = ["complex_float32_defaults", "complex_int16_noisevols", "magnitude_only_float32"]
#: Options of NIFTI_NORDIC that the mapping below understands.
KNOWN_OPTIONS = {"noise_volume_last", "temporal_phase", "phase_filter_width", "magnitude_only"}


def _matlab_round(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's cast to an integer type: round half away from zero, saturate."""
    info = np.iinfo(dtype)
    return np.clip(np.sign(a) * np.floor(np.abs(a) + 0.5), info.min, info.max)


@cache
def _fixture(case: str) -> dict:
    folder = FIXTURES / case
    if not folder.is_dir():
        pytest.skip(
            f"NORDIC reference fixtures not found at {folder} (they live beside the repository "
            "in shared/fixtures, not in a user's clone)"
        )
    import nibabel as nib

    params = json.loads((folder / "params.json").read_text())
    opts = params["options"]
    unknown = set(opts) - KNOWN_OPTIONS
    assert not unknown, f"fixture {case} uses options this test does not map: {unknown}"
    load = lambda name: np.asarray(nib.load(folder / name).dataobj)  # noqa: E731
    mag = load("mag.nii.gz")
    phase = load("phase.nii.gz") if (folder / "phase.nii.gz").exists() else None
    result = nordic(
        mag,
        phase,
        noise_volumes=int(opts.get("noise_volume_last", 0)),
        temporal_phase=int(opts.get("temporal_phase", 1)),
        phase_filter_width=float(opts.get("phase_filter_width", 3)),
        magnitude_only=bool(opts.get("magnitude_only", 0)),
        threshold=float(params["threshold"]),
        keep_noise_volumes=True,
    )
    gfile = folder / "ref_gfactor.nii.gz"
    return {
        "params": params,
        "mag": mag,
        "phase": phase,
        "truth": load("truth_mag.nii.gz"),
        "ref": load("ref_nordic.nii.gz"),
        "ref_g": load("ref_gfactor.nii.gz") if gfile.exists() else None,
        "result": result,
    }


def _as_reference_writes(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return _matlab_round(a.astype(np.float64), dtype)
    return a.astype(np.float64)


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES)
def test_denoised_magnitude_matches_the_reference(case) -> None:
    f = _fixture(case)
    ours = _as_reference_writes(f["result"].magnitude, f["params"]["output_dtype"])[:-1]
    ref = f["ref"].astype(np.float64)[:-1]
    assert ours.shape == ref.shape
    r = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    nz = ref != 0
    rel = np.abs(ours[nz] - ref[nz]) / np.abs(ref[nz])
    assert r >= 0.99999
    assert np.median(rel) <= 0.001
    assert np.percentile(rel, 99) <= 0.01
    # where the reference rounded to 0 (int16 background), we are within one unit
    assert np.abs(ours[~nz]).max(initial=0) <= 1


@pytest.mark.parity
@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("magnitude_only")])
def test_gfactor_map_matches_the_reference(case) -> None:
    f = _fixture(case)
    ref = f["ref_g"].astype(np.float64)[:-1]
    ours = _as_reference_writes(f["result"].gfactor, f["ref_g"].dtype)[:-1]
    rel = np.abs(ours - ref) / ref
    assert np.median(rel) <= 0.01
    assert f["ref_g"][-1].max() == 0 and f["result"].gfactor[-1].min() > 0  # B1 vs ours


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES)
def test_kernel_scale_and_noise_level_match_the_reference(case) -> None:
    f = _fixture(case)
    p, res = f["params"], f["result"]
    assert res.kernel == tuple(int(k) for k in p["kernel_size"])
    assert res.absolute_scale == pytest.approx(p["absolute_scale"], rel=1e-6)
    assert res.threshold == p["threshold"]
    if p["options"].get("noise_volume_last"):
        # ours pools all noise volumes, the reference uses the first one
        assert res.noise_level == pytest.approx(p["measured_noise"], rel=0.01)
        assert res.noise_level == pytest.approx(1 / math.sqrt(2), rel=0.03)
    else:
        assert res.noise_level == pytest.approx(p["measured_noise"], rel=1e-12)


@pytest.mark.parity
def test_reference_single_volume_noise_level_from_our_gfactor() -> None:
    """The reference's noise level (SD of the non-zero entries of the first noise volume of
    the g-normalised complex data / sqrt(2), last x-plane excluded) from our g map."""
    f = _fixture("complex_int16_noisevols")
    res, k = f["result"], f["params"]["options"]["noise_volume_last"]
    ph = f["phase"].astype(np.float64)
    ph = (ph - ph.min()) / (ph.max() - ph.min()) * 2 * np.pi - np.pi
    first = f["mag"].shape[3] - k
    z = f["mag"][..., first] * np.exp(1j * ph[..., first]) / res.absolute_scale / res.gfactor
    z = z[:-1][z[:-1] != 0]
    assert np.std(z, ddof=1) / math.sqrt(2) == pytest.approx(f["params"]["measured_noise"], 1e-4)


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES)
def test_last_x_plane_is_denoised_like_the_first(case) -> None:
    """The reference leaves the last x-plane at 0; ours fills it from the last full patch.
    Its error to the noise-free magnitude (the plane is background in these fixtures) is like
    that of our first plane (also covered by one patch in x) and of the reference's
    second-to-last plane, and below the input's."""
    f = _fixture(case)
    out = f["result"].magnitude.astype(np.float64)
    truth = f["truth"].astype(np.float64)
    nt = truth.shape[3] - int(f["params"]["options"].get("noise_volume_last", 0))
    err = lambda a, i: np.sqrt(np.mean((a[i, ..., :nt] - truth[i, ..., :nt]) ** 2))  # noqa: E731
    assert np.all(np.isfinite(out[-1])) and out[-1].min() >= 0 and out[-1].max() > 0
    assert err(out, -1) <= 1.2 * err(out, 0)
    assert err(out, -1) <= 1.1 * err(f["ref"].astype(np.float64), -2)
    assert err(out, -1) < 0.95 * err(f["mag"].astype(np.float64), -1)


# ---------------------------------------------------------------------------------------------
# synthetic cases: invariants


def synthetic(
    shape: tuple[int, int, int, int],
    *,
    rank: int = 3,
    sigma: float = 1.0,
    amplitude: float = 20.0,
    noise_volumes: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-``rank`` complex series with a smooth static phase plus complex Gaussian noise of
    SD ``sigma`` per channel; trailing noise volumes hold noise only.

    Returns float32 magnitude, phase (radians) and the noise-free magnitude, (x, y, z, t).
    """
    nx, ny, nz, nt = shape
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij"
    )
    maps = [np.ones_like(x), np.cos(2 * x + y), np.sin(3 * y - z)][:rank]
    weights = amplitude * np.array([1.0, 0.25, 0.15])[:rank]
    t = np.arange(nt - noise_volumes)
    courses = [np.ones(len(t)), np.sin(2 * np.pi * t / 17), np.cos(2 * np.pi * t / 7.3)][:rank]
    signal = np.zeros(shape, np.complex128)
    for m, w, c in zip(maps, weights, courses, strict=True):
        signal[..., : nt - noise_volumes] += w * m[..., None] * c
    signal *= np.exp(1j * (0.8 * x + 0.5 * y - 0.3 * z))[..., None]
    noise = sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    data = signal + noise
    return (
        np.abs(data).astype(np.float32),
        np.angle(data).astype(np.float32),
        np.abs(signal),
    )


SHAPES = {
    "cube": (24, 22, 14, 40),
    "thin slab": (26, 22, 4, 30),
    "odd sizes": (23, 19, 13, 37),
}


@cache
def _synthetic_run(name: str, magnitude_only: bool = False, **kwargs) -> tuple:
    mag, pha, truth = synthetic(SHAPES[name])
    res = nordic(mag, None if magnitude_only else pha, **kwargs)
    return mag, pha, truth, res


def _rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("magnitude_only", [False, True])
def test_synthetic_rank_is_recovered(name, magnitude_only) -> None:
    """Rank 3 is found in (nearly) every patch with a 20 % margin above the noise edge.

    Without phase stabilisation: the static phase does not change the rank, but the
    per-volume low-pass phase estimate does (the signal's own modulation moves it), which adds
    a component in most patches (4 kept with ``temporal_phase=1``). Magnitude-only: |signal|
    is not exactly rank 3 (bright voxels carry a weak fourth component), so at least 3.
    """
    mag, _, truth, res = _synthetic_run(name, magnitude_only, factor_error=1.2, temporal_phase=0)
    kept = min(math.prod(res.kernel), mag.shape[3]) - res.removed
    assert np.median(kept) == 3
    if not magnitude_only:
        assert abs(kept.mean() - 3) < 0.1
    if name == "thin slab":
        assert res.kernel[2] == 4
    assert _rmse(res.magnitude, truth) < 0.35 * _rmse(mag, truth)


@pytest.mark.parametrize("name", list(SHAPES))
def test_synthetic_threshold_above_the_noise_removes_it(name) -> None:
    """Noise only: with a threshold above the largest noise singular value nothing survives;
    with signal, everything but the signal's components goes."""
    shape = SHAPES[name]
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    mag, pha = np.abs(noise).astype(np.float32), np.angle(noise).astype(np.float32)
    probe = nordic(mag, pha, threshold=1e9)
    m, n = math.prod(probe.kernel), shape[3]
    above = 1.5 * (math.sqrt(m) + math.sqrt(n))  # noise E|z|^2 ~ 1 after g-normalisation
    res = nordic(mag, pha, threshold=above)
    assert np.all(res.magnitude == 0) and np.all(res.removed == min(m, n))
    mag, pha, truth = synthetic(shape)
    res = nordic(mag, pha, threshold=above, temporal_phase=0)
    assert np.all(res.removed >= min(m, n) - 3)  # nothing beyond the signal's rank survives
    assert _rmse(res.magnitude, truth) < 0.35 * _rmse(mag, truth)


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("magnitude_only", [False, True])
def test_synthetic_last_x_plane_is_covered(name, magnitude_only) -> None:
    mag, _, truth, res = _synthetic_run(name, magnitude_only)
    out = res.magnitude
    assert np.all(np.isfinite(out)) and np.all(out[-1] > 0) and np.all(res.gfactor[-1] > 0)
    first, last = _rmse(out[0], truth[0]), _rmse(out[-1], truth[-1])
    assert last <= 1.5 * first
    assert last < 0.8 * _rmse(mag[-1], truth[-1])


@pytest.mark.parametrize("name", list(SHAPES))
def test_synthetic_result_does_not_depend_on_chunks_or_threads(name) -> None:
    mag, pha, _ = synthetic(SHAPES[name], seed=1)
    runs = [
        nordic(mag, pha, chunk_patches=256, n_threads=1),
        nordic(mag, pha, chunk_patches=7, n_threads=2),
        nordic(mag, pha, chunk_patches=1, n_threads=3),
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.magnitude, runs[0].magnitude)
        np.testing.assert_array_equal(other.complex, runs[0].complex)
        np.testing.assert_array_equal(other.gfactor, runs[0].gfactor)
        np.testing.assert_array_equal(other.removed, runs[0].removed)


def test_synthetic_seed_makes_the_threshold_deterministic() -> None:
    mag, pha, _ = synthetic(SHAPES["odd sizes"], seed=2)
    a, b = nordic(mag, pha, seed=3), nordic(mag, pha, seed=3)
    c = nordic(mag, pha, seed=4)
    assert a.threshold == b.threshold
    np.testing.assert_array_equal(a.magnitude, b.magnitude)
    assert a.threshold != c.threshold and abs(c.threshold / a.threshold - 1) < 0.03
    m, n = math.prod(a.kernel), mag.shape[3]
    assert a.threshold == pytest.approx(math.sqrt(2) * a.noise_level * (m**0.5 + n**0.5), 0.03)


def test_synthetic_noise_volumes_set_the_level_and_are_dropped() -> None:
    shape = (24, 22, 14, 45)
    mag, pha, truth = synthetic(shape, noise_volumes=3)
    dropped = nordic(mag, pha, noise_volumes=3)
    kept = nordic(mag, pha, noise_volumes=3, keep_noise_volumes=True)
    assert isinstance(dropped, NordicResult) and dropped.n_noise_volumes == 3
    assert dropped.magnitude.shape == (*shape[:3], 42) and dropped.complex.shape[3] == 42
    assert kept.magnitude.shape == shape
    np.testing.assert_array_equal(dropped.magnitude, kept.magnitude[..., :42])
    assert dropped.magnitude.flags.c_contiguous
    # SD of the g-normalised noise volumes per channel: sigma = 1 / (absolute_scale * g)
    expected = np.sqrt(np.mean(1 / (dropped.absolute_scale * dropped.gfactor) ** 2))
    assert dropped.noise_level == pytest.approx(expected, rel=0.02)
    assert _rmse(dropped.magnitude, truth[..., :42]) < 0.35 * _rmse(mag[..., :42], truth[..., :42])


def test_synthetic_phase_units_and_complex_output() -> None:
    mag, pha, _ = synthetic(SHAPES["cube"], seed=3)
    pha[0, 0, 0, 0], pha[0, 0, 0, 1] = -np.pi, np.pi  # min/max map is then the identity
    a = nordic(mag, pha, phase_units="radians")
    b = nordic(mag, pha, phase_units="minmax")
    assert a.phase_mapping == "radians" and b.phase_mapping == "minmax"
    np.testing.assert_allclose(a.magnitude, b.magnitude, rtol=1e-3)
    # scanner integers (-4096..4095) with the min/max map give the same result
    ints = np.round(pha / np.pi * 4096).clip(-4096, 4095).astype(np.int16)
    c = nordic(mag, ints)
    np.testing.assert_allclose(c.magnitude, b.magnitude, rtol=1e-2, atol=0.05)
    # the complex output carries the phase back: |complex| = magnitude, and its phase is
    # closer to the true (static) phase than the noisy input's
    np.testing.assert_allclose(np.abs(a.complex), a.magnitude, rtol=1e-5, atol=1e-5)
    nx, ny, nz, _ = mag.shape
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij"
    )
    true_phase = np.exp(-1j * (0.8 * x + 0.5 * y - 0.3 * z))[..., None]
    err_out = np.abs(np.angle(a.complex * true_phase))
    err_in = np.abs(np.angle(np.exp(1j * pha) * true_phase))
    assert np.percentile(err_out, 99) < 0.5 * np.percentile(err_in, 99)


@pytest.mark.parametrize("temporal_phase", [0, 2, 3])
def test_synthetic_temporal_phase_options(temporal_phase) -> None:
    mag, pha, truth = synthetic(SHAPES["cube"], seed=4)
    one = nordic(mag, pha, temporal_phase=1)
    other = nordic(mag, pha, temporal_phase=temporal_phase)
    assert _rmse(other.magnitude, truth) < 1.2 * _rmse(one.magnitude, truth)


def test_synthetic_zero_background_stays_zero() -> None:
    mag, pha, truth = synthetic(SHAPES["cube"], seed=5)
    mag[:, :, :5] = 0  # a zero slab: its g-factor patches are all zero
    res = nordic(mag, pha)
    assert np.all(res.magnitude[:, :, :5] == 0)
    assert np.all(np.isfinite(res.gfactor)) and res.gfactor.min() > 0
    inner = (slice(None), slice(None), slice(7, None))
    assert _rmse(res.magnitude[inner], truth[inner]) < 0.5 * _rmse(mag[inner], truth[inner])
