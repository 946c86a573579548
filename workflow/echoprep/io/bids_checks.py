"""Problem reports and the low-level checks behind :func:`echoprep.io.bids.discover`.

Every check appends an :class:`InputProblem` (which file, what was expected, what was found,
how to fix it) instead of raising, so that a user sees all problems of a dataset at once;
:func:`echoprep.io.bids.discover` raises one :class:`BIDSInputError` at the end. Here: the
problem log, file names, image headers, metadata values; the checks of a run and across runs
are in :mod:`echoprep.io.bids_run_checks`.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger("echoprep.io.bids")

#: Echo times of the same echo index may differ across runs by at most this much (s).
ECHO_TIME_TOL_S = 1e-4
#: Echo times above this (s) are taken to be written in milliseconds.
MAX_ECHO_TIME_S = 1.0
#: Repetition times above this (s) are taken to be written in milliseconds.
MAX_REPETITION_TIME_S = 100.0
#: Entities that name a run; every other entity except echo/part names an acquisition variant.
RUN_ENTITIES = ("sub", "ses", "task", "run")
#: Entities that tell acquisitions apart: each combination is a run of its own.
ACQUISITION_ENTITIES = ("acq", "ce", "rec", "dir")
FILE_ENTITIES = ("echo", "part")
EVENTS_COLUMNS_REQUIRED = ("onset", "duration")
EVENTS_COLUMNS_DOCUMENTED = "onset, duration, trial_type, stim_name"

NIFTI_EXTENSIONS = (".nii.gz", ".nii")

#: T1w voxel sizes the anatomy stage works with, mm (outside: a header in other units or the
#: wrong file).
T1W_VOXEL_RANGE_MM = (0.2, 6.0)
#: Fewest voxels along every T1w axis (fewer: a slice or a line, not a 3D image).
T1W_MIN_VOXELS = 4
#: A T1w field of view below this along an axis (mm) is smaller than an adult whole head: a
#: small head, a child or a slab. Legal: a warning (at plan time and in the anatomy sidecars).
T1W_USUAL_FOV_MM = 80.0
_EXTENSIONS = (".nii.gz", ".nii", ".json", ".tsv.gz", ".tsv")


class InputProblem(NamedTuple):
    """One problem in the BIDS input: which file, what was expected, what was found, the fix."""

    file: str
    expected: str
    found: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: expected {self.expected}; found {self.found}. Fix: {self.fix}"


class BIDSInputError(ValueError):
    """All problems found in a BIDS input dataset, reported together.

    Parameters
    ----------
    problems
        The problems, in the order they were found.
    root
        The dataset folder (named in the header line).
    """

    def __init__(self, problems: Sequence[InputProblem], root: str | Path) -> None:
        self.problems: list[InputProblem] = list(problems)
        self.root = Path(root)
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [f"{len(self.problems)} problem(s) in the BIDS input {self.root}:"]
        lines += [f"  {i}. {p}" for i, p in enumerate(self.problems, start=1)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.root))


class ProblemLog:
    """Collects problems; names files relative to the dataset root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[InputProblem] = []

    def rel(self, path: str | Path) -> str:
        """``path`` relative to the dataset root (POSIX), or as given when outside it."""
        p = Path(path)
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return str(p)

    def add(self, file: str | Path, expected: str, found: str, fix: str) -> None:
        """Record a problem (``file`` may be a path; it is shown relative to the root)."""
        name = file if isinstance(file, str) else self.rel(file)
        problem = InputProblem(name, expected, found, fix)
        if problem not in self.problems:
            self.problems.append(problem)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __len__(self) -> int:
        return len(self.problems)


# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------


def split_extension(name: str) -> tuple[str, str]:
    """``"x_bold.nii.gz"`` → ``("x_bold", ".nii.gz")`` (known BIDS extensions only)."""
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.rpartition(".")
    return (stem, f".{ext}") if dot else (name, "")


def parse_name(name: str) -> tuple[dict[str, str], str, str] | None:
    """Entities (labels exactly as written), suffix and extension of a BIDS file name.

    Returns ``None`` for names that are not ``key-label_..._suffix.ext``.
    """
    stem, ext = split_extension(name)
    parts = stem.split("_")
    if len(parts) < 2:
        return None
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        key, dash, label = part.partition("-")
        if not dash or not key or not label or key in entities:
            return None
        entities[key] = label
    return entities, parts[-1], ext


def with_entity(name: str, key: str, label: str | None, before: str = "_bold") -> str:
    """Set (or, with ``label=None``, drop) one entity in a file name."""
    pattern = re.compile(rf"_{key}-[^_]+")
    if label is None:
        return pattern.sub("", name)
    if pattern.search(name):
        return pattern.sub(f"_{key}-{label}", name)
    idx = name.rfind(before)
    return f"{name[:idx]}_{key}-{label}{name[idx:]}" if idx >= 0 else name


def sidecar_of(path: Path) -> Path:
    """The JSON sidecar that sits next to an image."""
    stem, _ = split_extension(path.name)
    return path.with_name(f"{stem}.json")


def run_title(
    sub: str, ses: str | None, task: str, run: str | None, acq: Sequence[tuple[str, str]] = ()
) -> str:
    """``"sub-01 ses-01 task-images [acq-mb4] run-01"`` (absent entities left out)."""
    ents = [("sub", sub), ("ses", ses), ("task", task), *acq, ("run", run)]
    return " ".join(f"{k}-{v}" for k, v in ents if v is not None)


def fmt_list(values: Iterable[object], first: int | None = None, sep: str = ", ") -> str:
    """``[1, 2, 3]`` → ``"1, 2, 3"`` (``"none"`` when empty); ``first=2``: ``"1, 2 and 1 more"``."""
    items = [str(v) for v in values]
    more = f" and {len(items) - first} more" if first is not None and len(items) > first else ""
    return sep.join(items[:first]) + more if items else "none"


def fmt_seconds(value: float) -> str:
    """Short decimal seconds, e.g. ``0.02882``."""
    return f"{value:.6g}"


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageHeader:
    """What discovery needs from a NIfTI header (``error`` set when it could not be read)."""

    shape: tuple[int, ...] | None = None
    affine: tuple[tuple[float, ...], ...] | None = None
    error: str | None = None
    #: Spatial unit of the header (nibabel's ``xyzt_units`` name: ``"mm"``, ``"unknown"``, ...).
    units: str | None = None
    #: The 4th zoom of a 4-D image in seconds (header time units; as stored when unknown).
    volume_seconds: float | None = None

    @property
    def affine_array(self) -> np.ndarray:
        """The affine as a 4×4 array."""
        return np.asarray(self.affine, dtype=float)


def _image_start(path: Path, n: int = 540) -> tuple[bytes, int | None] | None:
    """The first ``n`` bytes of an image (decompressed for ``.gz``) and, for ``.gz``, the
    uncompressed length its gzip trailer states (modulo 2**32; None for ``.nii``), read with
    one open; None when the start cannot be read (nibabel then reports why)."""
    try:
        with open(path, "rb") as fh:
            if not path.name.endswith(".gz"):
                return fh.read(n), None
            out = b""
            unpack = zlib.decompressobj(31)
            data = fh.read(1 << 14)
            while data and len(out) < n:
                out += unpack.decompress(data, n - len(out))
                data = unpack.unconsumed_tail
                if unpack.eof:  # a member shorter than n: the next member goes on
                    data, unpack = unpack.unused_data, zlib.decompressobj(31)
                if not data and len(out) < n:
                    data = fh.read(1 << 14)
            fh.seek(0, os.SEEK_END)
            if fh.tell() < 18:
                return out, None
            fh.seek(-4, os.SEEK_END)
            return out, int.from_bytes(fh.read(4), "little")
    except (OSError, zlib.error):
        return None


def _single_file_header(raw: bytes) -> Any:
    """The header of a single-file NIfTI-1 or NIfTI-2 image (``.nii``/``.nii.gz``) from its
    first bytes (:func:`_image_start`), without building an image; None for anything else."""
    import nibabel as nib

    for klass, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        if len(raw) < size:
            continue
        for order in "<>":
            if int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0]) == size:
                try:
                    hdr = klass.from_fileobj(io.BytesIO(raw[:size]))
                except Exception:
                    return None
                return hdr if bytes(hdr["magic"]).startswith((b"n+1", b"n+2")) else None
    return None


def _gzip_shortfall(path: Path, needed: int, stated: int | None) -> str | None:
    """Why a ``.nii.gz`` holds fewer than ``needed`` bytes (header + data), or None.

    The gzip trailer states the uncompressed length (modulo 2**32) of the file's last member
    (``stated``, read with the header by :func:`_image_start`): when it matches, nothing else
    is read. When it does not (a truncated copy, or a legal multi-member file), the file is
    decompressed up to ``needed`` bytes to be sure.
    """
    if stated == needed % 2**32:
        return None
    try:
        total = 0
        with gzip.open(path, "rb") as gz:
            while total < needed:
                chunk = gz.read(1 << 22)
                if not chunk:
                    break
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        return f"a truncated or damaged gzip file ({type(exc).__name__}: {exc})"
    if total < needed:
        return f"a truncated file: {total} bytes uncompressed, its header needs {needed} bytes"
    return None


def read_header(path: Path) -> ImageHeader:
    """Read shape and affine from a NIfTI header (no voxel data is read).

    Unreadable files give an :class:`ImageHeader` with ``error`` naming the reader's error.
    Files shorter than their header says are reported as truncated (``.nii``: the file size;
    ``.nii.gz``: the gzip trailer, :func:`_gzip_shortfall`).
    """
    import nibabel as nib

    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        return ImageHeader(
            error=f"a broken symbolic link to {target} (annexed content not retrieved? "
            "try `datalad get` or `git annex get`)"
        )
    try:
        start = _image_start(path)
        hdr: Any = _single_file_header(start[0]) if start is not None else None
        if hdr is None:  # not a plain NIfTI-1/2 header: nibabel's loader, with its messages
            hdr = nib.load(str(path)).header
        shape = tuple(int(s) for s in hdr.get_data_shape())
        affine = np.asarray(hdr.get_best_affine(), dtype=float)
        get_units = getattr(hdr, "get_xyzt_units", None)
        units = str(get_units()[0]) if get_units is not None else None
        volume_seconds = None
        if len(shape) == 4:
            zoom = float(hdr.get_zooms()[3])
            scale = {"msec": 1e-3, "usec": 1e-6}.get(get_units()[1] if get_units else "", 1.0)
            volume_seconds = zoom * scale if zoom > 0 else None
        itemsize = np.dtype(hdr.get_data_dtype()).itemsize
        needed = int(hdr.get_data_offset()) + int(np.prod(shape)) * itemsize
        if path.name.endswith(".nii"):  # the data on disk: offset and dtype from the header
            size = path.stat().st_size
            if size < needed:
                return ImageHeader(
                    error=f"a truncated file: {size} bytes, its header needs {needed} bytes"
                )
        elif path.name.endswith(".gz"):
            short = _gzip_shortfall(path, needed, start[1] if start is not None else None)
            if short:
                return ImageHeader(error=short)
    except Exception as exc:  # any reader failure is reported, not raised
        message = str(exc).replace(str(path), path.name).strip().replace("\n", " ")
        return ImageHeader(
            error=f"nibabel could not read it ({type(exc).__name__}: {message or 'no message'})"
        )
    if not np.all(np.isfinite(affine)):
        return ImageHeader(shape=shape, error="a header whose affine is not finite")
    return ImageHeader(
        shape=shape,
        affine=tuple(tuple(float(v) for v in r) for r in affine),
        units=units,
        volume_seconds=volume_seconds,
    )


def affine_difference(a: ImageHeader, b: ImageHeader) -> float:
    """Largest absolute difference between two affines (mm)."""
    return float(np.max(np.abs(a.affine_array - b.affine_array)))


def describe_affine_difference(here: ImageHeader, ref: ImageHeader) -> str:
    """Human-readable difference of two affines (max difference, voxel sizes, origins)."""
    a, b = here.affine_array, ref.affine_array
    vox_a = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    vox_b = np.sqrt((b[:3, :3] ** 2).sum(axis=0))

    def fmt(v: np.ndarray, sep: str) -> str:
        return sep.join(f"{x:.4g}" for x in v)

    return (
        f"an affine differing by up to {affine_difference(here, ref):.4g} mm "
        f"(voxel size {fmt(vox_a, '×')} mm vs {fmt(vox_b, '×')} mm; origin "
        f"({fmt(a[:3, 3], ', ')}) vs ({fmt(b[:3, 3], ', ')}))"
    )


def voxel_axes(affine: np.ndarray) -> tuple[np.ndarray, float]:
    """Voxel sizes (3,) of a 4×4 affine (mm) and its shear (largest off-diagonal of DᵀD − I for
    the direction cosines D; 0 for rotations and scalings)."""
    linear = np.asarray(affine, float)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    direction = linear / np.where(spacing > 0, spacing, 1.0)
    return spacing, float(np.abs(direction.T @ direction - np.eye(3)).max())


def t1w_fov_warning(name: str, shape: Sequence[int], spacing: np.ndarray) -> str | None:
    """The warning for a T1w field of view below :data:`T1W_USUAL_FOV_MM` (None when whole-head).

    Parameters
    ----------
    name
        The file as it should be named in the message.
    shape
        Voxels along the three spatial axes.
    spacing
        Voxel sizes (3,), mm.
    """
    fov = np.asarray(spacing, float)[:3] * np.asarray(shape[:3], float)
    if not np.any(fov < T1W_USUAL_FOV_MM):
        return None
    return (
        f"{name}: field of view {np.round(fov, 1).tolist()} mm, below the "
        f"{T1W_USUAL_FOV_MM:.0f} mm of an adult whole head along some axis (a small head, a "
        "child, or a slab). The anatomy stage runs anyway and records this in its sidecars "
        "(Warnings); check its brain mask and template registration in the report."
    )


def check_t1w_header(log: ProblemLog, path: Path, hdr: ImageHeader) -> list[str]:
    """Check what the anatomy stage needs from a T1w's header; return the warnings.

    Problems (appended to ``log``): unreadable, not one 3-D volume, fewer than
    :data:`T1W_MIN_VOXELS` voxels along an axis, a singular or sheared affine, spatial units
    other than mm, voxel sizes outside :data:`T1W_VOXEL_RANGE_MM`. Warnings (legal data that is
    processed): a field of view below :data:`T1W_USUAL_FOV_MM`.

    Returns
    -------
    list of str
        One line per warning (the file named relative to the dataset root).
    """
    if hdr.error is not None:
        log.add(
            path,
            "a readable NIfTI image (.nii or .nii.gz)",
            hdr.error,
            "replace it with a good copy (re-download or re-convert it)",
        )
        return []
    if hdr.shape is None or hdr.affine is None:
        return []
    if not (len(hdr.shape) == 3 or (len(hdr.shape) == 4 and hdr.shape[3] == 1)):
        log.add(
            path,
            "a 3-D anatomical image",
            f"shape {hdr.shape}",
            "keep one T1w volume per file (split or average the repetitions)",
        )
        return []
    problems = len(log)
    shape = hdr.shape[:3]
    if min(shape) < T1W_MIN_VOXELS:
        log.add(
            path,
            f"a 3-D T1w with at least {T1W_MIN_VOXELS} voxels along every axis",
            f"shape {tuple(shape)}",
            "pass the 3-D T1w volume, not a single slice",
        )
    affine = hdr.affine_array
    if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-9:
        log.add(
            path,
            "a voxel-to-world affine with non-zero voxel sizes",
            "a singular affine",
            "repair the qform/sform of the file (e.g. re-convert it from DICOM)",
        )
        return []
    spacing, shear = voxel_axes(affine)
    if shear > 1e-4:
        log.add(
            path,
            "an affine without shear (rotation and voxel sizes only)",
            f"a shear of {shear:.2g}",
            "reslice the image to an unsheared grid",
        )
    if hdr.units is not None and hdr.units not in ("mm", "unknown"):
        log.add(
            path,
            "spatial units of mm in the NIfTI header",
            f"units {hdr.units!r}",
            "convert the voxel sizes to mm and set xyzt_units (e.g. nibabel's "
            "header.set_xyzt_units('mm'))",
        )
    lo, hi = T1W_VOXEL_RANGE_MM
    if np.any(spacing < lo) or np.any(spacing > hi):
        log.add(
            path,
            f"T1w voxel sizes between {lo} and {hi} mm",
            f"{np.round(spacing, 3).tolist()} mm",
            "check the header's pixdim (units in mm) or resample the T1w",
        )
    if len(log) > problems:
        return []
    warning = t1w_fov_warning(log.rel(path), shape, spacing)
    return [warning] if warning else []


# --------------------------------------------------------------------------------------
# metadata values
# --------------------------------------------------------------------------------------


def as_number(value: object) -> float | None:
    """A finite float, or ``None`` for anything else (strings, lists, NaN, bools)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def check_time_field(
    log: ProblemLog,
    sidecar: Path,
    meta: Mapping[str, Any],
    key: str,
    what: str,
    example: str,
    max_seconds: float,
) -> float | None:
    """Check a time field (``EchoTime``, ``RepetitionTime``) and return it in seconds.

    Appends a problem and returns ``None`` when it is missing, not a positive number, or
    larger than ``max_seconds`` (then it looks like milliseconds and the fix divides by 1000).
    """
    where = "" if sidecar.exists() else " (the sidecar file does not exist)"
    if key not in meta:
        log.add(
            sidecar,
            f"{key} ({what}, in seconds) in the JSON sidecar or an inherited higher-level JSON",
            f"no {key}{where}",
            f'add "{key}": <{what} in s, e.g. {example}> to {sidecar.name}',
        )
        return None
    raw = meta[key]
    value = as_number(raw)
    if value is None or value <= 0:
        log.add(
            sidecar,
            f"{key} as a positive number of seconds",
            f"{key} = {json.dumps(raw)}",
            f'write "{key}": <{what} in s, e.g. {example}> in {sidecar.name}',
        )
        return None
    if value > max_seconds:
        log.add(
            sidecar,
            f"{key} in seconds (BIDS)",
            f"{key} = {value:g}, which looks like milliseconds",
            f'write it in seconds: "{key}": {value / 1000:g} (divide by 1000)',
        )
        return None
    return value


def reference_value(values: Sequence[float], tol: float) -> tuple[float, int]:
    """The most common value (clustered within ``tol``) and how many values agree with it.

    Ties go to the value seen first. O(n log n): one sort, two binary searches per value
    (one value per run of the dataset, so a pairwise comparison would be quadratic).
    """
    arr = np.asarray(values, dtype=float)
    ordered = np.sort(arr)
    counts = np.searchsorted(ordered, arr + tol, side="right") - np.searchsorted(
        ordered, arr - tol, side="left"
    )
    first = int(np.argmax(counts))  # the first of the largest counts
    return values[first], int(counts[first])


def mode_count(counts: Sequence[int]) -> int:
    """Most common value; ties go to the largest."""
    tally = Counter(counts)
    return max(tally, key=lambda c: (tally[c], c))


def strip_label(label: str | None, prefix: str) -> str | None:
    """A label without its ``<prefix>-`` (``"sub-01"`` -> ``"01"``); None stays None."""
    if label is None:
        return None
    label = str(label).strip()
    return label[len(prefix) + 1 :] if label.startswith(f"{prefix}-") else label


def labels(values: Sequence[str] | str | None, prefix: str) -> list[str] | None:
    """Labels without prefixes, duplicates and empty ones removed; None stays None."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        label = strip_label(str(v), prefix)
        if label and label not in out:
            out.append(label)
    return out


def select_subjects(
    log: ProblemLog,
    all_subjects: list[str],
    participant_label: Sequence[str] | None,
    exclude: Sequence[str],
) -> list[str]:
    """The subjects to process (``participant_label`` minus ``exclude``), sorted; requested
    subjects that do not exist and an empty selection are logged as problems."""
    if not all_subjects:
        log.add(
            "sub-*/",
            "subject folders sub-<label>/ with func/ BOLD runs",
            "no subject files",
            "point the workflow at the root folder of the raw BIDS dataset (the one with "
            "dataset_description.json and sub-*/ folders)",
        )
        return []
    existing = fmt_list(f"sub-{s}" for s in all_subjects)
    wanted = labels(participant_label, "sub")
    if wanted is None:
        selected = list(all_subjects)
    else:
        selected = []
        for label in wanted:
            if label in all_subjects:
                selected.append(label)
            else:
                log.add(
                    f"sub-{label}/",
                    f"the subject sub-{label} (requested by participant_label)",
                    f"no such subject; the dataset has {existing}",
                    "use subject labels that exist (with or without the 'sub-' prefix)",
                )
    dropped = labels(exclude, "sub") or []
    unknown = [s for s in dropped if s not in all_subjects]
    if unknown:
        logger.warning(
            "exclude names subjects that are not in the dataset: %s (the dataset has %s)",
            fmt_list(unknown),
            existing,
        )
    selected = sorted(s for s in selected if s not in dropped)
    if not selected and not log:
        log.add(
            "sub-*/",
            "at least one subject to process",
            f"every subject excluded (dataset: {existing}; participant_label: "
            f"{fmt_list(wanted or ['all'])}; exclude: {fmt_list(dropped)})",
            "remove subjects from exclude or widen participant_label",
        )
    return selected


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BidsFile:
    """A file of the dataset with the entities parsed from its name (labels as written)."""

    path: Path
    entities: dict[str, str]
    suffix: str
    ext: str
    datatype: str

    def ent(self, key: str) -> str | None:
        """The label of an entity, ``None`` when absent."""
        return self.entities.get(key)
