"""Names of the user ROI folder (:mod:`echoprep.io.rois`) and the template space, for the ROI
stage (the ROI outputs' names are the output registry's, :mod:`echoprep.io.outputs`)."""

from __future__ import annotations

from echoprep.io.outputs import TEMPLATE
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

__all__ = [
    "DEFAULT_CATEGORY",
    "ROI_SPACES",
    "TEMPLATE",
    "VISUAL_CATEGORY",
    "VISUAL_LABEL",
    "RoiFile",
    "find_roi_files",
    "res_label",
    "roi_name",
]
