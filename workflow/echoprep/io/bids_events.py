"""Plan-time checks of the events files' content (for :func:`echoprep.io.bids.discover`).

The GLM of a session runs after the whole per-run chain (hours per LAION-fMRI session), so what
would stop it is found when the workflow is planned, in the same problem list as every other
input problem: unreadable or ragged files, onsets that are not numbers, onsets off the volume
grid or two trials on one volume (the rules of :func:`echoprep.io.events.run_trials`, shared
with the GLM's design), a session without a single trial to model, and the condition column,
chosen once for the dataset (docs/your-data.md). Legal but unusual events are warnings: trials
before the first volume (negative onsets) or too close to the run's end for their response (a
run stopped before its events ended; ``MIN_RESPONSE_S``), both left out of the design, and runs
without a trial to model (preprocessed, left out of their session's GLM).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from echoprep.io.bids_checks import ProblemLog, fmt_list, fmt_seconds
from echoprep.io.bids_run_checks import RunScan
from echoprep.io.events import (
    DEFAULT_LABEL_COLUMNS,
    MIN_RESPONSE_S,
    bad_seconds_problem,
    run_trials,
    seconds_column,
)


@dataclass(frozen=True)
class EventsRules:
    """What the GLM will do with the events (config ``glm`` and ``nordic``).

    Attributes
    ----------
    label_column
        ``glm.label_column``; None: ``stim_name`` when every run has it, else ``trial_type``.
    blank_trial_types
        ``glm.blank_trial_types``: trial types not modelled.
    onset_tolerance
        ``glm.onset_tolerance`` (s); None: half a TR.
    dropped_volumes
        Trailing volumes no GLM series keeps (``nordic.noise_volumes``).
    series_tr
        Sampling interval (s) of the series the GLM fits when slice timing resamples them in
        time (``spatial.tr_out``); None: each run's RepetitionTime.
    """

    label_column: str | None = None
    blank_trial_types: tuple[str, ...] = ("blank",)
    onset_tolerance: float | None = None
    dropped_volumes: int = 0
    series_tr: float | None = None

    def grid(self, n_volumes: int, repetition_time: float) -> tuple[int, float]:
        """Volumes and sampling interval (s) of the series a run's GLM fits: the trailing
        dropped volumes left out, resampled in time to :attr:`series_tr` (the slice-timing
        stage's ``floor((T - 1) TR / tr_out) + 1`` volumes) when that is set."""
        n = n_volumes - self.dropped_volumes
        if self.series_tr is None or n < 1:
            return n, repetition_time
        return math.floor((n - 1) * repetition_time / self.series_tr + 1e-9) + 1, self.series_tr


def read_events_content(log: ProblemLog, scan: RunScan) -> None:
    """The onsets of ``scan.events`` (whose columns :func:`check_events` read) into
    ``scan.event_onsets``; onsets or durations that are not numbers are problems (and the
    file's columns are then dropped from the later checks)."""
    columns = scan.event_columns
    if scan.events is None or columns is None:
        return
    onsets, bad = seconds_column(columns["onset"], required=True)
    if bad:
        log.add(scan.events, *bad_seconds_problem("onset", bad))
    _, bad_durations = seconds_column(columns.get("duration", []), required=False)
    if bad_durations:
        log.add(scan.events, *bad_seconds_problem("duration", bad_durations))
    if bad or bad_durations:
        scan.event_columns = None
        return
    scan.event_onsets = onsets


def _trials(scan: RunScan, blanks: Sequence[str]) -> list[int]:
    """Rows of the events that are not of a blank trial type (the candidate trials)."""
    columns = scan.event_columns or {}
    types = columns.get("trial_type") or [None] * len(scan.event_onsets)
    return [i for i, t in enumerate(types) if t is None or t not in blanks]


def _has_values(scan: RunScan, column: str, rows: Sequence[int]) -> bool:
    values = (scan.event_columns or {}).get(column)
    return values is not None and any(values[i] is not None for i in rows)


def choose_label_column(
    log: ProblemLog, scans: Sequence[RunScan], rules: EventsRules, warnings: list[str]
) -> str | None:
    """The events column that names each trial's condition, one for the whole dataset.

    ``rules.label_column`` (``glm.label_column``) must be a column of every events file. Without it:
    ``stim_name`` when every run has stim_name values, else ``trial_type`` when every run has
    trial types (a warning: conditions are then trial types, e.g. new/old); when some runs have
    stim_name values and others do not, every run without them is a problem (one design per
    dataset, never a silent switch of a session's conditions to trial types). Runs without
    events other than blank trial types have no say.
    """
    wanted = rules.label_column
    runs = [s for s in scans if s.event_columns is not None]
    if not runs:
        return wanted
    if wanted is not None:
        lacking = [s for s in runs if wanted not in (s.event_columns or {})]
        for scan in lacking:
            assert scan.events is not None and scan.event_columns is not None
            log.add(
                scan.events,
                f"the condition column {wanted!r} (config glm.label_column) in every events file",
                f"columns {fmt_list(repr(c) for c in scan.event_columns)}",
                f"add {wanted} to this file, or set glm.label_column to a column every run has",
            )
        return None if lacking else wanted
    rows = {id(s): _trials(s, rules.blank_trial_types) for s in runs}
    runs = [s for s in runs if rows[id(s)]]
    if not runs:
        return DEFAULT_LABEL_COLUMNS[0]
    having = {c: [s for s in runs if _has_values(s, c, rows[id(s)])] for c in DEFAULT_LABEL_COLUMNS}
    # the first column any run has is the dataset's; every run must have it
    common = next((c for c in DEFAULT_LABEL_COLUMNS if having[c]), None)
    if common is None:
        for scan in runs:
            assert scan.events is not None and scan.event_columns is not None
            log.add(
                scan.events,
                f"a condition column {' or '.join(DEFAULT_LABEL_COLUMNS)} naming each trial's "
                "stimulus",
                f"columns {fmt_list(repr(c) for c in scan.event_columns)}, none with values",
                "add stim_name (the stimulus of each trial), or name the column that holds it "
                "with --config 'glm={label_column: <column>}'",
            )
        return None
    if len(having[common]) == len(runs):
        if common != DEFAULT_LABEL_COLUMNS[0]:
            warnings.append(
                f"events: no run has {DEFAULT_LABEL_COLUMNS[0]} values; trial conditions come "
                f"from {common} in all {len(runs)} runs (set glm.label_column to choose "
                "another column)"
            )
        return common
    with_common = {id(s) for s in having[common]}
    others = [c for c in DEFAULT_LABEL_COLUMNS if len(having[c]) == len(runs)]
    alternative = (
        f", or model every run by {others[0]} with --config 'glm={{label_column: {others[0]}}}'"
        if others
        else ""
    )
    for scan in runs:
        if id(scan) in with_common:
            continue
        assert scan.events is not None and scan.event_columns is not None
        found = (
            f"only n/a in its {common} column"
            if common in scan.event_columns
            else f"columns {fmt_list(repr(c) for c in scan.event_columns)}"
        )
        log.add(
            scan.events,
            f"{common} values naming each trial's condition, as in {len(having[common])} of the "
            f"{len(runs)} runs (one condition column for the whole dataset)",
            found,
            f"add the {common} values to this file{alternative}",
        )
    return None


def check_trials(
    log: ProblemLog,
    scans: Sequence[RunScan],
    rules: EventsRules,
    column: str | None,
    warnings: list[str],
) -> None:
    """Check every run's events against its length and grid as the GLM will use them; set
    ``scan.n_trials`` (modelled trials). A session without any trial to model is a problem."""
    for scan in scans:
        if scan.event_columns is None or scan.event_onsets is None:
            continue
        header = scan.ref_header
        tr = scan.repetition_time
        if tr is None or header is None or header.shape is None or len(header.shape) < 4:
            continue
        assert scan.events is not None
        n_vol, tr = rules.grid(int(header.shape[3]), tr)
        if n_vol < 1:
            continue
        columns = scan.event_columns
        onsets = scan.event_onsets
        n = len(onsets)
        if column is None:
            continue
        found = run_trials(
            onsets,
            columns.get(column) or [None] * n,
            columns.get("trial_type") or [None] * n,
            tr=tr,
            n_volumes=n_vol,
            blank_trial_types=rules.blank_trial_types,
            tolerance=rules.onset_tolerance,
        )
        for expected, what, fix in found.problems:
            log.add(scan.events, expected, what, fix)
        if found.problems:
            continue
        scan.n_trials = int(found.rows.size)
        name = log.rel(scan.events)
        if found.early:
            warnings.append(
                f"{name}: {found.early} trial(s) start before the first volume (negative onsets, "
                "allowed by BIDS); the GLM leaves them out"
            )
        if found.late:
            dropped = (
                f", less nordic.noise_volumes = {rules.dropped_volumes} trailing volumes"
                if rules.dropped_volumes
                else ""
            ) + (", resampled in time to spatial.tr_out" if rules.series_tr else "")
            warnings.append(
                f"{name}: {found.late} trial(s) start after the last volume of {scan.title} "
                f"or less than {MIN_RESPONSE_S:g} s before it ({n_vol} volumes x "
                f"{fmt_seconds(tr)} s{dropped}; the last at {(n_vol - 1) * tr:g} s): too little "
                "of their response is in the run (a run stopped before its events ended?); the "
                "GLM leaves them out. If this events file belongs to another run, pair each run "
                f"with its own events, or leave the run out with {scan.exclude}"
            )
        if not found.rows.size:
            blanks = fmt_list(rules.blank_trial_types) or "none"
            why = (
                "no events"
                if not n
                else f"every event is a blank trial type ({blanks}), has no {column} or starts "
                f"before the first volume or less than {MIN_RESPONSE_S:g} s before the last"
            )
            warnings.append(
                f"{name}: no trial to model ({why}); {scan.title} is preprocessed but left out "
                "of its session's GLM"
            )
    sessions: dict[tuple[str, str | None], list[RunScan]] = defaultdict(list)
    for scan in scans:
        sessions[(scan.sub, scan.ses)].append(scan)
    for (sub, ses), runs in sessions.items():
        counted = [s.n_trials for s in runs if s.n_trials is not None]
        if counted and len(counted) == len(runs) and not any(counted):
            where = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
            folder = f"sub-{sub}/" + (f"ses-{ses}/" if ses else "") + "func/"
            log.add(
                folder,
                f"at least one trial to model in the runs of {where}",
                f"none in its {len(runs)} run(s): every event is a blank trial type "
                f"({fmt_list(rules.blank_trial_types) or 'none'}), has no {column} or starts "
                "before the first volume",
                "check glm.blank_trial_types and glm.label_column, or leave the session out "
                f"with --config 'exclude_runs=[{where}]'",
            )


__all__ = ["EventsRules", "check_trials", "choose_label_column", "read_events_content"]
