"""ROI tables: noise ceiling and R² per ROI of one session and variant (``echoprep rois table``)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.atomic import atomic_path
from echoprep.io.freesurfer import read_gifti_data, read_surface_roi, surface_roi_name
from echoprep.io.images import StageInputError, check_same_grid, load_image
from echoprep.io.outputs import folder_name
from echoprep.io.rois import roi_name
from echoprep.io.sidecars import space_label, write_sidecar
from echoprep.kernels.noiseceiling import roi_summary


def load_masks(
    paths: Sequence[str | Path], like: nib.Nifti1Image, like_path: str | Path = "the maps"
) -> dict[str, np.ndarray]:
    """ROI masks on ``like``'s grid, keyed ``category/label``.

    Raises
    ------
    StageInputError
        A mask on another grid.
    """
    out: dict[str, np.ndarray] = {}
    for p in paths:
        img = load_image(p, "ROI mask")
        check_same_grid(
            img,
            like,
            path=p,
            ref_path=like_path,
            what="region-of-interest (ROI) mask",
            fix="Fix: rerun the ROI rules (the functional grid changed?).",
            atol=1e-4,
        )
        category, label = roi_name(p)
        out[f"{category}/{label}"] = np.asanyarray(img.dataobj).reshape(like.shape[:3]) > 0
    return out


#: Columns of the table (``roi_label``, not ``roi``: pybids reads a sidecar's column keys as
#: metadata, and ``roi`` is a BIDS entity).
TABLE_COLUMNS = ("category", "roi_label", "voxels", "nc_median", "nc_mean", "r2_median")
#: The column a table with surface ROIs has last: the space of each row's ROI.
SPACE_COLUMN = "space"


def surface_rois(
    nc: Mapping[str, str | Path],
    rois: Sequence[tuple[str, str | Path]],
    r2: Mapping[str, str | Path] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """The fsnative noise ceiling (and R²) of both hemispheres and the surface ROIs on them.

    Parameters
    ----------
    nc, r2
        ``L``/``R`` -> the session's map on fsnative (``.func.gii``).
    rois
        ``(category, file)`` of each surface ROI file (:func:`echoprep.io.freesurfer.
        read_surface_roi`; both hemispheres of one label form one ROI).

    Returns
    -------
    tuple
        ``(nc (V_L + V_R,), r2 or None, {"category/label": mask (V_L + V_R,)})``; a mask holds
        only vertices with a value (NaN vertices, outside the field of view or the mask, left
        out).
    """
    hemis = ("L", "R")
    nc_parts = {h: np.asarray(read_gifti_data(nc[h]), np.float64).ravel() for h in hemis}
    r2_parts = (
        {h: np.asarray(read_gifti_data(r2[h]), np.float64).ravel() for h in hemis} if r2 else None
    )
    sizes = {h: nc_parts[h].size for h in hemis}
    offset = {"L": 0, "R": sizes["L"]}
    total = sizes["L"] + sizes["R"]
    masks: dict[str, np.ndarray] = {}
    for category, path in rois:
        hemi = surface_roi_name(path).hemi
        try:
            found = read_surface_roi(path, sizes[hemi])
        except ValueError as exc:
            raise StageInputError(str(exc)) from None
        for label, mask in found.items():
            key = f"{category}/{label}"
            whole = masks.setdefault(key, np.zeros(total, bool))
            whole[offset[hemi] : offset[hemi] + sizes[hemi]] |= mask
    values = np.concatenate([nc_parts[h] for h in hemis])
    r2_values = np.concatenate([r2_parts[h] for h in hemis]) if r2_parts else None
    valid = np.isfinite(values)
    return values, r2_values, {k: m & valid for k, m in masks.items()}


def run_roi_table(
    nc: str | Path,
    masks: Sequence[str | Path],
    out: str | Path,
    *,
    r2: str | Path | None = None,
    variant: str | None = None,
    surface_nc: Mapping[str, str | Path] | None = None,
    surface_r2: Mapping[str, str | Path] | None = None,
    surface_roi_files: Sequence[tuple[str, str | Path]] = (),
) -> Path:
    """Write one session's ROI table: ROI, voxels, median and mean NC (%), median R² (%).

    With surface ROIs (``surface_roi_files``: ``(category, file)``, on the session's fsnative
    maps ``surface_nc``/``surface_r2``, ``L``/``R`` -> ``.func.gii``) the table has their rows
    after the volumetric ones, ``voxels`` counting their vertices, and a last column
    ``space`` (the volume's space, ``fsnative``); without, the columns are
    :data:`TABLE_COLUMNS` alone.
    """
    nc_img = load_image(nc, "noise-ceiling map")
    nc_data = np.asarray(nc_img.dataobj, np.float64).reshape(nc_img.shape[:3])
    r2_data = None
    if r2 is not None:
        r2_img = load_image(r2, "R² map")
        check_same_grid(
            r2_img,
            nc_img,
            path=r2,
            ref_path=nc,
            what="R² map",
            fix="Fix: pass the R² map of the same GLM fit as the noise ceiling.",
        )
        r2_data = np.asarray(r2_img.dataobj, np.float64).reshape(nc_img.shape[:3])
    rois = load_masks(masks, nc_img, nc)
    volume_space = space_label(nc) or "native"
    rows = [(row, volume_space) for row in roi_summary(nc_data, r2_data, rois)]
    surface_names: list[str] = []
    if surface_roi_files:
        if surface_nc is None:
            raise StageInputError(
                "rois table: surface ROIs given without the session's fsnative noise ceiling "
                "(--surface-nc L=PATH R=PATH)"
            )
        values, r2_values, found = surface_rois(surface_nc, surface_roi_files, surface_r2)
        surface_names = list(found)
        rows += [(row, "fsnative") for row in roi_summary(values, r2_values, found)]
    out = Path(out)
    columns = (*TABLE_COLUMNS, SPACE_COLUMN) if surface_roi_files else TABLE_COLUMNS
    with atomic_path(out) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row, space in rows:
            category, label = str(row["roi"]).split("/", 1)
            writer.writerow(
                [
                    category,
                    label,
                    row["voxels"],
                    *(
                        "n/a" if not np.isfinite(float(row[k])) else f"{float(row[k]):.4f}"
                        for k in ("nc_median", "nc_mean", "r2_median")
                    ),
                    *([space] if surface_roi_files else []),
                ]
            )
    surface_sources = [
        *(surface_nc or {}).values(),
        *(surface_r2 or {}).values(),
        *(p for _, p in surface_roi_files),
    ]
    surface_meta: dict[str, Any] = {}
    if surface_roi_files:
        surface_meta = {
            SPACE_COLUMN: {
                "Description": f"space of the row's ROI: {volume_space} (a mask on the "
                "functional grid) or fsnative (a surface ROI on the subject's FreeSurfer "
                "surface: voxels counts its vertices with a value, both hemispheres)",
            },
        }
    write_sidecar(
        out,
        sources=[nc, *([r2] if r2 else []), *masks, *surface_sources],
        parameters={
            "Variant": variant,
            "ROIs": list(rois),
            **({"SurfaceROIs": surface_names} if surface_roi_files else {}),
            "NoiseCeilingStatistics": ["median", "mean"],
            "R2Statistic": "median" if r2 is not None else None,
            "Decimals": 4,
        },
        extra={
            "Description": "Noise ceiling and R² per ROI of one session and preprocessing "
            f"variant{f' ({variant})' if variant else ''}",
            "category": {"Description": f"ROI category (folder under {folder_name('rois')}/)"},
            "roi_label": {"Description": "ROI label (label-<ROI> of its mask)"},
            "voxels": {"Description": "voxels in the ROI on the functional grid"},
            "nc_median": {"Description": "median noise ceiling over the ROI", "Units": "%"},
            "nc_mean": {"Description": "mean noise ceiling over the ROI", "Units": "%"},
            "r2_median": {"Description": "median GLM R² over the ROI", "Units": "%"},
            **surface_meta,
        },
    )
    return out


__all__ = ["SPACE_COLUMN", "TABLE_COLUMNS", "load_masks", "run_roi_table", "surface_rois"]
