"""The user ROI folder (config ``rois.dir``): finding each subject's masks from their file names
(no image is read), and the labels ROI masks are named with."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echoprep.io.freesurfer import ROI_EXTENSIONS, FreeSurferError, surface_roi_name
from echoprep.io.images import StageInputError
from echoprep.io.outputs import TEMPLATE

#: Spaces a user ROI mask may be given in.
ROI_SPACES = ("T1w", TEMPLATE)
#: Category and label of the data-driven ROI (reserved: a user file may not use them).
VISUAL_CATEGORY = "visual"
VISUAL_LABEL = "visuallyResponsive"
#: Category of user masks that sit directly in the ROI folder (or the subject's folder).
DEFAULT_CATEGORY = "other"

_ENTITY = re.compile(r"([A-Za-z]+)-([A-Za-z0-9]+)")
_CATEGORY = re.compile(r"^[A-Za-z0-9]+$")


# ---------------------------------------------------------------------------------------------
# names


def res_label(voxel_size: float | Sequence[float]) -> str:
    """BIDS ``res`` label of a voxel size in mm: ``1.8`` → ``"1pt8"``, ``2.0`` → ``"2"``.

    Parameters
    ----------
    voxel_size
        Isotropic size, or the three sizes of a grid (their mean is used, rounded to 3 decimals).
    """
    size = float(np.mean(np.atleast_1d(np.asarray(voxel_size, float))))
    if not np.isfinite(size) or size <= 0:
        raise ValueError(f"res_label: voxel size must be positive, got {voxel_size!r}")
    return f"{round(size, 3):g}".replace(".", "pt")


def roi_name(path: str | Path) -> tuple[str, str]:
    """``(category, label)`` of an ROI mask written by this stage."""
    p = Path(path)
    label = _entities(p.name).get("label")
    if not label:
        raise StageInputError(f"{p}: expected an ROI mask with a label-<ROI> entity")
    return p.parent.name, label


@dataclass(frozen=True)
class RoiFile:
    """One user ROI mask found in the ROI folder.

    Attributes
    ----------
    path
        The mask file.
    category
        Folder the file sits in (``other`` for files directly in the ROI or subject folder).
    label
        The ``label`` entity of its name.
    space
        ``T1w`` or :data:`TEMPLATE`.
    """

    path: Path
    category: str
    label: str
    space: str


def _entities(name: str) -> dict[str, str]:
    stem = name.split(".", 1)[0]
    return {m.group(1): m.group(2) for m in map(_ENTITY.fullmatch, stem.split("_")[:-1]) if m}


def find_roi_files(roi_dir: str | Path | None, subject: str) -> list[RoiFile]:
    """The user ROI masks of one subject, from file names only (no image is read).

    Parameters
    ----------
    roi_dir
        The ROI folder (config ``rois.dir``); None gives no ROIs.
    subject
        Subject label without ``sub-``.

    Returns
    -------
    list of RoiFile
        Sorted by category and label.

    Raises
    ------
    ValueError
        Missing folder; a name without ``space-`` or ``label-`` or in another space; a category
        folder that is not alphanumeric; the reserved visual ROI label; two files for one
        category and label.
    """
    if roi_dir is None:
        return []
    root = Path(roi_dir)
    if not root.is_dir():
        raise ValueError(
            f"rois.dir: expected a folder of ROI masks; found no folder at {root}. Fix: set "
            "rois.dir to the folder (or null for no user ROIs)."
        )
    found: dict[tuple[str, str], RoiFile] = {}
    for path in sorted(root.rglob("*_mask.nii*")):
        rel = path.relative_to(root).parts
        ents = _entities(path.name)
        folders = list(rel[:-1])
        if folders and folders[0].startswith("sub-"):
            if folders[0] != f"sub-{subject}":
                continue
            folders = folders[1:]
        if "sub" in ents and ents["sub"] != subject:
            continue
        category = folders[-1] if folders else DEFAULT_CATEGORY
        if not _CATEGORY.match(category):
            raise ValueError(
                f"{path}: expected an alphanumeric category folder; found {category!r}. Fix: "
                "rename the folder (it becomes a BIDS folder name in the outputs)."
            )
        space = ents.get("space")
        if space not in ROI_SPACES:
            found_space = f"space-{space}" if space else "no space entity"
            raise ValueError(
                f"{path}: expected a mask in space-T1w or space-{TEMPLATE}; found "
                f"{found_space}. Fix: bring the mask into the T1w or {TEMPLATE} space and name "
                "it accordingly."
            )
        label = ents.get("label")
        if not label:
            raise ValueError(
                f"{path}: expected a label-<ROI> entity in the file name; found none. Fix: name "
                "the file like sub-01_space-T1w_label-V1_mask.nii.gz."
            )
        if label == VISUAL_LABEL:
            raise ValueError(
                f"{path}: the label {VISUAL_LABEL} is reserved for the ROI echoprep computes "
                f"({VISUAL_CATEGORY}/{VISUAL_LABEL}); found a user file with it. Fix: rename the "
                "label."
            )
        key = (category, label)
        if key in found:
            raise ValueError(
                f"{path}: expected one mask per category and label; found {found[key].path} too "
                f"for {category}/{label}. Fix: remove one, or give them different labels."
            )
        found[key] = RoiFile(path=path, category=category, label=label, space=space)
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class SurfaceRoiFile:
    """One surface ROI file of the ROI folder (``.label``, ``.annot``, GIFTI mask; FreeSurfer
    or BIDS-like names, :func:`echoprep.io.freesurfer.surface_roi_name`) and its category."""

    path: Path
    category: str
    hemi: str


def _category(path: Path, root: Path, subject: str) -> str | None:
    """The category of a file of the ROI folder, or None when it belongs to another subject."""
    folders = list(path.relative_to(root).parts[:-1])
    if folders and folders[0].startswith("sub-"):
        if folders[0] != f"sub-{subject}":
            return None
        folders = folders[1:]
    category = folders[-1] if folders else DEFAULT_CATEGORY
    if not _CATEGORY.match(category):
        raise ValueError(
            f"{path}: expected an alphanumeric category folder; found {category!r}. Fix: "
            "rename the folder (it becomes a BIDS folder name in the outputs)."
        )
    return category


def find_surface_roi_files(roi_dir: str | Path | None, subject: str) -> list[SurfaceRoiFile]:
    """The surface ROI files of one subject in the ROI folder, from file names only.

    Same folders as :func:`find_roi_files` (``[sub-<label>/]<category>/``; a ``sub-`` entity
    or folder of another subject is skipped); the ROIs are on the subject's own surface
    (fsnative), both hemispheres of a label forming one ROI of the table.

    Raises
    ------
    ValueError
        A name without hemisphere or label, a space other than fsnative, a category folder
        that is not alphanumeric (message: file, expected, found, fix).
    """
    if roi_dir is None:
        return []
    root = Path(roi_dir)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.rglob("*") if p.name.endswith(ROI_EXTENSIONS)):
        ents = _entities(path.name)
        if "sub" in ents and ents["sub"] != subject:
            continue
        category = _category(path, root, subject)
        if category is None:
            continue
        try:
            roi = surface_roi_name(path)
        except FreeSurferError as exc:
            raise ValueError(str(exc)) from None
        if roi.space != "fsnative":
            raise ValueError(
                f"{path}: expected a surface ROI on the subject's own surface (fsnative); found "
                f"space-{roi.space}. Fix: bring it to the subject's surface (FreeSurfer "
                "mri_label2label) and name it space-fsnative, or leave the space out."
            )
        found.append(SurfaceRoiFile(path=path, category=category, hemi=roi.hemi))
    return found


__all__ = [
    "DEFAULT_CATEGORY",
    "ROI_SPACES",
    "VISUAL_CATEGORY",
    "VISUAL_LABEL",
    "RoiFile",
    "SurfaceRoiFile",
    "find_roi_files",
    "find_surface_roi_files",
    "res_label",
    "roi_name",
]
