"""NORDIC on a torch device, every step there (docs/nordic.md, "GPU").

The torch code runs here on torch's CPU kernels (the kernel's ``device="torch-cpu"``): the
same code as on a GPU but LAPACK's SVD instead of cuSOLVER's ``gesvda``. It is checked
against known answers and against the NumPy path (removed counts identical; magnitude within
1e-4 of the series' 99.9th percentile in complex mode, 3e-4 magnitude-only; noise maps within
1e-3), for bitwise repeats, and for batches sized by the memory budget; the GPU itself is
checked by the last test where a CUDA device exists (``benchmarks/nordic.py --device cpu
cuda`` measures it at LAION size).
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from echoprep.kernels import nordic_patches, patches
from echoprep.kernels.nordic import check_device, monte_carlo_threshold
from echoprep.kernels.nordic import nordic as _kernel
from echoprep.options import section_defaults

torch = pytest.importorskip("torch")

from echoprep.kernels import nordic_torch_patches as tp  # noqa: E402
from echoprep.kernels.nordic_torch import _monte_carlo_threshold  # noqa: E402
from echoprep.kernels.patches_torch import (  # noqa: E402
    DeviceUnavailableError,
    open_device,
    singular_values,
)

KERNEL_DEFAULTS = {k: v for k, v in section_defaults("nordic").items() if k != "enabled"}
CPU = torch.device("cpu")


def _stack(shape, dtype, rng):
    a = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _low_rank(b, m, n, values, rng):
    """``b`` complex matrices ``U diag(values) V^H`` with random orthonormal U, V."""
    out = np.empty((b, m, n), np.complex128)
    r = len(values)
    for i in range(b):
        u, _ = np.linalg.qr(_stack((m, r), np.complex128, rng))
        v, _ = np.linalg.qr(_stack((n, r), np.complex128, rng))
        out[i] = (u * np.asarray(values)) @ v.conj().T
    return out


@pytest.mark.parametrize("shape", [(3, 60, 20), (3, 12, 40)], ids=["tall", "wide"])
def test_known_singular_values_and_an_exact_low_rank_rebuild(shape):
    """A rank-3 matrix with singular values 9, 4, 2: a threshold between 0 and 2 keeps exactly
    the matrix, one between 4 and 9 only its first component, one above 9 nothing."""
    b, m, n = shape
    a = torch.from_numpy(_low_rank(b, m, n, [9.0, 4.0, 2.0], np.random.default_rng(0)))
    s = singular_values(a if m >= n else a.mH)
    np.testing.assert_allclose(s[:, :3], [[9, 4, 2]] * b, rtol=1e-12)
    np.testing.assert_allclose(s[:, 3:], 0, atol=1e-6)  # square roots of ~1e-15 on the CPU
    recon, removed = tp.low_rank(a, 1.0)
    np.testing.assert_allclose(recon, a, atol=1e-12)
    np.testing.assert_array_equal(removed, min(m, n) - 3)
    first, removed = tp.low_rank(a, 5.0)
    np.testing.assert_array_equal(removed, min(m, n) - 1)
    np.testing.assert_allclose(torch.linalg.svdvals(first)[:, :2], [[9, 0]] * b, atol=1e-12)
    none, removed = tp.low_rank(a, 10.0)
    assert not none.abs().max() > 1e-12
    np.testing.assert_array_equal(removed, min(m, n))


@pytest.mark.parametrize(
    "shape, dtype",
    [((6, 80, 24), np.complex64), ((6, 16, 30), np.complex64), ((6, 50, 12), np.float32)],
    ids=["tall-complex", "wide-complex", "tall-real"],
)
def test_patch_algebra_agrees_with_the_numpy_path(shape, dtype):
    rng = np.random.default_rng(1)
    a = _stack(shape, dtype, rng)
    a[:, :, :3] *= 8  # a few strong components above the noise
    a[0, :5] = 0  # zero rows: MP-PCA counts the others
    ref = patches.squared_singular_values(a)
    work = torch.from_numpy(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64))
    s = singular_values(work if shape[1] >= shape[2] else work.mH)
    np.testing.assert_allclose(s * s, ref, rtol=1e-5, atol=1e-6 * ref.max())
    rows = np.count_nonzero(a.sum(axis=2) != 0, axis=1)
    var = tp.mppca_noise_variance(s * s, torch.from_numpy(rows), shape[2])
    np.testing.assert_allclose(var, patches.mppca_noise_variance(ref, rows, shape[2]), rtol=1e-4)
    threshold = float(np.sqrt(np.median(ref)))
    r_ref, k_ref = patches.hard_threshold(a.copy(), threshold)
    r_got, k_got = tp.low_rank(work, threshold)
    np.testing.assert_array_equal(k_got, k_ref)
    np.testing.assert_allclose(r_got, r_ref, atol=2e-6 * np.abs(r_ref).max())


def test_mppca_of_zero_and_partly_zero_patches():
    rng = np.random.default_rng(3)
    sq = np.sort(rng.uniform(0, 5, (5, 10)), axis=1)[:, ::-1].copy()
    rows = np.array([0, 1, 4, 10, 30])
    sq[0] = 0
    got = tp.mppca_noise_variance(torch.from_numpy(sq), torch.from_numpy(rows), 10)
    np.testing.assert_allclose(got, patches.mppca_noise_variance(sq, rows, 10), rtol=1e-12)
    assert got[0] == 0


@pytest.mark.parametrize("budget", [10**9, 200_000])
def test_passes_agree_with_the_numpy_passes(budget):
    """Both patch passes against the NumPy ones on a series whose grid does not divide the
    volume; a small budget (more batches) gives the same bits as one batch."""
    rng = np.random.default_rng(4)
    data = _stack((13, 11, 9, 20), np.complex64, rng)
    data[..., :2] += 6  # one strong component
    kernel = (5, 4, 4)
    g_ref = nordic_patches.gfactor_pass(data, (6, 6, 1), 8, 1)
    g, n_g = tp.gfactor_pass(torch.from_numpy(data), (6, 6, 1), budget)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4)
    avg_ref, rm_ref = nordic_patches.denoise_pass(data.copy(), kernel, 6.0, 8, 1)
    avg, rm, n_b = tp.denoise_pass(torch.from_numpy(data), kernel, 6.0, budget)
    np.testing.assert_array_equal(rm, rm_ref)
    np.testing.assert_allclose(avg, avg_ref, atol=1e-5 * np.abs(avg_ref).max())
    one, _, n_one = tp.denoise_pass(torch.from_numpy(data), kernel, 6.0, 10**9)
    assert torch.equal(avg, one)
    assert (n_g, n_b) == ((1, 1) if budget == 10**9 else (n_g, n_b)) and n_one == 1
    if budget < 10**9:
        assert n_g > 1 and n_b > 1


def test_monte_carlo_threshold_draws_as_the_numpy_path():
    ref = monte_carlo_threshold(120, 30, np.random.default_rng(7))
    assert abs(_monte_carlo_threshold(120, 30, 7, CPU) - ref) <= 1e-12 * ref


def _series(shape=(16, 18, 12, 24), seed=2):
    """A rank-3 complex series with a smooth phase plus noise, as magnitude and phase."""
    rng = np.random.default_rng(seed)
    nx, ny, nz, nt = shape
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, k) for k in (nx, ny, nz)), indexing="ij")
    head = np.exp(-(x**2 + y**2 + z**2))
    t = np.linspace(0, 1, nt)
    signal = (
        head[..., None] * (1 + 0.05 * np.sin(6 * t))
        + (head * x)[..., None] * 0.03 * np.cos(4 * t)
        + (head * y)[..., None] * 0.02 * t
    )
    c = signal * np.exp(1j * (0.5 * x + 0.3 * y))[..., None] * np.exp(0.2j * t)
    c = c + 0.03 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return np.abs(c).astype(np.float32), np.angle(c).astype(np.float32)


def _nordic(mag, pha, **kwargs):
    return _kernel(mag, pha, **{**KERNEL_DEFAULTS, "chunk_patches": 16, "n_threads": 2, **kwargs})


CASES = {
    "complex": {},
    "magnitude": {"magnitude_only": True},
    "noise-volumes": {"noise_volumes": 2, "temporal_phase": 2, "keep_noise_volumes": True},
    "phase-3-odd-grid": {"temporal_phase": 3, "noise_volumes": 1, "kernel_size": (5, 6, 4)},
    "zero-slices": {"zero": True},
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_kernel_on_torch_agrees_with_numpy(case):
    """The whole kernel with ``device="torch-cpu"``: the same removed counts, the denoised
    magnitude within 1e-4 of the series' 99.9th percentile in complex mode (measured 9e-5 on
    the GPU at LAION size, docs/nordic.md), 3e-4 magnitude-only, where the NumPy path's
    single-precision Gram matrices are less accurate (1.08e-4 was measured with torch 2.11 on
    the GPU machine's CPU); noise maps within 1e-3 (the NumPy path's single-precision Gram
    matrices lose relative accuracy in the small, noise, eigenvalues when one component
    dominates: 1.3e-4 here magnitude-only, the torch path being the more accurate)."""
    options = dict(CASES[case])
    mag, pha = _series()
    if options.pop("zero", False):
        mag[:, :, :3] = 0  # all-zero slices: zero noise map, the reference's fix-up
    ref = _nordic(mag, pha, **options)
    got = _nordic(mag, pha, **options, device="torch-cpu")
    assert ref.algebra == "cpu (NumPy/LAPACK)"
    assert got.algebra == f"cpu, torch {torch.__version__}"
    # the noise level (noise volumes) follows the noise map: 1e-4, and so does the threshold
    assert got.threshold == pytest.approx(ref.threshold, rel=1e-4) and ref.kernel == got.kernel
    assert got.noise_level == pytest.approx(ref.noise_level, rel=1e-4)
    assert got.absolute_scale == pytest.approx(ref.absolute_scale, rel=1e-6)  # sin/cos rounding
    for name in ("magnitude", "gfactor", "removed"):
        assert getattr(got, name).dtype == getattr(ref, name).dtype
        assert getattr(got, name).shape == getattr(ref, name).shape
    np.testing.assert_array_equal(got.removed, ref.removed)
    np.testing.assert_allclose(got.gfactor, ref.gfactor, rtol=1e-3)
    scale = np.percentile(ref.magnitude, 99.9)
    tolerance = 3e-4 if "magnitude_only" in options else 1e-4
    assert np.abs(got.magnitude - ref.magnitude).max() <= tolerance * scale
    if ref.complex is not None:
        assert got.complex.dtype == np.complex64
        assert np.abs(got.complex - ref.complex).max() <= tolerance * scale
    else:
        assert got.complex is None
    # the case removes components, but not all of them
    assert 0 < ref.removed.mean() < min(np.prod(ref.kernel), mag.shape[3])


def test_repeats_bitwise_and_a_small_budget_gives_more_batches_same_bits(caplog):
    mag, pha = _series()
    before = mag.copy(), pha.copy()
    caplog.set_level(logging.INFO, logger="echoprep.kernels.nordic_torch")
    a = _nordic(mag, pha, device="torch-cpu")
    b = _nordic(mag, pha, device="torch-cpu")
    c = _nordic(mag, pha, device="torch-cpu", device_batch_bytes=3 * 2**20)
    counts = [
        tuple(map(int, m.groups()))
        for m in (re.search(r": (\d+) \+ (\d+) batches", r.message) for r in caplog.records)
        if m
    ]
    assert counts[0] == counts[1] and counts[2][0] > counts[0][0] and counts[2][1] > counts[0][1]
    for other in (b, c):
        for name in ("magnitude", "complex", "gfactor", "removed"):
            np.testing.assert_array_equal(getattr(a, name), getattr(other, name))
    np.testing.assert_array_equal(mag, before[0])  # the inputs are left as they were
    np.testing.assert_array_equal(pha, before[1])


@pytest.mark.parametrize("where", ["magnitude", "phase"])
def test_nan_input_is_refused_with_the_cpu_message(where):
    mag, pha = _series(shape=(10, 10, 6, 8))
    (mag if where == "magnitude" else pha)[1, 2, 3, 4] = np.nan
    messages = []
    for device in ("cpu", "torch-cpu"):
        with pytest.raises(ValueError, match="NaN/Inf") as err:
            _nordic(mag, pha, device=device, kernel_size=(4, 4, 4))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"NORDIC: {where} contains 1 NaN/Inf value(s) out of 4800;")


def test_unknown_device_names_the_choices():
    assert check_device("cpu") is None and check_device("torch-cpu") == "cpu"
    assert check_device("cuda:1") == "cuda:1"
    with pytest.raises(
        ValueError,
        match=r"NORDIC: unknown device 'gpu'; use 'cpu' \(NumPy\) or "
        r"'cuda' \(a GPU through torch; 'cuda:N' for the N-th visible GPU\)",
    ):
        check_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_message_with_the_fix(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceUnavailableError) as err:
        open_device("cuda")
    assert isinstance(err.value, ValueError)  # the CLI prints it without a traceback
    message = str(err.value)
    assert message.startswith(
        f"nordic.device is 'cuda' but torch {torch.__version__} sees no "
        "CUDA device on this machine (CUDA_VISIBLE_DEVICES is ''); "
    )
    assert message.endswith(
        "run the NORDIC jobs on a GPU node (the rule asks for one: "
        "resources gpu=1) or set nordic.device: cpu"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_agrees_with_numpy_repeats_itself_and_keeps_its_budget():
    mag, pha = _series(shape=(30, 32, 20, 40))
    mag[:, :, :2] = 0  # zero patches: gesvda on all-zero matrices
    ref = _nordic(mag, pha)
    a = _nordic(mag, pha, device="cuda")
    b = _nordic(mag, pha, device="cuda")
    budget = 64 * 2**20
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    c = _nordic(mag, pha, device="cuda", device_batch_bytes=budget)
    # resident: magnitude and phase uploads (8 bytes per entry), then the series, its phase
    # and the double-precision sum (28), the float32 result beside the sum (8)
    resident = 36 * mag.size
    assert torch.cuda.max_memory_allocated() - base <= resident + budget
    assert a.algebra.startswith("cuda (")
    np.testing.assert_array_equal(a.removed, ref.removed)
    scale = np.percentile(ref.magnitude, 99.9)
    assert np.abs(a.magnitude - ref.magnitude).max() <= 1e-4 * scale
    assert np.isfinite(a.magnitude).all() and not a.magnitude[:, :, :2].any()
    for other in (b, c):
        for name in ("magnitude", "complex", "gfactor", "removed"):
            np.testing.assert_array_equal(getattr(a, name), getattr(other, name))


def test_rank_deficient_patches_take_the_gram_route(monkeypatch):
    """On a GPU, cuSOLVER's ``gesvda`` fails on rank-deficient matrices (all-zero patches, few
    non-zero rows, repeated columns): those patches go to the Gram route, and a batch on
    which ``gesvda`` still fails goes there whole. Simulated here with LAPACK's SVD standing
    in for ``gesvda``, failing as it does."""
    from echoprep.kernels import patches_torch

    calls = []

    def fake_gesvda(t):
        calls.append(t.shape[0])
        if (torch.linalg.matrix_rank(t) < t.shape[-1]).any():
            raise torch.linalg.LinAlgError("linalg.svd: failed to converge (simulated)")
        return torch.linalg.svd(t, full_matrices=False)[1:]

    monkeypatch.setattr(patches_torch, "_has_gesvda", lambda device: True)
    monkeypatch.setattr(patches_torch, "_gesvda", fake_gesvda)
    rng = np.random.default_rng(5)
    a = torch.from_numpy(_stack((6, 40, 12), np.complex128, rng))
    a[1] = 0  # all zero
    a[3, 5:] = 0  # five non-zero rows
    reference = tp.low_rank(a, 3.0)
    monkeypatch.undo()  # the Gram route everywhere, as on the CPU
    expected = tp.low_rank(a, 3.0)
    for got, want in zip(reference, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-10)
    assert calls == [4]  # the four full-rank patches only
    monkeypatch.setattr(patches_torch, "_has_gesvda", lambda device: True)
    monkeypatch.setattr(patches_torch, "_gesvda", fake_gesvda)
    a[0, :, 1] = a[0, :, 0]  # repeated columns: enough rows, still rank-deficient
    got = tp.low_rank(a, 3.0)
    assert calls[-1] == 4  # tried, failed, the batch took the Gram route
    monkeypatch.undo()
    for g, want in zip(got, tp.low_rank(a, 3.0), strict=True):
        assert torch.equal(g, want)
