"""Publish stage: one variant's outputs under the names the LAION-fMRI data loader reads.

The ``laion_fmri`` loader reads, below ``<root>/derivatives/`` (our ``output_dir``)::

    glmsingle-tedana/sub-X/ses-Y/func/sub-X_ses-Y_task-T_space-T1w_stat-effect_desc-SingletrialBetas_statmap.nii.gz
    glmsingle-tedana/sub-X/ses-Y/func/sub-X_ses-Y_task-T_space-T1w_desc-Noiseceiling_statmap.nii.gz
    glmsingle-tedana/sub-X/ses-Y/func/sub-X_ses-Y_task-T_desc-SingletrialBetas_trials.tsv
    glmsingle-tedana/sub-X/sub-X_task-T_space-T1w_desc-meanR2gt15mask_mask.nii.gz
    glmsingle-tedana/sub-X/sub-X_task-T_space-T1w_desc-Noiseceiling{Allrep,<N>rep}_statmap.nii.gz
    atlases/sub-X/rois/<ROI label>.nii.gz

Every file but the mask is the original of the published variant (``publish.variant``,
``glmsingle-<variant>/`` and ``rois/``), published as a relative symbolic link or a copy
(``publish.method``); the mask holds the voxels whose mean R² over the sessions
(``noiseceiling.r2mean``, percent) exceeds :data:`MEAN_R2_THRESHOLD` (15 %, the loader's
``gt15``). Every published file gets a JSON sidecar of its own: the original's content, with
``Sources`` naming the original and a ``Published`` record (layout, variant, method).

Hard links are not offered: Snakemake touches every output after its job, which on a hard link
is the original's inode too; the original would look newer than its own consumers (noise
ceilings, ROI tables, comparison), and those would rerun (for files above Snakemake's checksum
size, 1 MB, i.e. any real dataset).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.arguments import key_paths
from echoprep.io.atomic import atomic_path, copy_file
from echoprep.io.bids_uri import localize
from echoprep.io.images import StageInputError, atomic_save, load_image
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import write_json, write_sidecar
from echoprep.options import options_dict, parse_options

log = logging.getLogger(__name__)

#: Mean R² over sessions (percent) above which a voxel is in the published mask: the ``gt15``
#: of the loader's file name ``desc-meanR2gt15mask``, so not an option.
MEAN_R2_THRESHOLD = 15.0

#: Sidecar keys of the original not copied into the published file's sidecar: its ``Sources``
#: are the original itself (the original's own sources stay in the original's sidecar).
_REPLACED = ("Sources",)


@dataclass(frozen=True)
class PublishOptions:
    """The ``publish:`` config section (schema defaults): ``laion`` (the workflow's switch),
    ``variant`` (recorded in the sidecars) and ``method`` (symlink or copy)."""

    laion: bool
    variant: str
    method: str


def stage_options(
    given: PublishOptions | Mapping[str, Any] | None, source: str = "options"
) -> PublishOptions:
    """The options from (part of) the ``publish:`` section; unknown keys and values the schema
    refuses raise :class:`echoprep.options.OptionsError`."""
    return parse_options(PublishOptions, "publish", given, source=source)


# ---------------------------------------------------------------------------------------------
# linking


def _replace_with_link(source: Path, out: Path) -> None:
    """``out`` becomes a relative symbolic link to ``source``, atomically (the one atomic
    writer: a link under a temporary name, renamed over ``out``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(source.resolve(), out.parent.resolve())
    with atomic_path(out) as tmp:
        os.symlink(target, tmp)


def publish_file(source: str | Path, out: str | Path, method: str) -> Path:
    """Publish ``source`` as ``out``: a relative symbolic link or a copy.

    Parameters
    ----------
    source
        The original (an existing regular file).
    out
        The published path (its folder is created; an existing file or link is replaced).
    method
        ``symlink`` or ``copy`` (config ``publish.method``).

    Raises
    ------
    StageInputError
        ``source`` missing; ``out`` is ``source`` itself.
    ValueError
        Unknown method.
    """
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise StageInputError(
            f"{source}: expected the file to publish as {out.name}; found nothing there. Fix: "
            "run the workflow to produce it (the publish rules depend on it)."
        )
    if out.resolve() == source.resolve() and not out.is_symlink():
        raise StageInputError(
            f"{out}: expected a published path other than its original; found the original "
            "itself. Fix: give a path in the LAION layout's folders."
        )
    if method == "symlink":
        _replace_with_link(source, out)
    elif method == "copy":
        if out.is_symlink():
            out.unlink()
        copy_file(source, out)
    else:
        raise ValueError(f"method: expected 'symlink' or 'copy'; found {method!r}")
    return out


def _original_sidecar(source: Path) -> dict[str, Any]:
    """The original's sidecar, its BIDS URIs as paths (recorded anew from the published file)."""
    side = sidecar_path(source)
    if not side.is_file():
        return {}
    try:
        content = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise StageInputError(
            f"{side}: expected the JSON sidecar of {source.name}; found invalid JSON ({exc}). "
            "Fix: rerun the job that wrote it."
        ) from exc
    return localize(content, side) if isinstance(content, dict) else {}


def _published(options: PublishOptions) -> dict[str, Any]:
    return {
        "Layout": "LAION-fMRI loader (laion_fmri)",
        "Variant": options.variant,
        "Method": options.method,
    }


def publish_with_sidecar(source: str | Path, out: str | Path, options: PublishOptions) -> Path:
    """Publish ``source`` as ``out`` (:func:`publish_file`) and write ``out``'s own sidecar:
    the original's sidecar content, ``Sources`` = [the original], ``Published`` = layout,
    variant and method."""
    source, out = Path(source), Path(out)
    publish_file(source, out, options.method)
    content = {k: v for k, v in _original_sidecar(source).items() if k not in _REPLACED}
    content["Sources"] = [str(source)]
    content["Published"] = _published(options)
    write_json(sidecar_path(out), content)
    return out


# ---------------------------------------------------------------------------------------------
# the meanR2gt15mask


def mean_r2_mask(r2mean: np.ndarray, threshold: float = MEAN_R2_THRESHOLD) -> np.ndarray:
    """Voxels whose mean R² (percent) exceeds ``threshold`` (strictly; NaN is outside).

    Parameters
    ----------
    r2mean
        Mean R² over sessions, percent, any shape.
    threshold
        Percent.

    Returns
    -------
    numpy.ndarray
        uint8 of the same shape: 1 inside, 0 outside.
    """
    values = np.asarray(r2mean, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(values, nan=-np.inf) > threshold).astype(np.uint8)


def write_mean_r2_mask(r2mean_file: str | Path, out: str | Path, options: PublishOptions) -> Path:
    """Write the ``meanR2gt15mask`` of a subject from its mean R² map (same grid, uint8 0/1).

    Parameters
    ----------
    r2mean_file
        The subject's mean R² over sessions (``noiseceiling.r2mean``): a 3D map in percent
        (its sidecar's ``Units`` must be ``%`` when given).
    out
        The mask to write.
    options
        Recorded in the sidecar.

    Raises
    ------
    StageInputError
        Not a 3D map; a sidecar that gives other units than percent.
    """
    r2mean_file, out = Path(r2mean_file), Path(out)
    img = load_image(r2mean_file, "mean R² map (percent)")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise StageInputError(
            f"{r2mean_file}: expected a 3D mean R² map; found shape {img.shape}. Fix: pass the "
            "subject's R2mean statmap of the published variant."
        )
    source_side = _original_sidecar(r2mean_file)
    units = source_side.get("Units")
    if units is not None and units != "%":
        raise StageInputError(
            f"{sidecar_path(r2mean_file)}: expected Units '%' (the mask keeps mean R² > "
            f"{MEAN_R2_THRESHOLD:g} %); found {units!r}. Fix: pass the R2mean map echoprep's "
            "noise-ceiling stage writes (percent)."
        )
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    mask = mean_r2_mask(data)
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    mask_img = nib.Nifti1Image(mask, img.affine, header)
    mask_img.header.set_slope_inter(1.0, 0.0)
    atomic_save(mask_img, out)  # fills in the units (mm) if the source left them unknown
    extra: dict[str, Any] = {
        "Description": f"Voxels whose mean R² over sessions exceeds {MEAN_R2_THRESHOLD:g} % "
        "(1 inside, 0 outside): the mask the LAION-fMRI loader selects voxels with",
        "Type": "ROI",
        "Threshold": MEAN_R2_THRESHOLD,
        "ThresholdUnits": "%",
        "ThresholdOn": "R2mean: mean over sessions of the GLMsingle cross-validated R² "
        "(percent), strictly greater",
        "Voxels": int(mask.sum()),
        "Published": _published(options),
    }
    for key in ("Space", "SpatialReference"):
        if key in source_side:
            extra[key] = source_side[key]
    write_sidecar(out, sources=[r2mean_file], parameters=options_dict(options), extra=extra)
    log.info(
        "meanR2gt15mask: %d of %d voxels with mean R² > %g %% -> %s",
        int(mask.sum()),
        mask.size,
        MEAN_R2_THRESHOLD,
        out,
    )
    return out


# ---------------------------------------------------------------------------------------------
# the stage


def run_publish(
    sources: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    options: PublishOptions | Mapping[str, Any] | None = None,
    *,
    r2mean: str | Path | None = None,
) -> dict[str, Path]:
    """Publish files and write the mask.

    Parameters
    ----------
    sources
        ``KEY -> original`` for every key of ``outputs`` but ``mask``.
    outputs
        ``KEY -> published path``; key ``mask`` writes the meanR2gt15mask from ``r2mean``, every
        other key publishes ``sources[KEY]``.
    options
        The ``publish:`` section (defaults for missing keys).
    r2mean
        The subject's mean R² map (needed for ``mask``).

    Raises
    ------
    StageInputError
        An output without its source (or the mask without ``r2mean``), a source without an
        output, or a source that cannot be published.
    """
    opts = stage_options(options)
    wanted = set(outputs) - {"mask"}
    missing, extra = sorted(wanted - set(sources)), sorted(set(sources) - wanted)
    if missing or extra or ("mask" in outputs and r2mean is None):
        problems = []
        if missing:
            problems.append(f"outputs without a --source: {missing}")
        if extra:
            problems.append(f"sources without an --out: {extra}")
        if "mask" in outputs and r2mean is None:
            problems.append("--out mask=PATH without --r2mean")
        raise StageInputError(
            "publish: expected one --source KEY=PATH per --out KEY=PATH (mask: --r2mean); "
            f"found {'; '.join(problems)}. Fix: give both for every key."
        )
    written: dict[str, Path] = {}
    if "mask" in outputs:
        written["mask"] = write_mean_r2_mask(r2mean, outputs["mask"], opts)  # type: ignore[arg-type]
    for key in sorted(wanted):
        written[key] = publish_with_sidecar(sources[key], outputs[key], opts)
    log.info("published %d files (%s) of %s", len(written), opts.method, opts.variant)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep publish`` arguments to ``parser`` (a sub-command parser)."""
    parser.add_argument(
        "--source",
        nargs="*",
        default=[],
        metavar="KEY=PATH",
        help="the original of each published file (same keys as --out, mask excepted)",
    )
    parser.add_argument(
        "--r2mean", type=Path, default=None, help="mean R² map (percent) for --out mask=PATH"
    )
    parser.add_argument("--options-json", default=None, help="the publish: config section as JSON")
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help="published paths: betas, nc, trials, allrep, rep<N>, roi, ... and mask",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_publish` from parsed :func:`add_arguments` arguments."""
    given = json.loads(args.options_json) if args.options_json else None
    opts = stage_options(given, source="--options-json")
    sources = key_paths(args.source, "--source")
    outputs = key_paths(args.out)
    run_publish(sources, outputs, opts, r2mean=args.r2mean)
    return 0


__all__ = [
    "MEAN_R2_THRESHOLD",
    "PublishOptions",
    "add_arguments",
    "mean_r2_mask",
    "publish_file",
    "publish_with_sidecar",
    "run_from_args",
    "run_publish",
    "stage_options",
    "write_mean_r2_mask",
]
