"""The checks of one run's files and of the runs of a subject together (for
:func:`echoprep.io.bids.discover`).

Per run (:class:`RunScan`): echoes grouped into magnitude and phase, their headers (shape,
grid, volumes), their metadata (echo and repetition times, slice timing) and the events file;
across runs: echo counts, echo times and repetition times. Like the low-level checks of
:mod:`echoprep.io.bids_checks`, every check logs an :class:`~echoprep.io.bids_checks.InputProblem`
instead of raising.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoprep.io.bids_checks import (
    ACQUISITION_ENTITIES,
    ECHO_TIME_TOL_S,
    EVENTS_COLUMNS_DOCUMENTED,
    EVENTS_COLUMNS_REQUIRED,
    MAX_ECHO_TIME_S,
    MAX_REPETITION_TIME_S,
    BidsFile,
    ImageHeader,
    ProblemLog,
    affine_difference,
    as_number,
    check_time_field,
    describe_affine_difference,
    fmt_list,
    fmt_seconds,
    mode_count,
    reference_value,
    run_title,
    sidecar_of,
    with_entity,
)
from echoprep.io.events import EventsFileError, read_events_columns

#: BIDS SliceEncodingDirection values: the slices' image axis, and ``-`` where SliceTiming lists
#: them from the last index.
SLICE_DIRECTIONS = ("i", "j", "k", "i-", "j-", "k-")


def acquisition_of(f: BidsFile) -> tuple[tuple[str, str], ...]:
    """A file's acquisition entities (:data:`ACQUISITION_ENTITIES`) with their labels, in
    BIDS order (``(("acq", "mb4"),)``): what tells runs of one task and run label apart."""
    return tuple((k, v) for k in ACQUISITION_ENTITIES if (v := f.ent(k)) is not None)


@dataclass
class RunScan:
    """What one run's files say, gathered while its problems are logged."""

    sub: str
    ses: str | None
    task: str
    run: str | None
    #: the acquisition entities of the run's files (:func:`acquisition_of`)
    acq: tuple[tuple[str, str], ...] = ()
    mags: dict[int, Path] = field(default_factory=dict)
    phases: dict[int, Path] = field(default_factory=dict)
    echo_times: dict[int, float] = field(default_factory=dict)
    echo_times_usable: bool = True
    echo_times_missing: dict[int, Path] = field(default_factory=dict)
    repetition_time: float | None = None
    slice_timing: tuple[float, ...] | None = None
    slice_axis: int = 2
    ref_header: ImageHeader | None = None
    events: Path | None = None
    fieldmap: Any = None
    #: why the run's fieldmaps were not matched by acquisition time though its session's are
    #: timed (:mod:`echoprep.io.bids_fmap_time`), or None
    fieldmap_note: str | None = None
    pe_direction: str | None = None
    total_readout_time: float | None = None
    #: the events file's columns and onsets (:mod:`echoprep.io.bids_events`) and its modelled
    #: trials (None: not counted)
    event_columns: dict[str, list[str | None]] | None = field(default=None, compare=False)
    event_onsets: Any = field(default=None, compare=False)
    n_trials: int | None = None
    #: the reference echo's single-band reference (:mod:`echoprep.io.bids_refs`), or None
    sbref: Path | None = None

    @property
    def title(self) -> str:
        return run_title(self.sub, self.ses, self.task, self.run, self.acq)

    @property
    def exclude(self) -> str:
        """The option that leaves this run out: ``--config 'exclude_runs=[sub-01_…_run-01]'``."""
        return f"--config 'exclude_runs=[{self.title.replace(' ', '_')}]'"

    @property
    def echo_indices(self) -> list[int]:
        return sorted(set(self.mags) | set(self.phases))

    def template(self) -> Path:
        """A file of this run to derive the names of missing files from."""
        if self.mags:
            return self.mags[min(self.mags)]
        return self.phases[min(self.phases)]

    def expected(self, echo: int, part: str | None) -> Path:
        """Path of this run's image of ``echo``/``part`` (``part`` None: magnitude)."""
        tmpl = self.template()
        name = with_entity(tmpl.name, "echo", str(echo))
        if part == "phase":
            name = with_entity(name, "part", "phase")
        elif "_part-" in name:
            name = with_entity(name, "part", "mag")
        return tmpl.with_name(name)

    def events_name(self) -> Path:
        tmpl = self.template()
        stem = with_entity(with_entity(tmpl.name, "echo", None), "part", None)
        stem = re.sub(r"_bold\.nii(\.gz)?$", "", stem)
        return tmpl.with_name(f"{stem}_events.tsv")


def group_echo_files(log: ProblemLog, scan: RunScan, files: Sequence[BidsFile]) -> None:
    """Sort a run's files into magnitude and phase per echo; log naming problems."""
    mags: dict[int, list[Path]] = defaultdict(list)
    phases: dict[int, list[Path]] = defaultdict(list)
    for f in files:
        echo_label = f.ent("echo")
        # the deprecated ``_phase`` suffix (BIDS < 1.5) names a phase image as part-phase does
        part = "phase" if f.suffix == "phase" else f.ent("part")
        if echo_label is None:
            log.add(
                f.path,
                "a multi-echo BOLD file name with an echo entity "
                "(…_echo-<index>[_part-mag|_part-phase]_bold.nii.gz)",
                "no echo-<index> in the name",
                "rename it to the echo it holds (e.g. …_echo-1_bold.nii.gz, with EchoTime in "
                f"its sidecar), or leave a single-echo run out with {scan.exclude}",
            )
            continue
        if not echo_label.isdigit() or int(echo_label) < 1:
            log.add(
                f.path,
                "an echo index 1, 2, 3, … (echo-<index>)",
                f"echo-{echo_label}",
                "rename the file with the 1-based echo index",
            )
            continue
        if part not in (None, "mag", "phase"):
            log.add(
                f.path,
                "part-mag or part-phase (or no part entity for magnitude-only data)",
                f"part-{part}",
                "convert real/imaginary images to magnitude and phase (e.g. dcm2niix "
                "magnitude + phase export) and name them part-mag / part-phase",
            )
            continue
        (phases if part == "phase" else mags)[int(echo_label)].append(f.path)

    for kind, table, target in (("magnitude", mags, scan.mags), ("phase", phases, scan.phases)):
        for echo, paths in sorted(table.items()):
            # prefer .nii.gz over .nii and part-mag over part-less
            paths = sorted(
                paths, key=lambda p: (not p.name.endswith(".gz"), "_part-" not in p.name)
            )
            if len(paths) > 1:
                log.add(
                    paths[1],
                    f"one {kind} image for echo-{echo} of {scan.title}",
                    f"{len(paths)}: {fmt_list(p.name for p in paths)}",
                    "delete the duplicate (the .nii/.nii.gz copy, or the part-less copy of a "
                    "part-mag image)",
                )
            target[echo] = paths[0]


def check_parts(log: ProblemLog, scan: RunScan, warnings: list[str]) -> None:
    """Phase without magnitude (a problem), and phase for some echoes only: legal, and NORDIC
    needs the phase of every echo to denoise the complex data, so the run is processed
    magnitude-only, with a warning naming the phase images left unused."""
    for echo, phase in sorted(scan.phases.items()):
        if echo not in scan.mags:
            mag = scan.expected(echo, "mag")
            log.add(
                phase,
                f"its magnitude image {mag.name} (every part-phase image needs the part-mag "
                "image of the same echo)",
                f"no magnitude image for echo-{echo}",
                f"add {mag.name} with its sidecar, or delete the orphan phase image",
            )
    missing = sorted(echo for echo in scan.mags if echo not in scan.phases)
    if scan.phases and missing:
        unused = [scan.phases[e].name for e in sorted(scan.phases) if e in scan.mags]
        warnings.append(
            f"{scan.title}: phase for echo(es) {fmt_list(sorted(scan.phases))} but not for "
            f"echo(es) {fmt_list(missing)}; processed magnitude-only (NORDIC denoises complex "
            "data only with the phase of every echo), its phase images unused: "
            f"{fmt_list(unused)}."
        )
        scan.phases.clear()


def check_headers(log: ProblemLog, header: Callable[[Path], ImageHeader], scan: RunScan) -> None:
    """Readability, 4-D, and one grid for all echoes and parts of a run."""
    headers: dict[Path, ImageHeader] = {}
    for path in [*scan.mags.values(), *scan.phases.values()]:
        hdr = header(path)
        if hdr.error is not None:
            log.add(
                path,
                "a readable NIfTI image (.nii or .nii.gz)",
                hdr.error,
                "replace it with a good copy (re-download or re-convert it; `gzip -t FILE` "
                "tests a .nii.gz)",
            )
            continue
        assert hdr.shape is not None
        if len(hdr.shape) != 4 or hdr.shape[3] < 2:
            found = (
                f"a 4-D image with 1 volume, shape {hdr.shape}"
                if len(hdr.shape) == 4
                else f"a {len(hdr.shape)}-D image of shape {hdr.shape}"
            )
            log.add(
                path,
                "a 4-D BOLD time series (x, y, z, volumes) with at least 2 volumes",
                found,
                "convert the run's full series (all volumes); a single reference volume "
                "belongs in …_sbref.nii.gz, not …_bold",
            )
            continue
        headers[path] = hdr

    mag_ok = [(e, scan.mags[e]) for e in sorted(scan.mags) if scan.mags[e] in headers]
    if not mag_ok:
        return
    ref_path = mag_ok[0][1]
    ref = headers[ref_path]
    scan.ref_header = ref
    for _, path in mag_ok[1:]:
        hdr = headers[path]
        if hdr.shape != ref.shape:
            log.add(
                path,
                f"shape {ref.shape} like {ref_path.name} (all echoes of a run share one grid "
                "and one number of volumes)",
                f"shape {hdr.shape}",
                "re-convert the run from DICOM: an interrupted transfer or conversion leaves "
                "echoes with fewer volumes or another grid",
            )
        elif affine_difference(hdr, ref) > 1e-3:
            log.add(
                path,
                f"the affine of {ref_path.name} (all echoes share one grid; tolerance 1e-3 mm)",
                describe_affine_difference(hdr, ref),
                "re-convert the run from DICOM so that all echoes carry the same orientation",
            )
    for echo, path in sorted(scan.phases.items()):
        if path not in headers:
            continue
        mag = scan.mags.get(echo)
        if mag is None or mag not in headers:
            continue
        hdr, mhdr = headers[path], headers[mag]
        if hdr.shape != mhdr.shape:
            log.add(
                path,
                f"the shape {mhdr.shape} of its magnitude {mag.name}",
                f"shape {hdr.shape}",
                "magnitude and phase must come from the same series and reconstruction: "
                "re-convert both (e.g. dcm2niix on the magnitude and phase series)",
            )
        elif affine_difference(hdr, mhdr) > 1e-3:
            log.add(
                path,
                f"the affine of its magnitude {mag.name} (tolerance 1e-3 mm)",
                describe_affine_difference(hdr, mhdr),
                "magnitude and phase must share one grid: re-convert both from the same "
                "series, or copy the magnitude's header geometry if only the header is off",
            )


def check_metadata(
    log: ProblemLog,
    metadata: Callable[[Path], Mapping[str, Any]],
    scan: RunScan,
    broken: Collection[Path],
) -> None:
    """EchoTime / RepetitionTime / SliceTiming of a run."""
    tes: dict[int, float] = {}
    trs: dict[int, float] = {}
    first_meta: Mapping[str, Any] | None = None
    for echo in sorted(scan.mags):
        path = scan.mags[echo]
        side = sidecar_of(path)
        meta = metadata(path)
        if first_meta is None:
            first_meta = meta
        if side in broken:  # already reported as unreadable JSON
            scan.echo_times_usable = False
            continue
        if "EchoTime" in meta:
            te = check_time_field(
                log,
                side,
                meta,
                "EchoTime",
                f"echo time of echo-{echo}",
                "0.02882",
                MAX_ECHO_TIME_S,
            )
        else:  # reported by check_echo_times_across, with the value the other runs use
            te = None
            scan.echo_times_missing[echo] = side
        if te is None:
            scan.echo_times_usable = False
        else:
            tes[echo] = te
        tr = check_time_field(
            log, side, meta, "RepetitionTime", "repetition time", "1.9", MAX_REPETITION_TIME_S
        )
        if tr is not None:
            trs[echo] = tr
    scan.echo_times = tes

    # echo times increase with the echo index
    ordered = sorted(tes.items())
    for (_, prev), (echo, te) in itertools.pairwise(ordered):
        if te <= prev:
            listing = ", ".join(f"echo-{e} {fmt_seconds(t)} s" for e, t in ordered)
            log.add(
                sidecar_of(scan.mags[echo]),
                f"EchoTime increasing with the echo index in {scan.title}",
                listing,
                "the echo-<index> labels or the EchoTime values are swapped: rename the files "
                "or correct the sidecars so that echo-1 has the shortest echo time",
            )
            scan.echo_times_usable = False
            break

    # phase sidecars agree with their magnitude
    for echo, phase in sorted(scan.phases.items()):
        side = sidecar_of(phase)
        if echo not in tes or side in broken:
            continue
        value = as_number(metadata(phase).get("EchoTime"))
        if value is not None and abs(value - tes[echo]) > ECHO_TIME_TOL_S:
            log.add(
                side,
                f"EchoTime {fmt_seconds(tes[echo])} s as in the magnitude sidecar of echo-{echo}",
                f"EchoTime {fmt_seconds(value)}",
                "make the part-phase sidecar match its magnitude (same echo, same EchoTime)",
            )

    # one repetition time for all echoes
    if trs:
        ref_echo = min(trs)
        scan.repetition_time = trs[ref_echo]
        for echo, tr in sorted(trs.items()):
            if abs(tr - trs[ref_echo]) > 1e-6:
                log.add(
                    sidecar_of(scan.mags[echo]),
                    f"RepetitionTime {fmt_seconds(trs[ref_echo])} s as for echo-{ref_echo} of "
                    "the same run",
                    f"RepetitionTime {fmt_seconds(tr)}",
                    "correct the sidecar: all echoes of a run share one repetition time",
                )

    # slice timing (optional) fits the slices and the TR
    if first_meta is None or "SliceTiming" not in first_meta:
        return
    raw = first_meta["SliceTiming"]
    side = sidecar_of(scan.mags[min(scan.mags)])
    values = [as_number(v) for v in raw] if isinstance(raw, list) else [None]
    if not values or any(v is None for v in values):
        log.add(
            side,
            "SliceTiming as a list of numbers (s), one per slice",
            f"SliceTiming = {json.dumps(raw)[:80]}",
            "correct SliceTiming or remove it (slice-timing correction then cannot run)",
        )
        return
    times = tuple(float(v) for v in values if v is not None)
    direction = first_meta.get("SliceEncodingDirection", "k")
    if direction not in SLICE_DIRECTIONS:
        log.add(
            side,
            f"SliceEncodingDirection one of {', '.join(SLICE_DIRECTIONS)}",
            f"SliceEncodingDirection = {json.dumps(direction)[:40]}",
            "correct it (i, j, k: the first, second, third image axis; '-': SliceTiming lists "
            "the slices from the last), or remove it (the third axis, in index order)",
        )
        return
    axis = "ijk".index(direction[0])
    shape = scan.ref_header.shape if scan.ref_header is not None else None
    if shape is not None and len(shape) > axis and len(times) != shape[axis]:
        log.add(
            side,
            f"SliceTiming with one entry per slice ({shape[axis]} slices along the "
            f"{('first', 'second', 'third')[axis]} image axis, SliceEncodingDirection "
            f"{direction})",
            f"{len(times)} entries",
            "correct SliceTiming (it must list the acquisition time of every slice along the "
            "slice axis) or SliceEncodingDirection",
        )
        return
    tr = scan.repetition_time
    if tr is not None and (max(times) >= tr or min(times) < 0):
        hint = (
            "; the values look like milliseconds: divide by 1000"
            if max(times) / 1000 < tr and max(times) >= 1
            else ""
        )
        log.add(
            side,
            f"SliceTiming values in [0, RepetitionTime = {fmt_seconds(tr)} s)",
            f"values from {min(times):g} to {max(times):g}",
            f"correct SliceTiming (seconds from the start of each volume){hint}",
        )
        return
    # in the order of the slice index (a '-' direction lists them from the last)
    scan.slice_timing = times[::-1] if direction.endswith("-") else times
    scan.slice_axis = axis


def check_events(log: ProblemLog, scan: RunScan, events: Path | None, require: bool) -> None:
    if events is None:
        if require:
            expected = scan.events_name()
            log.add(
                expected,
                f"the events file of {scan.title} (TSV with columns {EVENTS_COLUMNS_DOCUMENTED})",
                "no such file",
                f"add {expected.name} next to the BOLD files, or leave the run out with "
                f"{scan.exclude}",
            )
        return
    try:  # the whole file, once: its content is checked later (echoprep.io.bids_events)
        columns = read_events_columns(events)
    except EventsFileError as exc:
        if exc.found == "an empty file":
            log.add(
                events,
                f"a tab-separated events file with a header row ({EVENTS_COLUMNS_DOCUMENTED})",
                "an empty file",
                f"write the header and one row per event, or leave the run out with {scan.exclude}",
            )
        else:
            log.add(events, exc.expected, exc.found, exc.fix)
        return
    header = list(columns)
    missing = [c for c in EVENTS_COLUMNS_REQUIRED if c not in header]
    if missing:
        log.add(
            events,
            f"a tab-separated header with the columns {EVENTS_COLUMNS_DOCUMENTED}",
            f"columns {fmt_list(repr(c) for c in header)} (missing {fmt_list(missing)})",
            "write the events as TSV (tabs, not commas or spaces) with onset and duration in "
            "seconds",
        )
        return
    scan.events = events
    scan.event_columns = columns


# --------------------------------------------------------------------------------------
# across runs
# --------------------------------------------------------------------------------------


def check_echo_counts(
    log: ProblemLog, sub: str, scans: Sequence[RunScan], warnings: list[str]
) -> None:
    """Missing echoes within a run (a gap in echo-1..n: problems) and runs with another
    number of echoes than most of the subject's (a warning: legal, e.g. a protocol changed
    between sessions or an echo lost in conversion; each run is processed with its own
    echoes, and an echo handling that a run's count cannot have leaves the plan with a note,
    :mod:`echoprep.plan.echo_counts`)."""
    counts = [max(s.echo_indices) for s in scans if s.echo_indices]
    if not counts:
        return
    ref = mode_count(counts)
    n_ref = counts.count(ref)
    other: list[RunScan] = []
    for scan in scans:
        if not scan.echo_indices:
            continue
        have = scan.echo_indices
        n = max(have)
        if n != ref:
            other.append(scan)
        for echo in range(1, n):
            if echo in have:
                continue
            parts = " (part-mag and part-phase)" if scan.phases else ""
            log.add(
                scan.expected(echo, "mag"),
                f"echo-{echo} of {scan.title} (echoes 1 to {n})",
                f"no such file; the run has echo(es) {fmt_list(have)}",
                f"add the missing echo-{echo} image{parts} with its JSON sidecar "
                f"(re-convert the run from DICOM if it was lost), or leave the run out with "
                f"{scan.exclude}",
            )
    if other:
        first = other[0]
        runs = fmt_list([f"{s.title} has {max(s.echo_indices)}" for s in other], 3)
        labels = ",".join(s.title.replace(" ", "_") for s in other)
        warnings.append(
            f"{log.rel(first.template())}: the runs of sub-{sub} differ in their number of "
            f"echoes: {n_ref} of the {len(counts)} have {ref}; {runs}. Each run is processed "
            "with all its echoes; an echo handling that a run has too few echoes for is left "
            "out of the comparison (a note says which). If an echo was lost in conversion, "
            f"re-convert the run from DICOM, or leave runs out with --config "
            f"'exclude_runs=[{labels}]'."
        )


def check_echo_times_across(
    log: ProblemLog, sub: str, scans: Sequence[RunScan], warnings: list[str]
) -> None:
    """Missing echo times (problems), and runs whose echo times differ from the subject's
    usual ones (a warning: legal, e.g. a protocol changed between sessions; every run is
    processed with its own echo times).

    A missing ``EchoTime`` is reported here so that the fix can quote the value the
    subject's other runs use for that echo.
    """
    usable = [s for s in scans if s.echo_times_usable and s.echo_times]
    refs: dict[int, tuple[float, int, int]] = {}
    for echo in sorted({e for s in usable for e in s.echo_times}):
        values = [s.echo_times[echo] for s in usable if echo in s.echo_times]
        refs[echo] = (*reference_value(values, ECHO_TIME_TOL_S), len(values))

    for scan in scans:
        for echo, side in sorted(scan.echo_times_missing.items()):
            where = "" if side.exists() else " (the sidecar file does not exist)"
            if echo in refs:
                ref, n_ref, n_all = refs[echo]
                most = "most of " if n_ref < n_all else ""
                value = (
                    f"{fmt_seconds(ref)} (the echo-{echo} time in {most}the other runs of "
                    f"sub-{sub}; check it against the protocol)"
                )
            else:
                value = f"<echo time of echo-{echo} in s, from the protocol or DICOM header>"
            log.add(
                side,
                f"EchoTime (echo time of echo-{echo}, in seconds) in the JSON sidecar or an "
                "inherited higher-level JSON",
                f"no EchoTime{where}",
                f'add "EchoTime": {value} to {side.name}',
            )

    differ: list[tuple[RunScan, int, float]] = []
    for echo, (ref, _, n_all) in refs.items():
        if n_all < 2:
            continue
        differ += [
            (scan, echo, scan.echo_times[echo])
            for scan in usable
            if echo in scan.echo_times and abs(scan.echo_times[echo] - ref) > ECHO_TIME_TOL_S
        ]
    if differ:
        runs = list(dict.fromkeys(d[0].title for d in differ))
        scan, echo, te = differ[0]
        ref, n_ref, n_all = refs[echo]
        more = f" and {len(runs) - 1} more run(s)" if len(runs) > 1 else ""
        warnings.append(
            f"{log.rel(sidecar_of(scan.mags[echo]))}: EchoTime {fmt_seconds(te)} s for "
            f"echo-{echo}, where {n_ref} of the {n_all} runs of sub-{sub} have "
            f"{fmt_seconds(ref)} s (tolerance 1e-4 s); runs with other echo times: "
            f"{scan.title}{more}. Each run is processed "
            "with its own echo times (NORDIC, tedana, the planted responses); the single-echo "
            "variant's echo then has another BOLD contrast in these runs. If a sidecar is a "
            "conversion error, correct it."
        )


def check_tr_across(log: ProblemLog, scans: Sequence[RunScan]) -> None:
    """One repetition time per session (GLMsingle fits a session's runs together), unless
    ``spatial.tr_out`` resamples every run to one (the caller then does not call this)."""
    by_session: dict[tuple[str, str | None], list[RunScan]] = defaultdict(list)
    for s in scans:
        if s.repetition_time is not None:
            by_session[(s.sub, s.ses)].append(s)
    for (sub, ses), group in by_session.items():
        trs = [s.repetition_time for s in group if s.repetition_time is not None]
        ref, n_ref = reference_value(trs, 1e-4)
        where = run_title(sub, ses, group[0].task, None)
        for s in group:
            assert s.repetition_time is not None
            if abs(s.repetition_time - ref) > 1e-4:
                log.add(
                    sidecar_of(s.mags[min(s.mags)]),
                    f"RepetitionTime {fmt_seconds(ref)} s, as in {n_ref} of the {len(trs)} "
                    f"runs of {where} (a session's runs are fitted together)",
                    f"RepetitionTime {fmt_seconds(s.repetition_time)} in {s.title}",
                    "correct the sidecars, set spatial.tr_out to resample every run to one TR, "
                    f"or leave runs with another TR out with {s.exclude}",
                )


def header_tr_warning(scans: Sequence[RunScan]) -> str | None:
    """One line about the runs whose NIfTI header's volume spacing (the 4th voxel size)
    disagrees with the sidecar's RepetitionTime, which is used (BIDS: the sidecar is the
    authority); None when they agree."""
    differ: list[tuple[RunScan, float, float]] = []
    for scan in scans:
        tr = scan.repetition_time
        header = getattr(scan.ref_header, "volume_seconds", None)
        if tr is not None and header is not None and abs(header - tr) > 1e-3 * max(1.0, tr):
            differ.append((scan, tr, header))
    if not differ:
        return None
    scan, tr, header = differ[0]
    more = f" and {len(differ) - 1} more run(s)" if len(differ) > 1 else ""
    return (
        f"RepetitionTime differs between sidecar and NIfTI header in {scan.title}{more} "
        f"(sidecar {fmt_seconds(tr)} s, header {header:g} s): the sidecar's is used; if the "
        "header is right, correct RepetitionTime in the sidecars"
    )
