"""BIDS events files and GLM trials tables: reading them, and single-trial designs.

:func:`read_events` reads a BIDS events file; :func:`read_trials` the trials table the GLM stage
writes beside its betas (row ``i`` = beta volume ``i``), which the noise-ceiling, comparison and
ROI stages read back. :func:`build_session_design` turns a session's events files into
GLMsingle designs: one design matrix per run on the run's volume grid (``T_r x C``, 0/1, a 1
where a trial of condition ``c`` starts), conditions shared by all runs of the session, and the
trial table (chronological: run, then onset) whose row ``i`` is beta ``i`` of the fit. Onsets
that fall between volumes are rounded to the nearest volume; the largest rounding error is
recorded and must stay within a tolerance (default half a TR). With slice-timing correction
and temporal upsampling (e.g. to 1.0 s for LAION-fMRI's 3-s trials) the onsets fall on the grid.
See docs/glm.md §2.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep.io.bids_checks import fmt_list
from echoprep.io.images import StageInputError
from echoprep.io.outputs import TRIALS_NAME

#: Label columns tried in order when none is configured.
DEFAULT_LABEL_COLUMNS = ("stim_name", "trial_type")
#: Least data a modelled trial needs after its onset, s: a trial nearer the run's end than this
#: has too little of its response in the run for a beta (measured on the tiny preset at TR 1.9
#: s: with 0-3.8 s of data after the onset its betas came out 10^2 to 10^8 times the session's
#: usual size, with 5.7 s at most 6 times, with 7.6 s as the others), and is left out.
MIN_RESPONSE_S = 5.0


def too_late(volumes: np.ndarray, n_volumes: int, tr: float) -> np.ndarray:
    """``(N,)`` bool: onsets at these volumes (0-based, ``(N,)``) leave less than
    :data:`MIN_RESPONSE_S` of a run of ``n_volumes`` volumes, ``tr`` s apart, after them."""
    return (n_volumes - 1 - np.asarray(volumes)) * tr < MIN_RESPONSE_S - 1e-9


class EventsFileError(StageInputError):
    """An events file that cannot be read as a BIDS events table; ``expected``, ``found`` and
    ``fix`` are the parts of the message (plan-time discovery lists them with its problems)."""

    def __init__(self, path: Path, expected: str, found: str, fix: str) -> None:
        super().__init__(f"{path}: expected {expected}; found {found}. Fix: {fix}.")
        self.expected, self.found, self.fix = expected, found, fix


@dataclass(frozen=True)
class SessionDesign:
    """Designs and trial bookkeeping of one session.

    Attributes
    ----------
    designs
        One ``(T_r, C)`` float32 0/1 array per run.
    conditions
        ``(C,)`` condition labels (sorted), the columns of every design.
    trials
        One row per trial in chronological order (run order, then onset): ``run`` (position of
        the run in the session, 1-based), ``run_label`` (BIDS run label or ``n/a``), ``onset``
        (s), ``onset_volume`` (0-based), ``label``, ``trial_type``, ``condition`` (column index),
        ``beta_index`` (0-based).
    label_column
        The events column the labels came from.
    max_rounding_error
        Largest ``|onset - onset_volume * TR|`` over all trials, s.
    excluded
        Number of events left out (excluded trial types or missing labels).
    stimulus_duration
        Median duration of the modelled trials, s (NaN without a duration column).
    early
        Trials left out because they start before the first volume (counted in ``excluded``).
    late
        Trials left out because they start after the run's last volume or less than
        :data:`MIN_RESPONSE_S` before it (counted in ``excluded``): a run stopped before its
        events ended.
    """

    designs: list[np.ndarray]
    conditions: list[str]
    trials: pd.DataFrame
    label_column: str
    max_rounding_error: float
    excluded: int
    stimulus_duration: float
    early: int = 0
    late: int = 0


def read_events_columns(path: str | Path) -> dict[str, list[str | None]]:
    """The columns of a BIDS events file as text, ``None`` where a cell is ``n/a``.

    Every value is the file's text (a label ``007`` stays ``007`` in every run, whether or not
    another row of the column is ``n/a``); blank lines are skipped, short rows padded with
    ``None``, repeated header names numbered as pandas does (``name.1``). Plain ``csv`` rather
    than pandas: a plan reads every events file of a subject (repeat counts), about 20 times
    faster this way (docs/architecture.md, "Planning at dataset size").

    Returns
    -------
    dict
        Column name -> one value per row, in file order.

    Raises
    ------
    StageInputError
        Unreadable or empty file, or a row with more fields than the header.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = [row for row in csv.reader(fh, delimiter="\t") if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EventsFileError(
            path,
            "a tab-separated BIDS events file",
            f"an unreadable file ({type(exc).__name__}: {exc})",
            "write it as UTF-8 text with tab separators and a header row",
        ) from exc
    if not rows:
        raise EventsFileError(
            path,
            "a tab-separated BIDS events file with a header row",
            "an empty file",
            "write the header (onset, duration, ...) and one row per event",
        )
    header = _unique_names(rows[0])
    width = len(header)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) > width:
            raise EventsFileError(
                path,
                f"at most {width} tab-separated fields per row (the header's {width} columns)",
                f"{len(row)} on line {line}",
                "one value per column, n/a where there is none",
            )
    body = [row if len(row) == width else row + [""] * (width - len(row)) for row in rows[1:]]
    short = {i for i, row in enumerate(rows[1:]) if len(row) < width}
    columns: list[list[str | None]] = [
        [None if v == "n/a" else v for v in values] for values in zip(*body, strict=True)
    ] or [[] for _ in header]
    for i in short:  # cells a short row does not have are missing, as n/a
        for j in range(len(rows[i + 1]), width):
            columns[j][i] = None
    return dict(zip(header, columns, strict=True))


def _unique_names(names: list[str]) -> list[str]:
    seen: Counter = Counter()
    out = []
    for name in names:
        out.append(f"{name}.{seen[name]}" if seen[name] else name)
        seen[name] += 1
    return out


def seconds_column(
    values: Sequence[str | None], *, required: bool
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """A column of seconds as float64 (NaN where ``n/a`` or empty and not ``required``) and its
    bad cells as ``(line, text)``: not a finite number (``n/a`` too when ``required``)."""
    texts = [(v or "").strip() for v in values]
    try:  # every cell a number (or empty): numpy converts them at once
        out = np.array([t or "nan" for t in texts], dtype=np.float64)
    except ValueError:
        out = np.full(len(texts), np.nan)
        for i, text in enumerate(texts):
            try:
                out[i] = float(text)
            except ValueError:
                pass
    bad_at = ~np.isfinite(out)
    if not required:
        bad_at &= np.array([bool(t) for t in texts], dtype=bool).reshape(-1)
    bad = [
        (int(i) + 2, "n/a" if values[i] is None else str(values[i])) for i in np.flatnonzero(bad_at)
    ]
    if not required:
        out[~np.isfinite(out)] = np.nan
    return out, bad


def bad_seconds_problem(column: str, bad: Sequence[tuple[int, str]]) -> tuple[str, str, str]:
    """``(expected, found, fix)`` for the bad cells of a column of seconds (at most 5 shown)."""
    cells = fmt_list((f"{text!r} on line {line}" for line, text in bad), 5)
    if column == "onset":
        return "numeric onsets in seconds", cells, "give every event an onset in seconds"
    return (
        f"numeric {column} values in seconds",
        cells,
        f"write each {column} in seconds, or n/a",
    )


def _seconds(path: Path, column: str, values: list[str | None], *, required: bool) -> np.ndarray:
    """A column of seconds as float64; ``n/a`` (or an empty cell) is NaN unless ``required``."""
    out, bad = seconds_column(values, required=required)
    if bad:
        raise EventsFileError(path, *bad_seconds_problem(column, bad))
    return out


def read_events(path: str | Path) -> pd.DataFrame:
    """A BIDS events table: ``onset`` (and ``duration``) as float seconds (``duration`` NaN
    where ``n/a``), every other column as text with ``None`` for ``n/a``
    (:func:`read_events_columns`).

    Raises
    ------
    StageInputError
        Unreadable file, no ``onset`` column, onsets that are not numbers, durations that are
        neither numbers nor ``n/a``.
    """
    path = Path(path)
    columns = read_events_columns(path)
    if "onset" not in columns:
        raise StageInputError(
            f"{path}: expected an 'onset' column; found columns {list(columns)}. "
            "Fix: BIDS events files need onset and duration columns."
        )
    table = pd.DataFrame(
        {name: pd.Series(values, dtype=object) for name, values in columns.items()}
    )
    table["onset"] = _seconds(path, "onset", columns["onset"], required=True)
    if "duration" in columns:
        table["duration"] = _seconds(path, "duration", columns["duration"], required=False)
    return table


#: The trials table's columns whose names in the file differ from the stages' names: the file
#: avoids BIDS entity names (``session``, ``run``) as columns, which pybids reads as metadata.
TRIALS_FILE_COLUMNS: dict[str, str] = {"session": "session_label", "run": "run_label"}


def read_trials(
    path: str | Path,
    *,
    required: Collection[str] = (),
    fix: str = f"Fix: pass the {TRIALS_NAME} written with the betas.",
    sort: bool = False,
) -> pd.DataFrame:
    """A trials table written by the GLM stage (``session``, ``run`` and ``label`` as text).

    The file names its session and run columns ``session_label`` and ``run_label`` (a BIDS
    entity name as a column would clash with the file's own entities in pybids, docs/glm.md
    §11); they are returned as ``session`` and ``run``, the names the stages use. Tables
    written before (``session``, ``run``) read the same.

    Parameters
    ----------
    path
        The ``*_desc-SingletrialBetas_trials.tsv``.
    required
        Columns that must be present, by the returned names (e.g.
        ``("beta_index", "label", "run")``).
    fix
        The fix named when a column is missing.
    sort
        Order the rows by ``beta_index`` (stable), so that row ``i`` is beta volume ``i``.

    Raises
    ------
    StageInputError
        A required column is missing.
    """
    text = {"session": str, "run": str, "label": str}
    text.update({file_name: str for file_name in TRIALS_FILE_COLUMNS.values()})
    table = pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)
    table = table.rename(columns={v: k for k, v in TRIALS_FILE_COLUMNS.items()})
    missing = set(required) - set(table.columns)
    if missing:
        raise StageInputError(
            f"{path}: expected a GLMsingle trials table with columns "
            f"{', '.join(sorted(required))}; found {list(table.columns)}. {fix}"
        )
    if sort:
        table = table.sort_values("beta_index", kind="stable").reset_index(drop=True)
    return table


def _label_column(tables: Sequence[pd.DataFrame], files: Sequence[Path], wanted: str | None) -> str:
    if wanted is not None:
        for table, path in zip(tables, files, strict=True):
            if wanted not in table.columns:
                raise StageInputError(
                    f"{path}: expected the condition column {wanted!r} (config "
                    f"glm.label_column); found columns {list(table.columns)}. Fix: set "
                    "glm.label_column to a column that names the stimulus of each trial."
                )
        return wanted
    for name in DEFAULT_LABEL_COLUMNS:
        if all(name in t.columns and t[name].notna().any() for t in tables):
            return name
    raise StageInputError(
        f"{files[0]}: expected a condition column {' or '.join(DEFAULT_LABEL_COLUMNS)} in every "
        f"events file of the session; found columns {list(tables[0].columns)}. Fix: add "
        "stim_name (the stimulus of each trial) or set glm.label_column."
    )


@dataclass(frozen=True)
class RunTrials:
    """The modelled trials of one run on its volume grid (:func:`run_trials`).

    Attributes
    ----------
    rows
        ``(K,)`` row indices (0-based, file order) of the modelled trials in the events table.
    volumes
        ``(K,)`` volume (0-based) each modelled trial starts at.
    excluded
        Events not modelled: blank trial types and events without a label.
    early
        Modelled trials left out because they start before the first volume (negative onsets,
        legal in BIDS: events before the first stored volume).
    late
        Modelled trials left out because they start after the last volume, or less than
        :data:`MIN_RESPONSE_S` before it (legal in BIDS: a run stopped before its events ended,
        or trailing volumes dropped; too little of their response is in the run for a beta).
    max_error
        Largest ``|onset - volume * TR|`` of the modelled trials, s (0 without trials).
    problems
        ``(expected, found, fix)`` of what makes the run unusable: onsets off the grid beyond
        the tolerance, or two trials on one volume.
    """

    rows: np.ndarray
    volumes: np.ndarray
    excluded: int
    early: int
    late: int
    max_error: float
    problems: list[tuple[str, str, str]]


def run_trials(
    onsets: np.ndarray,
    labels: Sequence[str | None],
    trial_types: Sequence[str | None],
    *,
    tr: float,
    n_volumes: int,
    blank_trial_types: Collection[str],
    tolerance: float | None = None,
) -> RunTrials:
    """The trials of one run that a single-trial GLM models, and what keeps it from fitting.

    The one rule for the plan-time check of every events file (:mod:`echoprep.io.bids_events`)
    and the GLM's design (:func:`build_session_design`): events whose label is missing or
    whose ``trial_type`` is a blank type are not modelled; a modelled trial goes to its
    nearest volume (``floor(onset / TR + 0.5)``); one before the first volume, or with less
    than :data:`MIN_RESPONSE_S` of data from its volume to the last, is left out (legal in
    BIDS; the callers warn).

    Parameters
    ----------
    onsets
        ``(N,)`` onsets of every event, s (finite).
    labels, trial_types
        ``(N,)`` each event's label (the condition column) and ``trial_type`` (None: n/a).
    tr
        Sampling interval of the series, s.
    n_volumes
        Volumes of the series the GLM fits.
    blank_trial_types
        ``trial_type`` values not modelled.
    tolerance
        Largest allowed distance (s) of an onset from its volume; None: ``tr / 2``.

    Returns
    -------
    RunTrials
    """
    onsets = np.asarray(onsets, dtype=float)
    tol = tr / 2 if tolerance is None else float(tolerance)
    blanks = set(blank_trial_types)
    modelled = np.array(
        [
            lab is not None and (tt is None or tt not in blanks)
            for lab, tt in zip(labels, trial_types, strict=True)
        ],
        dtype=bool,
    ).reshape(-1)
    problems: list[tuple[str, str, str]] = []
    idx = np.flatnonzero(modelled)
    vol = np.floor(onsets[idx] / tr + 0.5).astype(int)
    early = vol < 0
    late = too_late(vol, n_volumes, tr)
    inside = ~early & ~late
    idx, vol = idx[inside], vol[inside]
    err = np.abs(onsets[idx] - vol * tr)
    if err.size and float(err.max()) > tol + 1e-9:
        w = int(np.argmax(err))
        problems.append(
            (
                f"onsets within {tol:.3g} s of a volume (TR {tr:g} s)",
                f"onset {onsets[idx[w]]:g} s, {err[w]:.3g} s off the grid",
                "put the onsets on the volume grid, or raise glm.onset_tolerance",
            )
        )
    uniq, counts = np.unique(vol, return_counts=True)
    if np.any(counts > 1):
        v = int(uniq[np.argmax(counts > 1)])
        clash = onsets[idx[vol == v]]
        problems.append(
            (
                "at most one trial per volume",
                f"onsets {', '.join(f'{o:g}' for o in clash)} s all starting at volume {v} "
                f"(TR {tr:g} s)",
                "trials this close cannot be separated on this grid; merge the events, or "
                "mark one of them as a blank trial type (glm.blank_trial_types)",
            )
        )
    return RunTrials(
        rows=idx,
        volumes=vol,
        excluded=int((~modelled).sum()),
        early=int(early.sum()),
        late=int(late.sum()),
        max_error=float(err.max()) if err.size else 0.0,
        problems=problems,
    )


def build_session_design(
    events_files: Sequence[str | Path],
    n_volumes: Sequence[int],
    tr: float,
    *,
    label_column: str | None = None,
    exclude_trial_types: Sequence[str],
    onset_tolerance: float | None = None,
    run_labels: Sequence[str | None] | None = None,
) -> SessionDesign:
    """Designs of one session's runs from their events files.

    Parameters
    ----------
    events_files
        One BIDS events file per run, in run order.
    n_volumes
        Volumes of each run's (preprocessed) series.
    tr
        Sampling interval of the series, s (after any temporal upsampling).
    label_column
        Events column naming the condition (stimulus) of each trial; None: ``stim_name``,
        else ``trial_type``.
    exclude_trial_types
        ``trial_type`` values not modelled (config ``glm.blank_trial_types``: blank trials, whose
        baseline comes from the drift model); events without a label are not modelled either.
    onset_tolerance
        Largest allowed distance (s) between an onset and its volume; None: ``tr / 2`` (any
        onset rounds to its nearest volume).
    run_labels
        BIDS run labels for the trial table.

    Returns
    -------
    SessionDesign

    Raises
    ------
    StageInputError
        Naming the file: missing columns, an onset off the grid beyond the tolerance, two
        trials starting on the same volume, or no trial at all in a run (the rules of
        :func:`run_trials`; trials before the first volume or less than
        :data:`MIN_RESPONSE_S` before the last are left out, counted in ``early`` and
        ``late``).
    """
    files = [Path(f) for f in events_files]
    if len(files) != len(n_volumes):
        raise ValueError(f"{len(files)} events files but {len(n_volumes)} runs")
    if tr <= 0:
        raise ValueError(f"TR must be > 0 s; found {tr}")
    tolerance = tr / 2 if onset_tolerance is None else float(onset_tolerance)
    labels_run = list(run_labels) if run_labels is not None else [None] * len(files)
    tables = [read_events(f) for f in files]
    column = _label_column(tables, files, label_column)
    rows = []
    excluded = 0
    early = 0
    late = 0
    max_err = 0.0
    for r, (table, path, nvol) in enumerate(zip(tables, files, n_volumes, strict=True), start=1):
        ttype = (
            table["trial_type"]
            if "trial_type" in table.columns
            else pd.Series([None] * len(table), dtype=object)
        )
        found = run_trials(
            table["onset"].to_numpy(),
            table[column].tolist(),
            ttype.tolist(),
            tr=tr,
            n_volumes=int(nvol),
            blank_trial_types=exclude_trial_types,
            tolerance=tolerance,
        )
        if found.problems:
            expected, what, fix = found.problems[0]
            raise StageInputError(f"{path}: expected {expected}; found {what}. Fix: {fix}.")
        excluded += found.excluded + found.early + found.late
        early += found.early
        late += found.late
        if not found.rows.size:
            raise StageInputError(
                f"{path}: expected at least one trial to model; found none after leaving out "
                f"trial types {list(exclude_trial_types)}, events without {column!r} and "
                f"trials before the first volume or less than {MIN_RESPONSE_S:g} s before the "
                f"last ({int(nvol)} volumes x {tr:g} s). Fix: check the events file or "
                "glm.blank_trial_types, or leave the run out with the config key exclude_runs."
            )
        max_err = max(max_err, found.max_error)
        sub = table.iloc[found.rows]
        vol = found.volumes
        keep = np.zeros(len(table), bool)
        keep[found.rows] = True
        for onset, v, label, tt, dur in zip(
            sub["onset"],
            vol,
            sub[column].astype(str),
            ttype[keep],
            sub["duration"] if "duration" in sub.columns else [np.nan] * len(sub),
            strict=True,
        ):
            rows.append(
                {
                    "run": r,
                    "run_label": labels_run[r - 1] or "n/a",
                    "onset": float(onset),
                    "onset_volume": int(v),
                    "label": label,
                    "trial_type": "n/a" if pd.isna(tt) else str(tt),
                    "duration": float(dur) if pd.notna(dur) else np.nan,
                }
            )
    trials = pd.DataFrame(rows).sort_values(["run", "onset"], kind="stable").reset_index(drop=True)
    conditions = sorted(trials["label"].unique().tolist())
    cond_index = {c: i for i, c in enumerate(conditions)}
    trials["condition"] = trials["label"].map(cond_index).astype(int)
    trials["beta_index"] = np.arange(len(trials))
    designs = []
    for r, nvol in enumerate(n_volumes, start=1):
        d = np.zeros((int(nvol), len(conditions)), np.float32)
        sel = trials[trials["run"] == r]
        d[sel["onset_volume"].to_numpy(), sel["condition"].to_numpy()] = 1.0
        designs.append(d)
    durations = trials["duration"].dropna()
    return SessionDesign(
        designs=designs,
        conditions=conditions,
        trials=trials.drop(columns=["duration"]),
        label_column=column,
        max_rounding_error=max_err,
        excluded=excluded,
        stimulus_duration=float(durations.median()) if len(durations) else float("nan"),
        early=early,
        late=late,
    )


def stimulus_counts(
    events_files: Sequence[str | Path],
    *,
    label_column: str | None,
    blank_trial_types: Sequence[str],
) -> Counter:
    """How often each stimulus is shown over the given events files (the modelled trials:
    blank trial types and events without a label left out, as the GLM design does).

    ``label_column`` and ``blank_trial_types`` are the config's ``glm.label_column`` (None:
    ``stim_name``, else ``trial_type``) and ``glm.blank_trial_types``.

    Raises
    ------
    StageInputError
        Unreadable events files or no label column.
    """
    counts: Counter = Counter()
    blanks = set(blank_trial_types)
    for path in events_files:
        table = read_events_columns(path)
        column = label_column
        if column is None:
            column = next(
                (c for c in DEFAULT_LABEL_COLUMNS if any(v is not None for v in table.get(c, ()))),
                None,
            )
        if column is None or column not in table:
            raise StageInputError(
                f"{path}: expected a condition column "
                f"{label_column or ' or '.join(DEFAULT_LABEL_COLUMNS)}; found columns "
                f"{list(table)}. Fix: add stim_name or set glm.label_column."
            )
        types = table.get("trial_type") or [None] * len(table[column])
        counts.update(
            label
            for label, ttype in zip(table[column], types, strict=True)
            if label is not None and (ttype is None or ttype not in blanks)
        )
    return counts


def mixed_repeat_counts(counts: Mapping[Any, int]) -> list[int]:
    """The distinct repeat counts (>= 2) when there is more than one of them, else ``[]``."""
    distinct = sorted({int(n) for n in counts.values() if n >= 2})
    return distinct if len(distinct) > 1 else []


__all__ = [
    "DEFAULT_LABEL_COLUMNS",
    "MIN_RESPONSE_S",
    "TRIALS_FILE_COLUMNS",
    "EventsFileError",
    "RunTrials",
    "SessionDesign",
    "bad_seconds_problem",
    "build_session_design",
    "mixed_repeat_counts",
    "read_events",
    "read_events_columns",
    "read_trials",
    "run_trials",
    "seconds_column",
    "stimulus_counts",
    "too_late",
]
