"""Names of the ROI outputs (from the output registry) and the user ROI folder
(:mod:`echoprep.io.rois`)."""

from __future__ import annotations

from pathlib import Path

from echoprep.io.outputs import TEMPLATE, get
from echoprep.io.rois import (
    DEFAULT_CATEGORY,
    ROI_SPACES,
    VISUAL_CATEGORY,
    VISUAL_LABEL,
    RoiFile,
    find_roi_files,
    res_label,
    roi_name,
)


def roi_mask_path(
    root: str | Path,
    subject: str,
    category: str,
    label: str,
    res: str,
    space: str | None = "T1w",
) -> Path:
    """``root/sub-X/<category>/sub-X[_space-<space>]_res-<res>_label-<label>_mask.nii.gz``.

    Wildcards (``{subject}``, ``{category}``, ...) work too, for rule patterns.
    """
    output = get("rois.mask")
    folder, stem = output.subject_key(subject, category=category)
    return Path(root) / folder / output.file_name(stem, space=space, res=res, label=label)


def roi_table_name(stem: str) -> str:
    """File name of a session's ROI table from its stem (``sub-01_ses-01_task-images``)."""
    return get("rois.table").file_name(stem)


__all__ = [
    "DEFAULT_CATEGORY",
    "ROI_SPACES",
    "TEMPLATE",
    "VISUAL_CATEGORY",
    "VISUAL_LABEL",
    "RoiFile",
    "find_roi_files",
    "res_label",
    "roi_mask_path",
    "roi_name",
    "roi_table_name",
]
