"""NORDIC stage: one echo of one run, magnitude (+ phase) in, denoised magnitude out.

Loads the images, validates them (naming the files), calls :func:`echoprep.kernels.nordic.nordic`
and writes the denoised magnitude, the g-factor (noise) map and the removed-components map with
JSON sidecars. Names come from :data:`OUTPUTS` through the path builder; the rules use the same
table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.images import StageInputError, atomic_save, float_image, load_image
from echoprep.io.sidecars import write_dataset_description, write_sidecar

log = logging.getLogger(__name__)

#: Output key -> (suffix, derivative entities, extension).
OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = {
    "bold": ("bold", {"part": "mag", "desc": "nordic"}, ".nii.gz"),
    "gfactor": ("statmap", {"desc": "nordicGfactor"}, ".nii.gz"),
    "removed": ("statmap", {"desc": "nordicRemoved"}, ".nii.gz"),
}

#: Output names the BIDS specification does not define; listed in ``.bidsignore``.
BIDSIGNORE = ("*_statmap.*",)

#: NORDIC options of the config (``nordic:`` section) passed to the kernel.
KERNEL_OPTIONS = (
    "noise_volumes",
    "keep_noise_volumes",
    "threshold",
    "factor_error",
    "temporal_phase",
    "phase_filter_width",
    "kernel_size",
    "gfactor_kernel",
    "magnitude_only",
    "phase_units",
    "chunk_patches",
)


def write_description(root: str | Path, *, config: Mapping[str, Any], source: str | Path) -> Path:
    """``dataset_description.json`` (and ``.bidsignore``) of the ``nordic`` folder."""
    return write_dataset_description(
        root,
        "echoprep NORDIC",
        description="NORDIC thermal-noise denoising per echo (echoprep's own implementation)",
        config=config,
        source_datasets=[str(source)],
        bidsignore=BIDSIGNORE,
    )


def removed_part_record(before: np.ndarray, after: np.ndarray) -> dict[str, Any]:
    """Whiteness of what NORDIC removed, for the sidecar (a few numbers).

    The removed part is ``before - after`` over the output's volumes (the trailing noise
    volumes of ``before`` are left out when the output dropped them); its neighbour
    correlation per axis (:func:`echoprep.kernels.diagnostics.removed_neighbour_correlation`)
    is about 0 for spatially white (thermal) noise. Voxels: temporal mean of ``before`` above
    0.1 x its 99th percentile (GLMsingle's brain threshold).

    Parameters
    ----------
    before
        ``(x, y, z, t_in)`` input magnitude.
    after
        ``(x, y, z, t_out)`` denoised magnitude, ``t_out <= t_in``.

    Returns
    -------
    dict
        ``NeighbourCorrelation`` ([x, y, z], null where undefined), ``Voxels``, ``Mask``.
    """
    from echoprep.kernels.diagnostics import removed_neighbour_correlation

    n_out = after.shape[3]
    head = before[..., :n_out]
    mean = np.zeros(before.shape[:3], np.float64)
    for t0 in range(0, n_out, 32):
        mean += head[..., t0 : t0 + 32].astype(np.float64).sum(axis=-1)
    mean /= max(n_out, 1)
    mask = mean > 0.1 * np.percentile(mean, 99)
    r = removed_neighbour_correlation(head, after, mask)
    return {
        "NeighbourCorrelation": [round(float(v), 4) if np.isfinite(v) else None for v in r],
        "Voxels": int(mask.sum()),
        "Mask": "temporal mean of the input > 0.1 x its 99th percentile",
        "Description": "Pearson correlation of neighbouring voxels' removed signal (input - "
        "output, each voxel's temporal mean removed) along x, y, z, pooled over pairs in the "
        "mask and volumes: about 0 when only spatially white (thermal) noise was removed",
    }


def run_nordic(
    magnitude_file: str | Path,
    phase_file: str | Path | None,
    outputs: Mapping[str, str | Path],
    *,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    n_threads: int = 1,
    echo_time: float | None = None,
    repetition_time: float | None = None,
) -> dict[str, Any]:
    """Denoise one echo of one run with NORDIC and write its outputs.

    Parameters
    ----------
    magnitude_file
        4D magnitude image (x, y, z, t); stored scaling (scl_slope/inter) is applied.
    phase_file
        4D phase image of the same shape, or None for magnitude-only NORDIC.
    outputs
        Keys of :data:`OUTPUTS` (``bold``, ``gfactor``, ``removed``) to paths.
    options
        Kernel options (names of :data:`KERNEL_OPTIONS`; missing ones take the kernel default).
    seed
        Seed of the Monte-Carlo threshold.
    n_threads
        Threads for the patch SVDs.
    echo_time, repetition_time
        In s, recorded in the sidecar of the denoised series.

    Returns
    -------
    dict
        What the sidecars record: threshold, noise level, kernel, volumes in and out, timing,
        the whiteness of the removed part (``RemovedPart``, :func:`removed_part_record`).
    """
    from echoprep.kernels.nordic import nordic

    opts = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = set(opts) - set(KERNEL_OPTIONS)
    if unknown:
        raise ValueError(f"unknown NORDIC options {sorted(unknown)}; known: {KERNEL_OPTIONS}")
    for key in ("kernel_size", "gfactor_kernel"):
        if key in opts:
            opts[key] = tuple(int(v) for v in opts[key])
    mag_path = Path(magnitude_file)
    mag_img = load_image(mag_path, "magnitude series", ndim=4)
    phase_path = Path(phase_file) if phase_file else None
    use_phase = phase_path is not None and not opts.get("magnitude_only", False)
    phase = None
    if use_phase:
        assert phase_path is not None
        phase_img = load_image(phase_path, "phase series", ndim=4)
        if phase_img.shape != mag_img.shape:
            raise StageInputError(
                f"{phase_path}: expected the shape of its magnitude {mag_path.name} "
                f"{mag_img.shape}; found {phase_img.shape}. Fix: pair each part-phase file "
                "with the part-mag file of the same echo and run."
            )
        if not np.allclose(phase_img.affine, mag_img.affine, atol=1e-3):
            raise StageInputError(
                f"{phase_path}: expected the affine of its magnitude {mag_path.name}; found a "
                "different one. Fix: magnitude and phase must come from the same acquisition."
            )
        phase = np.asarray(phase_img.dataobj, dtype=np.float32)
    magnitude = np.asarray(mag_img.get_fdata(dtype=np.float32))
    t0 = time.perf_counter()
    try:
        result = nordic(magnitude, phase, seed=seed, n_threads=n_threads, **opts)
    except ValueError as exc:
        raise StageInputError(f"{mag_path}: {exc}") from exc
    seconds = time.perf_counter() - t0
    del phase
    whiteness = removed_part_record(magnitude, result.magnitude)
    del magnitude

    n_in = mag_img.shape[3]
    n_out = result.magnitude.shape[3]
    record: dict[str, Any] = {
        "Threshold": float(result.threshold),
        "NoiseLevel": float(result.noise_level),
        "KernelSize": [int(k) for k in result.kernel],
        "AbsoluteScale": float(result.absolute_scale),
        "NoiseVolumes": int(result.n_noise_volumes),
        "NoiseVolumesRemoved": n_in != n_out,
        "NumberOfVolumesIn": int(n_in),
        "NumberOfVolumes": int(n_out),
        "Mode": "complex" if result.complex is not None else "magnitude-only",
        "PhaseMapping": result.phase_mapping,
        "Seconds": round(seconds, 2),
        "RemovedPart": whiteness,
    }
    parameters = {**{k: opts.get(k) for k in KERNEL_OPTIONS if k in opts}, "seed": seed}
    sources = [mag_path] + ([phase_path] if use_phase and phase_path else [])

    bold = Path(outputs["bold"])
    atomic_save(float_image(result.magnitude, mag_img), bold)
    extra: dict[str, Any] = {
        "Description": "NORDIC-denoised magnitude (echoprep's implementation)",
        "SkullStripped": False,
        "NORDIC": record,
    }
    if echo_time is not None:
        extra["EchoTime"] = float(echo_time)
    if repetition_time is not None:
        extra["RepetitionTime"] = float(repetition_time)
    write_sidecar(bold, sources=sources, parameters=parameters, extra=extra)

    maps = {
        "gfactor": (result.gfactor, "Noise SD map (MP-PCA g-factor pass), units of AbsoluteScale"),
        "removed": (result.removed, "Mean number of removed components per voxel"),
    }
    for key, (data, description) in maps.items():
        if key not in outputs:
            continue
        out = Path(outputs[key])
        img = nib.Nifti1Image(np.asarray(data, np.float32), mag_img.affine)
        img.header.set_xyzt_units("mm", "sec")
        atomic_save(img, out)
        write_sidecar(
            out,
            sources=sources,
            parameters=parameters,
            extra={"Description": description, "NORDIC": record},
        )
    log.info(
        "NORDIC %s: threshold %.3f, noise %.4f, kernel %s, %d -> %d volumes, %.1f s",
        mag_path.name,
        result.threshold,
        result.noise_level,
        result.kernel,
        n_in,
        n_out,
        seconds,
    )
    return record
