"""NORDIC stage: the echoes of one run, magnitude (+ phase) in, denoised magnitude out.

Per echo (:func:`run_nordic`): loads the images, validates them (naming the files), calls
:func:`echoprep.kernels.nordic.nordic` and writes the denoised magnitude, the g-factor (noise)
map and the removed-components map with JSON sidecars. The workflow runs one job per run
(:func:`run_nordic_echoes`, ``echoprep nordic --mag E1 E2 E3 ...``): its echoes one after
another in one process, each with the same seed, so each echo's outputs are those of denoising
it alone and the peak memory is that of one echo. Names come from :data:`OUTPUTS` through the
path builder; the rules use the same table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from echoprep.io.arguments import echo_key_paths
from echoprep.io.images import (
    StageInputError,
    atomic_save,
    check_same_grid,
    float_image,
    load_image,
    read_array,
)
from echoprep.io.outputs import stage_table
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.patches import COMPANION_MAPS
from echoprep.kernels.patches_torch import DeviceUnavailableError
from echoprep.options import option_names, parse_options

if TYPE_CHECKING:
    from echoprep.kernels.nordic import NordicResult

log = logging.getLogger(__name__)

#: Output key -> (suffix, derivative entities, extension), from the output registry.
OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("nordic")


@dataclass(frozen=True)
class NordicOptions:
    """The ``nordic:`` config section; defaults and allowed values are the config schema's
    (see docs/nordic.md, options). ``enabled`` is the workflow's switch (unused here)."""

    enabled: bool
    noise_volumes: int
    keep_noise_volumes: bool
    threshold: float | None
    factor_error: float
    temporal_phase: int
    phase_filter_width: float
    kernel_size: tuple[int, int, int] | None
    gfactor_kernel: tuple[int, int, int]
    magnitude_only: bool
    phase_units: str
    chunk_patches: int
    device: str


#: NORDIC options of the config (``nordic:`` section) passed to the kernel: every option but
#: ``enabled``, in schema order.
KERNEL_OPTIONS: tuple[str, ...] = tuple(k for k in option_names("nordic") if k != "enabled")


def stage_options(
    given: NordicOptions | Mapping[str, Any] | None, source: str = "--options-json"
) -> NordicOptions:
    """The stage's options from (part of) the ``nordic:`` section: missing keys take the
    schema default; unknown keys and values the schema does not allow raise
    :class:`echoprep.options.OptionsError`."""
    return parse_options(NordicOptions, "nordic", given, source=source)


def denoise_arrays(
    magnitude: np.ndarray,
    phase: np.ndarray | None = None,
    *,
    options: NordicOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    companions: Sequence[np.ndarray] = (),
    companion_map: str = "frozen",
    **given: Any,
) -> NordicResult:
    """The NORDIC kernel (:func:`echoprep.kernels.nordic.nordic`) on arrays with the stage's
    options: every kernel option is passed, from ``options`` or, when None, from the keys
    ``given`` as keywords (e.g. ``chunk_patches=64``), the rest from the schema defaults.

    Parameters
    ----------
    magnitude, phase
        ``(x, y, z, t)`` arrays (phase None: magnitude-only).
    options, given
        The ``nordic:`` section, whole or in part (not both).
    seed, n_threads
        As for the kernel (None: the CPUs available).
    companions, companion_map
        Series denoised with ``magnitude``'s decisions, and how (the kernel's
        ``companions`` and ``companion_map``).

    Returns
    -------
    echoprep.kernels.nordic.NordicResult

    Raises
    ------
    echoprep.options.OptionsError
        Unknown options or values the schema refuses.
    ValueError
        Inputs the kernel refuses.
    """
    from echoprep.kernels.nordic import nordic

    if options is not None and given:
        raise TypeError("denoise_arrays: pass options or option keywords, not both")
    opts = stage_options(options if options is not None else given, source="keywords")
    kernel_options = {k: getattr(opts, k) for k in KERNEL_OPTIONS}
    return nordic(
        magnitude,
        phase,
        seed=seed,
        n_threads=n_threads,
        companions=companions,
        companion_map=companion_map,
        **kernel_options,
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
    options: NordicOptions | Mapping[str, Any] | None = None,
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
        The ``nordic:`` config section (:class:`NordicOptions`, or a mapping of some of its
        keys: missing ones take the schema default; unknown keys are refused).
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

    Raises
    ------
    echoprep.options.OptionsError
        Unknown options or values the config schema does not allow.
    StageInputError
        Unusable input images, or input the kernel refuses (naming the file).
    """
    opts = stage_options(options)
    kernel_options = {k: getattr(opts, k) for k in KERNEL_OPTIONS}
    mag_path = Path(magnitude_file)
    mag_img = load_image(mag_path, "magnitude series", ndim=4)
    phase_path = Path(phase_file) if phase_file else None
    use_phase = phase_path is not None and not kernel_options["magnitude_only"]
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
        check_same_grid(
            phase_img,
            mag_img,
            path=phase_path,
            ref_path=mag_path,
            what="phase series",
            fix="Fix: magnitude and phase must come from the same acquisition.",
        )
        phase = read_array(phase_img)
    magnitude = read_array(mag_img)
    t0 = time.perf_counter()
    try:
        result = denoise_arrays(magnitude, phase, options=opts, seed=seed, n_threads=n_threads)
    except DeviceUnavailableError:
        raise  # nordic.device, not the file: its message names the fix
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
        "PatchAlgebra": result.algebra,
        "Seconds": round(seconds, 2),
        "RemovedPart": whiteness,
    }
    # the options given a value (null = the kernel's automatic choice is not recorded)
    recorded = {k: v for k, v in kernel_options.items() if v is not None}
    parameters = {**recorded, "seed": seed}
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


def run_nordic_echoes(
    magnitude_files: Sequence[str | Path],
    phase_files: Sequence[str | Path] | None,
    outputs: Sequence[Mapping[str, str | Path]],
    *,
    options: NordicOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
    n_threads: int = 1,
    echo_times: Sequence[float] | None = None,
    repetition_time: float | None = None,
) -> list[dict[str, Any]]:
    """Denoise every echo of one run, one after another (:func:`run_nordic` per echo).

    Each echo gets the same ``seed``, options and threads, so its outputs are those of
    :func:`run_nordic` on that echo alone; only one echo's arrays are held at a time.

    Parameters
    ----------
    magnitude_files
        4D magnitude image per echo.
    phase_files
        4D phase image per echo (same order), or None for magnitude-only NORDIC.
    outputs
        Per echo, keys of :data:`OUTPUTS` to paths (``bold`` required).
    options, seed, n_threads, repetition_time
        As for :func:`run_nordic`.
    echo_times
        Echo time per echo in s (sidecars), or None.

    Returns
    -------
    list of dict
        Per echo, the record :func:`run_nordic` returns.

    Raises
    ------
    ValueError
        Phase files, outputs or echo times not one per magnitude file.
    echoprep.options.OptionsError, StageInputError
        As :func:`run_nordic` (naming the echo's file).
    """
    n = len(magnitude_files)
    for what, given in (
        ("phase files", phase_files),
        ("outputs", outputs),
        ("echo times", echo_times),
    ):
        if given is not None and len(given) != n:
            raise ValueError(f"{n} magnitude files but {len(given)} {what}")
    opts = stage_options(options)
    return [
        run_nordic(
            mag,
            phase_files[i] if phase_files is not None else None,
            outputs[i],
            options=opts,
            seed=seed,
            n_threads=n_threads,
            echo_time=echo_times[i] if echo_times is not None else None,
            repetition_time=repetition_time,
        )
        for i, mag in enumerate(magnitude_files)
    ]


def run_nordic_companions(
    magnitude_files: Sequence[str | Path],
    phase_files: Sequence[str | Path] | None,
    companions: Sequence[Sequence[str | Path]],
    outputs: Sequence[Sequence[str | Path]],
    *,
    options: NordicOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
    n_threads: int = 1,
    companion_map: str = "frozen",
) -> list[list[Path]]:
    """Denoise companion series of a run's echoes with the decisions NORDIC makes on the
    echoes themselves (the kernel's ``companions``: the responses planted into the run,
    docs/comparison.md, "Responses planted in your data"); the echoes' own outputs are not
    written.

    Parameters
    ----------
    magnitude_files, phase_files
        The run's magnitude (and phase, or None) per echo.
    companions
        Per set (e.g. the echoes with the planted responses added, then subtracted), one
        magnitude image per echo, of the run's shape.
    outputs
        Per set, one path per echo (float32 NIfTI, no sidecar: work-folder files).
    options, seed, n_threads
        As for :func:`run_nordic` (those of the run's own NORDIC job).
    companion_map
        How the companions pass NORDIC's decisions (the kernel's ``companion_map``:
        ``"frozen"`` or ``"tangent"``).

    Returns
    -------
    list of list of Path
        The written files, per set and echo.
    """
    n = len(magnitude_files)
    for what, sets in (("companions", companions), ("outputs", outputs)):
        if any(len(s) != n for s in sets):
            raise ValueError(f"every set of {what} needs one file per echo ({n})")
    if len(companions) != len(outputs):
        raise ValueError(f"{len(companions)} companion sets but {len(outputs)} output sets")
    opts = stage_options(options)
    log.info("NORDIC: %d companion sets through the %s map", len(companions), companion_map)
    written: list[list[Path]] = [[] for _ in companions]
    for e, mag_file in enumerate(magnitude_files):
        mag_path = Path(mag_file)
        mag_img = load_image(mag_path, "magnitude series", ndim=4)
        phase = None
        if phase_files is not None and not opts.magnitude_only:
            phase = read_array(load_image(phase_files[e], "phase series", ndim=4))
        series = []
        for s in companions:
            img = load_image(s[e], "companion series", ndim=4)
            if img.shape != mag_img.shape:
                raise StageInputError(
                    f"{s[e]}: expected the shape of {mag_path.name} {mag_img.shape}; found "
                    f"{img.shape}. Fix: pass companions made from this run's echoes."
                )
            series.append(read_array(img))
        try:
            result = denoise_arrays(
                read_array(mag_img),
                phase,
                options=opts,
                seed=seed,
                n_threads=n_threads,
                companions=series,
                companion_map=companion_map,
            )
        except ValueError as exc:
            raise StageInputError(f"{mag_path}: {exc}") from exc
        del series, phase
        for k, data in enumerate(result.companions):
            written[k].append(atomic_save(float_image(data, mag_img), outputs[k][e]))
    return written


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep nordic`` arguments to a sub-command parser."""
    parser.add_argument(
        "--mag", nargs="+", required=True, type=Path, help="4D magnitude image per echo"
    )
    parser.add_argument(
        "--phase",
        nargs="+",
        type=Path,
        default=None,
        help="4D phase image per echo, in the order of --mag (optional: magnitude-only)",
    )
    parser.add_argument(
        "--out",
        nargs="+",
        default=None,
        metavar="KEY=PATH",
        help="output paths per echo, in the order of --mag: bold=... [gfactor=...] "
        "[removed=...] for the first echo, then for the second, ...",
    )
    parser.add_argument(
        "--options-json",
        default=None,
        help='the nordic: config section as JSON, e.g. {"noise_volumes": 3} (missing keys: '
        "schema defaults)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--te", nargs="+", type=float, default=None, help="echo time per echo in s (sidecars)"
    )
    parser.add_argument("--tr", type=float, default=None, help="repetition time in s (sidecar)")
    parser.add_argument(
        "--companions",
        nargs="+",
        type=Path,
        default=None,
        help="companion series denoised with the echoes' decisions instead of the echoes "
        "(the planted responses, docs/comparison.md): one per echo, set after set",
    )
    parser.add_argument(
        "--out-companions",
        nargs="+",
        type=Path,
        default=None,
        help="the denoised companions, in the order of --companions",
    )
    parser.add_argument(
        "--companion-map",
        choices=COMPANION_MAPS,
        default="frozen",
        help="how the companions pass the echoes' decisions: frozen (every decision: each "
        "patch's kept subspace, the echoes' low-pass phase) or tangent (each patch's kept rank "
        "as its tangent space, each companion's own low-pass phase); docs/comparison.md",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_nordic_echoes` from parsed arguments; exit status 0."""
    n = len(args.mag)
    for option, given in (("--phase", args.phase), ("--te", args.te)):
        if given is not None and len(given) != n:
            raise SystemExit(f"{option} expects one value per --mag ({n}); got {len(given)}")
    options = stage_options(json.loads(args.options_json) if args.options_json else None)
    if args.companions is not None:
        outs = args.out_companions or []
        if len(args.companions) % n or len(outs) != len(args.companions):
            raise SystemExit(
                f"--companions expects a whole number of sets of {n} (one per --mag), and "
                f"--out-companions one path per companion; got {len(args.companions)} and "
                f"{len(outs)}"
            )
        sets = [args.companions[i : i + n] for i in range(0, len(args.companions), n)]
        out_sets = [outs[i : i + n] for i in range(0, len(outs), n)]
        run_nordic_companions(
            args.mag,
            args.phase,
            sets,
            out_sets,
            options=options,
            seed=args.seed,
            n_threads=args.threads,
            companion_map=args.companion_map,
        )
        return 0
    if args.out is None:
        raise SystemExit("--out is required (or --companions with --out-companions)")
    run_nordic_echoes(
        args.mag,
        args.phase,
        echo_key_paths(args.out, n, keys=tuple(OUTPUTS), required=("bold",), per="--mag"),
        options=options,
        seed=args.seed,
        n_threads=args.threads,
        echo_times=args.te,
        repetition_time=args.tr,
    )
    return 0
