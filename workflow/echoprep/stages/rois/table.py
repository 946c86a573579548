"""ROI tables: noise ceiling and R² per ROI of one session and variant (``echoprep rois table``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from echoprep.io.atomic import atomic_path
from echoprep.io.images import check_same_grid, load_image
from echoprep.io.outputs import folder_name
from echoprep.io.rois import roi_name
from echoprep.io.sidecars import write_sidecar
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


def run_roi_table(
    nc: str | Path,
    masks: Sequence[str | Path],
    out: str | Path,
    *,
    r2: str | Path | None = None,
    variant: str | None = None,
) -> Path:
    """Write one session's ROI table: ROI, voxels, median and mean NC (%), median R² (%)."""
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
    rows = roi_summary(nc_data, r2_data, rois)
    out = Path(out)
    with atomic_path(out) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(TABLE_COLUMNS)
        for row in rows:
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
                ]
            )
    write_sidecar(
        out,
        sources=[nc, *([r2] if r2 else []), *masks],
        parameters={
            "Variant": variant,
            "ROIs": list(rois),
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
        },
    )
    return out


__all__ = ["TABLE_COLUMNS", "load_masks", "run_roi_table"]
