"""The held-out fidelity of one session's variants, from their files.

Reads each variant's held-out image means (``glm_heldout`` jobs,
:mod:`echoprep.stages.glm.heldout`) and its fit on all runs over the comparison's ROI, and
computes :func:`echoprep.kernels.fidelity.heldout_fidelity` against the reference variant's:
the ``heldout_r``, ``heldout_truth``, ``heldout_trial_r``, ``heldout_trial_truth``,
``reference_reliability`` and ``splithalf_r`` columns of the comparison table
(:mod:`echoprep.stages.comparison`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep.io.events import read_trials
from echoprep.io.images import StageInputError, check_same_grid, load_image
from echoprep.kernels.fidelity import (
    SplitMeans,
    heldout_fidelity,
    image_means,
    rowwise_correlation,
)
from echoprep.kernels.noiseceiling import zscore_within

log = logging.getLogger(__name__)

#: Grid tolerance (mm) between the maps and masks of one subject.
GRID_ATOL = 1e-4


def _roi_volumes(
    path: Path, voxels: np.ndarray, like: Any, like_path: Path, what: str
) -> np.ndarray:
    """``(V, K)`` float32 values of the ``voxels`` (3D bool mask) from a 4D image."""
    img = load_image(path, f"{what} (x, y, z, volumes)", ndim=4)
    check_same_grid(
        img,
        like,
        path=path,
        ref_path=like_path,
        what=what,
        fix="Fix: rerun the GLM of this variant.",
        atol=GRID_ATOL,
    )
    data = np.asanyarray(img.dataobj)
    return np.asarray(data[voxels], np.float32)


def _read_trials(path: Path) -> pd.DataFrame:
    return read_trials(path, required=("run", "label"), fix="Fix: rerun the GLM stage.")


def _read_volumes(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", dtype={"label": str, "half": str, "runs": str})
    missing = [c for c in ("split", "half", "label") if c not in table]
    if missing:
        raise StageInputError(
            f"{path}: expected the columns split, half, label; found {list(table.columns)}. "
            "Fix: rerun the glm_heldout job."
        )
    return table


def _split_means(e: Any, roi: np.ndarray, like: Any, like_path: Path) -> list[SplitMeans]:
    """The entry's :class:`SplitMeans` over the ROI: its held-out image means per split and
    half, and the same images' means of its fit on all runs (betas z-scored per run)."""
    assert e.heldout is not None and e.heldout_volumes is not None
    volumes = _read_volumes(e.heldout_volumes)
    means = _roi_volumes(e.heldout, roi, like, like_path, "held-out image means")
    if means.shape[1] != len(volumes):
        raise StageInputError(
            f"{e.heldout}: expected one volume per row of {e.heldout_volumes} ({len(volumes)}); "
            f"found {means.shape[1]}. Fix: rerun the glm_heldout job of {e.variant}."
        )
    trials = _read_trials(e.trials) if e.trials else None
    betas = _roi_volumes(e.betas, roi, like, like_path, "single-trial betas") if e.betas else None
    if trials is None or betas is None or betas.shape[1] != len(trials):
        raise StageInputError(
            f"{e.betas}: expected one volume per trial of {e.trials}; found "
            f"{None if betas is None else betas.shape[1]}. Fix: rerun the GLM of {e.variant}."
        )
    z = zscore_within(betas, trials["run"].astype(str).to_numpy())
    labels = trials["label"].astype(str).to_numpy()
    out = []
    for _, split in volumes.groupby("split", sort=True):
        a = split["half"].to_numpy() == "A"
        images = split["label"].to_numpy()[a]
        if not np.array_equal(images, split["label"].to_numpy()[~a]):
            raise StageInputError(
                f"{e.heldout_volumes}: expected the same images in the same order for halves A "
                "and B of each split. Fix: rerun the glm_heldout job."
            )
        cols = split.index.to_numpy()
        out.append(
            SplitMeans(
                means[:, cols[a]],
                means[:, cols[~a]],
                image_means(z, labels, images),
                images,
            )
        )
    return out


@dataclass(frozen=True)
class SessionFidelity:
    """The held-out measures of one variant of one session (NaN where not computed) and its
    bootstrap replicates of ``heldout_r``."""

    heldout_r: float
    heldout_truth: float
    trial_r: float
    trial_truth: float
    reliability: float
    splithalf_r: float
    bootstrap: np.ndarray
    trial_bootstrap: np.ndarray


def session_fidelity(
    group: Sequence[Any],
    roi: np.ndarray,
    like: Any,
    *,
    n_boot: int,
    seed: int,
    reference: str | None,
) -> dict[str, SessionFidelity]:
    """variant -> held-out fidelity of the variants of one session.

    Parameters
    ----------
    group
        The session's :class:`echoprep.stages.comparison.Entry` objects (one per variant).
    roi
        ``(X, Y, Z)`` bool: the ROI voxels fitted by every variant.
    like
        The first noise-ceiling map of the group (``group[0].nc``): the grid every input must
        share.
    n_boot, seed
        Image-bootstrap replicates and their seed.
    reference
        The reference variant (its entry's held-out fits); None: no held-out fidelity.
    """
    where = f"sub-{group[0].subject}" + (f" ses-{group[0].session}" if group[0].session else "")
    ref_entry = next((e for e in group if e.variant == reference and e.heldout is not None), None)
    if ref_entry is None or not roi.any():
        if any(e.heldout is not None for e in group) or reference is not None:
            log.warning(
                "comparison: %s: no held-out fidelity (the reference variant %s has no "
                "held-out fits in this session)",
                where,
                reference,
            )
        return {}
    ref_splits = _split_means(ref_entry, roi, like, group[0].nc)
    ref_volumes = _read_volumes(ref_entry.heldout_volumes)  # type: ignore[arg-type]
    out = {}
    for e in group:
        if e.heldout is None or e.heldout_volumes is None:
            continue
        volumes = _read_volumes(e.heldout_volumes)
        if not volumes[["split", "half", "label"]].equals(ref_volumes[["split", "half", "label"]]):
            raise StageInputError(
                f"{e.heldout_volumes}: expected the splits and images of the reference's "
                f"({ref_entry.heldout_volumes}). Fix: every variant of a session must be fitted "
                "with the same events and comparison.splits."
            )
        splits = ref_splits if e is ref_entry else _split_means(e, roi, like, group[0].nc)
        try:
            res = heldout_fidelity(splits, ref_splits, n_boot=n_boot, seed=seed)
        except ValueError as exc:
            log.warning("comparison: %s: no held-out fidelity for %s: %s", where, e.variant, exc)
            continue
        log.info(
            "comparison: %s, %s: held-out fidelity over %d split(s) and %d images",
            where,
            e.variant,
            res.n_splits,
            res.n_images,
        )
        own = np.nanmean(np.stack([rowwise_correlation(m.a, m.b) for m in splits]), axis=0)
        out[e.variant] = SessionFidelity(
            heldout_r=res.median,
            heldout_truth=res.truth_scale,
            trial_r=res.trial_median,
            trial_truth=res.trial_truth_scale,
            reliability=res.reliability,
            splithalf_r=float(np.nanmedian(own)) if np.isfinite(own).any() else math.nan,
            bootstrap=res.bootstrap,
            trial_bootstrap=res.trial_bootstrap,
        )
    return out


__all__ = ["GRID_ATOL", "SessionFidelity", "session_fidelity"]
