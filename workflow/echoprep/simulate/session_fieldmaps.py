"""Several GRE fieldmaps per session at known times, and a B0 field that drifts over the session
(:func:`echoprep.simulate.simulate_dataset` with ``fieldmaps_per_session=N``).

LAION-fMRI acquires up to 4 dual-echo GRE fieldmaps per session between its 12 BOLD runs to
follow the drift of the B0 field; they are numbered ``run-01`` .. ``run-0N`` on their own and
matched to the BOLD runs by acquisition time (:mod:`echoprep.io.bids_fmap_time`). The
simulator writes such a session:

- *Timeline* (:func:`session_clock`): the session starts at :data:`SESSION_START`; fieldmap
  ``i`` (0-based) is acquired just before BOLD run ``floor(i * R / N) + 1`` (``R`` runs;
  LAION's 4 of 12: before runs 1, 4, 7 and 10) and takes :data:`FIELDMAP_S`; a run takes
  ``n_volumes * TR`` and is followed by a pause of :data:`RUN_GAP_S`. Every BOLD, SBRef and
  fieldmap sidecar has ``AcquisitionTime`` (``"HH:MM:SS[.f]"``, the start of the
  acquisition), and the session's ``scans.tsv`` lists the same times as ``acq_time``
  (``"YYYY-MM-DDTHH:MM:SS[.f]"``, session ``k`` on day ``k`` after :data:`SESSION_DATE`).
- *Field drift* (:func:`drift_map`): the static field of the head grows linearly over the
  session, ``f(x, t) = f0(x) + rate * t_min * (1 + 0.5 z(x) + 0.25 y(x))`` with ``t_min`` the
  minutes since the session's start, ``rate`` = :data:`FIELD_DRIFT_HZ_PER_MIN` and ``y, z``
  the grid position scaled to [-1, 1] (a global frequency drift with first-order spatial
  terms, as a shim that warms up gives; a simulation choice, not a measured value). The drift
  is head-fixed like the static field (it moves with the head).
- *Each fieldmap* measures the field at its own time (its ``AcquisitionTime``), with the head
  moved by ``i * FIELDMAP_POSE`` (the first in the motion-free position, the others up to a
  few millimetres and degrees away, so that combining them needs their registration).
- *Each BOLD run* is distorted (and its phase shifted) by the field at the centre of the run
  (its time + ``n_volumes * TR / 2``), constant over the run: the drift within one run (about
  2 Hz over LAION's 5 minutes) is not modelled. The truth holds the field of every volume of
  every run (:func:`echoprep.simulate.truth.run_field_path`, scanner frame) and the
  fieldmaps' times and poses (:func:`fieldmap_truth_path`).

No random number is drawn for the timeline, drift or poses; the fieldmaps' noise comes from
their own streams. Datasets without ``fieldmaps_per_session`` are unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.paths import bids_path, sidecar_path
from echoprep.io.sidecars import write_json
from echoprep.simulate.anatomy import SubjectAnatomy
from echoprep.simulate.fieldmaps import write_gre_fieldmap
from echoprep.simulate.presets import Preset
from echoprep.simulate.signal import RunModel
from echoprep.simulate.truth import truth_root
from echoprep.simulate.writer import write_tsv

#: Drift of the field over a session at the drift map's mean, Hz per minute.
FIELD_DRIFT_HZ_PER_MIN = 0.5
#: Start of a session's first acquisition, seconds since midnight (09:00:00).
SESSION_START = 9 * 3600.0
#: Date of session 1 in ``scans.tsv`` (session k: k - 1 days later).
SESSION_DATE = dt.date(2024, 3, 4)
#: Time a GRE fieldmap takes, and the pause after each BOLD run, s.
FIELDMAP_S = 60.0
RUN_GAP_S = 60.0
#: Head position of fieldmap i (0-based) relative to the motion-free head: ``i`` times this
#: ``(trans_x, trans_y, trans_z [mm], rot_x, rot_y, rot_z [rad])``.
FIELDMAP_POSE = np.array([0.4, -0.6, 0.3, np.radians(0.5), np.radians(-0.4), np.radians(0.3)])


def clock_text(seconds: float) -> str:
    """``"HH:MM:SS[.ffffff]"`` of seconds since midnight (BIDS ``AcquisitionTime``)."""
    whole = int(seconds)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return text + f"{seconds - whole:.6f}"[1:].rstrip("0").rstrip(".")


@dataclass(frozen=True)
class SessionClock:
    """When a session's runs and fieldmaps were acquired.

    Attributes
    ----------
    date
        The session's date (``scans.tsv``).
    run_starts
        Acquisition time of each BOLD run, seconds since midnight, by run.
    fieldmap_times
        Acquisition time of each fieldmap, seconds since midnight, ascending.
    run_seconds
        Duration of a run, ``n_volumes * TR``, s.
    """

    date: dt.date
    run_starts: tuple[float, ...]
    fieldmap_times: tuple[float, ...]
    run_seconds: float

    def run_centre(self, run: int) -> float:
        """Centre of run ``run`` (1-based), seconds since midnight."""
        return self.run_starts[run - 1] + self.run_seconds / 2

    def minutes(self, seconds: float) -> float:
        """Minutes since the session's start."""
        return (seconds - SESSION_START) / 60.0

    def clock(self, seconds: float) -> str:
        """``"HH:MM:SS[.f]"`` (BIDS ``AcquisitionTime``)."""
        return clock_text(seconds)

    def stamp(self, seconds: float) -> str:
        """``"YYYY-MM-DDTHH:MM:SS[.f]"`` (BIDS ``acq_time``)."""
        return f"{self.date.isoformat()}T{self.clock(seconds)}"


def check_fieldmaps_per_session(
    value: int | None, runs: int, fieldmap: bool | None, kind: str
) -> int:
    """``fieldmaps_per_session`` checked against the other options: 0 for None.

    Raises
    ------
    ValueError
        Not an integer in 1..runs, with ``fieldmap=False`` or another kind than phasediff.
    """
    if value is None:
        return 0
    n = int(value)
    if n != value or not 1 <= n <= runs:
        raise ValueError(
            f"--fieldmaps-per-session (fieldmaps_per_session=): expected an integer from 1 to "
            f"the runs per session ({runs}); found {value!r}"
        )
    if fieldmap is False or kind != "phasediff":
        raise ValueError(
            "--fieldmaps-per-session (fieldmaps_per_session=): writes GRE (phasediff) "
            f"fieldmaps; found fieldmap={fieldmap}, fieldmap_kind={kind!r}. Fix: leave "
            "fieldmap and fieldmap_kind at their defaults"
        )
    return n


def session_clock(p: Preset, n_runs: int, n_fieldmaps: int, session: int) -> SessionClock:
    """The timeline of one session (module docstring)."""
    before = [i * n_runs // n_fieldmaps for i in range(n_fieldmaps)]
    run_seconds = p.n_volumes * p.tr
    t = SESSION_START
    runs: list[float] = []
    fieldmaps: list[float] = []
    for r in range(n_runs):
        for b in before:
            if b == r:
                fieldmaps.append(round(t, 6))
                t += FIELDMAP_S
        runs.append(round(t, 6))
        t += run_seconds + RUN_GAP_S
    date = SESSION_DATE + dt.timedelta(days=session - 1)
    return SessionClock(date, tuple(runs), tuple(fieldmaps), run_seconds)


def drift_map(anat: SubjectAnatomy) -> np.ndarray:
    """Drift of the field, Hz per minute, on the grid: ``FIELD_DRIFT_HZ_PER_MIN * (1 + 0.5 z +
    0.25 y)`` with ``y, z`` the voxel indices scaled to [-1, 1]; (nx, ny, nz) float32."""
    nx, ny, nz = anat.grid.shape
    y = np.linspace(-1, 1, ny)[None, :, None]
    z = np.linspace(-1, 1, nz)[None, None, :]
    pattern = np.broadcast_to(1 + 0.5 * z + 0.25 * y, (nx, ny, nz))
    return (FIELD_DRIFT_HZ_PER_MIN * pattern).astype(np.float32)


def field_at(anat: SubjectAnatomy, clock: SessionClock, seconds: float) -> np.ndarray:
    """The head's field at a time of the session, Hz, (nx, ny, nz) float32."""
    return (anat.b0_hz + clock.minutes(seconds) * drift_map(anat)).astype(np.float32)


def drifted_run(model: RunModel, anat: SubjectAnatomy, clock: SessionClock, run: int) -> RunModel:
    """A run's model with the field at the run's centre (its distortion and phase)."""
    field = field_at(anat, clock, clock.run_centre(run))
    return dataclasses.replace(model, field=field, b0=field.ravel()[model.head_idx])


def fieldmap_truth_path(root: Path, sub: str, ses: str) -> Path:
    """Truth TSV of a session's fieldmaps: run label, time, minutes, head pose."""
    ents = {"sub": sub, "ses": ses, "desc": "truth"}
    return bids_path(truth_root(root), ents, "fieldmaps", ".tsv", "fmap")


def write_session_fieldmaps(
    root: Path,
    p: Preset,
    ents: dict[str, str],
    anat: SubjectAnatomy,
    seed: int,
    key: tuple[int, int],
    clock: SessionClock,
    bold_files: list[tuple[Path, float]],
    points: np.ndarray | None = None,
) -> None:
    """A session's GRE fieldmaps (``run-01`` .. ``run-0N`` of their own, each the field at its
    time in its head position), its ``scans.tsv`` (every fieldmap and ``bold_files``:
    ``(path, acquisition time s)``) and the fieldmaps' truth.

    Parameters
    ----------
    ents
        ``{"sub": ..., "ses": ...}``.
    key
        ``(subject, session)`` numbers (the fieldmaps' noise streams).
    points
        Gradient nonlinearity (:func:`echoprep.simulate.fieldmaps.posed_maps`), or None.
    """
    sub, ses = key
    rows: list[tuple[Path, float]] = list(bold_files)
    truth = []
    for i, when in enumerate(clock.fieldmap_times):
        label = f"{i + 1:02d}"
        pose = i * FIELDMAP_POSE + 0.0  # (no negative zeros in the truth)
        extra: dict[str, Any] = {"AcquisitionTime": clock.clock(when)}
        write_gre_fieldmap(
            root,
            p,
            ents | {"run": label},
            anat,
            seed,
            (sub, ses, i + 1),
            False,
            field=field_at(anat, clock, when),
            pose=pose,
            sidecar=extra,
            points=points,
        )
        for kind in ("magnitude1", "magnitude2", "phasediff"):
            rows.append((bids_path(root, ents | {"run": label}, kind, ".nii.gz", "fmap"), when))
        truth.append((label, clock.clock(when), round(clock.minutes(when), 6), *pose))
    session_dir = bids_path(root, ents, "scans", ".tsv", None).parent
    write_tsv(
        bids_path(root, ents, "scans", ".tsv", None),
        ["filename", "acq_time"],
        sorted((path.relative_to(session_dir).as_posix(), clock.stamp(t)) for path, t in rows),
    )
    path = fieldmap_truth_path(root, ents["sub"], ents["ses"])
    pose_columns = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    write_tsv(path, ["run", "acq_time", "minutes", *pose_columns], truth)
    write_json(
        sidecar_path(path),
        {
            "Description": "The session's GRE fieldmaps (fmap/*_run-<run>_phasediff): "
            "acquisition time, minutes since the session's start, and the rigid head pose "
            "(motion-free head point x -> c + R (x - c) + d, as the motion TSVs) in which each "
            "measured the field f0 + drift x minutes (echoprep.simulate.session_fieldmaps)",
            "DriftHzPerMinute": FIELD_DRIFT_HZ_PER_MIN,
            "DriftMap": "1 + 0.5 z + 0.25 y (grid indices scaled to [-1, 1])",
            "trans_x": {"Units": "mm"},
            "rot_x": {"Units": "rad"},
        },
    )


__all__ = [
    "FIELDMAP_POSE",
    "FIELD_DRIFT_HZ_PER_MIN",
    "SessionClock",
    "check_fieldmaps_per_session",
    "clock_text",
    "drift_map",
    "drifted_run",
    "field_at",
    "fieldmap_truth_path",
    "session_clock",
    "write_session_fieldmaps",
]
