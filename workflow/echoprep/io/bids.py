"""BIDS input discovery: multi-echo BOLD runs, events and T1w of a raw BIDS dataset.

:func:`discover` indexes the dataset (its own index), reads only NIfTI headers, checks everything
the workflow relies on and either returns a :class:`Dataset` or raises one
:class:`BIDSInputError` that lists *all* problems (file, expected, found, fix).

Expected input (LAION-fMRI layout)::

    sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-T[_acq-A][_run-R]_echo-E_part-{mag,phase}_bold.nii[.gz]
    sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-T[_acq-A][_run-R]_echo-E_bold.nii[.gz]   (magnitude only)
    sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-T[_acq-A][_run-R]_events.tsv
    sub-X[/ses-Y]/anat/sub-X[_ses-Y]_T1w.nii[.gz]

with ``EchoTime`` and ``RepetitionTime`` (seconds) in the JSON sidecars (the BIDS inheritance
principle applies: sidecars of parent folders, the nearest winning).

Discovery walks the selected subjects (and sessions) once (:mod:`echoprep.io.bids_index`):
sidecars and headers are cached per file in ``cache_dir/facts/``, keyed by path, size and
modification time, and the discovered :class:`Dataset` as a whole in
``cache_dir/dataset-<digest>.pickle``, keyed by the listing (paths, sizes, modification times)
and the discovery options, so a workflow start after the first reads no sidecar or header, and
adding, removing or editing a file is still found. Nothing is ever written into the input
dataset. The checks behind the problem list are in
:mod:`echoprep.io.bids_checks` (names, headers, the problem log), :mod:`echoprep.io.bids_run_checks`
(per run and across runs) and :mod:`echoprep.io.bids_fmap` (fieldmaps; matched by acquisition time:
:mod:`echoprep.io.bids_fmap_time`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from echoprep.io.bids_anat import find_t1w
from echoprep.io.bids_checks import (
    ACQUISITION_ENTITIES,
    FILE_ENTITIES,
    NIFTI_EXTENSIONS,
    RUN_ENTITIES,
    BidsFile,
    BIDSInputError,
    InputProblem,
    ProblemLog,
    fmt_list,
    labels,
    select_subjects,
    strip_label,
)
from echoprep.io.bids_events import (
    EventsRules,
    check_trials,
    choose_label_column,
    read_events_content,
)
from echoprep.io.bids_fmap import FieldmapIndex, find_fieldmap, phase_encoding
from echoprep.io.bids_fmap_time import INTERPOLATE
from echoprep.io.bids_index import BidsIndex, DatasetCache
from echoprep.io.bids_model import Dataset, EchoFiles, Run, run_sort_key
from echoprep.io.bids_refs import find_references
from echoprep.io.bids_run_checks import (
    RunScan,
    acquisition_of,
    check_echo_counts,
    check_echo_times_across,
    check_events,
    check_headers,
    check_metadata,
    check_parts,
    check_tr_across,
    group_echo_files,
    header_tr_warning,
)
from echoprep.io.bids_selection import exclude_listed_runs
from echoprep.io.bids_subjects import subjects_with_runs
from echoprep.io.bids_tasks import choose_task
from echoprep.options import section_defaults

__all__ = [
    "BIDSInputError",
    "Dataset",
    "EchoFiles",
    "InputProblem",
    "Run",
    "discover",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# discover
# --------------------------------------------------------------------------------------


def discover(
    bids_dir: str | Path,
    *,
    participant_label: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    sessions: Sequence[str] | None = None,
    task: str | None = None,
    cache_dir: str | Path | None = None,
    require_events: bool = True,
    require_t1w: bool = False,
    use_fieldmaps: bool = True,
    events_rules: EventsRules | None = None,
    exclude_runs: Sequence[str] = (),
    trust_cache: bool = False,
    prefer_fieldmap: str = "gre",
    fieldmap_time: str | None = None,
    sbref_echo: int | None = None,
    require_sbref: bool = False,
    registration_target: str = "T1w",
    t1w_entities: Mapping[str, str] | None = None,
    t2w_entities: Mapping[str, str] | None = None,
) -> Dataset:
    """Find and check the multi-echo BOLD runs of a raw BIDS dataset.

    Parameters
    ----------
    bids_dir
        Root of the raw BIDS dataset (read-only; nothing is written into it).
    participant_label
        Subjects to process (with or without ``sub-``); ``None``: all.
    exclude
        Subjects to leave out (labels not in the dataset are logged as a warning).
    sessions
        Sessions to process (with or without ``ses-``); ``None``: all.
    task
        Task label; ``None``: the only task with BOLD runs, or of several the one with the most
        runs that have events (:func:`~echoprep.io.bids_tasks.choose_task`, with a warning).
    cache_dir
        Folder for the caches (``<work_dir>/bids_index``); ``None``: no cache.
    require_events
        A run without ``events.tsv`` is a problem (else ``Run.events`` is ``None``).
    require_t1w
        A subject without a T1w is a problem.
    use_fieldmaps
        Find each run's fieldmap (``fmap/``) and check it and the run's phase-encoding
        metadata; False: ``Run.fieldmap`` is None.
    prefer_fieldmap
        ``"gre"`` or ``"epi"``: taken when a run has one of each (``spatial.sdc: pepolar``).
    fieldmap_time
        ``"interpolate"`` or ``"nearest"``: the fieldmaps of a run matched by acquisition time
        (``spatial.fieldmap_time``, :mod:`echoprep.io.bids_fmap_time`); None: its default.
    sbref_echo, require_sbref, registration_target
        The reference images (:mod:`echoprep.io.bids_refs`): each run's SBRef of echo
        ``sbref_echo`` (None: none; required with ``require_sbref``) and each subject's T2w
        (``registration_target``: ``"T1w"`` none, ``"auto"``, ``"T2w"`` required).
    t1w_entities, t2w_entities
        Entities the subject's T1w (T2w) must have where it has several (``anatomy.t1w``,
        ``anatomy.t2w``, e.g. ``{"acq": "UNI"}``); None: the first
        (:func:`echoprep.io.bids_anat.pick_anat`).
    events_rules
        How the GLM reads the events (:class:`~echoprep.io.bids_events.EventsRules`; None:
        its defaults): every events file is checked against its run with these rules.
    exclude_runs
        Runs to leave out, each named by entities (``sub-01_ses-02_run-03``; ``sub-01_ses-02``
        leaves out a session): a run matches when it has every entity given.
    trust_cache
        Return the dataset cached for these options without walking the dataset (a cluster
        job: the workflow's main process has just discovered it); discover as usual when
        there is none.

    Returns
    -------
    Dataset
        The selected runs, sorted by (subject, session, run), and the T1w per subject.

    Raises
    ------
    BIDSInputError
        Listing every problem found (file, expected, found, fix).
    """
    root = Path(bids_dir).expanduser().absolute()
    fieldmap_time = fieldmap_time or section_defaults("spatial")["fieldmap_time"]
    log = ProblemLog(root)
    if not root.is_dir():
        log.add(
            str(root),
            "a BIDS dataset folder (with dataset_description.json and sub-*/ folders)",
            "no such folder" if not root.exists() else "a file, not a folder",
            "pass the root folder of the raw BIDS dataset",
        )
        raise BIDSInputError(log.problems, root)

    options: dict[str, Any] = {
        "participant_label": labels(participant_label, "sub"),
        "exclude": labels(exclude, "sub") or [],
        "sessions": labels(sessions, "ses"),
        "task": strip_label(task, "task"),
        "require_events": require_events,
        "require_t1w": require_t1w,
        "use_fieldmaps": use_fieldmaps,
        "prefer_fieldmap": prefer_fieldmap,
        "fieldmap_time": fieldmap_time,
        "sbref": [sbref_echo, require_sbref, registration_target],
        "events": dataclasses.asdict(events_rules or EventsRules()),
        "exclude_runs": sorted(exclude_runs),
        "t1w": {k: str(v) for k, v in sorted((t1w_entities or {}).items())},
        "t2w": {k: str(v) for k, v in sorted((t2w_entities or {}).items())},
    }
    cache = Path(cache_dir).expanduser().absolute() if cache_dir is not None else None
    # keyed by the discovery code too: a dataset of another version is never unpickled
    here = Path(__file__).parent
    code = [*here.glob("bids*.py"), here / "events.py"]
    stored = DatasetCache(cache, root, options, code=code)
    if trust_cache:
        dataset = stored.load(Dataset, None)
        if dataset is not None:
            return dataset

    wanted = options["participant_label"]
    walked = None if wanted is None else [s for s in wanted if s not in options["exclude"]]
    index = BidsIndex.open(root, cache, subjects=walked, sessions=options["sessions"])
    dataset = stored.load(Dataset, index.key)
    if dataset is None:
        index.prefetch()
        for path, error in index.broken.items():
            log.add(
                path,
                "valid JSON (UTF-8 text)",
                f"a file that does not parse ({error})",
                f"correct the syntax (`python -m json.tool {log.rel(path)}` points at the "
                "error) or re-create the file",
            )
        try:
            dataset = _discover(
                log,
                index,
                root,
                participant_label=participant_label,
                exclude=exclude,
                sessions=sessions,
                task=task,
                require_events=require_events,
                require_t1w=require_t1w,
                use_fieldmaps=use_fieldmaps,
                events_rules=events_rules or EventsRules(),
                exclude_runs=exclude_runs,
                prefer_fieldmap=prefer_fieldmap,
                fieldmap_time=fieldmap_time,
                references=(sbref_echo, require_sbref, registration_target),
                t1w_entities=options["t1w"],
                t2w_entities=options["t2w"],
            )
        finally:
            index.save()
        if log:
            raise BIDSInputError(log.problems, root)
        assert dataset is not None
        stored.save(index.key, dataset)
        logger.debug("discovered %s: %d file(s) read", root, index.reads)
    for warning in dataset.warnings:
        logger.warning("BIDS input: %s", warning)
    logger.info(
        "BIDS input %s: %d run(s) of %d subject(s)",
        root,
        len(dataset.runs),
        len(dataset.subjects()),
    )
    return dataset


def _discover(
    log: ProblemLog,
    index: BidsIndex,
    root: Path,
    *,
    participant_label: Sequence[str] | None,
    exclude: Sequence[str],
    sessions: Sequence[str] | None,
    task: str | None,
    require_events: bool,
    require_t1w: bool,
    use_fieldmaps: bool = True,
    events_rules: EventsRules | None = None,
    exclude_runs: Sequence[str] = (),
    prefer_fieldmap: str = "gre",
    fieldmap_time: str = INTERPOLATE,
    references: tuple[int | None, bool, str] = (None, False, "T1w"),
    t1w_entities: Mapping[str, str] | None = None,
    t2w_entities: Mapping[str, str] | None = None,
) -> Dataset | None:
    files = index.files
    with_files = {f.entities["sub"] for f in files}
    # subjects the selection left unwalked are known by their folders only
    unwalked = set(index.subject_labels) - index.walked_subjects
    all_subjects = sorted(with_files | unwalked)
    subjects = select_subjects(log, all_subjects, participant_label, exclude)
    if not subjects:
        return None
    chosen = set(subjects)
    mine = [f for f in files if f.entities["sub"] in chosen]

    # sessions
    wanted_sessions = labels(sessions, "ses")
    present_sessions = sorted(
        {f.entities["ses"] for f in mine if "ses" in f.entities}
        | {ses for sub in subjects for ses in index.session_labels.get(sub, ())}
    )
    if wanted_sessions is not None:
        for label in wanted_sessions:
            if label not in present_sessions:
                log.add(
                    f"ses-{label}/",
                    f"the session ses-{label} (requested by sessions) in sub-{fmt_list(subjects)}",
                    "no such session; the selected subjects have "
                    + (
                        fmt_list(f"ses-{s}" for s in present_sessions)
                        if present_sessions
                        else "no sessions"
                    ),
                    "use session labels that exist (with or without the 'ses-' prefix), or no "
                    "session filter",
                )

    def in_sessions(f: BidsFile) -> bool:
        return wanted_sessions is None or f.ent("ses") in wanted_sessions

    def bold_files(found: list[BidsFile]) -> list[BidsFile]:
        return [
            f
            for f in found
            # (``_phase``: the phase suffix before BIDS 1.5, read as ``part-phase_bold``)
            if f.suffix in ("bold", "phase") and f.ext in NIFTI_EXTENSIONS and f.datatype == "func"
        ]

    bolds = exclude_listed_runs(log, [f for f in bold_files(mine) if in_sessions(f)], exclude_runs)

    # events and T1w, indexed by name
    events: dict[tuple[str, str | None, str | None, str | None, tuple], Path] = {}
    for f in mine:
        if f.suffix == "events" and f.ext == ".tsv" and f.datatype == "func":
            key = (f.entities["sub"], f.ent("ses"), f.ent("task"), f.ent("run"), acquisition_of(f))
            events.setdefault(key, f.path)

    def has_events(f: BidsFile) -> bool:  # (choose_task asks for files with a task only)
        run = (f.entities["sub"], f.ent("ses"), f.entities["task"], f.ent("run"))
        return _events_of(events, run, acquisition_of(f)) is not None

    warnings: list[str] = []
    task_label, task_ok = choose_task(log, bolds, has_events, task, warnings)
    label_column: str | None = None

    fmaps = [f for f in mine if (f.datatype == "fmap" or f.suffix == "scans") and in_sessions(f)]
    fieldmaps = FieldmapIndex(index.metadata, root, fmaps, index.table, fieldmap_time)

    # group the task's BOLD files by run: each acquisition (acq, ce, rec, dir) a run of its own
    scans: list[RunScan] = []
    if task_ok:  # task_label is None only when no selected subject has BOLD files
        groups: dict[tuple[str, str | None, str | None, tuple], list[BidsFile]] = defaultdict(list)
        for f in bolds:
            if task_label is not None and f.ent("task") == task_label:
                groups[(f.entities["sub"], f.ent("ses"), f.ent("run"), acquisition_of(f))].append(f)
        for (sub, ses, run, acq), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2] or "", kv[0][3])
        ):
            assert task_label is not None
            scan = RunScan(sub, ses, task_label, run, acq)
            variants: dict[tuple[tuple[str, str], ...], list[BidsFile]] = defaultdict(list)
            for f in group:
                other = tuple(
                    (k, v)
                    for k, v in f.entities.items()
                    if k not in RUN_ENTITIES + FILE_ENTITIES + ACQUISITION_ENTITIES
                )
                variants[other].append(f)
            if len(variants) > 1:
                names = [
                    "_".join(f"{k}-{v}" for k, v in var) or "(none)" for var in sorted(variants)
                ]
                pattern = scan.title.replace(" ", "_")
                log.add(
                    group[0].path.parent / f"*{pattern}*",
                    f"one image per echo and part of {scan.title}",
                    f"files that differ in other entities: {fmt_list(names)}",
                    "keep one set of the run's files in the dataset (echoprep reads runs told "
                    "apart by acq, ce, rec, dir and run; exclude_runs selects among those)",
                )
                continue
            group_echo_files(log, scan, group)
            if not scan.mags and not scan.phases:
                continue
            check_parts(log, scan, warnings)
            if not scan.mags:  # phase only: check_parts named it; nothing else to check
                continue
            check_headers(log, lambda p: index.header(p, root), scan)
            check_metadata(log, index.metadata, scan, index.broken)
            ev = _events_of(events, (sub, ses, task_label, run), acq)
            check_events(log, scan, ev, require_events)
            read_events_content(log, scan)
            scan.pe_direction, scan.total_readout_time = phase_encoding(log, index.metadata, scan)
            if use_fieldmaps:  # (after phase_encoding: the fieldmap needs the run's PE facts)
                scan.fieldmap = find_fieldmap(log, fieldmaps, scan, prefer_fieldmap)
            scans.append(scan)

        tr_warning = header_tr_warning(scans)
        if tr_warning:
            warnings.append(tr_warning)
        old_phase = [p for s in scans for p in s.phases.values() if "_part-" not in p.name]
        if old_phase:
            warnings.append(
                f"{log.rel(old_phase[0])}: {len(old_phase)} phase image(s) named with the "
                "suffix _phase (BIDS before 1.5; now …_part-phase_bold.nii.gz), read as their "
                "runs' phase (NORDIC uses the complex data)."
            )
        by_subject: dict[str, list[RunScan]] = defaultdict(list)
        for s in scans:
            by_subject[s.sub].append(s)
        for sub in subjects:
            check_echo_counts(log, sub, by_subject.get(sub, []), warnings)
            check_echo_times_across(log, sub, by_subject.get(sub, []), warnings)
        rules = events_rules or EventsRules()
        if rules.series_tr is None:  # (spatial.tr_out resamples every run to one TR)
            check_tr_across(log, scans)
        label_column = choose_label_column(log, scans, rules, warnings)
        check_trials(log, scans, rules, label_column, warnings)

        # subjects without runs: left out with a warning, or a problem (not when the session
        # filter matched nothing at all: that problem is already reported)
        if wanted_sessions is None or set(wanted_sessions) & set(present_sessions):
            subjects = subjects_with_runs(
                log,
                subjects,
                set(by_subject),
                lambda sub: bold_files(index.subject_files(sub)),
                in_sessions,
                task_label,
                wanted_sessions,
                participant_label is not None,
                warnings,
            )

    # T1w
    header = lambda p: index.header(p, root)  # noqa: E731
    t1w, t1w_warnings = find_t1w(log, mine, subjects, require_t1w, header, t1w_entities)
    warnings += t1w_warnings
    t2w = find_references(log, mine, scans, subjects, header, references, warnings, t2w_entities)

    if log:
        return None
    runs = [_make_run(s) for s in scans]
    return Dataset(
        root=root,
        runs=tuple(sorted(runs, key=run_sort_key)),
        t1w=t1w,
        t2w=t2w,
        warnings=tuple(warnings),
        label_column=label_column,
    )


def _make_run(scan: RunScan) -> Run:
    """A :class:`Run` from a scan without problems."""
    assert scan.ref_header is not None and scan.ref_header.shape is not None
    assert scan.repetition_time is not None
    echoes = tuple(
        sorted(
            (
                EchoFiles(
                    echo=e,
                    echo_time=scan.echo_times[e],
                    mag=scan.mags[e],
                    phase=scan.phases.get(e),
                )
                for e in scan.mags
            ),
            key=lambda ef: ef.echo_time,
        )
    )
    shape = scan.ref_header.shape
    return Run(
        subject=scan.sub,
        session=scan.ses,
        task=scan.task,
        run=scan.run,
        echoes=echoes,
        events=scan.events,
        repetition_time=scan.repetition_time,
        n_volumes=int(shape[3]),
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        slice_timing=scan.slice_timing,
        slice_axis=scan.slice_axis,
        fieldmap=scan.fieldmap,
        pe_direction=scan.pe_direction,
        total_readout_time=scan.total_readout_time,
        n_trials=scan.n_trials,
        fieldmap_note=scan.fieldmap_note,
        sbref=scan.sbref,
        acq=scan.acq,
        affine=scan.ref_header.affine,
    )


def _events_of(
    events: dict[tuple[str, str | None, str | None, str | None, tuple], Path],
    run: tuple[str, str | None, str, str | None],
    acq: tuple[tuple[str, str], ...],
) -> Path | None:
    """The events file of a run: the one with the most of the run's acquisition entities
    and none it lacks (BIDS inheritance: ``…_run-01_events.tsv`` serves ``…_acq-mb4_run-01``
    unless ``…_acq-mb4_run-01_events.tsv`` exists)."""
    for size in range(len(acq), -1, -1):
        for subset in itertools.combinations(acq, size):
            found = events.get((*run, subset))
            if found is not None:
                return found
    return None
