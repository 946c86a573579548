"""Runs that spatial preprocessing does not bring onto one grid.

With ``spatial.enabled: false`` every run keeps its own voxel grid, and the rules that put runs
together read them voxel by voxel: a session's GLM fits its runs together, the analysis mask and
the visual ROI are defined once for them, the noise ceiling of a subject pools its sessions.
Runs acquired on different grids (another matrix, or the slices planned anew after the subject
moved between sessions) are legal, and spatial preprocessing resamples them onto one; without
it they are refused when the workflow is planned, naming them and the fixes, instead of a GLM
job that stops after the runs' NORDIC and echo combination.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from echoprep.io.bids import Dataset, Run
from echoprep.io.bids_checks import fmt_list
from echoprep.io.bids_refs import GRID_TOLERANCE_MM
from echoprep.io.paths import run_prefix
from echoprep.plan.context import PlanError


def _same_grid(a: Run, b: Run) -> bool:
    if a.shape != b.shape:
        return False
    if a.affine is None or b.affine is None:
        return True
    return bool(np.allclose(a.affine, b.affine, atol=GRID_TOLERANCE_MM))


def check_native_grids(config: Mapping[str, Any], dataset: Dataset) -> None:
    """Refuse, with spatial preprocessing off, subjects whose runs are not all on one grid.

    Parameters
    ----------
    config
        The validated config (``spatial.enabled``).
    dataset
        The discovered runs, with their grids (``Run.shape``, ``Run.affine``).

    Raises
    ------
    PlanError
        Naming, per subject, the first run's grid and the runs on another, and the fixes.
    """
    if config["spatial"]["enabled"]:
        return
    found = []
    for sub in dataset.subjects():
        runs = dataset.subject_runs(sub)
        other = [r for r in runs if not _same_grid(r, runs[0])]
        if other:
            named = fmt_list((f"{run_prefix(r.entities)} (shape {r.shape})" for r in other), 3)
            found.append(
                f"{len(other)} of the {len(runs)} runs of sub-{sub} on another grid (shape or "
                f"affine) than {run_prefix(runs[0].entities)} (shape {runs[0].shape}): {named}"
            )
    if found:
        raise PlanError(
            "spatial.enabled: false: expected the runs of each subject on one voxel grid (its "
            "sessions' GLMs, masks and noise ceiling read them voxel by voxel); found "
            f"{'; '.join(found)}. Fix: set spatial.enabled: true (every run is resampled onto "
            "one grid), or leave the runs on another grid out with exclude_runs."
        )


__all__ = ["check_native_grids"]
