"""Fieldmaps and phase-encoding facts of BOLD runs (for susceptibility distortion correction).

Supported fieldmaps (BIDS "fmap" datatype):

- ``phasediff`` (+ ``magnitude1``/``magnitude2``) of a dual-echo GRE, with ``EchoTime1`` and
  ``EchoTime2`` (s) in the phasediff sidecar (LAION-fMRI: ΔTE 1.02 ms);
- ``fieldmap`` (+ ``magnitude``): a field map in Hz (``Units`` "Hz"; "rad/s" is converted);
- ``epi`` images with reversed phase encoding ("PEPOLAR": ``dir-AP`` and ``dir-PA``, say), each
  with ``PhaseEncodingDirection`` and ``TotalReadoutTime`` in its sidecar: the files of one
  acquisition (the same entities but ``dir``) form one fieldmap, whose field the spatial stage
  estimates (:mod:`echoprep.kernels.geometry.pepolar`).

A fieldmap belongs to a run by the first of these rules that finds one (:data:`RULES`):

0. its sidecar's ``B0FieldIdentifier`` is among the run's BOLD sidecar's ``B0FieldSource``
   (BIDS 1.7; what newer converters write instead of, or beside, ``IntendedFor``);
1. its sidecar's ``IntendedFor`` names one of the run's BOLD files (paths relative to the
   subject folder, or ``bids::`` URIs relative to the dataset root); where several fieldmap
   acquisitions name it, the preferred kind (``prefer``), then among GRE/Hz ones acquisition
   time (rule 2);
2. acquisition time: the session has two or more GRE/Hz fieldmap acquisitions, and they and
   the run have an acquisition time; the run gets the fieldmaps around its centre in time,
   weighted (:mod:`echoprep.io.bids_fmap_time`; LAION-fMRI's layout);
3. it carries the run's ``ses`` and ``run`` entities, else it is the only fieldmap of the
   run's session.

Where a rule finds several fieldmap acquisitions and no acquisition time chooses between them,
the run gets the one with its ``run`` entity, else the first by name; the fieldmap's ``note``
says so (the plan's distortion-correction line and the run's sidecars show it).

The run's ``PhaseEncodingDirection`` and ``TotalReadoutTime`` (or ``EffectiveEchoSpacing`` and
the matrix size) come from its BOLD sidecars.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoprep.io.bids_checks import (
    NIFTI_EXTENSIONS,
    BidsFile,
    ProblemLog,
    as_number,
    sidecar_of,
)
from echoprep.io.bids_fmap_time import INTERPOLATE, TIMED_SUFFIXES, FieldmapTimes, TimeMatch
from echoprep.io.bids_run_checks import RunScan

#: BIDS PhaseEncodingDirection values.
PE_DIRECTIONS = ("i", "i-", "j", "j-", "k", "k-")
#: The fmap suffixes that hold a field (their magnitude partners are found by entities).
FIELDMAP_SUFFIXES = ("phasediff", "fieldmap", "epi")
#: The matching rules, as the geometry sidecars record them (``FieldmapCorrection.Rule``).
RULE_INTENDED = "IntendedFor"
RULE_SOURCE = "B0FieldSource"
RULE_RUN = "run entity"
RULE_ONLY = "only fieldmap of the session"
RULES = (
    RULE_SOURCE,
    RULE_INTENDED,
    "acquisition time (interpolate)",
    "acquisition time (nearest)",
    RULE_RUN,
    RULE_ONLY,
)


@dataclass(frozen=True)
class Fieldmap:
    """The fieldmap files of one run.

    Attributes
    ----------
    kind
        ``"phasediff"``, ``"fieldmap"`` or ``"epi"`` (a reversed phase-encoding pair).
    image
        The phase-difference image (scanner units or rad), the field map, or the first
        ``epi`` image.
    magnitude
        A magnitude image of the fieldmap acquisition (``magnitude1`` / ``magnitude``), or None.
    echo_time1, echo_time2
        Echo times of a phasediff, s (None for ``fieldmap``).
    units
        Units of a ``fieldmap`` image (``"Hz"`` or ``"rad/s"``); None for phasediff.
    epi
        For ``"epi"``: every image of the acquisition as ``(path, PhaseEncodingDirection,
        TotalReadoutTime s)``, two directions on one axis; empty otherwise.
    rule
        The matching rule that served the run (one of :data:`RULES`).
    combine
        Matched by acquisition time: ``(fieldmap, weight, acquisition time s)`` of every
        fieldmap the run uses (weights sum to 1; the fields above are the heaviest one's);
        empty otherwise.
    target, target_time
        Matched by time: the session's earliest fieldmap, which every fieldmap is registered
        to and combined in the space of, and its acquisition time (s); else None.
    run_time
        Matched by time: the run's centre (acquisition time + volumes x TR / 2), s, on the
        fieldmaps' clock (seconds since midnight, or counting days with ``scans.tsv`` dates).
    note
        Why the run was not matched by time though its session's fieldmaps have times
        (:data:`echoprep.io.bids_fmap_time.NO_RUN_TIME`), or None.
    """

    kind: str
    image: Path
    magnitude: Path | None = None
    echo_time1: float | None = None
    echo_time2: float | None = None
    units: str | None = None
    epi: tuple[tuple[Path, str, float], ...] = ()
    rule: str = RULE_INTENDED
    combine: tuple[tuple[Fieldmap, float, float], ...] = ()
    target: Fieldmap | None = None
    target_time: float | None = None
    run_time: float | None = None
    note: str | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the fieldmap (the inputs of a rule using it): with several fieldmaps,
        those of each and of the registration target."""
        extra = tuple(p for p, _, _ in self.epi if p != self.image)
        own = tuple(p for p in (self.image, self.magnitude) if p is not None) + extra
        others = [p for f, _, _ in self.combine for p in f.files]
        others += list(self.target.files) if self.target is not None else []
        return tuple(dict.fromkeys([*own, *others]))

    def _own_spec(self) -> dict[str, Any]:
        return {
            "image": str(self.image),
            "kind": self.kind,
            "magnitude": str(self.magnitude) if self.magnitude else None,
            "echo_time1": self.echo_time1,
            "echo_time2": self.echo_time2,
            "units": self.units,
            "epi": [[str(p), d, t] for p, d, t in self.epi],
        }

    def as_spec(self) -> dict[str, Any]:
        """JSON-able description the spatial stage reads (``run_geometry(fieldmap=...)``,
        ``spatial run --fieldmap-json``): paths as strings, the other fields as they are, the
        ``rule``; matched by time also ``combine`` (each fieldmap's description with its
        ``weight`` and ``time``), ``target`` (with its ``time``) and ``run_time``."""
        spec = self._own_spec() | {"rule": self.rule}
        if self.note:
            spec["note"] = self.note
        if self.combine and self.target is not None:
            spec["combine"] = [f._own_spec() | {"weight": w, "time": t} for f, w, t in self.combine]
            spec["target"] = self.target._own_spec() | {"time": self.target_time}
            spec["run_time"] = self.run_time
        return spec


def _labels(value: Any) -> list[str]:
    """An IntendedFor, B0FieldIdentifier or B0FieldSource value (a string or a list of
    strings) as a list."""
    items = [value] if isinstance(value, str) else list(value or [])
    return [str(v) for v in items if str(v)]


def _intended(meta: Mapping[str, Any]) -> list[str]:
    return [t.removeprefix("bids::") for t in _labels(meta.get("IntendedFor"))]


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


class FieldmapIndex:
    """The fieldmap images of the selected files, indexed once: by the BOLD files their
    ``IntendedFor`` names (dataset-relative), by (subject, session) and, for the magnitude
    partners, by entities. Matching a run is then a few dictionary look-ups, so discovery
    stays linear in the number of files however many fieldmaps a subject has.

    Parameters
    ----------
    metadata
        Sidecar metadata of a file (BIDS inheritance applied).
    root
        Dataset root.
    fmap_files
        The selected files of ``fmap/`` folders (and the sessions' ``scans.tsv``).
    table
        Reader of a tab-separated table (:meth:`echoprep.io.bids_index.BidsIndex.table`), for
        acquisition times in ``scans.tsv``; None: times from the sidecars only.
    fieldmap_time
        ``spatial.fieldmap_time``: ``"interpolate"`` or ``"nearest"``
        (:mod:`echoprep.io.bids_fmap_time`).
    """

    def __init__(
        self,
        metadata: Callable[[Path], Mapping[str, Any]],
        root: Path,
        fmap_files: Sequence[BidsFile],
        table: Callable[[Path], tuple[bool, Any]] | None = None,
        fieldmap_time: str = INTERPOLATE,
    ) -> None:
        self.metadata = metadata
        self.root = root
        scans = [f for f in fmap_files if f.suffix == "scans" and f.ext == ".tsv"]
        self.times = FieldmapTimes(
            metadata, table or (lambda _: (False, "not read")), scans, fieldmap_time
        )
        #: a session's fieldmaps as read for time matching, once each (and one object each:
        #: the runs that share them share it, in memory and in the dataset's pickle)
        self.read: dict[Path, Fieldmap | None] = {}
        self._images: dict[tuple[str, str | None], list[BidsFile]] = defaultdict(list)
        self._intended: dict[str, list[BidsFile]] = defaultdict(list)
        self._b0_fields: dict[tuple[str, str], list[BidsFile]] = defaultdict(list)
        self._by_entities: dict[tuple[str, tuple[tuple[str, str], ...]], Path] = {}
        for f in sorted(fmap_files, key=lambda f: str(f.path)):
            if f.datatype != "fmap" or f.ext not in NIFTI_EXTENSIONS:
                continue
            key = (f.suffix, tuple(sorted(f.entities.items())))
            self._by_entities.setdefault(key, f.path)
            if f.suffix not in FIELDMAP_SUFFIXES:
                continue
            self._images[(f.entities["sub"], f.ent("ses"))].append(f)
            subject_dir = f"sub-{f.entities['sub']}"
            for label in _labels(metadata(f.path).get("B0FieldIdentifier")):
                self._b0_fields[(f.entities["sub"], label)].append(f)
            for target in _intended(metadata(f.path)):
                # relative to the subject folder (BIDS) or to the root (bids:: URIs)
                for rel in {target, f"{subject_dir}/{target}"}:
                    if f not in self._intended[rel]:
                        self._intended[rel].append(f)

    def matches(self, scan: RunScan) -> tuple[list[BidsFile], str]:
        """The fieldmap images of a run and the rule that found them: those whose
        B0FieldIdentifier the run's B0FieldSource names (the subject's), else those whose
        IntendedFor names one of its BOLD files, else those with its ``ses`` and ``run``
        entities, else the only one of its session (the only acquisition: a reversed
        phase-encoding pair is one); rule 2, acquisition time, is :meth:`by_time`."""
        bold = [*scan.mags.values(), *scan.phases.values()]
        chosen: list[BidsFile] = []
        if scan.mags:
            source = self.metadata(scan.mags[min(scan.mags)]).get("B0FieldSource")
            for label in _labels(source):
                for f in self._b0_fields.get((scan.sub, label), ()):
                    if f not in chosen:
                        chosen.append(f)
        if chosen:
            return sorted(chosen, key=lambda f: str(f.path)), RULE_SOURCE
        for p in bold:
            for f in self._intended.get(_relative(p, self.root), ()):
                if f.entities["sub"] == scan.sub and f not in chosen:
                    chosen.append(f)
        if chosen:
            return sorted(chosen, key=lambda f: str(f.path)), RULE_INTENDED
        same_session = self._images.get((scan.sub, scan.ses), [])
        chosen = [f for f in same_session if f.ent("run") is not None and f.ent("run") == scan.run]
        if chosen:
            return chosen, RULE_RUN
        only = len({_acquisition(f) for f in same_session}) == 1
        return (same_session, RULE_ONLY) if only else ([], RULE_RUN)

    def by_time(self, log: ProblemLog, scan: RunScan, prefer: str) -> TimeMatch | str | None:
        """Rule 2: the run's fieldmaps by acquisition time
        (:meth:`echoprep.io.bids_fmap_time.FieldmapTimes.match`); not for a session with a
        reversed phase-encoding pair when those are preferred."""
        same_session = self._images.get((scan.sub, scan.ses), [])
        if prefer == "epi" and any(f.suffix == "epi" for f in same_session):
            return None
        return self.times.match(log, scan, same_session)

    def partner(self, fmap: BidsFile, suffix: str) -> Path | None:
        """The file of the same acquisition (same entities) with another suffix."""
        return self._by_entities.get((suffix, tuple(sorted(fmap.entities.items()))))


def find_fieldmap(
    log: ProblemLog,
    index: FieldmapIndex,
    scan: RunScan,
    prefer: str = "gre",
) -> Fieldmap | None:
    """The fieldmap of a run (or None); problems with a matching fieldmap, and a run whose
    sidecars lack the phase-encoding facts its correction needs, are logged. A run with one
    GRE/Hz fieldmap and one reversed phase-encoding pair gets the ``prefer`` kind (``"gre"``
    or ``"epi"``). Call after :func:`phase_encoding` has set the run's facts."""
    found = _find_fieldmap(log, index, scan, prefer)
    if found is not None and (scan.pe_direction is None or scan.total_readout_time is None):
        log.add(
            sidecar_of(scan.mags[min(scan.mags)]),
            f"PhaseEncodingDirection and TotalReadoutTime (or EffectiveEchoSpacing) "
            f"for distortion correction of {scan.title} with {found.image.name}",
            f"PhaseEncodingDirection = {scan.pe_direction!r}, TotalReadoutTime = "
            f"{scan.total_readout_time!r}",
            "add both to the BOLD sidecars, or set spatial.fieldmap: false",
        )
    return found


def _find_fieldmap(
    log: ProblemLog, index: FieldmapIndex, scan: RunScan, prefer: str
) -> Fieldmap | None:
    chosen, rule = index.matches(scan)
    if rule not in (RULE_SOURCE, RULE_INTENDED):
        timed = index.by_time(log, scan, prefer)
        if isinstance(timed, TimeMatch):
            return _timed(log, index, timed)
        scan.fieldmap_note = timed
        if chosen:
            found = _by_rules(log, index, scan, prefer, chosen)
            note = "; ".join(n for n in (timed, found.note if found else None) if n) or None
            return dataclasses.replace(found, rule=rule, note=note) if found else None
        return None
    # several fieldmaps named for the run (converters often name every run of a session in
    # each): among GRE/Hz ones acquisition time chooses, as rule 2 does for a session's
    named = len({_acquisition(f) for f in chosen})
    preferred = _preferred(chosen, prefer)
    if named > 1 and all(f.suffix in TIMED_SUFFIXES for f in preferred):
        timed = index.times.match(log, scan, preferred)
        if isinstance(timed, TimeMatch):
            found = _timed(log, index, timed)
            said = "B0FieldSource names" if rule == RULE_SOURCE else "IntendedFor names it in"
            return dataclasses.replace(found, note=f"{said} {named} fieldmaps") if found else None
    found = _by_rules(log, index, scan, prefer, chosen)
    return dataclasses.replace(found, rule=rule) if found else None


def _preferred(chosen: list[BidsFile], prefer: str) -> list[BidsFile]:
    """The images of the ``prefer`` kind (``"epi"``: reversed phase-encoding pairs, else
    GRE/Hz fieldmaps) where ``chosen`` holds both kinds, else ``chosen``."""
    epi = [f for f in chosen if f.suffix == "epi"]
    gre = [f for f in chosen if f.suffix != "epi"]
    return (epi if prefer == "epi" else gre) if epi and gre else chosen


def _timed(log: ProblemLog, index: FieldmapIndex, match: TimeMatch) -> Fieldmap | None:
    """The fieldmap of a run matched by time: each fieldmap it uses, with its weight and time,
    and the registration target (problems of any of them logged: None)."""

    def read(f: BidsFile) -> Fieldmap | None:
        if f.path not in index.read:
            index.read[f.path] = _gre(log, index, f)
        return index.read[f.path]

    parts = []
    for f, weight, time in match.used:
        found = read(f)
        if found is None:
            return None
        parts.append((found, weight, time))
    target = read(match.target)
    if target is None:
        return None
    heaviest = max(parts, key=lambda p: p[1])[0]
    return dataclasses.replace(
        heaviest,
        rule=match.rule,
        combine=tuple(parts),
        target=target,
        target_time=match.target_time,
        run_time=match.centre,
    )


def _by_rules(
    log: ProblemLog, index: FieldmapIndex, scan: RunScan, prefer: str, chosen: list[BidsFile]
) -> Fieldmap | None:
    """The fieldmap of a run from the images rules 1 or 3 found (problems logged: None)."""
    if not chosen:
        return None
    chosen = _preferred(chosen, prefer)
    if len({_acquisition(f) for f in chosen}) == 1 and all(f.suffix == "epi" for f in chosen):
        return _pepolar(log, index, chosen, scan)
    if len(chosen) > 1:
        # several acquisitions and no time to choose by: the one with the run's run entity,
        # else the first by name, said in the fieldmap's note
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[BidsFile]] = defaultdict(list)
        for f in sorted(chosen, key=lambda f: str(f.path)):
            groups[_acquisition(f)].append(f)
        if len(groups) == 1:  # one acquisition's image twice (.nii and .nii.gz)
            return _gre(log, index, chosen[0])
        own = [g for g in groups.values() if scan.run is not None and g[0].ent("run") == scan.run]
        pick = own[0] if len(own) == 1 else next(iter(groups.values()))
        found = _by_rules(log, index, scan, prefer, pick)
        why = "its run entity" if len(own) == 1 else "the first by name"
        note = f"{len(groups)} fieldmaps, no acquisition times to choose by: {why}"
        return dataclasses.replace(found, note=note) if found else None
    return _gre(log, index, chosen[0])


def _gre(log: ProblemLog, index: FieldmapIndex, fmap: BidsFile) -> Fieldmap | None:
    """A ``phasediff`` or ``fieldmap`` image with its magnitude partner and metadata (problems
    logged: None)."""
    meta = index.metadata(fmap.path)
    side = sidecar_of(fmap.path)

    def partner(suffix: str) -> Path | None:
        return index.partner(fmap, suffix)

    if fmap.suffix == "phasediff":
        te1, te2 = as_number(meta.get("EchoTime1")), as_number(meta.get("EchoTime2"))
        if te1 is None or te2 is None or not 0 < te1 < te2 < 0.1:
            log.add(
                side,
                "EchoTime1 < EchoTime2 in seconds (e.g. 0.00408 and 0.0051)",
                f"EchoTime1 = {meta.get('EchoTime1')!r}, EchoTime2 = {meta.get('EchoTime2')!r}",
                "add both echo times of the fieldmap acquisition to the phasediff sidecar, or "
                "set spatial.fieldmap: false to run without distortion correction",
            )
            return None
        return Fieldmap("phasediff", fmap.path, partner("magnitude1"), te1, te2)
    units = str(meta.get("Units", ""))
    if units not in ("Hz", "rad/s"):
        log.add(
            side,
            'Units "Hz" or "rad/s" for a fieldmap image',
            f"Units = {meta.get('Units')!r}",
            "set Units in the fieldmap sidecar, or set spatial.fieldmap: false",
        )
        return None
    return Fieldmap("fieldmap", fmap.path, partner("magnitude"), units=units)


def _acquisition(f: BidsFile) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The acquisition of an fmap file: its suffix and entities but ``dir`` (the files of a
    reversed phase-encoding pair differ only in ``dir``)."""
    return f.suffix, tuple(sorted((k, v) for k, v in f.entities.items() if k != "dir"))


def _pepolar(
    log: ProblemLog, index: FieldmapIndex, files: list[BidsFile], scan: RunScan
) -> Fieldmap | None:
    """The ``epi`` fieldmap of a run from the images of one acquisition, or None (problems
    logged): each needs ``PhaseEncodingDirection`` and ``TotalReadoutTime``, and together they
    must cover both directions of one axis."""
    images: list[tuple[Path, str, float]] = []
    for f in files:
        meta = index.metadata(f.path)
        pe = meta.get("PhaseEncodingDirection")
        trt = as_number(meta.get("TotalReadoutTime"))
        if pe not in PE_DIRECTIONS or trt is None or not 0 < trt < 0.5:
            log.add(
                sidecar_of(f.path),
                "PhaseEncodingDirection (i, i-, j, j-, k or k-) and TotalReadoutTime (s) in "
                "the sidecar of a reversed phase-encoding (epi) fieldmap",
                f"PhaseEncodingDirection = {pe!r}, TotalReadoutTime = "
                f"{meta.get('TotalReadoutTime')!r}",
                "add both as the scanner wrote them (dcm2niix does), or set "
                "spatial.fieldmap: false to run without distortion correction",
            )
            return None
        images.append((f.path, str(pe), float(trt)))
    directions = sorted({d for _, d, _ in images})
    if len(directions) != 2 or directions[0][0] != directions[1][0]:
        log.add(
            files[0].path,
            f"epi fieldmaps of {scan.title} in the two directions of one phase-encoding axis "
            "(e.g. j and j-)",
            "directions " + ", ".join(directions) + " in " + ", ".join(f.path.name for f in files),
            "name the images of both directions in IntendedFor (dir-AP and dir-PA), or set "
            "spatial.fieldmap: false",
        )
        return None
    images.sort(key=lambda item: (item[1], str(item[0])))
    return Fieldmap("epi", images[0][0], epi=tuple(images))


def phase_encoding(
    log: ProblemLog, metadata: Callable[[Path], Mapping[str, Any]], scan: RunScan
) -> tuple[str | None, float | None]:
    """``(PhaseEncodingDirection, TotalReadoutTime s)`` of a run from its first magnitude
    sidecar; ``TotalReadoutTime`` falls back to ``EffectiveEchoSpacing * (N_pe - 1)``. Values
    that are present but wrong are logged; absent ones give None."""
    if not scan.mags:
        return None, None
    path = scan.mags[min(scan.mags)]
    meta = metadata(path)
    side = sidecar_of(path)
    pe = meta.get("PhaseEncodingDirection")
    if pe is not None and pe not in PE_DIRECTIONS:
        log.add(
            side,
            f"PhaseEncodingDirection one of {', '.join(PE_DIRECTIONS)}",
            f"PhaseEncodingDirection = {pe!r}",
            "write the phase-encoding axis as BIDS does (LAION-fMRI, A>>P: 'j-')",
        )
        pe = None
    trt = as_number(meta.get("TotalReadoutTime"))
    if trt is None and pe is not None and scan.ref_header is not None:
        ees = as_number(meta.get("EffectiveEchoSpacing"))
        shape = scan.ref_header.shape
        if ees is not None and shape is not None:
            trt = ees * (shape["ijk".index(pe[0])] - 1)
    if trt is not None and not 0 < trt < 0.5:
        log.add(
            side,
            "TotalReadoutTime in seconds (e.g. 0.021)",
            f"TotalReadoutTime = {trt!r}",
            "give TotalReadoutTime (or EffectiveEchoSpacing) in seconds",
        )
        trt = None
    return pe, trt
