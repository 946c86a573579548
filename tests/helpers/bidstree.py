"""Tiny raw multi-echo BIDS datasets for tests, and helpers to break them on purpose.

:func:`make_bids_tree` writes a minimal valid raw BIDS dataset shaped like LAION-fMRI
(``sub-X/ses-Y/func/*_task-images_run-R_echo-E_part-{mag,phase}_bold.nii.gz`` + ``.json``,
``*_run-R_events.tsv``, an anatomical T1w). Images are a few kB (int16, shape ``(6, 7, 5)``
by default); with ``data=False`` only the NIfTI headers are written (any shape costs ~100
bytes; a ``.gz`` trailer states the full image's length), which is enough for input discovery
and ``snakemake -n`` but not for loading data.

The mutation helpers (:func:`remove`, :func:`edit_sidecar`, :func:`write_nifti`,
:func:`corrupt`, :func:`set_read_only`) exist for the error-report tests. Names come from
:func:`echoprep.io.paths.bids_name`, the project's one path builder.
"""

from __future__ import annotations

import json
import os
import stat
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.events import MIN_RESPONSE_S
from echoprep.io.paths import bids_path, sidecar_path

#: Voxel size (mm) of the functional images, as in LAION-fMRI.
FUNC_VOXEL = 1.8
#: Voxel size (mm) and shape of the tiny T1w.
T1W_VOXEL = 1.0
T1W_SHAPE = (8, 9, 7)
#: Total readout time (s) written to the BOLD sidecars.
TOTAL_READOUT_TIME = 0.0383
#: Length of one trial (s): image 2.5 s + 0.5 s gap, as in LAION-fMRI.
TRIAL_S = 3.0

EVENTS_COLUMNS = ("onset", "duration", "trial_type", "stim_name")


# --------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------


def _ents(
    sub: str, ses: str | None, task: str | None, run: str | None, **more: object
) -> dict[str, object]:
    ents: dict[str, object] = {"sub": sub, "ses": ses, "task": task, "run": run}
    ents.update(more)
    return {k: v for k, v in ents.items() if v is not None}


def bold_path(
    root: str | Path,
    sub: str = "01",
    ses: str | None = "01",
    run: str | None = "01",
    echo: int | None = 1,
    part: str | None = "mag",
    *,
    task: str = "images",
    ext: str = ".nii.gz",
) -> Path:
    """Path of a BOLD image; ``part=None`` gives the part-less (magnitude-only) name."""
    return bids_path(root, _ents(sub, ses, task, run, echo=echo, part=part), "bold", ext)


def events_path(
    root: str | Path,
    sub: str = "01",
    ses: str | None = "01",
    run: str | None = "01",
    *,
    task: str = "images",
) -> Path:
    """Path of a run's ``events.tsv``."""
    return bids_path(root, _ents(sub, ses, task, run), "events", ".tsv")


def fmap_path(
    root: str | Path,
    kind: str,
    sub: str = "01",
    ses: str | None = "01",
    run: str | None = "01",
) -> Path:
    """Path of a fieldmap image (``kind``: magnitude1, phasediff, ...)."""
    return bids_path(root, _ents(sub, ses, None, run), kind, ".nii.gz", "fmap")


def t1w_path(root: str | Path, sub: str = "01", ses: str | None = None) -> Path:
    """Path of a subject's T1w (``ses=None``: directly under ``sub-X/anat``)."""
    return bids_path(root, _ents(sub, ses, None, None), "T1w", ".nii.gz", datatype="anat")


# --------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------


def default_affine(shape: Sequence[int], voxel: float = FUNC_VOXEL) -> np.ndarray:
    """Isotropic RAS affine with the volume centred on the scanner origin."""
    aff = np.diag([voxel, voxel, voxel, 1.0])
    aff[:3, 3] = -voxel * (np.asarray(shape[:3], dtype=float) - 1) / 2
    return aff


def write_json(path: str | Path, content: Mapping[str, Any]) -> Path:
    """Write JSON with sorted keys (parents created)."""
    return _write_text(Path(path), json.dumps(dict(content), indent=2, sort_keys=True) + "\n")


def _write_text(path: Path, text: str) -> Path:
    """Write unless the file already holds exactly ``text`` (keeps mtimes of unchanged files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.is_file() and path.read_text() == text):
        path.write_text(text)
    return path


def write_nifti(
    path: str | Path,
    shape: Sequence[int],
    affine: np.ndarray | None = None,
    *,
    data: bool = True,
    tr: float | None = None,
    part: str = "mag",
    seed: int = 0,
) -> Path:
    """Write an int16 NIfTI-1 image (any dimensionality).

    Parameters
    ----------
    path
        ``.nii`` or ``.nii.gz``; parents are created.
    shape
        Image shape, e.g. ``(6, 7, 5, 12)``; a 3-D shape gives a single volume.
    affine
        4×4 voxel-to-world matrix (mm); default :func:`default_affine` at 1.8 mm.
    data
        ``False`` writes the header only (valid for header readers, not for data loads).
    tr
        Seconds; stored as the 4th zoom of 4-D images.
    part
        ``"mag"`` (positive values) or ``"phase"`` (Siemens-like −4096…4095).
    seed
        Seed of the random voxel values.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(s) for s in shape)
    aff = default_affine(shape) if affine is None else np.asarray(affine, dtype=float)
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    hdr.set_data_shape(shape)
    voxel = tuple(float(v) for v in np.sqrt((aff[:3, :3] ** 2).sum(axis=0)))
    zooms = voxel[: len(shape)] + (float(tr if tr else 1.0),) * max(0, len(shape) - 3)
    hdr.set_zooms(zooms)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_qform(aff, code=1)
    hdr.set_sform(aff, code=1)
    if data:
        rng = np.random.default_rng(seed)
        if part == "phase":
            arr = rng.integers(-4096, 4096, size=shape, dtype=np.int16)
        else:
            arr = rng.integers(800, 1200, size=shape, dtype=np.int16)
        nib.save(nib.Nifti1Image(arr, aff, header=hdr), str(path))
        return path
    hdr["vox_offset"] = 352
    head = hdr.binaryblock + b"\x00" * 4  # header and an empty extension block
    if not path.name.endswith(".gz"):
        path.write_bytes(head)
        return path
    # A gzip stream that is never finished: the header and some zero data, then a stored
    # deflate block of 4 bytes holding the complete image's length, where a gzip trailer keeps
    # it. Header readers see a normal start (nothing reads to the end); discovery's truncation
    # check, which reads only those last 4 bytes, sees the full image's length.
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    body = packer.compress(head + b"\x00" * 4096) + packer.flush(zlib.Z_SYNC_FLUSH)
    full = len(head) + int(np.prod(shape)) * 2
    stored = b"\x00\x04\x00\xfb\xff"  # not final, stored, LEN 4, NLEN
    path.write_bytes(body + stored + (full % 2**32).to_bytes(4, "little"))
    return path


def _events_rows(run_index: int, duration_s: float) -> list[tuple[float, float, str, str]]:
    """3-s trials; every 4th trial blank; images repeat across runs (old after run 1). The last
    trial starts early enough for the GLM to model it (``MIN_RESPONSE_S`` of data after its
    onset's volume, with 2 s to spare for the volume grid), as in a real run's design."""
    rows = []
    n_trials = max(1, int((duration_s - MIN_RESPONSE_S - 2.0) // TRIAL_S) + 1)
    for i in range(n_trials):
        onset = i * TRIAL_S
        if i % 4 == 3:
            rows.append((onset, 2.5, "blank", "n/a"))
            continue
        image = (i + run_index) % 5  # 5 images over 5 trials a run: shown 1-3 times a session
        trial_type = "new" if run_index == 0 else "old"
        rows.append((onset, 2.5, trial_type, f"img{image:04d}.jpg"))
    return rows


def write_events(path: str | Path, run_index: int = 0, duration_s: float = 22.8) -> Path:
    """Write an ``events.tsv`` with onset, duration, trial_type, stim_name."""
    path = Path(path)
    lines = ["\t".join(EVENTS_COLUMNS)]
    for onset, dur, ttype, stim in _events_rows(run_index, duration_s):
        lines.append(f"{onset:.1f}\t{dur:.1f}\t{ttype}\t{stim}")
    return _write_text(path, "\n".join(lines) + "\n")


def slice_timing(n_slices: int, tr: float, multiband: int = 1) -> list[float]:
    """Interleaved (odd then even) slice times in s, shared by ``multiband`` slice groups."""
    n_exc = max(1, -(-n_slices // multiband))
    order = list(range(0, n_exc, 2)) + list(range(1, n_exc, 2))
    step = tr / n_exc
    per_exc = {slc: rank * step for rank, slc in enumerate(order)}
    return [round(per_exc[s % n_exc], 6) for s in range(n_slices)]


def make_bids_tree(
    root: str | Path,
    subjects: Sequence[str] = ("01",),
    sessions: Sequence[str | None] = ("01",),
    runs: Sequence[str | None] = ("01", "02"),
    echoes: Sequence[float] = (0.011, 0.02882, 0.04662),
    phase: bool = True,
    shape: Sequence[int] = (6, 7, 5),
    n_volumes: int = 12,
    tr: float = 1.9,
    task: str = "images",
    t1w: bool | str = True,
    data: bool = True,
    fieldmap: bool = False,
) -> Path:
    """Write a minimal valid raw multi-echo BIDS dataset.

    Parameters
    ----------
    root
        Dataset folder (created; may exist).
    subjects, sessions, runs
        Labels as they appear in file names. ``sessions=(None,)`` writes no session level;
        ``runs=(None,)`` writes one run without a ``run`` entity.
    echoes
        Echo times in s; echo ``k`` (1-based) gets ``echoes[k-1]``.
    phase
        Also write ``part-phase`` images; ``False`` writes part-less magnitude files.
    shape, n_volumes, tr
        Spatial shape, number of volumes and repetition time (s) of every BOLD run.
    task
        Task label.
    t1w
        ``True``: one T1w per subject in its first session (or in ``sub-X/anat`` when there
        are no sessions); a string: in that session (e.g. ``"PrismaAnat"``); ``False``: none.
    data
        ``False`` writes NIfTI headers only (see module docstring).
    fieldmap
        Also write a dual-echo GRE fieldmap per run (``fmap/*_run-R_{magnitude1,phasediff}``,
        ``IntendedFor`` naming the run's BOLD files).

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # top-level files are rewritten only when their content changes, so that calling this
    # again to add a subject leaves the other files (and their mtimes) alone
    write_json(
        root / "dataset_description.json",
        {
            "Name": "echoprep test dataset",
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["echoprep tests"],
        },
    )
    _write_text(root / "README.md", "Synthetic multi-echo BOLD data written by echoprep tests.\n")
    participants = root / "participants.tsv"
    ids = participants.read_text().split()[1:] if participants.is_file() else []
    ids = sorted(set(ids) | {f"sub-{s}" for s in subjects})
    _write_text(participants, "participant_id\n" + "".join(f"{i}\n" for i in ids))
    write_json(
        root / "participants.json",
        {"participant_id": {"Description": "Participant label"}},
    )
    write_json(
        root / f"task-{task}_events.json",
        {
            "trial_type": {
                "Description": "Trial kind",
                "Levels": {"new": "first presentation", "old": "repeat", "blank": "no image"},
            },
            "stim_name": {"Description": "Presented image file"},
        },
    )
    shape = tuple(int(s) for s in shape[:3])
    affine = default_affine(shape)
    st = slice_timing(shape[2], tr, multiband=3 if shape[2] >= 6 else 1)
    seed = 0
    for sub in subjects:
        for ses in sessions:
            for r_idx, run in enumerate(runs):
                for e_idx, te in enumerate(echoes, start=1):
                    parts: Iterable[str | None] = ("mag", "phase") if phase else (None,)
                    for part in parts:
                        img = bold_path(root, sub, ses, run, e_idx, part, task=task)
                        seed += 1
                        write_nifti(
                            img,
                            (*shape, n_volumes),
                            affine,
                            data=data,
                            tr=tr,
                            part=part or "mag",
                            seed=seed,
                        )
                        meta: dict[str, Any] = {
                            "EchoTime": te,
                            "RepetitionTime": tr,
                            "SliceTiming": st,
                            "PhaseEncodingDirection": "j-",
                            "TotalReadoutTime": TOTAL_READOUT_TIME,
                            "TaskName": task,
                            "MagneticFieldStrength": 7,
                        }
                        if part == "phase":
                            meta["Units"] = "arbitrary"
                        write_json(sidecar_path(img), meta)
                write_events(events_path(root, sub, ses, run, task=task), r_idx, n_volumes * tr)
                if fieldmap:
                    targets = [
                        bold_path(root, sub, ses, run, e, part, task=task)
                        .relative_to(root / f"sub-{sub}")
                        .as_posix()
                        for e in range(1, len(echoes) + 1)
                        for part in (("mag", "phase") if phase else (None,))
                    ]
                    for kind in ("magnitude1", "phasediff"):
                        path = fmap_path(root, kind, sub, ses, run)
                        seed += 1
                        write_nifti(path, shape, affine, data=data, seed=seed)
                        meta = {"IntendedFor": targets}
                        if kind == "phasediff":
                            meta |= {"EchoTime1": 0.00408, "EchoTime2": 0.0051}
                        write_json(sidecar_path(path), meta)
        if t1w:
            t1_ses = t1w if isinstance(t1w, str) else sessions[0]
            t1 = t1w_path(root, sub, t1_ses)
            write_nifti(t1, T1W_SHAPE, default_affine(T1W_SHAPE, T1W_VOXEL), data=data)
            write_json(sidecar_path(t1), {"MagneticFieldStrength": 3})
    return root


def write_freesurfer_subject(
    folder: str | Path, vertices: int = 12, with_inflated: bool = False
) -> Path:
    """A minimal FreeSurfer subject folder (``mri/orig.mgz``, an 8³ volume; per hemisphere
    ``surf/{white,pial,sphere.reg}``: an icosahedron, or its first ``vertices`` points and the
    faces among them) at ``folder`` (e.g. ``<bids>/derivatives/freesurfer/sub-01``): enough
    for discovery and ``snakemake -n``, not for sampling."""
    from nibabel import freesurfer as nfs

    folder = Path(folder)
    (folder / "mri").mkdir(parents=True, exist_ok=True)
    (folder / "surf").mkdir(parents=True, exist_ok=True)
    nib.save(nib.MGHImage(np.zeros((8, 8, 8), np.uint8), np.eye(4)), folder / "mri" / "orig.mgz")
    t = (1 + 5**0.5) / 2
    coords = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
         [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float
    )  # fmt: skip
    faces = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    )  # fmt: skip
    coords, faces = coords[:vertices], faces[np.all(faces < vertices, axis=1)]
    for hemi in ("lh", "rh"):
        names = {"white": 30.0, "pial": 33.0, "sphere.reg": 100.0}
        if with_inflated:
            names["inflated"] = 40.0
        for name, radius in names.items():
            nfs.write_geometry(str(folder / "surf" / f"{hemi}.{name}"), coords * radius, faces)
    return folder


# --------------------------------------------------------------------------------------
# mutations for error tests
# --------------------------------------------------------------------------------------


def remove(*paths: str | Path, sidecar: bool = True) -> None:
    """Delete files; for images also their JSON sidecar (unless ``sidecar=False``)."""
    for p in paths:
        p = Path(p)
        p.unlink()
        side = sidecar_path(p)
        if sidecar and side != p and side.exists():
            side.unlink()


def name_phase_as_before_bids_1_5(root: str | Path) -> None:
    """Rename every ``part-mag``/``part-phase`` BOLD file (and sidecar) to the names BIDS
    used before 1.5: part-less ``_bold`` magnitude and ``_phase`` phase."""
    for path in sorted(Path(root).rglob("*_part-*_bold.*")):
        name = path.name.replace("_part-mag_bold", "_bold").replace("_part-phase_bold", "_phase")
        path.rename(path.with_name(name))


def edit_sidecar(path: str | Path, **changes: Any) -> Path:
    """Update keys of an image's sidecar (or of a JSON file); a ``None`` value deletes the key.

    Returns the JSON path.
    """
    side = Path(path) if str(path).endswith(".json") else sidecar_path(path)
    content = json.loads(side.read_text()) if side.exists() else {}
    for key, value in changes.items():
        if value is None:
            content.pop(key, None)
        else:
            content[key] = value
    return write_json(side, content)


def corrupt(path: str | Path, content: bytes = b"this is not a NIfTI file\n") -> Path:
    """Overwrite a file with bytes no reader accepts (a ``.gz`` name gives a bad gzip)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def set_read_only(root: str | Path, read_only: bool = True) -> Path:
    """``chmod -R a-w`` (or restore ``u+w``) on a tree; restore before pytest cleans up."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, None]:
            p = Path(dirpath) if name is None else Path(dirpath) / name
            mode = p.stat().st_mode
            if read_only:
                mode &= ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
            else:
                mode |= stat.S_IWUSR
            os.chmod(p, mode)
    return root
