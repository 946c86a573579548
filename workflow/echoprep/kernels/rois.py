"""ROI array code: nearest-neighbour resampling of masks, the visually responsive voxels' selection.

Pure array code (no file I/O; the ROI stage, :mod:`echoprep.stages.rois`, reads and writes).
The statistics themselves are in :mod:`echoprep.kernels.visual`; here they are combined into
the selections of the ``blank`` and ``blank_trials`` methods, with the parameters the ROI's
sidecar records and the reasons for any fallback (returned, for the stage to log).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from echoprep.kernels.visual import leave_one_run_out_t, run_level_test, select_responsive

#: ``ModelType`` (betas sidecar) of ridge-regularised, autoscaled betas (GLMsingle type D).
RIDGE_MODEL = "FITHRF_GLMDENOISE_RR"


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


def visual_mask_from_betas(
    betas: np.ndarray, runs: Sequence | np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(V,)`` boolean mask ``min_r t_-r > threshold`` and the ``(V,)`` statistic (the former,
    uncalibrated trial-level statistic: :func:`echoprep.kernels.visual.leave_one_run_out_t`)."""
    stat = leave_one_run_out_t(betas, runs)
    return np.nan_to_num(stat, nan=-np.inf) > threshold, stat


@dataclass(frozen=True)
class VisualSelection:
    """Output of :func:`select_visual_voxels`.

    Attributes
    ----------
    mask
        ``(V,)`` bool: the selected voxels.
    parameters
        What the ROI's sidecar records (statistic, threshold or level, calibration, fallback,
        runs, ...).
    warnings
        Reasons to warn (fallbacks, uncalibrated betas), in the order they arose.
    """

    mask: np.ndarray
    parameters: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())


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


def select_visual_voxels(
    betas: np.ndarray,
    runs: np.ndarray,
    *,
    method: str,
    threshold: float,
    alpha: float,
    correction: str,
    min_voxels: int,
    model_type: str | None,
) -> VisualSelection:
    """Visually responsive voxels by the ``blank`` or ``blank_trials`` method.

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas of image trials (% BOLD, relative to the blank baseline).
    runs
        ``(N,)`` run label of each trial.
    method
        ``"blank"``: the run-level test (:func:`echoprep.kernels.visual.run_level_test`) at
        ``alpha`` with ``correction``; with one run, or when the test is impossible, the
        trial-level t above ``threshold`` (a fallback, said so). ``"blank_trials"``: the
        leave-one-run-out trial-level t above ``threshold`` (not calibrated).
    threshold
        t-value of ``blank_trials`` and of the fallbacks.
    alpha, correction
        Level and multiple-comparison correction (``fdr`` or ``bonferroni``) of ``blank``.
    min_voxels
        ``blank``: with fewer significant voxels, the ``min_voxels`` most significant
        (testable) ones are selected instead (not calibrated, said so).
    model_type
        ``ModelType`` of the betas; :data:`RIDGE_MODEL` (type D) is used with a warning and
        not called calibrated.

    Returns
    -------
    VisualSelection
    """
    n_runs = len(np.unique(runs))
    if method == "blank_trials":
        sel, params = _trial_t_selection(betas, runs, threshold, None)
        return VisualSelection(sel, params)
    if n_runs < 2:
        why = (
            "one run: no between-run variance, so no calibrated test; the trial-level t "
            f"above {threshold:g} is used (it treats correlated trials as independent)"
        )
        sel, params = _trial_t_selection(betas, runs, threshold, why)
        return VisualSelection(sel, params, (why,))
    warnings: list[str] = []
    if model_type == RIDGE_MODEL:
        warnings.append(
            "type-D (ridge, autoscaled) betas share a per-voxel offset across runs, so the "
            "run-level test is not calibrated on them; pass the type-B betas "
            "(stat-effect_desc-SingletrialBetasTypeB)"
        )
    try:
        test = run_level_test(betas, runs)
    except ValueError as err:
        why = f"run-level test impossible ({err}); the trial-level t above {threshold:g} is used"
        sel, params = _trial_t_selection(betas, runs, threshold, why)
        return VisualSelection(sel, params, (*warnings, why))
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
        warnings.append(why)
        params.update({"Calibrated": False, "Fallback": why})
    params["SignificantVoxels"] = n_sig
    return VisualSelection(sel, params, tuple(warnings))


__all__ = [
    "RIDGE_MODEL",
    "VisualSelection",
    "resample_nearest",
    "select_visual_voxels",
    "visual_mask_from_betas",
]
