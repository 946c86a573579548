"""GLM stage inputs: a session's BOLD runs inside the brain mask, and their events.

The voxels fitted are those of the brain mask (a given mask -- in the workflow the session's
analysis mask, :mod:`echoprep.stages.glm.mask` -- or GLMsingle's ``brainthresh`` rule on the
mean image) less any voxel without data in some run: a constant series (e.g. all 0 outside
another tool's mask) is left out with a warning; NaN/Inf follow ``glm.nan_policy``
(docs/glm.md §2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.events import MIN_RESPONSE_S, read_events, too_late
from echoprep.io.images import (
    StageInputError,
    check_same_grid,
    load_image,
    read_array,
    series_tr,
)
from echoprep.kernels.glm.voxels import (
    brainthresh_mask,
    constant_voxels,
    finite_mean,
    finite_sums,
    nonfinite_voxels,
)

log = logging.getLogger(__name__)


def constant_warning(total: int, by_run: Mapping[str, int], what: str) -> str:
    """The warning for voxels left out because their series is constant in some run.

    Parameters
    ----------
    total
        Voxels left out (constant in at least one run).
    by_run
        Run label (or ``variant run``) -> voxels constant in that run (0 entries are skipped).
    what
        What they are left out of (``"fit"``, ``"analysis mask"``).
    """
    runs = "; ".join(f"run {k}: {v}" for k, v in by_run.items() if v)
    return (
        f"leaving {total} voxels out of the {what}: their series is constant (e.g. all 0, "
        f"outside another tool's mask) in some run ({runs}); they have no data there"
    )


def check_nonfinite(n_bad: int, problems: Sequence[str], nan_policy: str) -> None:
    """Brain voxels with NaN/Inf in some run: an error with ``glm.nan_policy: error``, else a
    warning (they are left out). ``problems`` names the runs and their counts."""
    if n_bad and nan_policy == "error":
        raise StageInputError(
            "expected finite BOLD values in every brain voxel; found NaN or Inf in "
            + "; ".join(problems)
            + ". Fix: provide a brain mask that leaves these voxels out, or set "
            "glm.nan_policy: exclude to drop them from the fit."
        )
    if n_bad:
        log.warning("leaving out %d voxels with NaN/Inf: %s", n_bad, "; ".join(problems))


def load_brain_mask(path: str | Path, ref: nib.Nifti1Image, *, ref_path: str | Path) -> np.ndarray:
    """``(X, Y, Z)`` bool brain mask (non-zero) from ``path``, checked to lie on ``ref``'s grid.

    Parameters
    ----------
    path
        The mask.
    ref, ref_path
        A BOLD run of the session and its file (the grid expected).

    Raises
    ------
    StageInputError
        A mask of another shape or affine, naming the file and the fix.
    """
    spatial = ref.shape[:3]
    mimg = load_image(path, "brain mask")
    check_same_grid(
        mimg,
        ref,
        path=path,
        ref_path=ref_path,
        what="brain mask",
        fix="Fix: resample the mask to the functional grid.",
    )
    return np.asarray(mimg.dataobj).reshape(spatial) > 0


def load_session(
    bold_files: Sequence[str | Path],
    *,
    mask_file: str | Path | None = None,
    brainthresh: Sequence[float],
    nan_policy: str,
    run_labels: Sequence[str] | None = None,
) -> tuple[list[np.ndarray], np.ndarray, nib.Nifti1Image, dict[str, Any]]:
    """Read a session's BOLD runs, inside the brain mask, as ``(V, T_r)`` float32 arrays.

    Parameters
    ----------
    bold_files
        One 4D series per run (same grid).
    mask_file
        Brain mask on that grid (non-zero = brain); None: GLMsingle's ``brainthresh`` rule on
        the mean image over all runs.
    brainthresh
        ``(percentile, fraction)`` of that rule (config ``glm.brainthresh``).
    nan_policy
        ``"error"``: a voxel with NaN/Inf in any run (inside the mask) is an error naming the
        run and the voxel count; ``"exclude"``: such voxels are left out of the mask.
    run_labels
        Run labels for the messages.

    Returns
    -------
    data, mask, reference, info
        ``data[r]`` is ``(V, T_r)`` float32 over the ``V`` mask voxels (C order);
        ``mask`` ``(X, Y, Z)`` bool; ``reference`` the first run's image (geometry);
        ``info``: ``mask_source``, ``n_nonfinite_excluded``, ``nonfinite_by_run`` (run label
        -> voxels), ``n_constant_excluded``, ``constant_by_run`` (run label -> voxels),
        ``tr``, ``n_volumes``.

    Notes
    -----
    A voxel whose (finite) series is constant in some run -- typically all 0 outside the mask
    another tool applied to that run, e.g. tedana's adaptive mask -- has no data there: it is
    left out of the fit under either NaN policy, with a warning naming the runs and counts.
    This is legal data, never an error; fitting it would give betas of one run's zeros and
    noise ceilings that mean nothing. The NaN policy applies to NaN/Inf only.

    Raises
    ------
    StageInputError
        Naming the file: not 4D, differing grids or TRs, a mask of another grid, NaNs.
    """
    files = [Path(f) for f in bold_files]
    if not files:
        raise StageInputError("expected at least one BOLD run for the session; found none")
    labels = list(run_labels) if run_labels else [str(i + 1) for i in range(len(files))]
    imgs = [load_image(f, "preprocessed BOLD series (x, y, z, volumes)", ndim=4) for f in files]
    ref = imgs[0]
    trs = []
    for f, img in zip(files, imgs, strict=True):
        check_same_grid(
            img,
            ref,
            path=f,
            ref_path=files[0],
            what="BOLD run",
            fix="Fix: all runs of a session must be resampled to one grid (enable spatial "
            "preprocessing).",
        )
        trs.append(series_tr(f, img))
    if not np.allclose(trs, trs[0], rtol=1e-4):
        raise StageInputError(
            f"{files[0]}: expected one repetition time for all runs of the session; found "
            f"{trs} s. Fix: runs with different TRs cannot share one GLM."
        )
    spatial = ref.shape[:3]
    source = "brainthresh"
    if mask_file is not None:
        mask = load_brain_mask(mask_file, ref, ref_path=files[0])
        source = str(mask_file)
    else:
        # mean over the finite values, so that a voxel with a few NaNs is still judged (and
        # then reported by the NaN check below) rather than silently left out
        total = np.zeros(spatial, np.float64)
        count = np.zeros(spatial, np.int64)
        for img in imgs:
            arr = read_array(img)
            run_total, run_count = finite_sums(arr)
            total += run_total
            count += run_count
            del arr, run_total, run_count
        mask = brainthresh_mask(finite_mean(total, count), brainthresh)
    if not mask.any():
        raise StageInputError(
            f"{mask_file or files[0]}: expected brain voxels to fit; found an empty mask. "
            "Fix: check the brain mask (or the BOLD intensities)."
        )
    data: list[np.ndarray] = []
    bad = np.zeros(int(mask.sum()), bool)
    constant = np.zeros(int(mask.sum()), bool)
    problems = []
    nonfinite_by_run: dict[str, int] = {}
    constant_by_run: dict[str, int] = {}
    for f, img, label in zip(files, imgs, labels, strict=True):
        arr = read_array(img)
        run = np.ascontiguousarray(arr[mask])
        del arr
        nonfinite = nonfinite_voxels(run)
        nonfinite_by_run[label] = int(nonfinite.sum())
        if nonfinite.any():
            problems.append(f"run {label} ({f}): {int(nonfinite.sum())} voxels")
            bad |= nonfinite
        flat = constant_voxels(run) & ~nonfinite
        constant_by_run[label] = int(flat.sum())
        constant |= flat
        data.append(run)
    n_bad = int(bad.sum())
    check_nonfinite(n_bad, problems, nan_policy)
    constant &= ~bad
    n_constant = int(constant.sum())
    if n_constant:
        log.warning(constant_warning(n_constant, constant_by_run, "fit"))
    if n_bad or n_constant:
        keep = ~(bad | constant)
        idx = np.flatnonzero(mask.reshape(-1))
        mask = np.zeros(mask.size, bool)
        mask[idx[keep]] = True
        mask = mask.reshape(spatial)
        data = [np.ascontiguousarray(d[keep]) for d in data]
    info = {
        "mask_source": source,
        "n_nonfinite_excluded": n_bad,
        "nonfinite_by_run": nonfinite_by_run,
        "n_constant_excluded": n_constant,
        "constant_by_run": constant_by_run,
        "tr": float(trs[0]),
        "n_volumes": [int(d.shape[1]) for d in data],
    }
    return data, mask, ref, info


def check_events_span(
    events_files: Sequence[str | Path],
    n_volumes: Sequence[int],
    tr: float,
    run_labels: Sequence[str],
    bold_files: Sequence[str | Path],
) -> None:
    """Log a warning per run with events after the end of its series or less than
    :data:`~echoprep.io.events.MIN_RESPONSE_S` before it (a run stopped before its events ended;
    legal in BIDS), naming the run, the events file, the BOLD file and both
    lengths: the design leaves the trials among them out (:func:`echoprep.io.events.run_trials`),
    and the plan warned of them too."""
    for ev, nvol, label, bold in zip(events_files, n_volumes, run_labels, bold_files, strict=True):
        onsets = read_events(ev)["onset"].to_numpy()
        length = nvol * tr
        late = int(too_late(np.floor(onsets / tr + 0.5), nvol, tr).sum())
        if late:
            log.warning(
                "run %s: %s has %d event(s) after the end of the BOLD series %s or less than %g s "
                "before it (%d volumes x %g s = %g s; the last onset at %g s): the trials among "
                "them are left out of the design. If the events file belongs to another run, "
                "pair each run with its own events.",
                label,
                ev,
                late,
                bold,
                MIN_RESPONSE_S,
                nvol,
                tr,
                length,
                float(onsets.max()),
            )


__all__ = [
    "check_events_span",
    "check_nonfinite",
    "constant_warning",
    "load_brain_mask",
    "load_session",
    "series_tr",
]


@dataclass
class SessionInputs:
    """A session's runs read for a fit (:func:`read_session`).

    Attributes
    ----------
    bold, events
        The runs' BOLD series and events files, in run order.
    labels
        Run labels (the given ones, else 1, 2, ...).
    data, fit_mask, ref, info
        As returned by :func:`load_session`.
    tr
        Sampling interval of the design (s): the given one, else the series'.
    """

    bold: list[Path]
    events: list[Path]
    labels: list[str]
    data: list[np.ndarray]
    fit_mask: np.ndarray
    ref: nib.Nifti1Image
    info: dict[str, Any]
    tr: float


def read_session(
    bold_files: Sequence[str | Path],
    events_files: Sequence[str | Path],
    *,
    mask_file: str | Path | None,
    brainthresh: Sequence[float],
    nan_policy: str,
    run_labels: Sequence[str | None] | None = None,
    tr: float | None = None,
) -> SessionInputs:
    """Check a session's runs against their events and read them for a fit.

    Parameters
    ----------
    bold_files, events_files
        One 4D BOLD series and one BIDS events file per run, same order.
    mask_file, brainthresh, nan_policy
        As for :func:`load_session`.
    run_labels
        BIDS run labels; None (or a None entry): the run's position, 1-based.
    tr
        Sampling interval (s); None: from the series' sidecars or headers.

    Returns
    -------
    SessionInputs

    Raises
    ------
    StageInputError
        Not one events file per run; the refusals of :func:`load_session` (events after the
        end of a run are left out with a warning, :func:`check_events_span`).
    """
    bold = [Path(f) for f in bold_files]
    events = [Path(f) for f in events_files]
    if len(bold) != len(events):
        raise StageInputError(
            f"{bold[0] if bold else '<no BOLD>'}: expected one events file per BOLD run; found "
            f"{len(bold)} runs and {len(events)} events files. Fix: every run needs its "
            "events.tsv."
        )
    labels = [str(r) if r else str(i + 1) for i, r in enumerate(run_labels or [None] * len(bold))]
    data, fit_mask, ref, info = load_session(
        bold,
        mask_file=mask_file,
        brainthresh=brainthresh,
        nan_policy=nan_policy,
        run_labels=labels,
    )
    series_dt = float(tr) if tr is not None else info["tr"]
    check_events_span(events, info["n_volumes"], series_dt, labels, bold)
    return SessionInputs(bold, events, labels, data, fit_mask, ref, info, series_dt)
