"""The held-out fidelity of one session's variants, from their files.

Reads each variant's held-out image means (``glm_heldout`` jobs,
:mod:`echoprep.stages.glm.heldout`) and its fit on all runs over the comparison's ROI, and
computes :func:`echoprep.kernels.fidelity_pairs.heldout_pairs`: every variant against every other
variant as the reference, never against itself. The ``heldout_r``, ``heldout_truth``,
``heldout_trial_r``, ``heldout_trial_truth``, ``reference_reliability`` and ``splithalf_r``
columns of the comparison table (:mod:`echoprep.stages.comparison`) are means over each
variant's references; the long table of every pair (with its image-bootstrap replicates) is
the subject's bootstrap table, from which the group step computes every margin under each
reference that is neither of the two variants compared.
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
from echoprep.kernels.fidelity import SplitMeans, image_means, rowwise_correlation
from echoprep.kernels.fidelity_pairs import HeldoutPairs, heldout_pairs
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
    table = pd.read_csv(path, sep="\t", dtype={"label": str, "half": str, "run_labels": str})
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
                image_means(z, labels, images).astype(np.float32),
                images,
            )
        )
    return out


@dataclass(frozen=True)
class SessionFidelity:
    """The held-out measures of one variant of one session (NaN where not computed): each the
    mean over the variant's references (every other variant of the session; never itself)."""

    heldout_r: float
    heldout_truth: float
    trial_r: float
    trial_truth: float
    reliability: float
    splithalf_r: float
    references: tuple[str, ...]


def pair_rows(pairs: HeldoutPairs, subject: str, session: str) -> list[dict[str, Any]]:
    """The long table of every variant against every reference (the subject's bootstrap
    table, :data:`echoprep.io.tables.BOOTSTRAP_COLUMNS`): replicate 0 is the estimate on the
    images as sampled, 1..B the image-bootstrap replicates; a row whose reference is the
    variant itself holds its own halves' agreement (its reliability squared), used only as a
    reference for the other variant of a two-variant comparison."""
    rows = []
    values = np.concatenate([pairs.r[None], pairs.bootstrap])
    trials = np.concatenate([pairs.trial_r[None], pairs.trial_bootstrap])
    for i, v in enumerate(pairs.variants):
        for j, w in enumerate(pairs.variants):
            same = v == w or any(v in g and w in g for g in pairs.same)
            rows.extend(
                {
                    "subject": subject,
                    "session": session,
                    "variant": v,
                    "reference": w,
                    "same_data": same,
                    "replicate": b,
                    "heldout_r": float(values[b, i, j]),
                    "heldout_trial_r": float(trials[b, i, j]),
                }
                for b in range(values.shape[0])
            )
    return rows


def variant_fidelity(pairs: HeldoutPairs, variant: str, splithalf_r: float) -> SessionFidelity:
    """A variant's :class:`SessionFidelity` from the session's :class:`HeldoutPairs`."""
    refs = pairs.references(variant)
    rel = [pairs.reliability[pairs.variants.index(w)] for w in refs]
    return SessionFidelity(
        heldout_r=pairs.score(variant),
        heldout_truth=pairs.score(variant, truth=True),
        trial_r=pairs.score(variant, trial=True),
        trial_truth=pairs.score(variant, trial=True, truth=True),
        reliability=float(np.mean(rel)) if rel else math.nan,
        splithalf_r=splithalf_r,
        references=tuple(refs),
    )


def session_fidelity(
    group: Sequence[Any],
    roi: np.ndarray,
    like: Any,
    *,
    n_boot: int,
    seed: int,
) -> tuple[dict[str, SessionFidelity], list[dict[str, Any]]]:
    """variant -> held-out fidelity of the variants of one session, and the long table of
    every variant against every reference (:func:`pair_rows`).

    Every variant with held-out fits is judged against every OTHER such variant as the
    reference (:func:`echoprep.kernels.fidelity_pairs.heldout_pairs`); with fewer than two such
    variants there is no held-out fidelity.

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
    """
    first = group[0]
    where = f"sub-{first.subject}" + (f" ses-{first.session}" if first.session else "")
    fitted = [e for e in group if e.heldout is not None and e.heldout_volumes is not None]
    if len(fitted) < 2 or not roi.any():
        if fitted:
            log.warning(
                "comparison: %s: no held-out fidelity (%s): every variant is judged against the "
                "others, so at least two variants need held-out fits",
                where,
                "only " + fitted[0].variant + " has held-out fits" if roi.any() else "no ROI voxel",
            )
        return {}, []
    tables = {e.variant: _read_volumes(e.heldout_volumes) for e in fitted}
    ref = fitted[0]
    for e in fitted[1:]:
        cols = ["split", "half", "label"]
        if not tables[e.variant][cols].equals(tables[ref.variant][cols]):
            raise StageInputError(
                f"{e.heldout_volumes}: expected the splits and images of "
                f"{ref.heldout_volumes}. Fix: every variant of a session must be fitted with "
                "the same events and comparison.splits."
            )
    splits = {e.variant: _split_means(e, roi, like, first.nc) for e in fitted}
    try:
        pairs = heldout_pairs(splits, n_boot=n_boot, seed=seed)
    except ValueError as exc:
        log.warning("comparison: %s: no held-out fidelity: %s", where, exc)
        return {}, []
    log.info(
        "comparison: %s: held-out fidelity of %d variants against each other over %d split(s) "
        "and %d images",
        where,
        len(pairs.variants),
        pairs.n_splits,
        pairs.n_images,
    )
    out = {}
    for v, per_split in splits.items():
        own = np.nanmean(np.stack([rowwise_correlation(m.a, m.b) for m in per_split]), axis=0)
        half = float(np.nanmedian(own)) if np.isfinite(own).any() else math.nan
        out[v] = variant_fidelity(pairs, v, half)
    return out, pair_rows(pairs, first.subject, first.session or "n/a")


__all__ = [
    "GRID_ATOL",
    "SessionFidelity",
    "pair_rows",
    "session_fidelity",
    "variant_fidelity",
]
