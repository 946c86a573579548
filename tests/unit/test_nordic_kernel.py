"""NORDIC kernel: known answers on tiny arrays, input checks, and ground truth from the simulator.

Ground truth (bottom of the file): one run of the simulator's ``tiny`` preset (echo 2), noise-free
and noisy (the int16 magnitude/phase the simulator writes), denoised with the reference defaults
(Monte-Carlo threshold, phase filter width 10). Targets and what the simulator shows:

========================================  ==========  ====================  ====================
metric (in brain unless noted)            target      tiny, 90 volumes      tiny, 300 volumes
========================================  ==========  ====================  ====================
RMSE to noise-free magnitude, in / out    >= 2        2.04                  2.08
tSNR (cubic detrend), out / in            >= 2        2.14                  1.97 (xfail)
removed part, NN correlation per axis     < 0.1       <= 0.011              <= 0.004
evoked amplitude, out / noise-free        regime      see below             see below
paired-noise FWHM, out / in (per axis)    < 1.05      1.03-1.04 (sd 0.7)    -
                                                      1.07-1.14 (sd 0.5,
                                                      xfail)
GLM-residual FWHM, out / in               regime      1.30-1.51 (all)       -
========================================  ==========  ====================  ====================

Regime-dependent expectations (simulator response models, :mod:`echoprep.simulate.response`),
measured on tiny, echo 2:

- Evoked amplitude kept (out / noise-free): within 5 % in the ``strong`` regime (x10
  amplitude, 4 features, tSNR ~7; 0.976 with 90 volumes, 0.994 with 300) and in ``default``
  with 300 volumes (0.966); ``default`` with 90 volumes is reduced to 0.77 (pinned 0.70-0.85;
  ``thermal`` 0.81; 0.91 at x6 amplitude): the mean evoked component of a 10x10x10 patch has a
  singular value near the threshold, so it is kept only partly when the response is weak or
  the run short. The ``demo`` preset (4 mm, 120 volumes, default) gives 0.85.
- GLM-residual FWHM (drift removed, out / in): it grows in every regime, by 36-47 % in
  ``default``, 30-42 % in ``strong`` and 38-51 % in ``thermal`` (no physiological noise), so
  it is not the smooth physiological noise that makes it grow: NORDIC removes most of the white
  thermal part of the residual, and what stays is smooth (the unmodelled evoked response in
  active voxels, the non-BOLD S0 fluctuations and the edge artefact, and the noise components
  above the threshold, which are the spatially smoothest). The thermal noise NORDIC leaves is only
  slightly smoother than its input (paired-noise FWHM), and the removed part is white.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cache

import numpy as np
import pytest
from scipy import ndimage

from echoprep.kernels.nordic import default_kernel, monte_carlo_threshold
from echoprep.kernels.nordic import nordic as _kernel
from echoprep.kernels.patches import (
    axis_starts,
    gram,
    hard_threshold,
    mppca_noise_variance,
    patch_grid,
    squared_singular_values,
    x_starts,
)
from echoprep.kernels.phase import hann, lowpass_phase, lowpass_response
from echoprep.kernels.quality import (
    detrend,
    fwhm_classic,
    legendre_basis,
    neighbour_correlation,
    tsnr,
)
from echoprep.options import section_defaults

#: The schema defaults of the kernel's options (the kernel has none; the stage passes them all).
KERNEL_DEFAULTS = {k: v for k, v in section_defaults("nordic").items() if k != "enabled"}


def nordic(magnitude, phase=None, **kwargs):
    """The kernel with the schema defaults of the options not given, unchecked (as the stage
    passes them; invalid values reach the kernel's own checks)."""
    return _kernel(magnitude, phase, **{**KERNEL_DEFAULTS, **kwargs})


# ---------------------------------------------------------------------------------------------
# known answers


def test_hann_window_and_filter_response() -> None:
    np.testing.assert_allclose(hann(5), [0, 0.5, 1, 0.5, 0], atol=1e-15)
    np.testing.assert_allclose(hann(1), [1.0])
    # even length: the peak value sits at frequencies 0 and +1 (inverse-FFT-first convention)
    r = lowpass_response(6, 1.0)
    w = hann(6)
    np.testing.assert_allclose(r[[0, 1, 5]], [w[3], w[2], w[4]])
    assert r[0] == r[1]
    # odd length: symmetric around 0
    r = lowpass_response(7, 3.0)
    np.testing.assert_allclose(r[1:], r[1:][::-1])
    assert r[0] == 1.0


def test_lowpass_phase_keeps_a_smooth_phase_and_ignores_scaling() -> None:
    x, y = np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 28), indexing="ij")
    phi = 0.6 * np.sin(1.5 * x) + 0.4 * y
    img = (2 + x) * np.exp(1j * phi)
    data = np.stack([img, 3 * img], axis=-1)[:, :, None, :].astype(np.complex64)
    th = lowpass_phase(data, 10)
    assert th.shape == data.shape and th.dtype == np.float32
    inner = (slice(6, -6), slice(6, -6), 0)
    assert np.abs(th[inner][..., 0] - phi[6:-6, 6:-6]).max() < 0.05
    np.testing.assert_allclose(th[..., 0], th[..., 1], atol=1e-5)


def test_patch_starts_follow_the_reference_grid_plus_a_fill_in_patch() -> None:
    assert axis_starts(40, 9) == [0, 4, 8, 12, 16, 20, 24, 28, 31]
    assert axis_starts(8, 8) == [0, 0]  # duplicate last start (counts twice, as the reference)
    assert axis_starts(10, 1) == [*range(10), 9]
    # x: candidates 0..n-k-1, each once; the last x-plane is left to the fill-in patch
    assert x_starts(48, 9) == ([0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 38], 8)
    assert x_starts(36, 14) == ([0, 7, 14, 21], 13)
    assert x_starts(9, 9) == ([], 0)  # the reference covers nothing; we cover all
    with pytest.raises(ValueError, match="does not fit"):
        axis_starts(5, 6)


@pytest.mark.parametrize("shape,kernel", [((48, 40, 8), (9, 9, 8)), ((13, 11, 5), (4, 5, 3))])
def test_patch_grid_covers_every_voxel_and_fills_only_the_last_plane(shape, kernel) -> None:
    starts, weights, offsets = patch_grid(shape, kernel)
    kx, ky, kz = kernel
    count = np.zeros(shape)
    for (x, y, z), w, off in zip(starts, weights, offsets, strict=True):
        count[x + off : x + kx, y : y + ky, z : z + kz] += w
    assert count.min() >= 1
    fill = offsets > 0
    assert fill.any() and np.all(starts[fill, 0] + offsets[fill] == shape[0] - 1)
    # the reference's patches alone cover everything but the last x-plane
    ref = np.zeros(shape)
    for (x, y, z), w in zip(starts[~fill], weights[~fill], strict=True):
        ref[x : x + kx, y : y + ky, z : z + kz] += w
    assert ref[:-1].min() >= 1 and ref[-1].max() == 0
    np.testing.assert_array_equal(count[:-1], ref[:-1])


def test_default_kernel_follows_the_11_to_1_rule_and_the_thin_slab_rule() -> None:
    assert default_kernel((64, 64, 40), 63) == (9, 9, 9)
    assert default_kernel((64, 64, 8), 63) == (9, 9, 8)  # nz <= k: round(sqrt(11*63/8)) = 9
    assert default_kernel((48, 40, 8), 60) == (9, 9, 8)
    assert default_kernel((40, 36, 10), 83) == (10, 10, 10)
    assert default_kernel((36, 36, 12), 70) == (9, 9, 9)
    assert default_kernel((96, 96, 40), 153) == (12, 12, 12)
    assert default_kernel((90, 110, 72), 163) == (12, 12, 12)
    assert default_kernel((64, 64, 40), 63, (5, 6, 7)) == (5, 6, 7)
    assert default_kernel((64, 64, 4), 63, (5, 6, 7)) == (13, 13, 4)  # also for a given kernel


def _low_rank(rng, shape, rank, scale, dtype):
    """(B, M, N) low-rank matrices with singular values ``scale * (1 .. rank)``."""
    b, m, n = shape
    cplx = np.iscomplexobj(np.zeros(1, dtype))

    def draw(*s):
        z = rng.standard_normal(s)
        return z + 1j * rng.standard_normal(s) if cplx else z

    u = np.linalg.qr(draw(b, m, rank))[0]
    v = np.linalg.qr(draw(b, n, rank))[0]
    s = scale * np.arange(rank, 0, -1.0)
    return (u * s[None, None, :]) @ np.swapaxes(v, 1, 2).conj(), draw(b, m, n)


@pytest.mark.parametrize("dtype", [np.complex64, np.float32])
@pytest.mark.parametrize("m,n", [(120, 30), (25, 60)])
def test_hard_threshold_matches_a_double_precision_svd(dtype, m, n) -> None:
    rng = np.random.default_rng(1)
    signal, noise = _low_rank(rng, (6, m, n), 3, 40.0, dtype)
    data = (signal + noise).astype(dtype)
    thr = 1.3 * (math.sqrt(m) + math.sqrt(n)) * (math.sqrt(2) if dtype == np.complex64 else 1)
    u, s, vh = np.linalg.svd(data.astype(np.complex128 if dtype == np.complex64 else np.float64))
    keep = s >= thr
    k = min(m, n)
    expected = (u[:, :, :k] * (s * keep)[:, None, :]) @ vh[:, :k, :]
    np.testing.assert_allclose(
        squared_singular_values(data), s**2, rtol=1e-4, atol=1e-5 * float(s.max()) ** 2
    )
    g = gram(data)
    assert g.shape == (6, min(m, n), min(m, n)) and g.dtype.itemsize >= 8
    recon, removed = hard_threshold(data.copy(), thr)
    np.testing.assert_array_equal(removed, k - keep.sum(axis=1))
    assert np.abs(recon - expected).max() < 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("dtype", [np.complex64, np.float32])
@pytest.mark.parametrize("m,n", [(120, 30), (25, 60)])
def test_the_tangent_map_is_the_kept_ranks_tangent_projection(dtype, m, n) -> None:
    """companion_map="tangent": a companion ``A + D`` comes out as ``A``'s reconstruction plus
    ``P_U D + D P_V - P_U D P_V`` (the kept left and right singular subspaces of ``A``, from a
    double-precision SVD), for tall and wide patches; ``A`` itself as with the frozen map."""
    rng = np.random.default_rng(4)
    signal, noise = _low_rank(rng, (4, m, n), 3, 40.0, dtype)
    data = (signal + noise).astype(dtype)
    change = (0.1 * _low_rank(rng, (4, m, n), 1, 1.0, dtype)[1]).astype(dtype)
    thr = 1.3 * (math.sqrt(m) + math.sqrt(n)) * (math.sqrt(2) if dtype == np.complex64 else 1)
    wide = np.complex128 if dtype == np.complex64 else np.float64
    u, s, vh = np.linalg.svd(data.astype(wide))
    companion = data + change
    recon, _ = hard_threshold(data.copy(), thr, [companion], "tangent")
    frozen, _ = hard_threshold(data.copy(), thr)
    np.testing.assert_array_equal(recon, frozen)
    for b in range(4):
        k = int((s[b] >= thr).sum())
        pu = u[b, :, :k] @ u[b, :, :k].conj().T
        pv = vh[b, :k].conj().T @ vh[b, :k]
        d = change[b].astype(wide)
        expected = frozen[b] + pu @ d + d @ pv - pu @ d @ pv
        scale = np.abs(expected).max()
        assert np.abs(companion[b] - expected).max() < 2e-4 * scale, (b, k)


def test_hard_threshold_result_does_not_depend_on_the_batch() -> None:
    rng = np.random.default_rng(2)
    signal, noise = _low_rank(rng, (5, 90, 40), 4, 30.0, np.complex64)
    data = (signal + noise).astype(np.complex64)
    thr = 1.1 * (math.sqrt(90) + math.sqrt(40)) * math.sqrt(2)
    together, _ = hard_threshold(data.copy(), thr)
    alone = np.concatenate([hard_threshold(data[i : i + 1].copy(), thr)[0] for i in range(5)])
    np.testing.assert_array_equal(together, alone)


def test_mppca_noise_variance_of_noise_and_zero_patches() -> None:
    rng = np.random.default_rng(3)
    m, n = 196, 90
    noise = (rng.standard_normal((40, m, n)) + 1j * rng.standard_normal((40, m, n))) * 1.5
    data = noise.astype(np.complex64)
    data[-1] = 0
    rows = np.count_nonzero(data.sum(axis=2) != 0, axis=1)
    var = mppca_noise_variance(squared_singular_values(data), rows, n)
    assert var[-1] == 0  # all-zero patch
    # E|z|^2 = 2 * 1.5^2 = 4.5; MP-PCA on pure noise is unbiased to a few per cent
    assert abs(np.mean(var[:-1]) / 4.5 - 1) < 0.05
    assert np.all(np.abs(var[:-1] / 4.5 - 1) < 0.25)


def test_monte_carlo_threshold_is_the_mean_largest_singular_value() -> None:
    a = monte_carlo_threshold(1000, 90, np.random.default_rng(0))
    b = monte_carlo_threshold(1000, 90, np.random.default_rng(0))
    assert a == b
    assert abs(a / (math.sqrt(1000) + math.sqrt(90)) - 1) < 0.03


# ---------------------------------------------------------------------------------------------
# input checks (messages pinned)


def _series(shape=(16, 16, 4, 12), seed=0):
    rng = np.random.default_rng(seed)
    mag = (10 + rng.standard_normal(shape)).astype(np.float32)
    pha = rng.uniform(-3, 3, shape).astype(np.float32)
    return mag, pha


def _bad(name):
    mag, pha = _series()
    nan_mag = mag.copy()
    nan_mag[0, 0, 0, :3] = np.nan
    inf_pha = pha.copy()
    inf_pha[1, 2, 3, 4] = np.inf
    cases = {
        "not 4D": (
            (mag[..., 0], None),
            {},
            r"magnitude must be a 4D array \(x, y, z, t\); found shape \(16, 16, 4\)\. "
            r"Pass one echo's whole time series",
        ),
        "complex magnitude": ((mag + 0j, None), {}, r"magnitude must be real; found a complex"),
        "shape mismatch": (
            (mag, pha[..., :10]),
            {},
            r"phase must have the magnitude's shape \(16, 16, 4, 12\); found \(16, 16, 4, 10\)\. "
            r"Pass the phase series of the same echo and run, or phase=None",
        ),
        "one volume": (
            (mag[..., :1], pha[..., :1]),
            {},
            r"need at least 2 volumes; found 1\. NORDIC removes noise by low-rank approximation",
        ),
        "NaN": (
            (nan_mag, pha),
            {},
            r"magnitude contains 3 NaN/Inf value\(s\) out of 12288; expected finite values\. "
            r"Replace them",
        ),
        "Inf in phase": ((mag, inf_pha), {}, r"phase contains 1 NaN/Inf value\(s\) out of 12288"),
        "negative noise volumes": (
            (mag, pha),
            {"noise_volumes": -1},
            r"noise_volumes must be between 0 and t - 1 = 11; found -1\. It is the number of "
            r"trailing no-excitation volumes",
        ),
        "all noise volumes": (
            (mag, pha),
            {"noise_volumes": 12},
            r"noise_volumes must be between 0 and t - 1 = 11; found 12",
        ),
        "phase units": (
            (mag, pha),
            {"phase_units": "degrees"},
            r"unknown phase_units 'degrees'; use 'minmax' \(map the data's own min/max to "
            r"-pi/\+pi, as the reference\) or 'radians'",
        ),
        "kernel too large": (
            (mag, pha),
            {"kernel_size": (20, 8, 2)},
            r"the patch \(20, 8, 2\) does not fit the volume \(16, 16, 4\): need nx >= kx and "
            r"ny >= ky; pass a smaller kernel_size",
        ),
        "default kernel too large": (
            _series((6, 30, 20, 40)),
            {},
            r"the patch \(8, 8, 8\) does not fit the volume \(6, 30, 20\): need nx >= kx and "
            r"ny >= ky; the default kernel follows from t = 40 volumes \(about 11 patch voxels "
            r"per volume\); pass a smaller kernel_size",
        ),
        "kernel not 3 ints": (
            (mag, pha),
            {"kernel_size": (5, 5)},
            r"kernel_size must be 3 positive integers \(kx, ky, kz\); found \(5, 5\)",
        ),
        "temporal_phase": ((mag, pha), {"temporal_phase": 4}, r"temporal_phase must be 0, 1, 2"),
        "threshold": ((mag, pha), {"threshold": -1.0}, r"threshold must be a finite number >= 0"),
        "chunk": ((mag, pha), {"chunk_patches": 0}, r"chunk_patches must be >= 1; found 0"),
        "threads": ((mag, pha), {"n_threads": 0}, r"n_threads must be >= 1 or None; found 0"),
    }
    return cases[name]


@pytest.mark.parametrize(
    "name",
    [
        "not 4D",
        "complex magnitude",
        "shape mismatch",
        "one volume",
        "NaN",
        "Inf in phase",
        "negative noise volumes",
        "all noise volumes",
        "phase units",
        "kernel too large",
        "default kernel too large",
        "kernel not 3 ints",
        "temporal_phase",
        "threshold",
        "chunk",
        "threads",
    ],
)
def test_bad_input_is_refused_with_a_clear_message(name) -> None:
    (mag, pha), kwargs, message = _bad(name)
    with pytest.raises(ValueError, match=r"^NORDIC: " + f"(?:{message})"):
        nordic(mag, pha, **kwargs)


def test_all_zero_first_volume_is_refused() -> None:
    mag, pha = _series()
    mag[..., 0] = 0
    with pytest.raises(ValueError, match="first volume of the magnitude is all zero"):
        nordic(mag, pha)


def test_magnitude_only_ignores_the_phase_argument() -> None:
    mag, pha = _series()
    a = nordic(mag, pha[..., :3], magnitude_only=True, kernel_size=(6, 6, 4))
    b = nordic(mag, None, kernel_size=(6, 6, 4))
    np.testing.assert_array_equal(a.magnitude, b.magnitude)
    assert a.complex is None and a.phase_mapping == "none"


# ---------------------------------------------------------------------------------------------
# ground truth: the simulator's tiny preset


@cache
def _simulated_run(
    n_volumes: int | None = None, echo: int = 2, seed: int = 0, response: str = "default"
) -> dict:
    """One run of the tiny preset: noisy int16 magnitude/phase, noise-free magnitude, masks,
    the complex noise-free signal and per-active-voxel task regressors; ``response`` names a
    simulator regime (:data:`echoprep.simulate.response.REGIMES`)."""
    from echoprep.simulate import PRESETS, seeds
    from echoprep.simulate.anatomy import subject_anatomy
    from echoprep.simulate.design import (
        hrf_index,
        response_matrix,
        session_design,
        single_trial_betas,
        slice_timing,
    )
    from echoprep.simulate.signal import build_run, noise_free, run_volumes

    p = PRESETS["tiny"]
    if n_volumes is not None:
        p = dataclasses.replace(p, n_volumes=n_volumes)
    anat = subject_anatomy(p, seed, 1, response)
    design = session_design(p, p.n_runs, seed, 1, 1)
    betas = single_trial_betas(anat, design, seed, 1, 1, response)["betas"]
    images = design[design["image"] >= 0].reset_index(drop=True)
    cols = np.flatnonzero(images["run"].to_numpy() == 1)
    onsets = images["onset"].to_numpy()[cols]
    model = build_run(
        p,
        anat,
        onsets,
        betas[:, cols],
        seed=seed,
        subject=1,
        session=1,
        run=1,
        motion=False,
        response=response,
    )
    te = p.tes[echo - 1]
    rng = [seeds.rng(seed, 1, 1, 1, seeds.NOISE, echo)]
    blocks = [b[0] for b in run_volumes(model, (te,), rng, p.chunk_volumes)]
    mag = np.moveaxis(np.concatenate([m for m, _ in blocks]), 0, -1)
    pha = np.moveaxis(np.concatenate([ph for _, ph in blocks]), 0, -1)
    n = model.n_volumes
    clean = np.zeros((math.prod(model.shape), n), np.complex64)
    clean[model.head_idx] = noise_free(model, te, 0, n)
    clean = clean.reshape(*model.shape, n)
    st = slice_timing(model.shape[2], p.multiband, p.tr)
    regressors = {}
    for v in zip(*np.nonzero(anat.active), strict=True):
        k = int(hrf_index(np.array([anat.hrf_peak[v]]))[0])
        regressors[v] = response_matrix(p, onsets, st[v[2]], k).sum(axis=1)
    return {
        "mag": mag,
        "phase": pha,
        "clean_complex": clean,
        "clean": np.abs(clean).astype(np.float64),
        "noise_sd": model.noise_sd,
        "brain": anat.brain_mask,
        "regressors": regressors,
        "n": n,
    }


@cache
def _denoised(n_volumes: int | None = None, response: str = "default") -> np.ndarray:
    sim = _simulated_run(n_volumes, response=response)
    return nordic(sim["mag"], sim["phase"]).magnitude.astype(np.float64)


def _rmse_ratio(sim, out):
    brain, clean = sim["brain"], sim["clean"]
    err_in = np.sqrt(np.mean((sim["mag"][brain] - clean[brain]) ** 2))
    err_out = np.sqrt(np.mean((out[brain] - clean[brain]) ** 2))
    return err_in / err_out


def _tsnr_ratio(sim, out):
    brain = sim["brain"]
    return np.median(tsnr(out[brain])) / np.median(tsnr(sim["mag"][brain]))


def _evoked(sim, a):
    """Mean over active voxels of the amplitude on the voxel's task regressor (sum of its
    trial responses with unit betas, its own HRF and slice time), cubic drift as nuisance."""
    poly = legendre_basis(sim["n"])
    betas = [
        np.linalg.lstsq(np.column_stack([poly, reg]), a[v], rcond=None)[0][-1]
        for v, reg in sim["regressors"].items()
    ]
    return float(np.mean(betas))


GROUND_TRUTH = {
    # (run length, metric): xfail reason, or None where the target is met
    (90, "tsnr"): None,
    (300, "tsnr"): "tSNR gain 1.97 with 300 volumes (2.14 with 90): misses 2 by 1.5 %",
}


@pytest.mark.parametrize("n_volumes", [90, 300])
def test_ground_truth_rmse_halved(n_volumes) -> None:
    sim = _simulated_run(n_volumes)
    assert _rmse_ratio(sim, _denoised(n_volumes)) >= 2.0


@pytest.mark.parametrize(
    "n_volumes",
    [
        90,
        pytest.param(
            300,
            marks=pytest.mark.xfail(
                strict=True, raises=AssertionError, reason=GROUND_TRUTH[300, "tsnr"]
            ),
        ),
    ],
)
def test_ground_truth_tsnr_doubled(n_volumes) -> None:
    sim = _simulated_run(n_volumes)
    assert _tsnr_ratio(sim, _denoised(n_volumes)) >= 2.0


@pytest.mark.parametrize("n_volumes", [90, 300])
def test_ground_truth_removed_part_is_spatially_white(n_volumes) -> None:
    sim = _simulated_run(n_volumes)
    removed = sim["mag"].astype(np.float64) - _denoised(n_volumes)
    corr = [neighbour_correlation(removed, sim["brain"], axis) for axis in range(3)]
    assert max(abs(c) for c in corr) < 0.1


#: (response regime, run length) -> allowed range of the evoked amplitude, NORDIC / noise-free
EVOKED_KEPT = {
    ("default", 300): (0.95, 1.05),
    ("strong", 300): (0.95, 1.05),
    ("strong", 90): (0.95, 1.05),
    # reduced: a weak response in a short run sits near the singular-value threshold
    ("default", 90): (0.70, 0.85),
}


@pytest.mark.parametrize("response,n_volumes", list(EVOKED_KEPT))
def test_ground_truth_evoked_amplitude_by_regime(response, n_volumes) -> None:
    sim = _simulated_run(n_volumes, response=response)
    truth = _evoked(sim, sim["clean"])
    assert abs(_evoked(sim, sim["mag"].astype(np.float64)) / truth - 1) < 0.05  # the input
    lo, hi = EVOKED_KEPT[response, n_volumes]
    ratio = _evoked(sim, _denoised(n_volumes, response)) / truth
    assert lo <= ratio <= hi, ratio


def test_ground_truth_evoked_amplitude_kept_better_when_strong() -> None:
    """90 volumes: the strong regime keeps at least 8 points more of its evoked amplitude."""
    kept = []
    for response in ("default", "strong"):
        sim = _simulated_run(90, response=response)
        kept.append(_evoked(sim, _denoised(90, response)) / _evoked(sim, sim["clean"]))
    assert kept[1] > kept[0] + 0.08, kept


def _smooth_noise_pair(sd_voxels: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two noisy versions of the tiny run (noise-free signal + complex Gaussian noise smoothed
    with a Gaussian of ``sd_voxels``, rescaled to the simulator's noise SD), each quantised as
    the simulator does, and their NORDIC outputs; returns (in_a - in_b, out_a - out_b, brain)."""
    from echoprep.simulate.writer import quantize_magnitude, quantize_phase

    sim = _simulated_run()
    ins, outs = [], []
    for seed in (11, 12):
        z = np.random.default_rng(seed).standard_normal((2, *sim["clean_complex"].shape))
        z = ndimage.gaussian_filter(z, (0, sd_voxels, sd_voxels, sd_voxels, 0), mode="wrap")
        z /= z.std()
        c = sim["clean_complex"] + (z[0] + 1j * z[1]) * sim["noise_sd"][..., None]
        mag, pha = quantize_magnitude(np.abs(c)), quantize_phase(np.angle(c))
        ins.append(mag.astype(np.float64))
        outs.append(nordic(mag, pha).magnitude.astype(np.float64))
    return ins[0] - ins[1], outs[0] - outs[1], sim["brain"]


@pytest.mark.parametrize(
    "sd_voxels",
    [
        0.7,
        pytest.param(
            0.5,
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="with less smooth noise (Gaussian sd 0.5 voxel, FWHM ~0.9 voxel) NORDIC's "
                "output noise is 7-14 % smoother: the noise components above the threshold are "
                "the spatially smoothest ones",
            ),
        ),
    ],
)
def test_ground_truth_noise_smoothness_is_kept(sd_voxels) -> None:
    """FWHM (AFNI classic) of the thermal noise before and after NORDIC, measured on the
    difference of two runs that differ only in their noise (signal and signal loss cancel)."""
    diff_in, diff_out, brain = _smooth_noise_pair(sd_voxels)
    f_in, f_out = fwhm_classic(diff_in, brain), fwhm_classic(diff_out, brain)
    assert np.all(f_in > 0.5)
    assert np.all(np.abs(f_out / f_in - 1) < 0.05), (f_in, f_out)


@pytest.mark.parametrize("response", ["default", "thermal"])
def test_ground_truth_glm_residual_smoothness_grows(response) -> None:
    """The drift-removed residual gets 25-65 % smoother with NORDIC with and without
    physiological noise (measured 1.36-1.47 default, 1.38-1.51 thermal-only): the white thermal
    part shrinks, the smooth rest stays (module docstring)."""
    sim = _simulated_run(response=response)
    brain, poly = sim["brain"], legendre_basis(sim["n"])
    fw = []
    for a in (sim["mag"], _denoised(response=response)):
        res = np.zeros(a.shape)
        res[brain] = detrend(a[brain].astype(np.float64), poly)
        fw.append(fwhm_classic(res, brain))
    ratio = fw[1] / fw[0]
    assert np.all((ratio > 1.25) & (ratio < 1.65)), fw
