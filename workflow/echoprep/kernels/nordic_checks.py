"""Input checks of the NORDIC kernels (:mod:`echoprep.kernels.nordic` and its torch twin
:mod:`echoprep.kernels.nordic_torch`): finite values, matching shapes, phase units and patch
sizes that fit the volume, each failure a ``ValueError`` naming the input, what was expected,
what was found and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from echoprep.kernels.nordic_patches import SLAB_BYTES
from echoprep.kernels.patches import COMPANION_MAPS

#: Units of the phase input: scaled to its range, or radians.
PHASE_UNITS = ("minmax", "radians")


def nonfinite_error(name: str, bad: int, size: int) -> ValueError:
    """The error for ``bad`` NaN/Inf values in the input ``name`` of ``size`` values."""
    return ValueError(
        f"NORDIC: {name} contains {bad} NaN/Inf value(s) out of {size}; expected "
        "finite values. Replace them (e.g. np.nan_to_num) or mask the volumes first."
    )


def count_nonfinite(a: np.ndarray) -> int:
    if not np.issubdtype(a.dtype, np.inexact):
        return 0
    step = max(1, SLAB_BYTES // max(1, a[0].nbytes))
    return sum(int(np.count_nonzero(~np.isfinite(a[i : i + step]))) for i in range(0, len(a), step))


def check_inputs(
    magnitude: Any,
    phase: Any,
    *,
    noise_volumes: int,
    phase_units: str,
    temporal_phase: int,
    phase_filter_width: float,
    factor_error: float,
    threshold: float | None,
    gfactor_volumes: int,
    chunk_patches: int,
    n_threads: int | None,
    finite: bool = True,
) -> None:
    if not isinstance(magnitude, np.ndarray) or magnitude.ndim != 4:
        found = f"shape {magnitude.shape}" if hasattr(magnitude, "shape") else type(magnitude)
        raise ValueError(
            f"NORDIC: magnitude must be a 4D array (x, y, z, t); found {found}. "
            "Pass one echo's whole time series (a 3D volume has no time axis to denoise)."
        )
    if np.iscomplexobj(magnitude):
        raise ValueError(
            "NORDIC: magnitude must be real; found a complex array. Pass np.abs(z) as "
            "magnitude and np.angle(z) as phase with phase_units='radians'."
        )
    if phase is not None:
        if not isinstance(phase, np.ndarray) or phase.shape != magnitude.shape:
            found = getattr(phase, "shape", type(phase))
            raise ValueError(
                f"NORDIC: phase must have the magnitude's shape {magnitude.shape}; found "
                f"{found}. Pass the phase series of the same echo and run, or phase=None "
                "for magnitude-only denoising."
            )
        if np.iscomplexobj(phase):
            raise ValueError("NORDIC: phase must be real (angles or scanner units); found complex")
    nt = magnitude.shape[3]
    if nt < 2:
        raise ValueError(
            f"NORDIC: need at least 2 volumes; found {nt}. NORDIC removes noise by "
            "low-rank approximation across volumes, so a single volume cannot be denoised."
        )
    if not 0 <= int(noise_volumes) < nt:
        raise ValueError(
            f"NORDIC: noise_volumes must be between 0 and t - 1 = {nt - 1}; found "
            f"{noise_volumes}. It is the number of trailing no-excitation volumes (0 if none)."
        )
    if phase_units not in PHASE_UNITS:
        raise ValueError(
            f"NORDIC: unknown phase_units {phase_units!r}; use 'minmax' (map the data's own "
            "min/max to -pi/+pi, as the reference) or 'radians'."
        )
    if temporal_phase not in (0, 1, 2, 3):
        raise ValueError(f"NORDIC: temporal_phase must be 0, 1, 2 or 3; found {temporal_phase}")
    if not phase_filter_width > 0:
        raise ValueError(f"NORDIC: phase_filter_width must be > 0; found {phase_filter_width}")
    if not factor_error > 0:
        raise ValueError(f"NORDIC: factor_error must be > 0; found {factor_error}")
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"NORDIC: threshold must be a finite number >= 0; found {threshold}")
    if gfactor_volumes < 1:
        raise ValueError(f"NORDIC: gfactor_volumes must be >= 1; found {gfactor_volumes}")
    if chunk_patches < 1:
        raise ValueError(f"NORDIC: chunk_patches must be >= 1; found {chunk_patches}")
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"NORDIC: n_threads must be >= 1 or None; found {n_threads}")
    for name, arr in (("magnitude", magnitude), ("phase", phase)):
        if arr is None or not finite:
            continue
        bad = count_nonfinite(arr)
        if bad:
            raise nonfinite_error(name, bad, arr.size)


def check_companions(
    companions: Sequence[np.ndarray], shape: tuple[int, ...], companion_map: str
) -> None:
    """Companion series (:func:`echoprep.kernels.nordic.nordic`) of the data's ``shape`` and a
    known map (:data:`echoprep.kernels.patches.COMPANION_MAPS`); ValueError otherwise."""
    for c in companions:
        if c.shape != shape:
            raise ValueError(f"NORDIC: a companion series has shape {c.shape}; expected {shape}")
    if companion_map not in COMPANION_MAPS:
        raise ValueError(
            f"NORDIC: companion_map must be one of {list(COMPANION_MAPS)}; got {companion_map!r}"
        )


def check_kernel_request(kernel: Any, name: str) -> None:
    if kernel is None:
        return
    try:
        ok = len(kernel) == 3 and all(int(k) == k and k >= 1 for k in kernel)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"NORDIC: {name} must be 3 positive integers (kx, ky, kz); found {kernel!r}"
        )


def check_kernel_fits(
    kernel: tuple[int, int, int],
    shape: tuple[int, int, int, int],
    requested: Sequence[int] | None,
) -> None:
    nx, ny, nz, nt = shape
    if kernel[0] > nx or kernel[1] > ny:
        how = (
            "pass a smaller kernel_size"
            if requested is not None
            else f"the default kernel follows from t = {nt} volumes (about 11 patch voxels "
            "per volume); pass a smaller kernel_size"
        )
        raise ValueError(
            f"NORDIC: the patch {kernel} does not fit the volume {(nx, ny, nz)}: need "
            f"nx >= kx and ny >= ky; {how}."
        )
