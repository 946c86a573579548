"""The fidelity of one session's variants to the responses planted into its echoes, from their
files.

Reads the session's planted design (:mod:`echoprep.stages.planted.design`), each variant's
published betas and planted betas (its frozen fit on what its series contain of the planted
responses, :mod:`echoprep.stages.planted.glm`) and the reference fit's planted type-B betas,
over the comparison's ROI, and computes :func:`echoprep.kernels.planted_fidelity.session_fidelity`:
``planted_r`` (repeat averages), ``planted_trial_r`` (single trials), both estimates of the
correlation with the true image responses, with their image-bootstrap replicates (the same
resampled images for every variant), the per-variant median gain and the binned
planted-against-recovered curve of the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.events import read_trials
from echoprep.io.images import StageInputError, check_same_grid, load_image
from echoprep.kernels.fidelity import image_means
from echoprep.kernels.planted import read_presentations
from echoprep.kernels.planted_fidelity import (
    SMOOTHING_MM,
    PlantedTruth,
    Smoother,
    reference_gain,
    session_fidelity,
)
from echoprep.stages.comparison.planted_design import read_design

#: Columns of the planted replicate table and of the transfer table.
PLANTED_COLUMNS = ("subject", "session", "variant", "replicate", "planted_r", "planted_trial_r")
TRANSFER_COLUMNS = ("subject", "session", "variant", "bin", "planted", "recovered")
_GRID_ATOL = 1e-4


@dataclass
class SessionPlanted:
    """The planted measures of one session's variants.

    Attributes
    ----------
    by_variant
        variant -> ``planted_r``, ``planted_trial_r``, ``planted_gain`` (estimates).
    source
        Where the planted responses came from (the design's ``source``: ``other_sessions``,
        ``other_runs`` or ``session``); None where nothing was planted.
    replicates
        Rows of the planted replicate table (:data:`PLANTED_COLUMNS`).
    transfer
        Rows of the transfer table (:data:`TRANSFER_COLUMNS`).
    """

    by_variant: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str | None = None
    replicates: list[dict[str, Any]] = field(default_factory=list)
    transfer: list[dict[str, Any]] = field(default_factory=list)


def _volumes(
    path: Path, rows: tuple[np.ndarray, ...], like: Any, like_path: Path, what: str
) -> np.ndarray:
    img = load_image(path, f"{what} (x, y, z, trials)", ndim=4)
    check_same_grid(
        img,
        like,
        path=path,
        ref_path=like_path,
        what=what,
        fix="Fix: rerun the GLM and planted rules of this session.",
        atol=_GRID_ATOL,
    )
    return np.asarray(np.asanyarray(img.dataobj)[rows], np.float64)


def session_planted(
    group: Sequence[Any],
    roi: np.ndarray,
    like: Any,
    *,
    subject: str,
    session: str,
    n_boot: int,
    seed: int,
    smoothing_mm: float = SMOOTHING_MM,
) -> SessionPlanted:
    """The planted measures of one session (module docstring).

    Parameters
    ----------
    group
        The session's comparison entries (:class:`echoprep.stages.comparison.Entry`); every
        one needs ``planted_design``, ``planted``, ``betas`` and ``trials``, and one the
        reference's ``planted_typeb``. Otherwise the result is empty (the session has no
        planted measures).
    roi
        ``(x, y, z)`` bool: the comparison's voxels (ROI fitted by every variant).
    like
        An image on the session's grid (messages and checks).
    """
    out = SessionPlanted()
    if not group or any(
        e.planted_design is None or e.planted is None or e.betas is None or e.trials is None
        for e in group
    ):
        return out
    typeb = [e for e in group if e.planted_typeb is not None]
    design = read_design(group[0].planted_design)
    shape = tuple(int(s) for s in design["shape"])
    if shape != roi.shape:
        raise StageInputError(
            f"{group[0].planted_design}: expected the session's grid {roi.shape}; found {shape}. "
            "Fix: rerun the planted_design rule."
        )
    voxels = np.asarray(design["voxels"], np.int64)
    keep = roi[tuple(voxels.T)]
    if not keep.any() or len(design["images"]) == 0:
        return out  # nothing planted here (too few repeated images): no planted measures
    ijk = voxels[keep]
    rows = tuple(ijk.T)
    planted = np.asarray(design["planted"], np.float64)[keep]
    truth = np.asarray(design["truth"], np.float64)[keep]
    factor = float(design["factor"])
    source = str(design["source"])
    out.source = source
    first = group[0]
    trials = read_trials(first.trials, required=("run", "label"), fix="Fix: rerun the GLM stage.")
    labels = trials["label"].astype(str).to_numpy()
    runs = trials["run"].astype(str).to_numpy()
    variants: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for e in group:
        other = read_trials(e.trials, required=("label",), fix="Fix: rerun the GLM stage.")
        if not np.array_equal(other["label"].astype(str).to_numpy(), labels):
            raise StageInputError(
                f"{e.trials}: expected the trials of {first.trials} (every variant of a session "
                "fits the same trials); found others. Fix: rerun the GLM rules of the session."
            )
        betas = _volumes(e.betas, rows, like, Path(first.nc), "single-trial betas")
        recovered = _volumes(e.planted, rows, like, Path(first.nc), "planted betas")
        variants[e.variant] = (betas, recovered)
    gain = math.nan
    if typeb:
        recovered_b = _volumes(typeb[0].planted_typeb, rows, like, Path(first.nc), "planted betas")
        # the reference's image means at the presentations the variants are read at (every
        # planted image has its first presentation there)
        images = np.asarray(design["images"]).astype(str)
        read = read_presentations(labels, images, source)
        means = image_means(recovered_b[:, read], labels[read], images)
        gain = reference_gain(means / factor, planted, truth)
    sizes = np.sqrt((np.asarray(design["affine"])[:3, :3] ** 2).sum(axis=0))
    sigma = [smoothing_mm / float(s) if smoothing_mm > 0 else 0.0 for s in sizes]
    session_truth = PlantedTruth(
        design["images"], planted, truth, factor, Smoother(ijk, shape, sigma), gain, source
    )
    fid = session_fidelity(variants, labels, runs, session_truth, n_boot, seed)
    for v, f in fid.items():
        finite = np.isfinite(f.gain)
        out.by_variant[v] = {
            "planted_r": float(f.r[0]),
            "planted_trial_r": float(f.trial_r[0]),
            "planted_gain": float(np.median(f.gain[finite])) if finite.any() else math.nan,
        }
        for b in range(f.r.size):
            out.replicates.append(
                {
                    "subject": subject,
                    "session": session,
                    "variant": v,
                    "replicate": b,
                    "planted_r": float(f.r[b]),
                    "planted_trial_r": float(f.trial_r[b]),
                }
            )
        for k, (x, y) in enumerate(f.binned):
            out.transfer.append(
                {
                    "subject": subject,
                    "session": session,
                    "variant": v,
                    "bin": k,
                    "planted": float(x),
                    "recovered": float(y),
                }
            )
    return out


__all__ = ["PLANTED_COLUMNS", "TRANSFER_COLUMNS", "SessionPlanted", "session_planted"]
