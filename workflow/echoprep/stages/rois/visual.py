"""The visually responsive ROI of a subject (``echoprep rois visual``).

Blank trials are not modelled by GLMsingle, so each single-trial
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

The selections themselves are :func:`echoprep.kernels.rois.select_visual_voxels` (``blank``,
``blank_trials``); this module reads the GLM outputs, picks the method, logs the kernel's
warnings and writes the mask with its sidecar.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep.io.bids_uri import localize
from echoprep.io.events import read_trials
from echoprep.io.images import StageInputError, check_same_grid, load_image, read_array
from echoprep.io.outputs import get
from echoprep.io.rois import VISUAL_CATEGORY
from echoprep.kernels.rois import select_visual_voxels
from echoprep.options import section_defaults
from echoprep.stages.rois.masks import write_mask
from echoprep.stages.rois.options import RoiOptions, parse_roi_options

log = logging.getLogger(__name__)


def count_blank_trials(summary: Mapping[str, Any]) -> int | None:
    """Blank trials of the session from the GLM summary's events files and blank types.

    Returns None when the events files listed in the summary cannot be read.
    """
    # the GLM options the summary records (the defaults for a summary without them)
    options = {**section_defaults("glm"), **summary.get("Options", {})}
    blank = list(options["blank_trial_types"])
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


def run_visual_roi(
    betas: str | Path,
    trials: str | Path,
    summary: str | Path,
    out: str | Path,
    *,
    onoff_r2: str | Path | None = None,
    brain_mask: str | Path | None = None,
    analysis_mask: str | Path | None = None,
    options: RoiOptions | Mapping[str, Any] | None = None,
    variant: str | None = None,
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
    options
        :class:`RoiOptions`, or (part of) the config's ``rois`` section; its ``visual``
        options are used (missing keys: the defaults):

        ``method``: ``auto`` (``blank`` when the session has blank trials, else ``onoff``);
        ``blank``: the run-level test (:func:`echoprep.kernels.visual.run_level_test`) at
        ``alpha`` with ``correction`` (``fdr``: Benjamini-Hochberg; ``bonferroni``:
        family-wise), on least-squares betas (GLMsingle type B; type-D betas are used with a
        warning); ``blank_trials``: the former leave-one-run-out trial t above ``threshold``
        (not calibrated for correlated betas); ``onoff``: the ON-OFF R² above
        ``onoff_threshold`` (%). ``threshold`` is also the fallback of ``blank`` with one run.
        ``min_voxels``: with ``blank``, fewer significant voxels selects the ``min_voxels``
        most significant ones instead (logged and recorded as not calibrated); other methods:
        an error.
    variant
        The variant the outputs come from (for the sidecar).

    Raises
    ------
    StageInputError
        Inconsistent inputs, ``onoff`` without the R² map, fewer than ``min_voxels`` voxels
        (``blank_trials``, ``onoff``; ``blank`` with fewer testable voxels).
    """
    opts = parse_roi_options(options).visual
    method, threshold, min_voxels = opts.method, opts.threshold, opts.min_voxels
    info = localize(json.loads(Path(summary).read_text()), summary)
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
        check_same_grid(
            mimg,
            img,
            path=brain_mask,
            ref_path=betas,
            what="brain mask",
            fix="Fix: pass the brain mask of the same functional grid.",
            atol=1e-8,
        )
        inside = np.asanyarray(mimg.dataobj).reshape(shape) > 0
    else:
        inside = None
    if analysis_mask is not None:
        aimg = load_image(analysis_mask, "analysis mask")
        check_same_grid(
            aimg,
            img,
            path=analysis_mask,
            ref_path=betas,
            what="analysis mask",
            fix="Fix: pass the analysis mask of the session the betas come from.",
            atol=1e-8,
        )
        analysed = np.asanyarray(aimg.dataobj).reshape(shape) > 0
        inside = analysed if inside is None else inside & analysed
    params: dict[str, Any] = {"Method": method, "Variant": variant}
    if method in ("blank", "blank_trials"):
        table = read_trials(
            trials, required=("beta_index", "run"), fix="Fix: pass the trials table of the betas."
        )
        data = read_array(img)
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
        selection = select_visual_voxels(
            flat[idx],
            runs.astype(str),
            method=method,
            threshold=threshold,
            alpha=opts.alpha,
            correction=opts.correction,
            min_voxels=min_voxels,
            model_type=_model_type(betas),
        )
        for why in selection.warnings:
            log.warning("visual ROI from %s: %s", betas, why)
        mask = np.zeros(flat.shape[0], bool)
        mask[idx[selection.mask]] = True
        params.update({**selection.parameters, "BlankTrials": n_blank})
        sources = [betas, trials, summary]
    else:
        if onoff_r2 is None:
            raise StageInputError(
                f"{summary}: the session has no blank trials, so the visual ROI needs the type-A "
                "ON-OFF R² map; found none. Fix: pass --onoff-r2 (the GLM stage writes "
                f"*_{get('glm.onoff_r2').file_name('')}) or add blank trials to the design."
            )
        r2img = load_image(onoff_r2, "ON-OFF R² map")
        r2 = np.asarray(r2img.dataobj, np.float64).reshape(shape)
        if inside is None:
            inside = r2 != 0
        mask = ((np.nan_to_num(r2, nan=-np.inf) > opts.onoff_threshold) & inside).ravel()
        params.update({"Threshold": opts.onoff_threshold, "Statistic": "type-A ON-OFF R² (%)"})
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
    return write_mask(
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


__all__ = ["count_blank_trials", "run_visual_roi"]
