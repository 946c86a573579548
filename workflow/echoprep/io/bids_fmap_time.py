"""Fieldmaps matched to a BOLD run by acquisition time (rule 2 of :mod:`echoprep.io.bids_fmap`).

LAION-fMRI acquires up to 4 dual-echo GRE fieldmaps per session between its 12 BOLD runs, to
follow the drift of the B0 field; they are numbered ``run-01`` .. ``run-04`` on their own and
name no BOLD run in ``IntendedFor``. A run that no ``IntendedFor`` names is therefore matched by
time when its session has two or more GRE/Hz fieldmap acquisitions (``phasediff`` or
``fieldmap``) and every one of them and the run have an acquisition time:

- ``AcquisitionTime`` of the sidecar (BIDS: ``"HH:MM:SS[.ffffff]"``), else
- ``acq_time`` of the file's row in the session's ``scans.tsv`` (BIDS:
  ``"YYYY-MM-DDTHH:MM:SS[.ffffff]"``, column ``filename`` relative to the session folder; read
  once per session, cached with the sidecars by :meth:`echoprep.io.bids_index.BidsIndex.table`).

The run's time is its first echo's magnitude file's; a fieldmap's its ``phasediff`` (or
``fieldmap``) image's. The run is placed at its centre, ``time + n_volumes * TR / 2``, and
gets (``spatial.fieldmap_time``):

- ``interpolate`` (default): the two fieldmaps around the centre, weighted linearly in time
  (``w = (c - t_a) / (t_b - t_a)`` for the later one), or the nearest one when the centre is
  before the first or after the last fieldmap (no extrapolation);
- ``nearest``: the single fieldmap nearest in time.

The session's earliest fieldmap is the registration target of all of them (the spatial stage
registers each one's magnitude to it and combines the maps in its space,
:mod:`echoprep.stages.spatial.fieldmaps`). A run without a time whose session's fieldmaps have
one, or a session where only some fieldmaps have one, falls back to rule 3 with a note the
plan's summary line shows; a malformed time is a problem (file, expected, found, fix). See
docs/distortion.md, "Several fieldmaps per session".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoprep.io.bids_checks import BidsFile, ProblemLog, sidecar_of
from echoprep.io.bids_run_checks import RunScan

#: ``spatial.fieldmap_time`` values.
INTERPOLATE = "interpolate"
NEAREST = "nearest"
FIELDMAP_TIME_CHOICES = (INTERPOLATE, NEAREST)
#: The fieldmap kinds matched by time (reversed phase-encoding pairs are not).
TIMED_SUFFIXES = ("phasediff", "fieldmap")
#: Notes of a run that time could not serve (shown by the plan's summary line).
NO_RUN_TIME = "no acquisition time for the run"
NO_FIELDMAP_TIME = "no acquisition time for every fieldmap of the session"

_CLOCK = re.compile(r"^(\d{2}):(\d{2}):(\d{2}(?:\.\d{1,6})?)$")
_FIX = (
    "write the time as BIDS does ({form}, as dcm2niix writes it), remove the value, or set "
    "spatial.fieldmap: false to run without distortion correction"
)


def parse_clock(text: object) -> float | None:
    """Seconds since midnight of a BIDS time ``"HH:MM:SS[.ffffff]"``, or None when malformed."""
    match = _CLOCK.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    hours, minutes, seconds = int(match[1]), int(match[2]), float(match[3])
    if hours > 23 or minutes > 59 or seconds >= 60:
        return None
    return hours * 3600 + minutes * 60 + seconds


def parse_datetime(text: object) -> tuple[int, float] | None:
    """``(day, seconds since midnight)`` of a BIDS date-time ``"YYYY-MM-DDTHH:MM:SS[.ffffff]"``
    (a trailing ``Z`` allowed; ``day``: the date's proleptic ordinal), or None when malformed."""
    if not isinstance(text, str) or "T" not in text:
        return None
    day, _, clock = text.strip().removesuffix("Z").partition("T")
    seconds = parse_clock(clock)
    try:
        date = dt.date.fromisoformat(day) if len(day) == 10 else None
    except ValueError:
        date = None
    if date is None or seconds is None:
        return None
    return date.toordinal(), seconds


def clock_text(seconds: float) -> str:
    """``"HH:MM:SS[.fff]"`` of a time in seconds (since midnight, or of a session clock that
    counts days: the time of day is shown)."""
    s = round(float(seconds) % 86400, 3)
    whole = int(s)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    frac = f"{s - whole:.3f}"[1:].rstrip("0").rstrip(".")
    return text + frac


def time_weights(centre: float, times: Sequence[float], choice: str) -> list[tuple[int, float]]:
    """The fieldmaps a run gets by time and their weights.

    Parameters
    ----------
    centre
        The run's centre, s (the fieldmaps' clock).
    times
        Acquisition times of the session's fieldmaps, s, ascending.
    choice
        ``"interpolate"``: the two fieldmaps around ``centre``, linear in time, or the nearest
        one outside them; ``"nearest"``: the nearest one (the earlier one on a tie).

    Returns
    -------
    list of (int, float)
        ``(index into times, weight)``, weights > 0 (rounded to 6 decimals) summing to 1,
        by index.
    """
    if not times:
        raise ValueError("time_weights: no fieldmap times")
    if choice not in FIELDMAP_TIME_CHOICES:
        raise ValueError(f"time_weights: choice must be one of {FIELDMAP_TIME_CHOICES}")
    if choice == NEAREST or centre <= times[0] or centre >= times[-1]:
        best = min(range(len(times)), key=lambda i: (abs(times[i] - centre), i))
        return [(best, 1.0)]
    later = next(i for i, t in enumerate(times) if t > centre)
    earlier = later - 1
    w = round((centre - times[earlier]) / (times[later] - times[earlier]), 6)
    return [(i, wi) for i, wi in ((earlier, 1.0 - w), (later, w)) if wi > 0]


@dataclass(frozen=True)
class TimeMatch:
    """The fieldmaps a run gets by time.

    Attributes
    ----------
    rule
        ``"acquisition time (interpolate)"`` or ``"acquisition time (nearest)"``.
    used
        ``(fieldmap image, weight, time s)`` of each fieldmap the run uses, by time.
    target, target_time
        The session's earliest fieldmap (the registration target) and its time, s.
    centre
        The run's centre, s (the fieldmaps' clock).
    """

    rule: str
    used: tuple[tuple[BidsFile, float, float], ...]
    target: BidsFile
    target_time: float
    centre: float


class FieldmapTimes:
    """Acquisition times of a dataset's fieldmaps and runs, each session's read once.

    Parameters
    ----------
    metadata
        Sidecar metadata of a file (BIDS inheritance applied).
    table
        Reader of a tab-separated table (:meth:`echoprep.io.bids_index.BidsIndex.table`).
    scans
        The selected ``scans.tsv`` files.
    choice
        ``spatial.fieldmap_time``.
    """

    def __init__(
        self,
        metadata: Callable[[Path], Mapping[str, Any]],
        table: Callable[[Path], tuple[bool, Any]],
        scans: Sequence[BidsFile],
        choice: str = INTERPOLATE,
    ) -> None:
        if choice not in FIELDMAP_TIME_CHOICES:
            raise ValueError(
                f"spatial.fieldmap_time: expected one of {', '.join(FIELDMAP_TIME_CHOICES)}; "
                f"found {choice!r}"
            )
        self.metadata = metadata
        self.table = table
        self.choice = choice
        self._scans = {(f.entities["sub"], f.ent("ses")): f.path for f in scans}
        self._rows: dict[tuple[str, str | None], dict[str, str]] = {}
        self._sessions: dict[tuple[Any, ...], list[tuple[BidsFile, Any]]] = {}

    def _session_rows(self, log: ProblemLog, key: tuple[str, str | None]) -> dict[str, str]:
        """``filename -> acq_time`` of a session's ``scans.tsv`` (empty without one)."""
        if key in self._rows:
            return self._rows[key]
        rows: dict[str, str] = {}
        path = self._scans.get(key)
        if path is not None:
            ok, content = self.table(path)
            columns, cells = content if ok else ([], [])
            if not ok or "filename" not in columns:
                log.add(
                    path,
                    "a tab-separated scans.tsv with a filename column (and acq_time)",
                    content if not ok else "columns " + ", ".join(columns),
                    "write the session's scans.tsv as BIDS does, or remove it",
                )
            elif "acq_time" in columns:
                name, when = columns.index("filename"), columns.index("acq_time")
                for row in cells:
                    if len(row) > max(name, when):
                        rows[row[name].strip()] = row[when].strip()
        self._rows[key] = rows
        return rows

    def stamp(self, log: ProblemLog, path: Path, key: tuple[str, str | None]) -> Any:
        """``(day or None, seconds since midnight)`` of a file, None without a time; a malformed
        time is logged (and gives None)."""
        value = self.metadata(path).get("AcquisitionTime")
        if value is not None and value != "n/a":
            seconds = parse_clock(value)
            if seconds is None:
                log.add(
                    sidecar_of(path),
                    'AcquisitionTime as "HH:MM:SS[.ffffff]" (BIDS), e.g. "09:41:27.5"',
                    f"AcquisitionTime = {value!r}",
                    _FIX.format(form='"HH:MM:SS[.ffffff]"'),
                )
                return None
            return None, seconds
        scans = self._scans.get(key)
        if scans is None:
            return None
        rel = path.relative_to(scans.parent).as_posix() if path.is_relative_to(scans.parent) else ""
        value = self._session_rows(log, key).get(rel)
        if value is None or value in ("", "n/a"):
            return None
        parsed = parse_datetime(value)
        if parsed is None:
            log.add(
                scans,
                f'acq_time of {rel} as "YYYY-MM-DDTHH:MM:SS[.ffffff]" (BIDS), e.g. '
                '"2024-03-05T09:41:27.5"',
                f"acq_time = {value!r}",
                _FIX.format(form='"YYYY-MM-DDTHH:MM:SS[.ffffff]"'),
            )
        return parsed

    def _session(
        self, log: ProblemLog, key: tuple[str, str | None], fieldmaps: Sequence[BidsFile]
    ) -> list[tuple[BidsFile, Any]]:
        # per session and set of fieldmaps (a run's IntendedFor may name some of them)
        cached = (key, tuple(f.path for f in fieldmaps))
        if cached not in self._sessions:
            self._sessions[cached] = [(f, self.stamp(log, f.path, key)) for f in fieldmaps]
        return self._sessions[cached]

    def match(
        self, log: ProblemLog, scan: RunScan, fieldmaps: Sequence[BidsFile]
    ) -> TimeMatch | str | None:
        """The fieldmaps of a run by time (:class:`TimeMatch`); a note (:data:`NO_RUN_TIME`,
        :data:`NO_FIELDMAP_TIME`) when time could serve the session but not this run; None
        when it does not apply (fewer than two GRE/Hz fieldmap acquisitions, no fieldmap
        time at all, or a run whose volumes or TR are unknown: problems already logged).

        Parameters
        ----------
        fieldmaps
            The GRE/Hz fieldmap images (``phasediff``, ``fieldmap``) of the run's session.
        """
        timed = [f for f in fieldmaps if f.suffix in TIMED_SUFFIXES]
        if len(timed) < 2 or not scan.mags:
            return None
        key = (scan.sub, scan.ses)
        stamps = self._session(log, key, timed)
        if all(s is None for _, s in stamps):
            return None
        if any(s is None for _, s in stamps):
            return NO_FIELDMAP_TIME
        run = self.stamp(log, scan.mags[min(scan.mags)], key)
        header = scan.ref_header
        if run is None:
            return NO_RUN_TIME
        if header is None or header.shape is None or len(header.shape) < 4:
            return None
        if scan.repetition_time is None:
            return None
        every = [s for _, s in stamps] + [run]
        by_day = all(day is not None for day, _ in every)

        def seconds(stamp: Any) -> float:
            day, clock = stamp
            return day * 86400.0 + clock if by_day else clock

        order = sorted(((seconds(s), f.path.name, f) for f, s in stamps), key=lambda x: x[:2])
        times = [t for t, _, _ in order]
        centre = seconds(run) + int(header.shape[3]) * float(scan.repetition_time) / 2
        weights = time_weights(centre, times, self.choice)
        return TimeMatch(
            rule=f"acquisition time ({self.choice})",
            used=tuple((order[i][2], w, times[i]) for i, w in weights),
            target=order[0][2],
            target_time=times[0],
            centre=centre,
        )


__all__ = [
    "FIELDMAP_TIME_CHOICES",
    "INTERPOLATE",
    "NEAREST",
    "NO_FIELDMAP_TIME",
    "NO_RUN_TIME",
    "TIMED_SUFFIXES",
    "FieldmapTimes",
    "TimeMatch",
    "clock_text",
    "parse_clock",
    "parse_datetime",
    "time_weights",
]
