"""The measures of the 2×3 preprocessing comparison per variant, and the table's order.

Pure code (arrays and tables in, numbers and tables out; no file I/O): the ROI statistics of a
noise-ceiling map (:func:`variant_metrics`), the share of implausible brain-edge voxels
(:func:`edge_share`), the voxels every variant fitted (:func:`fitted_voxels`), the NC gain over
the baseline (:func:`gains`) and the canonical row order (:func:`ordered`). The ranking itself
is :mod:`echoprep.kernels.ranking`; the stage is :mod:`echoprep.stages.comparison`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import ndimage

from echoprep.kernels.noiseceiling import d_prime
from echoprep.kernels.ranking import BASELINE, EDGE_NC, VARIANTS


def variant_metrics(nc: np.ndarray, roi: np.ndarray, brain: np.ndarray) -> dict[str, float | int]:
    """Voxels, median and mean NC in the ROI and d′ against the rest of the brain.

    Parameters
    ----------
    nc
        NC map (%), any shape.
    roi, brain
        Boolean masks of ``nc``'s shape: the ROI and the voxels with valid data (the ROI is
        used only inside ``brain``; ``outside = brain & ~roi``).

    Returns
    -------
    dict
        ``voxels``, ``median_nc``, ``mean_nc``, ``dprime``.
    """
    nc = np.asarray(nc, np.float64)
    brain = np.asarray(brain, bool)
    roi = np.asarray(roi, bool) & brain
    vals = nc[roi]
    return {
        "voxels": int(vals.size),
        "median_nc": float(np.median(vals)) if vals.size else math.nan,
        "mean_nc": float(np.mean(vals)) if vals.size else math.nan,
        "dprime": d_prime(nc, roi, brain & ~roi),
    }


def edge_share(nc: np.ndarray, valid: np.ndarray, limit: float = EDGE_NC) -> float:
    """Share of the edge voxels of ``valid`` (valid minus its 6-neighbour erosion) whose NC
    exceeds ``limit`` (%); NaN for an empty edge."""
    valid = np.asarray(valid, bool)
    edge = valid & ~ndimage.binary_erosion(valid)
    if not edge.any():
        return math.nan
    return float((np.asarray(nc)[edge] > limit).mean())


def fitted_voxels(masks: Iterable[np.ndarray]) -> np.ndarray | None:
    """The voxels in every mask (bool, the masks' shape); None for no masks."""
    valid = None
    for m in masks:
        valid = m if valid is None else valid & m
    return valid


def gains(table: pd.DataFrame) -> np.ndarray:
    """``100 (median_nc / median_nc of the baseline in the same subject and session - 1)``
    per row (%); NaN where the session has no baseline row."""
    base = table[table["variant"] == BASELINE].set_index(["subject", "session"])["median_nc"]
    ref = [
        base.get((s, ss), math.nan)
        for s, ss in zip(table["subject"], table["session"], strict=True)
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (table["median_nc"].to_numpy(float) / np.asarray(ref, float) - 1.0)


def ordered(table: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by subject, session and the canonical variant order
    (:data:`echoprep.kernels.ranking.VARIANTS`); a fresh index."""
    order = {v: i for i, v in enumerate(VARIANTS)}
    table = table.assign(_o=table["variant"].map(order))
    return table.sort_values(["subject", "session", "_o"]).drop(columns="_o").reset_index(drop=True)


__all__ = ["edge_share", "fitted_voxels", "gains", "ordered", "variant_metrics"]
