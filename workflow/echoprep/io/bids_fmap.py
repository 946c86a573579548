"""Fieldmaps and phase-encoding facts of BOLD runs (for susceptibility distortion correction).

Supported fieldmaps (BIDS "fmap" datatype):

- ``phasediff`` (+ ``magnitude1``/``magnitude2``) of a dual-echo GRE, with ``EchoTime1`` and
  ``EchoTime2`` (s) in the phasediff sidecar (LAION-fMRI: ΔTE 1.02 ms);
- ``fieldmap`` (+ ``magnitude``): a field map in Hz (``Units`` "Hz"; "rad/s" is converted).

A fieldmap belongs to a run when its sidecar's ``IntendedFor`` names one of the run's BOLD
files (paths relative to the subject folder, or ``bids::`` URIs relative to the dataset root),
else when it carries the run's ``ses`` and ``run`` entities, else when it is the only fieldmap
of the run's session. The run's ``PhaseEncodingDirection`` and ``TotalReadoutTime`` (or
``EffectiveEchoSpacing`` and the matrix size) come from its BOLD sidecars.
"""

from __future__ import annotations

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
from echoprep.io.bids_run_checks import RunScan

#: BIDS PhaseEncodingDirection values.
PE_DIRECTIONS = ("i", "i-", "j", "j-", "k", "k-")


@dataclass(frozen=True)
class Fieldmap:
    """The fieldmap files of one run.

    Attributes
    ----------
    kind
        ``"phasediff"`` or ``"fieldmap"``.
    image
        The phase-difference image (scanner units or rad) or the field map.
    magnitude
        A magnitude image of the fieldmap acquisition (``magnitude1`` / ``magnitude``), or None.
    echo_time1, echo_time2
        Echo times of a phasediff, s (None for ``fieldmap``).
    units
        Units of a ``fieldmap`` image (``"Hz"`` or ``"rad/s"``); None for phasediff.
    """

    kind: str
    image: Path
    magnitude: Path | None = None
    echo_time1: float | None = None
    echo_time2: float | None = None
    units: str | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the fieldmap (the inputs of a rule using it)."""
        return tuple(p for p in (self.image, self.magnitude) if p is not None)

    def as_spec(self) -> dict[str, Any]:
        """JSON-able description the spatial stage reads (``run_geometry(fieldmap=...)``,
        ``spatial run --fieldmap-json``): paths as strings, the other fields as they are."""
        return {
            "image": str(self.image),
            "kind": self.kind,
            "magnitude": str(self.magnitude) if self.magnitude else None,
            "echo_time1": self.echo_time1,
            "echo_time2": self.echo_time2,
            "units": self.units,
        }


def _intended(meta: Mapping[str, Any]) -> list[str]:
    value = meta.get("IntendedFor", [])
    items = [value] if isinstance(value, str) else list(value or [])
    out = []
    for item in items:
        text = str(item)
        out.append(text.removeprefix("bids::"))
    return out


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def find_fieldmap(
    log: ProblemLog,
    metadata: Callable[[Path], Mapping[str, Any]],
    root: Path,
    scan: RunScan,
    fmap_files: Sequence[BidsFile],
) -> Fieldmap | None:
    """The fieldmap of a run (or None); problems with a matching fieldmap are logged."""
    mine = [
        f
        for f in fmap_files
        if f.entities["sub"] == scan.sub and f.datatype == "fmap" and f.ext in NIFTI_EXTENSIONS
    ]
    images = [f for f in mine if f.suffix in ("phasediff", "fieldmap")]
    if not images:
        return None
    bold = [*scan.mags.values(), *scan.phases.values()]
    targets = {_relative(p, root) for p in bold}
    targets |= {_relative(p, root / f"sub-{scan.sub}") for p in bold}
    chosen = [f for f in images if targets & set(_intended(metadata(f.path)))]
    if not chosen:
        chosen = [
            f
            for f in images
            if f.ent("ses") == scan.ses and f.ent("run") is not None and f.ent("run") == scan.run
        ]
    if not chosen:
        same_session = [f for f in images if f.ent("ses") == scan.ses]
        chosen = same_session if len(same_session) == 1 else []
    if not chosen:
        return None
    if len(chosen) > 1:
        log.add(
            chosen[0].path,
            f"one fieldmap for {scan.title}",
            f"{len(chosen)}: " + ", ".join(f.path.name for f in chosen),
            "make IntendedFor name each BOLD run in one fieldmap only",
        )
        return None
    fmap = chosen[0]
    meta = metadata(fmap.path)
    side = sidecar_of(fmap.path)
    base = {k: v for k, v in fmap.entities.items() if k != "sub"}

    def partner(suffix: str) -> Path | None:
        for f in mine:
            if f.suffix == suffix and {k: v for k, v in f.entities.items() if k != "sub"} == base:
                return f.path
        return None

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
