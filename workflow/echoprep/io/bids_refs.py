"""Reference images of the spatial stage found at discovery: each run's single-band reference
(SBRef) and each subject's T2w (for :func:`echoprep.io.bids.discover`; docs/registration.md).

**SBRef.** ``func/<run>_echo-<E>_sbref.nii[.gz]`` (the raw layout) or
``func/<run>_echo-<E>_part-mag_sbref.nii[.gz]`` (the LAION-fMRI spelling) with the run's
entities (``sub``, ``ses``, ``task``, ``acq``, ``ce``, ``rec``, ``dir``, ``run``) and ``E`` the
spatial stage's reference echo. Checked like the BOLD echoes
(:func:`echoprep.io.bids_run_checks.check_headers`): a readable image of one volume (problems
otherwise), on the grid of the run (same shape, affines within :data:`GRID_TOLERANCE_MM`). An
SBRef on another grid (e.g. another field of view) is legal BIDS but cannot be the run's motion
reference: with ``spatial.motion_reference: auto`` a warning and the run keeps the BOLD
reference; with ``sbref`` a problem, as is a run without an SBRef.

**T2w.** ``anat/*_T2w.nii[.gz]`` of any session (an anatomy-only one too), the first in sorted
order preferring ``sub-X/anat``, like the T1w (:func:`echoprep.io.bids_anat.find_t1w`):
readable, one 3-D volume, a non-singular affine; any grid. Required with
``spatial.registration_target: T2w``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.bids_anat import anat_candidates, pick_anat
from echoprep.io.bids_checks import (
    NIFTI_EXTENSIONS,
    BidsFile,
    ImageHeader,
    ProblemLog,
    affine_difference,
    describe_affine_difference,
)
from echoprep.io.bids_run_checks import acquisition_of

#: Largest affine difference (mm) between an SBRef and its run (as between a run's echoes).
GRID_TOLERANCE_MM = 1e-3


def _one_volume(hdr: ImageHeader) -> bool:
    shape = hdr.shape or ()
    return len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)


def find_sbrefs(
    log: ProblemLog,
    files: Sequence[BidsFile],
    scans: Sequence[Any],
    header: Callable[[Path], ImageHeader],
    echo: int,
    require: bool,
    warnings: list[str],
) -> None:
    """Set ``scan.sbref`` of every run scan to its reference echo's SBRef, or leave it None.

    Parameters
    ----------
    log
        Problems: unreadable SBRefs, several volumes, duplicates; with ``require`` also runs
        without a usable SBRef.
    files
        The dataset's files (those of the selected subjects).
    scans
        :class:`echoprep.io.bids_run_checks.RunScan` of every run (``ref_header`` set).
    header
        Reads a NIfTI header (cached by the index).
    echo
        The echo index whose SBRef serves (``spatial.reference_echo``).
    require
        ``spatial.motion_reference: sbref``: a run without a usable SBRef is a problem (else a
        warning when its SBRef is on another grid).
    warnings
        Extended with the legal-but-unusable SBRefs (``auto``).
    """
    found: dict[tuple[object, ...], list[Path]] = defaultdict(list)
    for f in files:
        if f.suffix != "sbref" or f.ext not in NIFTI_EXTENSIONS or f.datatype != "func":
            continue
        if f.ent("echo") != str(echo) or f.ent("part") not in (None, "mag"):
            continue
        key = (f.ent("sub"), f.ent("ses"), f.ent("task"), acquisition_of(f), f.ent("run"))
        found[key].append(f.path)
    for scan in scans:
        if scan.ref_header is None or not scan.mags:
            continue
        bold = scan.mags[min(scan.mags)]
        paths = sorted(
            found.get((scan.sub, scan.ses, scan.task, scan.acq, scan.run), []),
            key=lambda p: (not p.name.endswith(".gz"), "_part-" not in p.name),
        )
        if len(paths) > 1:
            log.add(
                paths[1],
                f"one SBRef of echo-{echo} for {scan.title}",
                f"{len(paths)}: {', '.join(p.name for p in paths)}",
                "delete the duplicate (the .nii/.nii.gz copy, or the part-less copy of a "
                "part-mag SBRef)",
            )
            continue
        fix_mode = "or set spatial.motion_reference: bold (head motion to the BOLD volumes)"
        if not paths:
            if require:
                log.add(
                    bold.with_name(bold.name.replace("_bold.nii", "_sbref.nii")),
                    f"the SBRef of echo-{echo} of {scan.title} (spatial.motion_reference: sbref)",
                    "no *_sbref.nii[.gz] with the run's entities",
                    f"add the run's single-band reference, {fix_mode}",
                )
            continue
        path = paths[0]
        hdr = header(path)
        if hdr.error is not None or not _one_volume(hdr):
            log.add(
                path,
                "a readable single-band reference of one volume (3-D, or 4-D with 1 volume)",
                hdr.error or f"shape {hdr.shape}",
                f"replace it with a good copy or move it to sourcedata/, {fix_mode}",
            )
            continue
        ref = scan.ref_header
        assert hdr.shape is not None and ref.shape is not None
        if tuple(hdr.shape[:3]) != tuple(ref.shape[:3]):
            found_text = f"shape {tuple(hdr.shape[:3])} (the BOLD's {tuple(ref.shape[:3])})"
        elif affine_difference(hdr, ref) > GRID_TOLERANCE_MM:
            found_text = describe_affine_difference(hdr, ref)
        else:
            scan.sbref = path
            continue
        expected = (
            f"the grid of {bold.name} (shape and affine within {GRID_TOLERANCE_MM} mm): the "
            "SBRef is the run's motion reference"
        )
        if require:
            log.add(
                path,
                expected,
                found_text,
                f"re-convert the SBRef with the run's geometry, {fix_mode}",
            )
        else:
            warnings.append(
                f"{log.rel(path)}: on another grid than its run ({found_text}); the run's head "
                "motion is estimated to its BOLD volumes instead (spatial.motion_reference: "
                "auto)"
            )


def find_t2w(
    log: ProblemLog,
    files: Sequence[BidsFile],
    subjects: Sequence[str],
    require: bool,
    header: Callable[[Path], ImageHeader],
    warnings: list[str],
    entities: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """The T2w of each subject (any session, preferring ``sub-X/anat``; among several, the
    first with ``entities``, ``anatomy.t2w``, with a warning: :func:`~echoprep.io.bids_anat.
    pick_anat`), header checked.

    Parameters
    ----------
    log
        Problems: unreadable, not one 3-D volume, a singular affine; with ``require`` a
        subject without a T2w.
    files, subjects
        The dataset's files and the selected subjects.
    require
        ``spatial.registration_target: T2w``.
    header
        Reads a NIfTI header.
    warnings, entities
        Where the warning of several T2w images goes; ``anatomy.t2w``.

    Returns
    -------
    dict
        Subject label → T2w image.
    """
    by_subject = anat_candidates(files, "T2w")
    out: dict[str, Path] = {}
    for sub in subjects:
        images = by_subject.get(sub, [])
        if not images:
            if require:
                log.add(
                    f"sub-{sub}/anat/sub-{sub}_T2w.nii.gz",
                    f"a T2w image of sub-{sub} (spatial.registration_target: T2w)",
                    "no *_T2w.nii[.gz] for this subject",
                    "add the T2w (any session's anat/), or set spatial.registration_target: "
                    "T1w or auto",
                )
            continue
        chosen = pick_anat(log, sub, images, entities, "T2w", warnings)
        if chosen is None:
            continue
        path = chosen.path
        hdr = header(path)
        if hdr.error is not None or not _one_volume(hdr):
            found = hdr.error or f"shape {hdr.shape}"
        elif abs(float(np.linalg.det(hdr.affine_array[:3, :3]))) < 1e-9:
            found = "a singular affine (a voxel size of 0)"
        else:
            out[sub] = path
            continue
        log.add(
            path,
            "a readable 3-D T2w image with a voxel-to-world affine",
            found,
            "replace it with a good copy (re-convert it from DICOM), or set "
            "spatial.registration_target: T1w",
        )
    return out


def find_references(
    log: ProblemLog,
    files: Sequence[BidsFile],
    scans: Sequence[Any],
    subjects: Sequence[str],
    header: Callable[[Path], ImageHeader],
    references: tuple[int | None, bool, str],
    warnings: list[str],
    t2w_entities: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """:func:`find_sbrefs` (``references[0]`` the echo, None: none; ``[1]`` required) and
    :func:`find_t2w` (``references[2]``: ``"T1w"`` none, ``"auto"``, ``"T2w"`` required;
    ``t2w_entities``: ``anatomy.t2w``); returns the T2w per subject."""
    sbref_echo, require_sbref, target = references
    if sbref_echo is not None:
        find_sbrefs(log, files, scans, header, sbref_echo, require_sbref, warnings)
    if target == "T1w":
        return {}
    return find_t2w(log, files, subjects, target == "T2w", header, warnings, t2w_entities)


__all__ = ["GRID_TOLERANCE_MM", "find_references", "find_sbrefs", "find_t2w"]
