"""NORDIC thermal-noise removal of one 4D series (one echo), complex or magnitude-only.

Implemented from our description of the reference algorithm (``docs/nordic.md``; Moeller et
al. 2021, NeuroImage 226:117539; Vizioli et al. 2021, Nat Commun 12:5181; MP-PCA after
Veraart et al. 2016), with these deliberate differences (see docs/nordic.md):

- every voxel is covered: the reference's patch grid never reaches the last x-plane (it is
  written as 0); we keep the reference's patches and add the last full patch along x, which
  fills that plane only (:func:`echoprep.kernels.patches.x_starts`), so all other voxels
  average exactly the reference's patches;
- the noise level uses all trailing noise volumes (the reference uses the first one);
  noise volumes are dropped from the outputs unless ``keep_noise_volumes=True``;
- deterministic: the Monte-Carlo threshold and the random fill of all-zero voxels use
  generators seeded with ``seed``; all-zero input voxels stay 0 in the output;
- memory is bounded: patches are processed ``chunk_patches`` at a time (batched Gram matrix +
  Hermitian eigendecomposition), results are accumulated into one ``(x, y, z, t)`` sum;
  peak memory is about the inputs plus five float32 copies of the series (complex data and
  complex sum, two each; the low-pass phase, one) plus one patch batch per thread
  (``chunk_patches * prod(kernel) * t * 8`` bytes in complex mode).

Input rules (``ValueError`` otherwise): 4D real arrays of equal shape, at least 2 volumes,
finite values, ``0 <= noise_volumes < t``, and a patch that fits the volume in x and y
(``kx <= nx``, ``ky <= ny``; the z extent is reduced by the thin-slab rule of
:func:`default_kernel`). The g-factor patch is clipped to the volume.

Steps (units in brackets):

1. ``II = |mag| exp(i phase)`` (complex64), divided by ``absolute_scale`` = the smallest
   non-zero ``|II|`` of the first volume.
2. Phase stabilisation (``temporal_phase >= 1``): per slice and volume the phase of a
   Hann^width low-pass of the complex image is removed (:mod:`echoprep.kernels.phase`).
3. g-factor pass: MP-PCA on ``gfactor_kernel`` patches (step ``k // 2``) of the first
   ``gfactor_volumes`` volumes; ``g = sqrt(mean patch noise variance)`` per voxel [noise SD
   of a complex entry, in units of ``absolute_scale``].
4. ``II / g``; noise level ``sigma`` = SD of the non-zero entries of the noise volumes
   (1 without), divided by sqrt(2) in complex mode [per channel, normalised units].
5. Threshold ``lambda`` = mean largest singular value of 10 standard-normal
   ``prod(kernel) x t`` matrices times ``sigma * factor_error`` (times sqrt(2) complex).
6. Patch-wise hard threshold: singular values ``< lambda`` are zeroed; overlapping patches
   (step ``k // 2``) are averaged with weight 1 (the patch passes of steps 3 and 6 are in
   :mod:`echoprep.kernels.nordic_patches`).
7. Undo: times ``g``, phase restored, times ``absolute_scale``.

If any g-factor is 0 (a patch of all-zero data), the reference's fix-up is applied: every
``g < 1`` becomes the median of the non-zero g (a rule that depends on the units of
``absolute_scale``), and voxels whose whole series is 0 are filled with unit complex noise
(seeded) for the patch step and set back to 0 in the output.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from echoprep.kernels.nordic_checks import (
    check_companions,
    check_inputs,
    check_kernel_fits,
    check_kernel_request,
)
from echoprep.kernels.nordic_patches import (
    NUMPY_ALGEBRA,
    SLAB_BYTES,
    PatchAlgebra,
    denoise_pass,
    gfactor_pass,
)
from echoprep.kernels.nordic_patches import slabs as slab_slices
from echoprep.kernels.phase import phasor, replace_phase, stabilise_phase
from echoprep.kernels.threads import blas_limits, n_workers

log = logging.getLogger(__name__)

#: Spatial voxels per volume in the default kernel (the reference's 11:1 rule).
VOXELS_PER_VOLUME = 11
#: Draws of the Monte-Carlo threshold.
THRESHOLD_DRAWS = 10
#: The error for an all-zero first volume (no absolute scale).
ZERO_FIRST_VOLUME = (
    "NORDIC: the first volume of the magnitude is all zero, so the absolute scale "
    "(smallest non-zero magnitude of volume 1) is undefined; check the input"
)


@dataclass(frozen=True)
class NordicResult:
    """Output of :func:`nordic`.

    Attributes
    ----------
    magnitude
        ``(x, y, z, t_out)`` float32 denoised magnitude, in the input's units.
    complex
        ``(x, y, z, t_out)`` complex64 denoised complex series (phase restored; radians), or
        None in magnitude-only mode.
    gfactor
        ``(x, y, z)`` float32 noise SD map of the MP-PCA pass, in units of ``absolute_scale``
        (the reference's g-factor map).
    removed
        ``(x, y, z)`` float32 mean number of removed components per voxel over the patches
        covering it.
    threshold
        Singular-value threshold used, in normalised units (data / absolute_scale / g).
    noise_level
        Measured per-channel noise SD in normalised units (1/sqrt(2) in complex mode, 1 in
        magnitude-only mode, without noise volumes).
    kernel
        Patch size ``(kx, ky, kz)``.
    absolute_scale
        Global scale the data were divided by.
    n_noise_volumes
        Trailing noise volumes of the input.
    phase_mapping
        ``"minmax"``, ``"radians"`` or ``"none"`` (magnitude-only).
    algebra
        Where the patch algebra ran, in words (``device``): ``"cpu (NumPy/LAPACK)"`` or the
        torch device and version.
    companions
        ``(x, y, z, t_out)`` float32 magnitudes of the companion series (``companions`` of
        :func:`nordic`), each denoised with this series' decisions; empty without.
    """

    magnitude: np.ndarray
    complex: np.ndarray | None
    gfactor: np.ndarray
    removed: np.ndarray
    threshold: float
    noise_level: float
    kernel: tuple[int, int, int]
    absolute_scale: float
    n_noise_volumes: int
    phase_mapping: str
    algebra: str
    companions: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class NordicSteps:
    """The checked options of one run of the kernel's steps, as :func:`nordic` passes them to
    the NumPy path and to the device path (:mod:`echoprep.kernels.nordic_torch`): those of
    :func:`nordic`, with ``kernel`` and ``gkernel`` the patch sizes fitted to the volume and
    ``phase`` given only in complex mode."""

    noise_volumes: int
    keep_noise_volumes: bool
    threshold: float | None
    factor_error: float
    temporal_phase: int
    phase_filter_width: float
    kernel: tuple[int, int, int]
    gkernel: tuple[int, int, int]
    gfactor_volumes: int
    phase_units: str
    seed: int

    def t_out(self, nt: int) -> int:
        """Volumes of the outputs of an ``nt``-volume series."""
        return nt if self.keep_noise_volumes else nt - self.noise_volumes

    def result(
        self,
        magnitude: np.ndarray,
        complex_out: np.ndarray | None,
        gfactor: np.ndarray,
        removed: np.ndarray,
        threshold: float,
        noise_level: float,
        absolute_scale: float,
        algebra: str,
    ) -> NordicResult:
        """The :class:`NordicResult` of a run of these steps (``complex_out`` None in
        magnitude-only mode)."""
        return NordicResult(
            magnitude=magnitude,
            complex=complex_out,
            gfactor=gfactor,
            removed=removed,
            threshold=threshold,
            noise_level=noise_level,
            kernel=self.kernel,
            absolute_scale=absolute_scale,
            n_noise_volumes=self.noise_volumes,
            phase_mapping=("minmax" if self.phase_units == "minmax" else "radians")
            if complex_out is not None
            else "none",
            algebra=algebra,
        )


# ---------------------------------------------------------------------------------------------
# small public helpers


def default_kernel(
    shape: tuple[int, int, int], n_volumes: int, kernel: Sequence[int] | None = None
) -> tuple[int, int, int]:
    """Patch size of the main pass (the reference's rule).

    Default: cubic ``k = round((11 t)^(1/3))`` (about 11 voxels per volume). If ``nz <= kz``
    (thin slab; also for a given ``kernel``) the kernel becomes
    ``(k2, k2, nz)`` with ``k2 = round(sqrt(11 t / nz))``.

    Parameters
    ----------
    shape
        ``(nx, ny, nz)``.
    n_volumes
        Number of volumes ``t`` including noise volumes.
    kernel
        Requested ``(kx, ky, kz)`` or None.

    Returns
    -------
    tuple of int
        ``(kx, ky, kz)``; not checked against ``nx``/``ny`` here.
    """
    nz = shape[2]
    if kernel is None:
        k = _round_half_up((VOXELS_PER_VOLUME * n_volumes) ** (1 / 3))
        kernel = (k, k, k)
    kx, ky, kz = (int(k) for k in kernel)
    if nz <= kz:
        k2 = _round_half_up(math.sqrt(VOXELS_PER_VOLUME * n_volumes / nz))
        return (k2, k2, nz)
    return (kx, ky, kz)


def monte_carlo_threshold(
    n_rows: int, n_cols: int, rng: np.random.Generator, draws: int = THRESHOLD_DRAWS
) -> float:
    """Mean largest singular value of ``draws`` real standard-normal ``n_rows x n_cols``
    matrices (about ``sqrt(n_rows) + sqrt(n_cols)``)."""
    tops = [
        np.linalg.svd(rng.standard_normal((n_rows, n_cols)), compute_uv=False)[0]
        for _ in range(draws)
    ]
    return float(np.mean(tops))


def _seeded_monte_carlo(n_rows: int, n_cols: int, seed: int) -> float:
    return monte_carlo_threshold(n_rows, n_cols, np.random.default_rng(seed))


def noise_level(noise: np.ndarray | None, complex_mode: bool) -> float:
    """Step 4's noise level: :func:`noise_sd` of the normalised noise volumes (1 without),
    divided by sqrt(2) in complex mode (per channel)."""
    sigma = noise_sd(noise) if noise is not None else 1.0
    if complex_mode:
        sigma /= math.sqrt(2)
    return sigma


def final_threshold(
    steps: NordicSteps,
    nt: int,
    sigma: float,
    complex_mode: bool,
    monte_carlo: Callable[[int, int, int], float],
) -> float:
    """Step 5, logged: ``steps.threshold`` as given, or ``monte_carlo(prod(kernel), nt,
    seed)`` (:func:`monte_carlo_threshold` with ``default_rng(seed)``, computed where the path
    runs) times ``sigma``, ``factor_error`` and sqrt(2) in complex mode."""
    threshold = steps.threshold
    if threshold is None:
        mc = monte_carlo(int(np.prod(steps.kernel)), nt, steps.seed)
        threshold = mc * sigma * steps.factor_error * (math.sqrt(2) if complex_mode else 1.0)
    threshold = float(threshold)
    log.info(
        "NORDIC: kernel %s, threshold %.4g, noise level %.4g, %d noise volume(s)",
        steps.kernel,
        threshold,
        sigma,
        steps.noise_volumes,
    )
    return threshold


# ---------------------------------------------------------------------------------------------
# the kernel


def nordic(
    magnitude: np.ndarray,
    phase: np.ndarray | None = None,
    *,
    noise_volumes: int,
    keep_noise_volumes: bool,
    threshold: float | None,
    factor_error: float,
    temporal_phase: int,
    phase_filter_width: float,
    kernel_size: Sequence[int] | None,
    gfactor_kernel: Sequence[int],
    magnitude_only: bool,
    phase_units: str,
    chunk_patches: int,
    device: str,
    gfactor_volumes: int = 90,
    seed: int = 0,
    n_threads: int | None = None,
    device_batch_bytes: int | None = None,
    companions: Sequence[np.ndarray] = (),
    companion_map: str = "frozen",
) -> NordicResult:
    """NORDIC denoising of one 4D series.

    The options named like the keys of the ``nordic:`` config section have no defaults here:
    the schema holds them (docs/nordic.md, options), and the NORDIC stage passes every one
    (:func:`echoprep.stages.nordic.denoise_arrays` runs this kernel with the schema defaults
    of the options not given).

    Parameters
    ----------
    magnitude
        ``(x, y, z, t)`` real array, any dtype; values are used as given (apply NIfTI scaling
        before, if wanted). ``t`` includes ``noise_volumes`` trailing noise volumes.
    phase
        ``(x, y, z, t)`` real array of the same shape, or None (magnitude-only mode).
    noise_volumes
        Number of trailing no-excitation volumes, ``0 <= noise_volumes < t``. They take part
        in everything (phase filter, g-factor when ``t <= gfactor_volumes``, patch SVDs,
        kernel rule); all of them set the noise level.
    keep_noise_volumes
        Keep the noise volumes in the outputs (``t_out = t``), as the reference does; else
        ``t_out = t - noise_volumes``.
    threshold
        Singular-value threshold in normalised units, used as is (``factor_error`` is not
        applied); None: Monte-Carlo estimate with ``np.random.default_rng(seed)`` times the
        noise level, ``factor_error`` and sqrt(2) in complex mode.
    factor_error
        Multiplies the Monte-Carlo threshold (> 1 removes more).
    temporal_phase
        0 no phase stabilisation, 1 low-pass phase removal, 2 = 1 plus replacing the
        low-pass phase by the voxel's own where they differ by more than 1 rad (before the
        g-factor), 3 = 1 plus the same where also ``|normalised data| > sqrt(2)`` (main
        pass). Forced to 0 in magnitude-only mode.
    phase_filter_width
        Exponent of the Hann window of the phase low-pass (> 0; larger = smoother). The
        reference's default is 3; its fMRI example and the config default use 10.
    kernel_size
        Patch size ``(kx, ky, kz)``; None: the 11:1 rule of :func:`default_kernel`. As in
        the reference, the thin-slab rule replaces a given kernel too when ``nz <= kz``.
    gfactor_kernel
        Patch size of the MP-PCA g-factor pass; clipped to the volume.
    gfactor_volumes
        Volumes used by the g-factor pass (the first ``min(gfactor_volumes, t)``).
    magnitude_only
        Ignore ``phase`` and denoise the real magnitude (no sqrt(2) in the threshold).
    phase_units
        ``"minmax"``: the data's own min/max are mapped linearly to -pi/+pi (reference);
        ``"radians"``: phase is already in radians.
    seed
        Seed of the Monte-Carlo threshold and of the fill of all-zero voxels.
    chunk_patches
        Patches per batch (bounds the memory of the patch stage: about
        ``chunk_patches * prod(kernel) * t * 8`` bytes per thread in complex mode).
    device
        Where the kernel runs: ``"cpu"`` (NumPy/LAPACK, worker threads), or a torch device
        (``"cuda"``, ``"cuda:1"``; ``"torch-cpu"`` runs the torch code on torch's CPU
        kernels, to check it without a GPU): then every step runs on that device
        (:func:`echoprep.kernels.nordic_torch.nordic_on_device`), the patch algebra in
        double precision; it agrees with ``"cpu"`` to single-precision rounding and repeats
        itself bitwise (docs/nordic.md, "GPU").
    n_threads
        Worker threads for the patch batches and FFT threads (None: the CPUs available to
        the process). BLAS is limited to one thread while the kernel runs (threadpoolctl,
        where installed), so threads x BLAS threads never exceeds ``n_threads``; results do
        not depend on ``n_threads`` or ``chunk_patches``. On ``"torch-cpu"``: torch's
        threads while the kernel runs; unused on a GPU.
    device_batch_bytes
        Torch devices only: memory budget of one patch batch in bytes (None: half the free
        GPU memory, at most 16 GiB; 1 GiB on ``"torch-cpu"``). ``chunk_patches`` does not
        apply there.
    companions
        Magnitudes of series of the same shape and phase (planted responses,
        docs/comparison.md) denoised with every decision made on ``magnitude`` (scale, phase,
        g-factor, threshold, each patch's kept subspace): a map linear in the complex series.
        The CPU path runs them (``device`` is not used).
    companion_map
        ``"frozen"``: every decision as above; ``"tangent"``: NORDIC's first-order response to
        what a companion adds (each patch's kept rank as its tangent space,
        :func:`echoprep.kernels.patches.hard_threshold`; each companion's own low-pass phase,
        :func:`echoprep.kernels.phase.stabilise_phase`); docs/comparison.md.

    Returns
    -------
    NordicResult

    Raises
    ------
    ValueError
        Input not 4D, shapes differ, fewer than 2 volumes, kernel larger than the volume in
        x or y, NaN/Inf in the input, ``noise_volumes`` out of range, unknown ``phase_units``
        or other invalid options.
    echoprep.kernels.patches_torch.DeviceUnavailableError
        ``device`` names a torch device that this machine does not have (or torch is
        missing); a ``ValueError``.

    Notes
    -----
    The checks of NaN/Inf in the input run on the device for the device path (float32
    input; other dtypes on the CPU), after the other checks.
    """
    complex_mode = phase is not None and not magnitude_only
    on_device = device != "cpu"
    check_inputs(
        magnitude,
        phase if complex_mode else None,
        noise_volumes=noise_volumes,
        phase_units=phase_units,
        temporal_phase=temporal_phase,
        phase_filter_width=phase_filter_width,
        factor_error=factor_error,
        threshold=threshold,
        gfactor_volumes=gfactor_volumes,
        chunk_patches=chunk_patches,
        n_threads=n_threads,
        finite=not on_device,  # the device path checks on the device
    )
    nx, ny, nz, nt = (int(s) for s in magnitude.shape)
    check_kernel_request(kernel_size, "kernel_size")
    check_kernel_request(gfactor_kernel, "gfactor_kernel")
    kernel = default_kernel((nx, ny, nz), nt, kernel_size)
    check_kernel_fits(kernel, (nx, ny, nz, nt), kernel_size)
    gkernel = tuple(min(int(k), n) for k, n in zip(gfactor_kernel, (nx, ny, nz), strict=True))
    workers = n_workers(n_threads)
    torch_device = check_device(device)
    if device_batch_bytes is not None and device_batch_bytes < 1:
        raise ValueError(f"NORDIC: device_batch_bytes must be >= 1; found {device_batch_bytes}")
    if not complex_mode:
        temporal_phase = 0
    if nt < 6:
        log.info("NORDIC: only %d volumes; the low-rank model has little to work with", nt)
    steps = NordicSteps(
        noise_volumes=int(noise_volumes),
        keep_noise_volumes=keep_noise_volumes,
        threshold=threshold,
        factor_error=float(factor_error),
        temporal_phase=int(temporal_phase),
        phase_filter_width=float(phase_filter_width),
        kernel=kernel,
        gkernel=gkernel,  # type: ignore[arg-type]
        gfactor_volumes=int(gfactor_volumes),
        phase_units=phase_units,
        seed=int(seed),
    )
    phase = phase if complex_mode else None
    check_companions(companions, magnitude.shape, companion_map)
    if companions and torch_device is not None:
        log.info("NORDIC: companion series: the CPU path runs (device %s not used)", device)
        torch_device = None
    if torch_device is not None:
        from echoprep.kernels.nordic_torch import nordic_on_device

        return nordic_on_device(
            magnitude, phase, steps, torch_device, device_batch_bytes, n_threads
        )
    with blas_limits(1):
        return _nordic(
            magnitude,
            phase,
            steps,
            int(chunk_patches),
            workers,
            NUMPY_ALGEBRA,
            companions,
            companion_map,
        )


def check_device(device: str) -> str | None:
    """The torch device that runs the kernel for ``device`` (see :func:`nordic`): None for
    ``"cpu"`` (the NumPy path), ``"cpu"`` for ``"torch-cpu"``, else ``device`` itself.
    Whether the device exists is checked when the device path opens it
    (:func:`echoprep.kernels.patches_torch.open_device`).

    Raises
    ------
    ValueError
        ``device`` is not ``"cpu"``, ``"torch-cpu"`` or a ``cuda`` device.
    """
    if device == "cpu":
        return None
    if device != "torch-cpu" and device.split(":")[0] != "cuda":
        raise ValueError(
            f"NORDIC: unknown device {device!r}; use 'cpu' (NumPy) or 'cuda' (a GPU through "
            "torch; 'cuda:N' for the N-th visible GPU)"
        )
    return "cpu" if device == "torch-cpu" else device


def _nordic(
    magnitude: np.ndarray,
    phase: np.ndarray | None,
    steps: NordicSteps,
    chunk: int,
    workers: int,
    algebra: PatchAlgebra,
    companions: Sequence[np.ndarray] = (),
    companion_map: str = "frozen",
) -> NordicResult:
    nx, ny, nz, nt = (int(s) for s in magnitude.shape)
    complex_mode = phase is not None
    slabs = slab_slices(nx, ny * nz * nt * 16)
    noise_volumes, temporal_phase = steps.noise_volumes, steps.temporal_phase

    # 1. complex (or real) series, divided by the absolute scale
    data = _series(magnitude, phase, steps.phase_units, slabs)
    first = np.abs(data[..., 0])
    nonzero = first[first > 0]
    if nonzero.size == 0:
        raise ValueError(ZERO_FIRST_VOLUME)
    scale = float(nonzero.min())
    del first, nonzero
    others = [_series(c, phase, steps.phase_units, slabs) for c in companions]
    for x in (data, *others):
        for s in slabs:
            x[s] /= np.float32(scale)
    noise = data[..., nt - noise_volumes :].copy() if noise_volumes else None

    # 2. phase stabilisation (each companion by its own low-pass phase with the tangent map)
    theta, own_theta = None, []
    if temporal_phase >= 1:
        zb = max(1, SLAB_BYTES // (nx * ny * nt * 8))
        theta, own_theta = stabilise_phase(
            data,
            others,
            steps.phase_filter_width,
            temporal_phase,
            zb,
            workers,
            companion_map == "tangent",
        )
        log.info("NORDIC: phase stabilised (filter width %g)", steps.phase_filter_width)

    # 3. g-factor (MP-PCA) pass
    gv = min(steps.gfactor_volumes, nt)
    g = gfactor_pass(data[..., :gv], steps.gkernel, chunk, workers, algebra)
    has_zero = bool(np.any(g == 0))
    if has_zero or nt < 6:
        g = fix_gfactor(g, has_zero)
    g32 = g.astype(np.float32)

    # 4. normalisation and noise level
    inv_g = np.where(g32 > 0, 1 / g32, 0).astype(np.float32)[..., None]
    for x in (data, *others):
        for s in slabs:
            x[s] *= inv_g[s]
    if temporal_phase == 3:
        assert theta is not None
        for i, x in enumerate((data, *others)):
            th = own_theta[i - 1] if i and own_theta else theta
            for s in slabs:
                replace_phase(x[s], th[s], np.sqrt(2))
        del own_theta
    if noise is not None:
        noise *= inv_g
    sigma = noise_level(noise, complex_mode)
    zero_voxels = None
    if has_zero:
        zero_voxels = np.zeros((nx, ny, nz), bool)
        for s in slabs:
            zero_voxels[s] = ~np.any(data[s] != 0, axis=3)
        n_zero = int(zero_voxels.sum())
        if n_zero:
            fill = zero_fill(n_zero, nt, steps.seed, complex_mode)
            for x in (data, *others):
                x[zero_voxels] = fill

    # 5. threshold
    threshold = final_threshold(steps, nt, sigma, complex_mode, _seeded_monte_carlo)

    # 6. patch-wise low-rank approximation
    acc, removed = denoise_pass(
        data,
        steps.kernel,
        threshold,
        chunk,
        workers,
        algebra,
        companions=others,
        companion_map=companion_map,
    )
    del data

    # 7. undo normalisation, phase and scale
    t_out = steps.t_out(nt)
    series: list[np.ndarray | None] = [acc, *others]
    del acc, others
    complex_out, mags = None, []
    for i, item in enumerate(series):
        assert item is not None
        series[i] = None  # each series is released once its magnitude is taken
        for s in slabs:
            block = item[s]
            block *= g32[s][..., None] * np.float32(scale)
            if theta is not None:
                block *= phasor(theta[s])
            if zero_voxels is not None:
                block[zero_voxels[s]] = 0
        out = item if t_out == nt else np.ascontiguousarray(item[..., :t_out])
        del item
        mag = np.empty(out.shape, np.float32)
        for s in slabs:
            np.abs(out[s], out=mag[s])
        mags.append(mag)
        if i == 0 and complex_mode:
            complex_out = out
        del out
    del theta
    result = steps.result(
        mags[0], complex_out, g32, removed, threshold, sigma, scale, algebra.describe()
    )
    return dataclasses.replace(result, companions=tuple(mags[1:])) if companions else result


# ---------------------------------------------------------------------------------------------
# steps


def _series(
    magnitude: np.ndarray, phase: np.ndarray | None, units: str, slabs: list[slice]
) -> np.ndarray:
    """``|mag| exp(i phase)`` (complex64) or ``|mag|`` (float32), C-ordered (x, y, z, t)."""
    shape = magnitude.shape
    if phase is None:
        out = np.empty(shape, np.float32)
        for s in slabs:
            np.abs(np.asarray(magnitude[s], np.float32), out=out[s])
        return out
    out = np.empty(shape, np.complex64)
    offset, factor = 0.0, 1.0
    if units == "minmax":
        offset, factor = minmax_mapping(float(np.min(phase)), float(np.max(phase)))
    for s in slabs:
        ph = np.array(phase[s], np.float32)
        if units == "minmax":
            ph -= np.float32(offset)
            ph *= np.float32(factor)
            ph -= np.float32(np.pi)
        m = np.abs(np.asarray(magnitude[s], np.float32))
        block = out[s]
        np.cos(ph, out=block.real)
        np.sin(ph, out=block.imag)
        block.real *= m
        block.imag *= m
    return out


def minmax_mapping(pmin: float, pmax: float) -> tuple[float, float]:
    """``(offset, factor)`` of ``phase_units="minmax"``: radians are
    ``(phase - offset) * factor - pi`` (each step in float32), so ``pmin``/``pmax`` (the data's
    own extremes) map to -pi/+pi; a constant phase maps to -pi."""
    if pmax > pmin:
        return pmin, 2 * np.pi / (pmax - pmin)
    return pmin, 0.0  # constant phase: any constant will do


def fix_gfactor(g: np.ndarray, has_zero: bool) -> np.ndarray:
    """The reference's fix-up of a noise map with zeros (``has_zero``: every ``g < 1``
    becomes the median of the finite non-zero ``g``) or of a short series (non-finite and
    zero ``g`` become that median); float64 ``(x, y, z)`` in and out."""
    good = g[np.isfinite(g) & (g > 0)]
    med = float(np.median(good)) if good.size else 1.0
    g = np.where(np.isfinite(g), g, 0)
    return np.where(g < 1, med, g) if has_zero else np.where(g > 0, g, med)


def noise_sd(noise: np.ndarray) -> float:
    """SD (``ddof=1``) of the non-zero entries of the normalised noise volumes (1 when fewer
    than two); complex entries give the SD of the complex value."""
    sel = noise[noise != 0]
    return float(np.std(sel, ddof=1)) if sel.size > 1 else 1.0


def zero_fill(n_zero: int, nt: int, seed: int, complex_mode: bool) -> np.ndarray:
    """``(n_zero, nt)`` seeded unit-variance noise for the all-zero voxels (C order), float32
    or complex64 (each channel of variance 1/2)."""
    rng = np.random.default_rng([seed, 1])
    fill = rng.standard_normal((n_zero, nt), dtype=np.float32)
    if complex_mode:
        imag = rng.standard_normal((n_zero, nt), dtype=np.float32)
        return ((fill + 1j * imag) / np.float32(math.sqrt(2))).astype(np.complex64)
    return fill


# ---------------------------------------------------------------------------------------------
# validation and plumbing


def _round_half_up(v: float) -> int:
    """MATLAB ``round`` for positive values (half away from zero)."""
    return math.floor(v + 0.5)
