"""Write a subject's anatomical images, their sidecars and their truth (:func:`write_anatomy`).

Where (docs/anatomy.md)::

    sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz (+.json)     default: in the first BOLD session
    sub-01/ses-PrismaAnat/anat/sub-01_ses-PrismaAnat_T1w.nii.gz (+.json)   anat_session="PrismaAnat"
    sub-01/ses-<...>/anat/sub-01_ses-<...>_T2w.nii.gz (+.json)            t2w=True, next to the T1w
    derivatives/truth/sub-01/anat/...   T1w-grid brain mask and labels, BOLD → T1w pose (one per
                                        subject, wherever the anatomy session is: :mod:`.truth`)

The T1w is the MPRAGE-like image of :func:`.anatomy.t1w_image` (``t1w_kind="mprage"``, int16)
or the MP2RAGE UNI of :func:`.anatomy_contrasts.mp2rage_uni` (``"mp2rage"``, uint16 0..4095,
noise background); the T2w (:func:`.anatomy_contrasts.t2w_image`) shares the T1w's grid and
pose, so the truth mask and labels describe both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.paths import bids_path, sidecar_path
from echoprep.io.sidecars import write_json
from echoprep.simulate.acquisition import t1w_sidecar
from echoprep.simulate.anatomy import DSEG_LABELS, t1w_image, t1w_pose
from echoprep.simulate.anatomy_contrasts import (
    T1W_KINDS,
    anatomy_sidecar,
    mp2rage_uni,
    t2w_image,
)
from echoprep.simulate.freesurfer import write_freesurfer
from echoprep.simulate.geometry import itk_affine_text
from echoprep.simulate.presets import Preset
from echoprep.simulate.truth import DESCRIPTIONS, POSE_DESCRIPTION, pose_paths, truth_paths
from echoprep.simulate.writer import nifti_header, write_nifti, write_text


def anatomy_options(
    t1w_kind: str, t2w: bool, anat_session: str | None, n_sessions: int, freesurfer: bool = True
) -> dict[str, Any]:
    """Check the anatomy options of :func:`echoprep.simulate.simulate_dataset`.

    Parameters
    ----------
    t1w_kind
        One of :data:`.anatomy_contrasts.T1W_KINDS`.
    t2w
        Write a T2w.
    anat_session
        Label of an anatomy-only session (alphanumeric, not one of the BOLD sessions
        ``01``..``n_sessions``), or None.
    n_sessions
        Number of BOLD sessions.
    freesurfer
        Write the FreeSurfer-like subject (:func:`write_anatomy`; recorded when off).

    Returns
    -------
    dict
        What the dataset description records (``echoprepSimulation``): only the non-default
        options, so a default dataset's description is unchanged.

    Raises
    ------
    ValueError
        For an unknown kind or a bad session label, in command-line terms.
    """
    if t1w_kind not in T1W_KINDS:
        raise ValueError(
            f"--t1w-kind (t1w_kind=): expected one of {', '.join(T1W_KINDS)}; found {t1w_kind!r}"
        )
    if anat_session is not None:
        bold = [f"{i:02d}" for i in range(1, n_sessions + 1)]
        if not re.fullmatch(r"[A-Za-z0-9]+", anat_session) or anat_session in bold:
            raise ValueError(
                "--anat-session (anat_session=): expected an alphanumeric session label other "
                f"than the BOLD sessions ({', '.join(bold)}), e.g. PrismaAnat; found "
                f"{anat_session!r}. Fix: pick another label, or leave it out to keep the "
                "anatomy in ses-01"
            )
    out: dict[str, Any] = {}
    if t1w_kind != "mprage":
        out["t1w_kind"] = t1w_kind
    if t2w:
        out["t2w"] = True
    if anat_session is not None:
        out["anat_session"] = anat_session
    if not freesurfer:
        out["freesurfer"] = False
    return out


def anat_image_path(root: str | Path, subject: str, session: str, suffix: str = "T1w") -> Path:
    """Raw path of a subject's ``T1w`` or ``T2w`` in ``session`` (e.g. ``"01"``)."""
    return bids_path(root, {"sub": subject, "ses": session}, suffix, ".nii.gz", "anat")


def _map(path: Path, arr: np.ndarray, affine: np.ndarray, sidecar: dict[str, Any]) -> None:
    write_nifti(path, nifti_header(arr.shape, affine, np.uint8), np.asarray(arr).astype(np.uint8))
    write_json(sidecar_path(path), sidecar)


def write_anatomy(
    root: Path,
    p: Preset,
    seed: int,
    sub: int,
    t1w_kind: str = "mprage",
    t2w: bool = False,
    anat_session: str | None = None,
    freesurfer: bool = False,
) -> list[Path]:
    """Write subject ``sub``'s T1w (and T2w) with sidecars, and the T1w-grid truth.

    Parameters
    ----------
    root
        Dataset root.
    p, seed, sub
        Preset, dataset seed and subject number.
    t1w_kind, t2w, anat_session
        As :func:`echoprep.simulate.simulate_dataset` (checked by :func:`anatomy_options`).
        With the defaults the files are those of the historical simulator, byte for byte.
    freesurfer
        Also the FreeSurfer-like subject of the T1w in ``derivatives/freesurfer/``
        (:func:`echoprep.simulate.freesurfer.write_freesurfer`; docs/surface.md).

    Returns
    -------
    list of pathlib.Path
        The raw images written (T1w, then T2w).
    """
    label = f"{sub:02d}"
    session = anat_session or "01"
    if t1w_kind == "mp2rage":
        grid, image, brain, dseg = mp2rage_uni(p, seed, sub)
    else:
        grid, image, brain, dseg = t1w_image(p, seed, sub)
    path = anat_image_path(root, label, session)
    write_nifti(path, nifti_header(grid.shape, grid.affine, image.dtype), image)
    base = t1w_sidecar(p)
    plain = t1w_kind == "mprage" and anat_session is None
    write_json(sidecar_path(path), base if plain else anatomy_sidecar(base, t1w_kind, anat_session))
    written = [path]
    also: dict[str, Any] = {}
    if t2w:
        t2_grid, t2_image = t2w_image(p, seed, sub)
        t2_path = anat_image_path(root, label, session, "T2w")
        write_nifti(t2_path, nifti_header(t2_grid.shape, t2_grid.affine, np.int16), t2_image)
        write_json(sidecar_path(t2_path), anatomy_sidecar(base, "t2w", anat_session))
        written.append(t2_path)
        also = {
            "AlsoDescribes": f"{t2_path.relative_to(root).as_posix()} (the T2w: same grid and "
            "head pose as the T1w)"
        }
    paths = truth_paths(root, label, "01")
    _map(paths["T1w_brain_mask"], brain, grid.affine, DESCRIPTIONS["T1w_brain_mask"] | also)
    labels = {"Labels": {str(k): v for k, v in DSEG_LABELS.items()}}
    _map(paths["T1w_dseg"], dseg, grid.affine, DESCRIPTIONS["T1w_dseg"] | labels | also)
    _write_pose(root, seed, sub)
    if freesurfer:
        write_freesurfer(root, p, seed, sub, path)
    return written


def _write_pose(root: Path, seed: int, sub: int) -> None:
    """The BOLD → T1w pose truth (JSON matrices and the ITK text transform)."""
    label = f"{sub:02d}"
    matrix, pose = t1w_pose(seed, sub)
    json_path, itk_path = pose_paths(root, label)
    write_json(
        json_path,
        {
            "Description": POSE_DESCRIPTION,
            "FromSpace": "BOLD world (scanner RAS mm, functional session, motion-free head)",
            "ToSpace": "T1w world (scanner RAS mm of the T1w image)",
            "Matrix": matrix.tolist(),
            "InverseMatrix": np.linalg.inv(matrix).tolist(),
            **pose,
        },
    )
    write_text(itk_path, itk_affine_text(np.linalg.inv(matrix)))
    write_json(
        sidecar_path(itk_path),
        {
            "Description": POSE_DESCRIPTION,
            "Format": "ITK text transform (LPS); T1w-world points -> BOLD-world points",
            "FromSpace": "BOLD world",
            "ToSpace": "T1w world",
        },
    )


__all__ = ["anat_image_path", "anatomy_options", "write_anatomy"]
