"""Design of the GLMsingle engine: validation, single-trial bookkeeping, design matrices and the
polynomial nuisance basis.

A design is a list of ``R`` matrices ``T_r x C`` of 0/1 (a 1 at ``(t, c)``: a trial of condition
``c`` starts at volume ``t``). Every onset becomes one trial; trials are numbered
chronologically, by run and then by volume, and every single-trial output uses that order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Minimum data after the last onset of a run before a warning (s).
MIN_END_BUFFER_S = 8.0


class ShortEndWarning(UserWarning):
    """Runs with less than :data:`MIN_END_BUFFER_S` of data after their last onset.

    ``runs`` holds their 0-based positions in the runs given to the fit and ``seconds`` the
    data after each one's last onset (s); :meth:`text` names them by position, or by label for
    a caller that knows the runs' labels."""

    def __init__(self, runs: list[int], seconds: list[float]) -> None:
        self.runs = runs
        self.seconds = seconds
        super().__init__(self.text())

    def text(self, labels: Sequence[str] | None = None) -> str:
        """The warning, each run named ``run-<label>`` where ``labels`` (one per run given to
        the fit) are known, else by its 1-based position."""
        names = (
            [f"run-{labels[i]}" for i in self.runs]
            if labels
            else [f"run {i + 1} of the fit" for i in self.runs]
        )
        named = ", ".join(f"{n} ({s:g} s)" for n, s in zip(names, self.seconds, strict=True))
        return (
            f"{named}: less than {MIN_END_BUFFER_S:g} s of data after the run's last onset; "
            "the responses of the last trials are cut off"
        )


@dataclass(frozen=True)
class TrialDesign:
    """Single-trial bookkeeping of a validated design.

    Attributes
    ----------
    run_lengths
        ``T_r`` per run (volumes).
    n_conditions
        ``C``.
    stimorder
        ``(N,)`` int64, 0-based condition of each trial (chronological).
    trialrun
        ``(N,)`` int64, 0-based run of each trial.
    trialonset
        ``(N,)`` int64, onset volume (0-based, within its run) of each trial.
    runslices
        Per run, the slice of trial columns belonging to it (``validcolumns``).
    condcounts
        ``(C,)`` int64 trials per condition.
    condinruns
        ``(C,)`` int64 number of runs in which each condition occurs.
    endbuffers
        ``(R,)`` float64, seconds from the last onset of each run to the run's last volume.
    numtrialrun
        ``(R,)`` int64 trials per run.
    """

    run_lengths: tuple[int, ...]
    n_conditions: int
    stimorder: np.ndarray
    trialrun: np.ndarray
    trialonset: np.ndarray
    runslices: tuple[slice, ...]
    condcounts: np.ndarray
    condinruns: np.ndarray
    endbuffers: np.ndarray
    numtrialrun: np.ndarray

    @property
    def n_runs(self) -> int:
        return len(self.run_lengths)

    @property
    def n_trials(self) -> int:
        return int(self.stimorder.size)

    def any_repeats_across_runs(self) -> bool:
        """Whether at least one condition occurs in more than one run."""
        return bool(np.any(self.condinruns > 1))

    def as_dict(self) -> dict[str, np.ndarray]:
        """The ``designinfo`` fields (numpy arrays)."""
        return {
            "stimorder": self.stimorder.copy(),
            "trialrun": self.trialrun.copy(),
            "trialonset": self.trialonset.copy(),
            "condcounts": self.condcounts.copy(),
            "condinruns": self.condinruns.copy(),
            "endbuffers": self.endbuffers.copy(),
            "numtrialrun": self.numtrialrun.copy(),
            "runlengths": np.asarray(self.run_lengths, dtype=np.int64),
        }


def _dense(m: object) -> np.ndarray:
    if hasattr(m, "toarray"):  # scipy.sparse
        m = m.toarray()  # type: ignore[union-attr]
    return np.asarray(m)


def as_run_list(design: object) -> list[np.ndarray]:
    """Design as a list of dense 2-D float64 arrays (a single array is one run).

    Raises
    ------
    ValueError
        Not a 2-D matrix per run, no runs, differing column counts, values other than 0/1, a run
        without trials, or two conditions starting on the same volume.
    """
    if isinstance(design, np.ndarray) or hasattr(design, "toarray"):
        runs = [design]
    elif isinstance(design, Sequence) and not isinstance(design, str):
        runs = list(design)
    else:
        raise ValueError(
            f"design must be a list of T x C matrices (one per run) or one matrix; got "
            f"{type(design).__name__}"
        )
    if not runs:
        raise ValueError("design is empty: expected one T x C matrix per run")
    out = []
    for r, m in enumerate(runs):
        a = _dense(m)
        if a.ndim != 2:
            raise ValueError(
                f"design run {r} has shape {a.shape}; expected a 2-D matrix volumes x conditions "
                "(one 1 at each trial onset)"
            )
        if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
            raise ValueError(f"design run {r} is not numeric (dtype {a.dtype})")
        a = a.astype(np.float64)
        bad = ~np.isin(a, (0.0, 1.0))
        if bad.any():
            vals = np.unique(a[bad])[:5]
            raise ValueError(
                f"design run {r} contains values other than 0 and 1 (found {vals.tolist()} in "
                f"{int(bad.sum())} entries); code each trial onset as 1 and everything else as 0"
            )
        if not a.any():
            raise ValueError(
                f"design run {r} has no trials (all zeros); every run needs at least one onset "
                "(drop runs without trials from both design and data)"
            )
        per_volume = a.sum(axis=1)
        if (per_volume > 1).any():
            vols = np.flatnonzero(per_volume > 1)
            raise ValueError(
                f"design run {r}: more than one condition starts on the same volume "
                f"(volumes {vols[:10].tolist()}{' ...' if vols.size > 10 else ''}); one onset per "
                "volume is supported: merge the conditions or move one onset"
            )
        out.append(a)
    ncols = {a.shape[1] for a in out}
    if len(ncols) > 1:
        cols = [a.shape[1] for a in out]
        raise ValueError(
            f"design runs have different numbers of columns (conditions) {cols}; every run must "
            "have the same C columns (a condition may have an empty column in a run)"
        )
    return out


def trial_design(runs: Sequence[np.ndarray], tr: float) -> TrialDesign:
    """Single-trial bookkeeping of validated design runs (see :func:`as_run_list`).

    Parameters
    ----------
    runs
        ``R`` arrays ``T_r x C`` of 0/1.
    tr
        Sampling interval (s), for ``endbuffers``.
    """
    n_cond = runs[0].shape[1]
    stim, trun, tons = [], [], []
    for r, a in enumerate(runs):
        t, c = np.nonzero(a)  # row-major: by volume
        stim.append(c)
        trun.append(np.full(t.size, r))
        tons.append(t)
    stimorder = np.concatenate(stim).astype(np.int64)
    trialrun = np.concatenate(trun).astype(np.int64)
    trialonset = np.concatenate(tons).astype(np.int64)
    numtrialrun = np.array([s.size for s in stim], dtype=np.int64)
    edges = np.concatenate([[0], np.cumsum(numtrialrun)])
    runslices = tuple(slice(int(edges[r]), int(edges[r + 1])) for r in range(len(runs)))
    condcounts = np.bincount(stimorder, minlength=n_cond).astype(np.int64)
    present = np.zeros((len(runs), n_cond), dtype=bool)
    present[trialrun, stimorder] = True
    condinruns = present.sum(axis=0).astype(np.int64)
    endbuffers = np.array(
        [(a.shape[0] - 1 - tons[r].max()) * float(tr) for r, a in enumerate(runs)]
    )
    return TrialDesign(
        run_lengths=tuple(int(a.shape[0]) for a in runs),
        n_conditions=int(n_cond),
        stimorder=stimorder,
        trialrun=trialrun,
        trialonset=trialonset,
        runslices=runslices,
        condcounts=condcounts,
        condinruns=condinruns,
        endbuffers=endbuffers,
        numtrialrun=numtrialrun,
    )


def convolved_trials(onsets: np.ndarray, hrf: np.ndarray, n_volumes: int) -> np.ndarray:
    """Single-trial design of one run convolved with an HRF, truncated to the run.

    Parameters
    ----------
    onsets
        ``(n,)`` onset volumes (0-based) of the run's trials.
    hrf
        ``(m,)`` HRF sampled at TR from the onset.
    n_volumes
        ``T_r``.

    Returns
    -------
    numpy.ndarray
        ``(T_r, n)`` float64; column j is ``hrf`` starting at volume ``onsets[j]``.
    """
    x = np.zeros((n_volumes, onsets.size))
    cols = np.arange(onsets.size)
    for k, hk in enumerate(np.asarray(hrf, dtype=np.float64)):
        rows = onsets + k
        ok = rows < n_volumes
        if not ok.any():
            break
        x[rows[ok], cols[ok]] = hk
    return x


def default_maxpolydeg(n_volumes: int, tr: float) -> int:
    """Default polynomial degree of a run: half its length in minutes, rounded half up.

    Examples: 150 volumes at 1.9 s (4.75 min) give 2; 7.9 min give 4.
    """
    return math.floor(n_volumes * float(tr) / 60.0 / 2.0 + 0.5)


def polynomial_basis(n_volumes: int, maxdeg: int) -> np.ndarray:
    """Orthonormal polynomial drift basis of one run.

    Degrees ``0..maxdeg`` evaluated on ``linspace(-1, 1, n_volumes)``; each column is
    orthogonalised against the previous ones and scaled to unit length (Gram-Schmidt; the
    first column is the constant ``1 / sqrt(n_volumes)``).

    Returns
    -------
    numpy.ndarray
        ``(n_volumes, maxdeg + 1)`` float64 with orthonormal columns.
    """
    x = np.linspace(-1.0, 1.0, n_volumes)
    cols: list[np.ndarray] = []
    for d in range(int(maxdeg) + 1):
        v = x**d
        for _ in range(2):  # re-orthogonalise for accuracy
            for q in cols:
                v = v - q * (q @ v)
        nrm = np.linalg.norm(v)
        if nrm <= 1e-10 * math.sqrt(n_volumes):
            raise ValueError(
                f"maxpolydeg {maxdeg} is too high for a run of {n_volumes} volumes (degree {d} "
                "is not independent of the lower ones); use a smaller maxpolydeg"
            )
        cols.append(v / nrm)
    return np.stack(cols, axis=1)


def orthonormal_extension(
    basis: np.ndarray, columns: np.ndarray, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal directions that ``columns`` add to ``basis``, in column order.

    Each column is orthogonalised against ``basis`` and the directions kept so far (twice, for
    accuracy); it adds a direction when its remaining norm exceeds ``tol`` times its norm.

    Parameters
    ----------
    basis
        ``(T, k)`` orthonormal columns (may be ``k = 0``).
    columns
        ``(T, m)`` regressors to add.

    Returns
    -------
    q : numpy.ndarray
        ``(T, m')`` new orthonormal directions (``m' <= m``), orthogonal to ``basis``.
    count : numpy.ndarray
        ``(m + 1,)`` int: ``count[j]`` = directions contributed by the first ``j`` columns.
    """
    cur = [basis[:, i] for i in range(basis.shape[1])]
    new: list[np.ndarray] = []
    count = [0]
    for j in range(columns.shape[1]):
        v = np.asarray(columns[:, j], dtype=np.float64)
        nrm0 = np.linalg.norm(v)
        for _ in range(2):
            for q in cur:
                v = v - q * (q @ v)
        nrm = np.linalg.norm(v)
        if nrm0 > 0 and nrm > tol * nrm0:
            q = v / nrm
            cur.append(q)
            new.append(q)
        count.append(len(new))
    q = np.stack(new, axis=1) if new else np.zeros((basis.shape[0], 0))
    return q, np.asarray(count, dtype=np.int64)
