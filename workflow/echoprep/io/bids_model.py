"""The discovered dataset: :class:`Run` (one multi-echo BOLD run and its facts),
:class:`EchoFiles` and :class:`Dataset`, as :func:`echoprep.io.bids.discover` returns them
(and re-exports them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from echoprep.io.bids_checks import fmt_list, run_title, strip_label
from echoprep.io.bids_fmap import Fieldmap


@dataclass(frozen=True)
class EchoFiles:
    """The files of one echo of one run.

    Attributes
    ----------
    echo
        1-based echo index as in the file name.
    echo_time
        Echo time in seconds, from the sidecar.
    mag
        Magnitude image (``part-mag`` or part-less).
    phase
        Phase image, ``None`` for magnitude-only data.
    """

    echo: int
    echo_time: float
    mag: Path
    phase: Path | None = None


@dataclass(frozen=True)
class Run:
    """One multi-echo BOLD run.

    Labels are as written in the file names (``"01"``); ``session``/``run`` are ``None`` when
    the dataset has no such level. ``echoes`` are sorted by echo time. ``events`` is ``None``
    only when discovery ran with ``require_events=False`` and the file is absent. ``fieldmap``
    is the run's fieldmap (:mod:`echoprep.io.bids_fmap`) or None; ``fieldmap_note`` why it was
    not matched by acquisition time though its session's fieldmaps are timed, or None;
    ``pe_direction`` (BIDS ``PhaseEncodingDirection``) and ``total_readout_time`` (s) come from
    the BOLD sidecars. ``slice_timing`` (s) is in the order of the slice index along
    ``slice_axis`` (0, 1, 2: BIDS ``SliceEncodingDirection`` i, j, k; a ``-`` direction's list
    reversed).
    ``n_trials`` counts the trials a GLM models (None without events); a run with 0 is
    preprocessed but left out of its session's GLM. ``sbref`` is the single-band reference of
    the spatial stage's reference echo on the run's grid (:mod:`echoprep.io.bids_refs`), or None.
    ``acq`` holds the run's acquisition entities (``acq``, ``ce``, ``rec``, ``dir``, as in its
    file names): runs of one task that differ in them are runs of their own, and every
    derivative of the run carries them in its name. ``shape`` and ``affine`` (4×4, mm) are the
    reference echo's voxel grid, from its header.
    """

    subject: str
    session: str | None
    task: str
    run: str | None
    echoes: tuple[EchoFiles, ...]
    events: Path | None
    repetition_time: float
    n_volumes: int
    shape: tuple[int, int, int]
    slice_timing: tuple[float, ...] | None = None
    slice_axis: int = 2
    fieldmap: Fieldmap | None = None
    pe_direction: str | None = None
    total_readout_time: float | None = None
    n_trials: int | None = None
    fieldmap_note: str | None = None
    sbref: Path | None = None
    acq: tuple[tuple[str, str], ...] = ()
    affine: tuple[tuple[float, ...], ...] | None = None

    @property
    def entities(self) -> dict[str, str]:
        """``{"sub": ..., "ses": ..., "task": ..., ["acq": ...,] "run": ...}`` without ``None``
        values."""
        ents = {"sub": self.subject, "ses": self.session, "task": self.task, **dict(self.acq)}
        ents["run"] = self.run
        return {k: v for k, v in ents.items() if v is not None}

    @property
    def label(self) -> str | None:
        """The run's label in the session's tables: its BIDS run label (``"01"``), with its
        acquisition entities when it has any (``"acq-mb4_run-01"``); None without either."""
        if not self.acq:
            return self.run
        parts = [*self.acq, *([("run", self.run)] if self.run is not None else [])]
        return "_".join(f"{k}-{v}" for k, v in parts)

    @property
    def echo_times(self) -> tuple[float, ...]:
        """Echo times in seconds, ascending."""
        return tuple(e.echo_time for e in self.echoes)

    @property
    def has_phase(self) -> bool:
        """Whether every echo has a phase image."""
        return bool(self.echoes) and all(e.phase is not None for e in self.echoes)


def label_order(label: str | None) -> tuple[str | int, ...]:
    """The sort key of a label, its numbers compared as numbers (``run-2`` before ``run-10``,
    ``ses-9`` before ``ses-10``: BIDS run indices need no zero padding, and session labels
    often have none); zero-padded labels keep their text order. ``None`` sorts first."""
    parts = re.split(r"(\d+)", label or "")
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def run_sort_key(run: Run) -> tuple[object, ...]:
    """Runs in (subject, session, run, acquisition entities) order, labels by
    :func:`label_order`."""
    return (
        label_order(run.subject),
        (run.session is not None, label_order(run.session)),
        label_order(run.run),
        run.acq,
    )


@dataclass(frozen=True)
class Dataset:
    """The runs and anatomy selected from a BIDS dataset.

    Attributes
    ----------
    root
        Dataset folder (absolute).
    runs
        Sorted by (subject, session, run, acquisition entities); labels by
        :func:`label_order`.
    t1w
        Subject → T1w image (:func:`echoprep.io.bids_anat.find_t1w`: ``anatomy.t1w``'s
        choice among several, else the first, preferring ``sub-X/anat``).
    t2w
        Subject → T2w image, found the same way (only when asked for: ``registration_target``).
    warnings
        Legal but unusual input (e.g. a T1w field of view smaller than a whole head), one line
        each; :func:`discover` logs them once, the stages that meet them record them.
    label_column
        The events column naming each trial's condition, one for the dataset
        (:func:`echoprep.io.bids_events.choose_label_column`); None without events.
    """

    root: Path
    runs: tuple[Run, ...]
    t1w: dict[str, Path] = field(default_factory=dict)
    t2w: dict[str, Path] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    label_column: str | None = None

    @cached_property
    def _by_session(self) -> dict[str, dict[str | None, list[Run]]]:
        """subject -> session -> runs (built once: every look-up below is O(1))."""
        out: dict[str, dict[str | None, list[Run]]] = {}
        for r in self.runs:
            out.setdefault(r.subject, {}).setdefault(r.session, []).append(r)
        return out

    @cached_property
    def _by_labels(self) -> dict[tuple[str, str | None, str | None, tuple], Run]:
        return {(r.subject, r.session, r.run, tuple(sorted(r.acq))): r for r in self.runs}

    def subjects(self) -> list[str]:
        """Subject labels with at least one run, sorted (:func:`label_order`)."""
        return sorted(self._by_session, key=label_order)

    def sessions(self, subject: str) -> list[str | None]:
        """Session labels of a subject (``[None]`` for a dataset without sessions), sorted
        (:func:`label_order`: ``9`` before ``10``)."""
        found = self._by_session.get(strip_label(subject, "sub") or "", {})
        return sorted(found, key=lambda s: (s is not None, label_order(s)))

    def runs_of(self, subject: str, session: str | None) -> list[Run]:
        """Runs of one subject and session, sorted by run label."""
        found = self._by_session.get(strip_label(subject, "sub") or "", {})
        return list(found.get(strip_label(session, "ses"), []))

    def subject_runs(self, subject: str) -> list[Run]:
        """Every run of a subject, in (session, run) order."""
        found = self._by_session.get(strip_label(subject, "sub") or "", {})
        return [r for ses in self.sessions(subject) for r in found[ses]]

    @cached_property
    def _first_runs(self) -> dict[str, Run]:
        out: dict[str, Run] = {}
        for r in self.runs:  # sorted by (subject, session, run)
            out.setdefault(r.subject, r)
        return out

    def first_run(self, subject: str) -> Run:
        """The subject's first run (of its first session), in O(1).

        Raises
        ------
        KeyError
            When the subject has no run.
        """
        return self._first_runs[strip_label(subject, "sub") or ""]

    def get_run(self, subject: str, session: str | None, run: str | None, **acq: str) -> Run:
        """The run with these labels (``acq``: its acquisition entities, e.g. ``acq="mb4"``).

        Raises
        ------
        KeyError
            When there is no such run (the message lists the runs of that subject).
        """
        subject = strip_label(subject, "sub") or ""
        session = strip_label(session, "ses")
        run = strip_label(run, "run")
        found = self._by_labels.get((subject, session, run, tuple(sorted(acq.items()))))
        if found is not None:
            return found
        have = [run_title(r.subject, r.session, r.task, r.run, r.acq) for r in self.runs]
        have = [h for h in have if h.startswith(f"sub-{subject} ")]
        raise KeyError(
            f"no run sub-{subject} ses-{session} run-{run} in {self.root}; "
            f"runs of sub-{subject}: {fmt_list(have)}"
        )
