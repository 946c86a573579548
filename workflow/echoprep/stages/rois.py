"""ROI stage: user ROI masks on the functional grid, the visually responsive ROI, ROI tables.

Three jobs, each a sub-command of ``echoprep rois``:

``mask``
    One user ROI mask (T1w or template space, from the folder ``rois.dir`` of the config) brought
    into the subject's functional grid with nearest-neighbour interpolation →
    ``rois/sub-X/<category>/sub-X[_space-T1w]_res-<res>_label-<ROI>_mask.nii.gz``.
``visual``
    The data-driven "visually responsive" ROI (``rois/sub-X/visual/..._label-visuallyResponsive_
    mask.nii.gz``), computed once per subject from one fixed GLM variant and session, so that
    every variant is summarised over the same voxels.
``table``
    Per session and variant: ROI, voxels, median and mean noise ceiling, median R² →
    ``glmsingle-<variant>/sub-X/ses-Y/func/sub-X_ses-Y_task-T_desc-ROIs_summary.tsv``.

**User ROI folder.** BIDS-like: ``<dir>/[sub-<label>/]<category>/<name>_mask.nii.gz`` where the
name carries ``space-T1w`` or ``space-MNI152NLin2009aSym`` and ``label-<ROI>``, e.g.
``rois/sub-01/visual/sub-01_space-T1w_label-V1_mask.nii.gz`` or, for a template atlas shared by
every subject, ``rois/category/space-MNI152NLin2009aSym_label-FFA_mask.nii.gz``. A file with a
``sub-`` entity is used for that subject only. The category is the folder the file sits in.
Template-space masks go through the anatomy stage's ``from-<template>_to-T1w`` transform.

**Visually responsive ROI.** Blank trials are not modelled by GLMsingle, so each single-trial
beta (% BOLD) is the image response relative to the baseline that the blank trials belong to:
the image-vs-blank effect. The betas of one run are correlated (they share the run's baseline
estimate and slow noise, and in a fast design the trials' regressors overlap), so a t-value over
trials is far too liberal; runs are independent. The default test (``blank``,
:func:`echoprep.kernels.visual.run_level_test`) forms per run the generalised-least-squares
mean of its trials (weights from the trials' correlation pooled over voxels), tests the mean
across runs with a moderated t (an empirical-Bayes design effect shared by the voxels), and
keeps the voxels that pass a Benjamini-Hochberg false-discovery rate (or Bonferroni family-wise)
threshold. It needs least-squares betas: GLMsingle's type-D betas are ridge-regularised and
autoscaled with a per-voxel offset that every trial of every run shares, which makes runs look
alike (the workflow passes the type-B betas of the same fit; type-D betas are used with a
warning). With one run there is no between-run variance: the former statistic is used, with a
warning in the log and the sidecar (``Calibrated: false``). That former statistic stays
available as ``blank_trials``: for every run r, the one-sample t ``t_-r = mean / (SD /
sqrt(n))`` of the trials of all other runs, a voxel being responsive when ``min_r t_-r >
threshold``. Without blank trials the baseline is not an image-free condition, so the type-A
ON-OFF R² (``stat-rsquare_desc-OnoffR2``) above its own threshold (%) is used instead. The
default source is the first comparison session's ``raw-single`` variant: the baseline that none
of the compared treatments (NORDIC, tedana) touched, so the selection does not favour any of
them (selecting on a treated variant would be circular).

Errors name the file, what was expected, what was found and how to fix it.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from echoprep.io.images import StageInputError, atomic_save, load_image
from echoprep.io.paths import bids_name, bids_path
from echoprep.io.sidecars import write_dataset_description, write_sidecar
from echoprep.kernels.noiseceiling import roi_summary
from echoprep.kernels.visual import (
    CORRECTIONS,
    leave_one_run_out_t,
    run_level_test,
    select_responsive,
)

log = logging.getLogger(__name__)

#: Template label of the anatomy stage (``echoprep.stages.anatomy.TEMPLATE``).
TEMPLATE = "MNI152NLin2009aSym"
#: Spaces a user ROI mask may be given in.
ROI_SPACES = ("T1w", TEMPLATE)
#: Category and label of the data-driven ROI (reserved: a user file may not use them).
VISUAL_CATEGORY = "visual"
VISUAL_LABEL = "visuallyResponsive"
#: Category of user masks that sit directly in the ROI folder (or the subject's folder).
DEFAULT_CATEGORY = "other"
#: Methods of the visually responsive ROI.
VISUAL_METHODS = ("auto", "blank", "blank_trials", "onoff")
#: ``ModelType`` (betas sidecar) of ridge-regularised, autoscaled betas (GLMsingle type D).
RIDGE_MODEL = "FITHRF_GLMDENOISE_RR"

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
    return bids_path(
        root,
        {"sub": subject, "space": space, "res": res, "label": label},
        "mask",
        ".nii.gz",
        datatype=category,
    )


def roi_table_name(stem: str) -> str:
    """File name of a session's ROI table from its stem (``sub-01_ses-01_task-images``)."""
    return f"{stem}_{bids_name({'desc': 'ROIs'}, 'summary', '.tsv')}"


# ---------------------------------------------------------------------------------------------
# the user ROI folder


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


def check_binary_mask(img: nib.Nifti1Image, path: str | Path) -> np.ndarray:
    """The boolean array of a binary 3D mask image.

    Raises
    ------
    StageInputError
        Not 3D (a 4D file with one volume is accepted), values other than 0 and 1, or no
        voxel set.
    """
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise StageInputError(
            f"{path}: expected a 3D binary mask; found shape {img.shape}. Fix: one mask per file."
        )
    finite = np.isfinite(data)
    values = np.unique(data[finite]) if finite.any() else np.array([])
    if not finite.all() or not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
        extra = "" if finite.all() else " and non-finite values"
        raise StageInputError(
            f"{path}: expected a binary mask (0 and 1 only); found values {shown}{extra}. Fix: "
            "threshold the image (e.g. fslmaths in -thr 0.5 -bin out) or split a label image "
            "into one mask per label."
        )
    mask = data == 1
    if not mask.any():
        raise StageInputError(
            f"{path}: expected at least one voxel in the mask; found an empty mask. Fix: remove "
            "the file or fix the mask."
        )
    return mask


# ---------------------------------------------------------------------------------------------
# resampling


def _grid(reference: nib.Nifti1Image) -> tuple[tuple[int, int, int], np.ndarray]:
    return tuple(int(n) for n in reference.shape[:3]), np.asarray(reference.affine, float)  # type: ignore[return-value]


def resample_nearest(
    data: np.ndarray, affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray
) -> np.ndarray:
    """Nearest-neighbour resampling in world coordinates (no transform between the spaces).

    Parameters
    ----------
    data
        ``(x, y, z)`` array (any dtype) with its voxel-to-world ``affine`` (4x4, mm).
    shape, target_affine
        The target grid.

    Returns
    -------
    numpy.ndarray
        ``shape`` array of ``data``'s dtype; 0 outside ``data``'s field of view. Each target
        voxel takes the source voxel whose centre is nearest (index rounded half away from
        zero after a 1e-6 voxel nudge, so that grids aligned on centres are exact).
    """
    shape = tuple(int(n) for n in shape)
    src_from_tgt = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(target_affine, float)
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    src = src_from_tgt[:3, :3] @ ijk + src_from_tgt[:3, 3:4]
    idx = np.floor(src + 0.5 + 1e-6).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.array(data.shape[:3])[:, None]), axis=0)
    out = np.zeros(int(np.prod(shape)), dtype=data.dtype)
    out[inside] = data[idx[0, inside], idx[1, inside], idx[2, inside]]
    return out.reshape(shape)


def roi_to_grid(
    mask_path: str | Path,
    space: str,
    reference: nib.Nifti1Image,
    *,
    xfm_from_template: str | Path | None = None,
) -> np.ndarray:
    """A user ROI mask on the functional grid (nearest neighbour).

    Parameters
    ----------
    mask_path
        Binary mask (checked with :func:`check_binary_mask`).
    space
        ``T1w`` (resampled in world coordinates: the functional grid is T1w-aligned) or
        :data:`TEMPLATE` (through ``xfm_from_template``, the anatomy stage's
        ``from-<template>_to-T1w`` transform, with ANTs).
    reference
        The functional grid (an image whose first three dimensions and affine are used).

    Returns
    -------
    numpy.ndarray
        Boolean mask of the reference grid's shape.

    Raises
    ------
    StageInputError
        Bad mask; template space without the transform; a mask that misses the grid.
    """
    img = load_image(mask_path, "ROI mask")
    mask = check_binary_mask(img, mask_path)
    shape, affine = _grid(reference)
    if space == "T1w":
        out = resample_nearest(mask.astype(np.uint8), img.affine, shape, affine) > 0
    elif space == TEMPLATE:
        if xfm_from_template is None:
            raise StageInputError(
                f"{mask_path}: a {TEMPLATE} mask needs the anatomy stage's from-{TEMPLATE}_to-T1w "
                "transform; found none. Fix: run the anatomy stage (the subject needs a T1w) or "
                "give the mask in T1w space."
            )
        from echoprep.stages.anatomy import apply_to_grid

        moved = apply_to_grid(
            nib.Nifti1Image(mask.astype(np.uint8), img.affine),
            [xfm_from_template],
            (shape, affine),
            "nearest",
        )
        out = np.asarray(moved.dataobj) > 0
    else:
        raise StageInputError(
            f"{mask_path}: expected space T1w or {TEMPLATE}; found {space!r}. Fix: rename the "
            "file with the space the mask is in."
        )
    if not out.any():
        raise StageInputError(
            f"{mask_path}: the mask has {int(mask.sum())} voxels but none of them falls inside "
            f"the functional grid {shape}. Fix: check the mask's space label and its affine "
            "(is it in the subject's T1w space?)."
        )
    return out


def _write_mask(
    mask: np.ndarray, reference: nib.Nifti1Image, out: str | Path, **sidecar: Any
) -> Path:
    shape, affine = _grid(reference)
    img = nib.Nifti1Image(np.asarray(mask, np.uint8).reshape(shape), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_data_dtype(np.uint8)
    atomic_save(img, out)
    write_sidecar(out, **sidecar)
    return Path(out)


def run_roi_mask(
    mask_path: str | Path,
    space: str,
    reference: str | Path,
    out: str | Path,
    *,
    xfm_from_template: str | Path | None = None,
    category: str | None = None,
    grid_space: str = "T1w",
) -> Path:
    """Bring one user ROI mask into the functional grid and write it with its sidecar.

    ``grid_space="native"`` says the functional grid is not T1w-aligned (spatial preprocessing
    off): the mask is then placed by world coordinates only, which is right only when the T1w
    and the BOLD share the scanner frame; a warning is logged and recorded in the sidecar.
    """
    if grid_space != "T1w":
        log.warning(
            "ROI %s: the functional grid is not aligned to the T1w (spatial preprocessing is "
            "off); placing the mask by world coordinates only",
            mask_path,
        )
    ref = load_image(reference, "functional reference grid")
    mask = roi_to_grid(mask_path, space, ref, xfm_from_template=xfm_from_template)
    zooms = np.sqrt((np.asarray(ref.affine)[:3, :3] ** 2).sum(axis=0))
    sources = [mask_path, reference, *([xfm_from_template] if space == TEMPLATE else [])]
    log.info("ROI %s (%s space): %d voxels on the grid -> %s", mask_path, space, mask.sum(), out)
    return _write_mask(
        mask,
        ref,
        out,
        sources=sources,
        parameters={"Interpolation": "nearest", "SourceSpace": space, "GridSpace": grid_space},
        extra={
            "Type": "ROI",
            "Category": category,
            "Voxels": int(mask.sum()),
            "Resolution": [round(float(z), 4) for z in zooms],
            "Description": f"User ROI from {Path(mask_path).name}, nearest-neighbour on the "
            "functional grid",
        },
    )


# ---------------------------------------------------------------------------------------------
# visually responsive ROI (kernel part: arrays only, in echoprep.kernels.visual)


def visual_mask_from_betas(
    betas: np.ndarray, runs: Sequence | np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(V,)`` boolean mask ``min_r t_-r > threshold`` and the ``(V,)`` statistic (the former,
    uncalibrated trial-level statistic: :func:`echoprep.kernels.visual.leave_one_run_out_t`)."""
    stat = leave_one_run_out_t(betas, runs)
    return np.nan_to_num(stat, nan=-np.inf) > threshold, stat


# ---------------------------------------------------------------------------------------------
# visually responsive ROI (stage)


def count_blank_trials(summary: Mapping[str, Any]) -> int | None:
    """Blank trials of the session from the GLM summary's events files and blank types.

    Returns None when the events files listed in the summary cannot be read.
    """
    blank = list(summary.get("Options", {}).get("blank_trial_types", ["blank"]))
    total = 0
    for run in summary.get("RunsUsed", []):
        path = Path(run.get("events", ""))
        if not path.is_file():
            return None
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        if "trial_type" in table:
            total += int(table["trial_type"].isin(blank).sum())
    return total


def _model_type(betas: str | Path) -> str | None:
    """``ModelType`` of a betas file's JSON sidecar (None without a readable sidecar)."""
    side = Path(str(betas).removesuffix(".gz").removesuffix(".nii") + ".json")
    try:
        return json.loads(side.read_text()).get("ModelType")
    except (OSError, ValueError, AttributeError):
        return None


def _trial_t_selection(
    betas: np.ndarray, runs: np.ndarray, threshold: float, why: str | None
) -> tuple[np.ndarray, dict[str, Any]]:
    sel, stat = visual_mask_from_betas(betas, runs, threshold)
    n_runs = len(np.unique(runs))
    return sel, {
        "Threshold": threshold,
        "Statistic": "min over leave-one-run-out folds of the one-sample t-value of the "
        "image trials' betas (blank trials are the unmodelled baseline)"
        if n_runs > 1
        else "one-sample t-value of all image trials (one run: no fold to leave out)",
        "Calibrated": False,
        "Fallback": why,
        "Runs": n_runs,
        "MaxStatistic": float(np.nanmax(stat)) if np.isfinite(stat).any() else None,
    }


def _blank_selection(
    betas: np.ndarray,
    runs: np.ndarray,
    *,
    method: str,
    threshold: float,
    alpha: float,
    correction: str,
    min_voxels: int,
    model_type: str | None,
    source: str | Path,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Selection and sidecar parameters of the ``blank`` and ``blank_trials`` methods."""
    n_runs = len(np.unique(runs))
    if method == "blank_trials":
        return _trial_t_selection(betas, runs, threshold, None)
    if correction not in CORRECTIONS:
        raise ValueError(f"visual ROI: correction must be one of {CORRECTIONS}; got {correction!r}")
    if n_runs < 2:
        why = (
            "one run: no between-run variance, so no calibrated test; the trial-level t "
            f"above {threshold:g} is used (it treats correlated trials as independent)"
        )
        log.warning("visual ROI from %s: %s", source, why)
        return _trial_t_selection(betas, runs, threshold, why)
    if model_type == RIDGE_MODEL:
        log.warning(
            "visual ROI from %s: type-D (ridge, autoscaled) betas share a per-voxel offset across "
            "runs, so the run-level test is not calibrated on them; pass the type-B betas "
            "(stat-effect_desc-SingletrialBetasTypeB)",
            source,
        )
    try:
        test = run_level_test(betas, runs)
    except ValueError as err:
        why = f"run-level test impossible ({err}); the trial-level t above {threshold:g} is used"
        log.warning("visual ROI from %s: %s", source, why)
        return _trial_t_selection(betas, runs, threshold, why)
    sel, cut = select_responsive(test.p, alpha, correction)
    params: dict[str, Any] = {
        "Statistic": "one-sided moderated run-level t of the image trials' betas (blank trials "
        "are the unmodelled baseline): per run the generalised-least-squares mean of its "
        "trials, tested across runs with an empirical-Bayes design effect",
        "Alpha": alpha,
        "Correction": correction,
        "PValueCutoff": cut,
        "Threshold": None,
        "Calibrated": model_type != RIDGE_MODEL,
        "Fallback": None,
        "Runs": n_runs,
        "BetaModel": model_type,
        "DegreesOfFreedom": round(test.df, 2),
        "PriorDegreesOfFreedom": None if np.isinf(test.prior_df) else round(test.prior_df, 2),
        "DesignEffect": round(test.design_effect, 4),
        "EffectiveTrials": round(test.effective_trials, 2),
        "MaxStatistic": float(np.nanmax(test.t)) if np.isfinite(test.t).any() else None,
    }
    n_sig = int(sel.sum())
    testable = np.isfinite(test.p)
    if n_sig < min_voxels <= int(testable.sum()):
        order = np.argsort(np.where(testable, test.p, np.inf), kind="stable")
        sel = np.zeros_like(sel)
        sel[order[:min_voxels]] = True
        why = (
            f"{n_sig} voxels significant at {correction} {alpha:g} (fewer than min_voxels "
            f"{min_voxels}): the {min_voxels} voxels with the smallest p-values are used, a "
            "selection without error control"
        )
        log.warning("visual ROI from %s: %s", source, why)
        params.update({"Calibrated": False, "Fallback": why})
    params["SignificantVoxels"] = n_sig
    return sel, params


def run_visual_roi(
    betas: str | Path,
    trials: str | Path,
    summary: str | Path,
    out: str | Path,
    *,
    onoff_r2: str | Path | None = None,
    brain_mask: str | Path | None = None,
    analysis_mask: str | Path | None = None,
    method: str = "auto",
    threshold: float = 3.0,
    onoff_threshold: float = 5.0,
    min_voxels: int = 1,
    variant: str | None = None,
    alpha: float = 0.05,
    correction: str = "fdr",
) -> Path:
    """Write the visually responsive ROI of one subject from one session's GLM outputs.

    Parameters
    ----------
    betas, trials, summary
        The GLM stage's single-trial betas (4D), trials table and summary JSON.
    out
        The mask to write (its JSON sidecar records the method and numbers).
    onoff_r2
        The type-A ON-OFF R² map (%), needed without blank trials.
    brain_mask
        Voxels to consider (default: where the betas are not all 0).
    analysis_mask
        The analysis mask of the source session (the voxels every variant was fitted on): the
        ROI is kept inside it (intersected with ``brain_mask``).
    method
        ``auto`` (``blank`` when the session has blank trials, else ``onoff``); ``blank``: the
        run-level test (:func:`echoprep.kernels.visual.run_level_test`) at ``alpha`` with
        ``correction``, on least-squares betas (GLMsingle type B; type-D betas are used with a
        warning); ``blank_trials``: the former leave-one-run-out trial t above ``threshold``
        (not calibrated for correlated betas); ``onoff``: the ON-OFF R².
    threshold
        t-value of ``blank_trials`` (and of ``blank`` with one run, its fallback).
    onoff_threshold
        ON-OFF R² (%) for the ``onoff`` method.
    min_voxels
        ``blank``: fewer significant voxels selects the ``min_voxels`` most significant ones
        instead (logged and recorded as not calibrated); other methods: an error.
    variant
        The variant the outputs come from (for the sidecar).
    alpha, correction
        Level and multiple-comparison correction (``fdr``: Benjamini-Hochberg;
        ``bonferroni``: family-wise) of ``blank``.

    Raises
    ------
    StageInputError
        Inconsistent inputs, ``onoff`` without the R² map, fewer than ``min_voxels`` voxels
        (``blank_trials``, ``onoff``; ``blank`` with fewer testable voxels).
    """
    if method not in VISUAL_METHODS:
        raise ValueError(f"visual ROI: method must be one of {VISUAL_METHODS}; got {method!r}")
    info = json.loads(Path(summary).read_text())
    n_blank = count_blank_trials(info)
    if method == "auto":
        if n_blank is None:
            n_blank = int(info.get("ExcludedEvents", 0))
            log.warning(
                "visual ROI: events files of %s not readable; using ExcludedEvents=%d as the "
                "number of blank trials",
                summary,
                n_blank,
            )
        method = "blank" if n_blank > 0 else "onoff"
        if method == "onoff":
            log.warning("visual ROI: no blank trials in %s; using the ON-OFF R² instead", summary)
    img = load_image(betas, "single-trial betas", ndim=4)
    shape = img.shape[:3]
    if brain_mask is not None:
        mimg = load_image(brain_mask, "brain mask")
        if tuple(mimg.shape[:3]) != tuple(shape) or not np.allclose(mimg.affine, img.affine):
            raise StageInputError(
                f"{brain_mask}: expected the grid of {betas} ({shape}); found {mimg.shape[:3]} "
                "or another affine. Fix: pass the brain mask of the same functional grid."
            )
        inside = np.asanyarray(mimg.dataobj).reshape(shape) > 0
    else:
        inside = None
    if analysis_mask is not None:
        aimg = load_image(analysis_mask, "analysis mask")
        if tuple(aimg.shape[:3]) != tuple(shape) or not np.allclose(aimg.affine, img.affine):
            raise StageInputError(
                f"{analysis_mask}: expected the grid of {betas} ({shape}); found "
                f"{aimg.shape[:3]} or another affine. Fix: pass the analysis mask of the "
                "session the betas come from."
            )
        analysed = np.asanyarray(aimg.dataobj).reshape(shape) > 0
        inside = analysed if inside is None else inside & analysed
    params: dict[str, Any] = {"Method": method, "Variant": variant}
    if method in ("blank", "blank_trials"):
        table = pd.read_csv(trials, sep="\t", dtype={"run": str}, keep_default_na=False)
        data = np.asarray(img.dataobj, dtype=np.float32)
        if len(table) != data.shape[3]:
            raise StageInputError(
                f"{trials}: expected one row per beta volume ({data.shape[3]}); found "
                f"{len(table)} rows. Fix: use the trials table written with these betas."
            )
        flat = data.reshape(-1, data.shape[3])
        if inside is None:
            inside = np.any(data != 0, axis=3)
        idx = np.flatnonzero(inside.ravel())
        order = table["beta_index"].to_numpy(int)
        runs = np.empty(len(table), dtype=object)
        runs[order] = table["run"].to_numpy()
        sel, blank_params = _blank_selection(
            flat[idx],
            runs.astype(str),
            method=method,
            threshold=threshold,
            alpha=alpha,
            correction=correction,
            min_voxels=min_voxels,
            model_type=_model_type(betas),
            source=betas,
        )
        mask = np.zeros(flat.shape[0], bool)
        mask[idx[sel]] = True
        params.update({**blank_params, "BlankTrials": n_blank})
        sources = [betas, trials, summary]
    else:
        if onoff_r2 is None:
            raise StageInputError(
                f"{summary}: the session has no blank trials, so the visual ROI needs the type-A "
                "ON-OFF R² map; found none. Fix: pass --onoff-r2 (the GLM stage writes "
                "stat-rsquare_desc-OnoffR2_statmap) or add blank trials to the design."
            )
        r2img = load_image(onoff_r2, "ON-OFF R² map")
        r2 = np.asarray(r2img.dataobj, np.float64).reshape(shape)
        if inside is None:
            inside = r2 != 0
        mask = ((np.nan_to_num(r2, nan=-np.inf) > onoff_threshold) & inside).ravel()
        params.update({"Threshold": onoff_threshold, "Statistic": "type-A ON-OFF R² (%)"})
        sources = [onoff_r2, summary]
    n = int(mask.sum())
    if n < min_voxels:
        raise StageInputError(
            f"visual ROI from {onoff_r2 if method == 'onoff' else betas}: expected at least "
            f"{min_voxels} responsive voxels; found {n} (method {method}, threshold "
            f"{params['Threshold']}). Fix: lower rois.visual.threshold (or onoff_threshold), or "
            "check the GLM outputs."
        )
    rule = (
        f"{params['Correction']} {params['Alpha']:g}"
        if params.get("Threshold") is None
        else f"threshold {params['Threshold']}"
    )
    log.info("visual ROI: %d voxels (%s, %s) -> %s", n, method, rule, out)
    return _write_mask(
        mask.reshape(shape),
        img,
        out,
        sources=[*sources, *[m for m in (brain_mask, analysis_mask) if m]],
        parameters=params,
        extra={
            "Type": "ROI",
            "Category": VISUAL_CATEGORY,
            "Voxels": n,
            "Description": "Visually responsive voxels (image trials vs the blank baseline; "
            "Parameters.Statistic says how), the same mask for every preprocessing variant",
        },
    )


# ---------------------------------------------------------------------------------------------
# ROI table


def roi_name(path: str | Path) -> tuple[str, str]:
    """``(category, label)`` of an ROI mask written by this stage."""
    p = Path(path)
    label = _entities(p.name).get("label")
    if not label:
        raise StageInputError(f"{p}: expected an ROI mask with a label-<ROI> entity")
    return p.parent.name, label


def load_masks(paths: Sequence[str | Path], like: nib.Nifti1Image) -> dict[str, np.ndarray]:
    """ROI masks on ``like``'s grid, keyed ``category/label``.

    Raises
    ------
    StageInputError
        A mask on another grid.
    """
    out: dict[str, np.ndarray] = {}
    for p in paths:
        img = load_image(p, "ROI mask")
        if tuple(img.shape[:3]) != tuple(like.shape[:3]) or not np.allclose(
            img.affine, like.affine, atol=1e-4
        ):
            raise StageInputError(
                f"{p}: expected an ROI mask on the grid of the maps ({like.shape[:3]}); found "
                f"{img.shape[:3]} or another affine. Fix: rerun the ROI rules (the functional "
                "grid changed?)."
            )
        category, label = roi_name(p)
        out[f"{category}/{label}"] = np.asanyarray(img.dataobj).reshape(like.shape[:3]) > 0
    return out


TABLE_COLUMNS = ("category", "roi", "voxels", "nc_median", "nc_mean", "r2_median")


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
        if tuple(r2_img.shape[:3]) != tuple(nc_img.shape[:3]):
            raise StageInputError(
                f"{r2}: expected the grid of {nc} ({nc_img.shape[:3]}); found {r2_img.shape[:3]}"
            )
        r2_data = np.asarray(r2_img.dataobj, np.float64).reshape(nc_img.shape[:3])
    rois = load_masks(masks, nc_img)
    rows = roi_summary(nc_data, r2_data, rois)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", newline="") as fh:
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
    tmp.replace(out)
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
            "category": {"Description": "ROI category (folder under rois/)"},
            "roi": {"Description": "ROI label"},
            "voxels": {"Description": "voxels in the ROI on the functional grid"},
            "nc_median": {"Description": "median noise ceiling over the ROI", "Units": "%"},
            "nc_mean": {"Description": "mean noise ceiling over the ROI", "Units": "%"},
            "r2_median": {"Description": "median GLM R² over the ROI", "Units": "%"},
        },
    )
    return out


def write_description(root: str | Path, *, config: Mapping[str, Any], source: str | Path) -> Path:
    """``dataset_description.json`` of the ``rois`` folder."""
    return write_dataset_description(
        root,
        "echoprep ROIs",
        description="ROI masks on each subject's functional grid: user masks (nearest "
        "neighbour) and the visually responsive ROI (image trials vs the blank baseline, "
        "tested across runs)",
        config=config,
        source_datasets=[str(source)],
    )


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep rois {mask,visual,table}`` arguments to a sub-command parser."""
    sub = parser.add_subparsers(dest="rois_command", required=True)
    m = sub.add_parser("mask", help="one user ROI mask to the functional grid")
    m.add_argument("--mask", required=True, type=Path)
    m.add_argument("--space", required=True, choices=ROI_SPACES)
    m.add_argument("--reference", required=True, type=Path, help="functional grid image")
    m.add_argument("--xfm-from-template", type=Path, default=None)
    m.add_argument("--category", default=None)
    m.add_argument(
        "--grid-space",
        default="T1w",
        help="T1w (grid aligned to the T1w) or native (not aligned: placed by world coordinates)",
    )
    m.add_argument("--out", required=True, type=Path)
    v = sub.add_parser("visual", help="the visually responsive ROI of a subject")
    v.add_argument("--betas", required=True, type=Path)
    v.add_argument("--trials", required=True, type=Path)
    v.add_argument("--summary", required=True, type=Path)
    v.add_argument("--onoff-r2", type=Path, default=None)
    v.add_argument("--brain-mask", type=Path, default=None)
    v.add_argument(
        "--analysis-mask", type=Path, default=None, help="analysis mask of the source session"
    )
    v.add_argument("--method", choices=VISUAL_METHODS, default="auto")
    v.add_argument("--threshold", type=float, default=3.0)
    v.add_argument("--alpha", type=float, default=0.05)
    v.add_argument("--correction", choices=CORRECTIONS, default="fdr")
    v.add_argument("--onoff-threshold", type=float, default=5.0)
    v.add_argument("--min-voxels", type=int, default=1)
    v.add_argument("--variant", default=None)
    v.add_argument("--out", required=True, type=Path)
    t = sub.add_parser("table", help="ROI table of one session and variant")
    t.add_argument("--nc", required=True, type=Path)
    t.add_argument("--r2", type=Path, default=None)
    t.add_argument("--masks", nargs="+", required=True, type=Path)
    t.add_argument("--variant", default=None)
    t.add_argument("--out", required=True, type=Path)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the chosen ``rois`` sub-command; exit status 0."""
    if args.rois_command == "mask":
        run_roi_mask(
            args.mask,
            args.space,
            args.reference,
            args.out,
            xfm_from_template=args.xfm_from_template,
            category=args.category,
            grid_space=args.grid_space,
        )
    elif args.rois_command == "visual":
        run_visual_roi(
            args.betas,
            args.trials,
            args.summary,
            args.out,
            onoff_r2=args.onoff_r2,
            brain_mask=args.brain_mask,
            analysis_mask=args.analysis_mask,
            method=args.method,
            threshold=args.threshold,
            onoff_threshold=args.onoff_threshold,
            min_voxels=args.min_voxels,
            variant=args.variant,
            alpha=args.alpha,
            correction=args.correction,
        )
    else:
        run_roi_table(args.nc, args.masks, args.out, r2=args.r2, variant=args.variant)
    return 0


__all__ = [
    "ROI_SPACES",
    "TEMPLATE",
    "VISUAL_CATEGORY",
    "VISUAL_LABEL",
    "RoiFile",
    "add_arguments",
    "check_binary_mask",
    "find_roi_files",
    "leave_one_run_out_t",
    "res_label",
    "resample_nearest",
    "roi_mask_path",
    "roi_table_name",
    "roi_to_grid",
    "run_from_args",
    "run_roi_mask",
    "run_roi_table",
    "run_visual_roi",
    "visual_mask_from_betas",
    "write_description",
]
