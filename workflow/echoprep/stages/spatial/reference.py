"""The motion reference of a run: its single-band reference (SBRef) or its volumes' robust mean.

The SBRef is acquired just before the run in the same prescription, without multiband slice
leakage or g-factor noise amplification: every volume's head motion is estimated to it, and it
(undistorted) is the run's boldref, aligned run to run and to the anatomy
(docs/registration.md). The plan passes it only when ``spatial.motion_reference`` uses it and
discovery found it on the run's grid (:mod:`echoprep.io.bids_refs`); the step checks the grid
again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.images import StageInputError, check_same_grid, load_image

#: ``MotionReference.Kind`` of each reference.
SBREF, BOLD = "sbref", "bold volume"


def load_sbref(path: str | Path, series: nib.Nifti1Image, series_path: Path) -> np.ndarray:
    """The SBRef image on the run's grid.

    Parameters
    ----------
    path
        The SBRef (3-D, or 4-D with one volume).
    series, series_path
        The run's reference-echo series (header) and its file, for the grid check.

    Returns
    -------
    numpy.ndarray
        ``(nx, ny, nz)`` float32, the series' voxel grid.

    Raises
    ------
    StageInputError
        Unreadable, more than one volume, or another grid than the series (shape, or an affine
        differing by more than 1e-3 mm).
    """
    spath = Path(path)
    img = load_image(spath, "single-band reference (SBRef)")
    if not (img.ndim == 3 or (img.ndim == 4 and img.shape[3] == 1)):
        raise StageInputError(
            f"{spath}: expected a single-band reference of one volume; found shape {img.shape}. "
            "Fix: pass the run's SBRef, or set spatial.motion_reference: bold."
        )
    check_same_grid(
        img,
        series,
        path=spath,
        ref_path=series_path,
        what="single-band reference (the run's motion reference)",
        fix="Fix: pass the SBRef of this run, or set spatial.motion_reference: bold.",
    )
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
    if not np.all(np.isfinite(data)) or not np.any(data > 0):
        raise StageInputError(
            f"{spath}: expected a single-band reference with finite, positive signal; found "
            f"{'non-finite values' if not np.all(np.isfinite(data)) else 'no positive voxel'}. "
            "Fix: replace the SBRef, or set spatial.motion_reference: bold."
        )
    return data


def check_choice(choice: str, sbref: str | Path | None, series_path: Path) -> None:
    """Refuse an SBRef given against ``spatial.motion_reference: bold``, or none given with
    ``sbref`` (the plan passes one exactly when the option uses it)."""
    if choice == "bold" and sbref is not None:
        raise StageInputError(
            f"{series_path}: expected no SBRef with spatial.motion_reference: bold; found "
            f"{sbref}. Fix: leave out --sbref, or set spatial.motion_reference: auto or sbref."
        )
    if choice == SBREF and sbref is None:
        raise StageInputError(
            f"{series_path}: expected the run's SBRef with spatial.motion_reference: sbref; "
            "found none. Fix: pass --sbref, or set spatial.motion_reference: auto or bold."
        )


def reference_record(image: str | Path, kind: str, volumes: tuple[int, ...] = ()) -> dict[str, Any]:
    """The sidecars' ``MotionReference``: the image that served and its kind (:data:`SBREF`,
    or :data:`BOLD` with the volumes whose robust mean it is)."""
    record: dict[str, Any] = {"Image": str(image), "Kind": kind}
    if kind == BOLD:
        record["Volumes"] = [int(v) for v in volumes]
        record["Description"] = "voxel-wise median of the volumes nearest the run's median"
    return record


__all__ = ["BOLD", "SBREF", "check_choice", "load_sbref", "reference_record"]
