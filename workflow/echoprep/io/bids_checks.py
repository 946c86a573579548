"""Problem reports and the low-level checks behind :func:`echoprep.io.bids.discover`.

Every check appends an :class:`InputProblem` (which file, what was expected, what was found,
how to fix it) instead of raising, so that a user sees all problems of a dataset at once;
:func:`echoprep.io.bids.discover` raises one :class:`BIDSInputError` at the end.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

#: Affines of images that must share a grid may differ by at most this much (mm).
AFFINE_TOL_MM = 1e-3
#: Echo times of the same echo index may differ across runs by at most this much (s).
ECHO_TIME_TOL_S = 1e-4
#: Echo times above this (s) are taken to be written in milliseconds.
MAX_ECHO_TIME_S = 1.0
#: Repetition times above this (s) are taken to be written in milliseconds.
MAX_REPETITION_TIME_S = 100.0
#: Entities that name a run; every other entity except echo/part names an acquisition variant.
RUN_ENTITIES = ("sub", "ses", "task", "run")
FILE_ENTITIES = ("echo", "part")
EVENTS_COLUMNS_REQUIRED = ("onset", "duration")
EVENTS_COLUMNS_DOCUMENTED = "onset, duration, trial_type, stim_name"

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
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


def run_title(sub: str, ses: str | None, task: str, run: str | None) -> str:
    """``"sub-01 ses-01 task-images run-01"`` (absent entities left out)."""
    ents = [("sub", sub), ("ses", ses), ("task", task), ("run", run)]
    return " ".join(f"{k}-{v}" for k, v in ents if v is not None)


def fmt_list(values: Iterable[object]) -> str:
    """``[1, 2, 3]`` → ``"1, 2, 3"`` (``"none"`` when empty)."""
    items = [str(v) for v in values]
    return ", ".join(items) if items else "none"


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

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (for the header cache)."""
        return {"shape": self.shape, "affine": self.affine, "error": self.error}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ImageHeader:
        """Inverse of :meth:`to_json`."""
        shape = tuple(int(s) for s in obj["shape"]) if obj.get("shape") is not None else None
        affine = (
            tuple(tuple(float(v) for v in row) for row in obj["affine"])
            if obj.get("affine") is not None
            else None
        )
        return cls(shape=shape, affine=affine, error=obj.get("error"))

    @property
    def affine_array(self) -> np.ndarray:
        """The affine as a 4×4 array."""
        return np.asarray(self.affine, dtype=float)


def read_header(path: Path) -> ImageHeader:
    """Read shape and affine from a NIfTI header (no voxel data is read).

    Unreadable files give an :class:`ImageHeader` with ``error`` naming the reader's error.
    Uncompressed ``.nii`` files shorter than their header says are reported as truncated.
    """
    import nibabel as nib

    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        return ImageHeader(
            error=f"a broken symbolic link to {target} (annexed content not retrieved? "
            "try `datalad get` or `git annex get`)"
        )
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        affine = np.asarray(img.affine, dtype=float)
        proxy = img.dataobj  # an ArrayProxy: offset and dtype of the data on disk
        if path.name.endswith(".nii") and hasattr(proxy, "offset"):
            itemsize = np.dtype(proxy.dtype).itemsize
            needed = int(proxy.offset) + int(np.prod(shape)) * itemsize
            size = path.stat().st_size
            if size < needed:
                return ImageHeader(
                    error=f"a truncated file: {size} bytes, its header needs {needed} bytes"
                )
    except Exception as exc:  # any reader failure is reported, not raised
        message = str(exc).replace(str(path), path.name).strip().replace("\n", " ")
        return ImageHeader(
            error=f"nibabel could not read it ({type(exc).__name__}: {message or 'no message'})"
        )
    if not np.all(np.isfinite(affine)):
        return ImageHeader(shape=shape, error="a header whose affine is not finite")
    return ImageHeader(shape=shape, affine=tuple(tuple(float(v) for v in r) for r in affine))


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


def check_json_files(paths: Iterable[Path]) -> dict[Path, str]:
    """JSON files that do not parse, with the parser's error."""
    broken: dict[Path, str] = {}
    for path in paths:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            broken[path] = f"{type(exc).__name__}: {exc}"
    return broken


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

    Ties go to the value seen first.
    """
    best, best_n = values[0], 0
    for v in values:
        n = sum(abs(w - v) <= tol for w in values)
        if n > best_n:
            best, best_n = v, n
    return best, best_n


def mode_count(counts: Sequence[int]) -> int:
    """Most common value; ties go to the largest."""
    tally = Counter(counts)
    return max(tally, key=lambda c: (tally[c], c))


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


# --------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------


@dataclass
class RunScan:
    """What one run's files say, gathered while its problems are logged."""

    sub: str
    ses: str | None
    task: str
    run: str | None
    mags: dict[int, Path] = field(default_factory=dict)
    phases: dict[int, Path] = field(default_factory=dict)
    echo_times: dict[int, float] = field(default_factory=dict)
    echo_times_usable: bool = True
    echo_times_missing: dict[int, Path] = field(default_factory=dict)
    repetition_time: float | None = None
    slice_timing: tuple[float, ...] | None = None
    ref_header: ImageHeader | None = None
    events: Path | None = None
    fieldmap: Any = None
    pe_direction: str | None = None
    total_readout_time: float | None = None

    @property
    def title(self) -> str:
        return run_title(self.sub, self.ses, self.task, self.run)

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
        part = f.ent("part")
        if echo_label is None:
            log.add(
                f.path,
                "a multi-echo BOLD file name with an echo entity "
                "(…_echo-<index>[_part-mag|_part-phase]_bold.nii.gz)",
                "no echo-<index> in the name",
                "rename it to the echo it holds (e.g. …_echo-1_bold.nii.gz, with EchoTime in "
                "its sidecar), or move single-echo data out of the dataset (e.g. to "
                "sourcedata/)",
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


def check_parts(log: ProblemLog, scan: RunScan) -> None:
    """Phase without magnitude, and phase for some echoes only."""
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
    if scan.phases:
        with_phase = sorted(scan.phases)
        for echo in sorted(scan.mags):
            if echo not in scan.phases:
                log.add(
                    scan.expected(echo, "phase"),
                    f"a part-phase image for every echo, because {scan.title} has phase for "
                    f"echo(es) {fmt_list(with_phase)}",
                    f"no part-phase image for echo-{echo}",
                    "add the missing phase image with its sidecar, or remove all part-phase "
                    "images of this run to process it magnitude-only",
                )


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
    broken: Set[Path],
) -> None:
    """EchoTime / RepetitionTime / SliceTiming of a run."""
    tes: dict[int, float] = {}
    trs: dict[int, float] = {}
    first_meta: dict[str, Any] | None = None
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
    if scan.ref_header is not None and len(times) != scan.ref_header.shape[2]:  # type: ignore[index]
        log.add(
            side,
            f"SliceTiming with one entry per slice ({scan.ref_header.shape[2]} slices)",  # type: ignore[index]
            f"{len(times)} entries",
            "correct SliceTiming (it must list the acquisition time of every slice along the "
            "third image axis)",
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
    scan.slice_timing = times


def check_events(log: ProblemLog, scan: RunScan, events: Path | None, require: bool) -> None:
    if events is None:
        if require:
            expected = scan.events_name()
            log.add(
                expected,
                f"the events file of {scan.title} (TSV with columns {EVENTS_COLUMNS_DOCUMENTED})",
                "no such file",
                f"add {expected.name} next to the BOLD files, or move the run out of the "
                "dataset (e.g. to sourcedata/); without events use require_events=False",
            )
        return
    try:
        with events.open(encoding="utf-8") as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
    except (OSError, UnicodeDecodeError) as exc:
        log.add(
            events,
            "a readable tab-separated events file",
            f"a file that cannot be read ({type(exc).__name__}: {exc})",
            "replace it with a good copy",
        )
        return
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


# --------------------------------------------------------------------------------------
# across runs
# --------------------------------------------------------------------------------------


def check_echo_counts(log: ProblemLog, sub: str, scans: Sequence[RunScan]) -> None:
    """Missing echoes (gaps, or fewer than the subject's other runs) and extra echoes."""
    counts = [max(s.echo_indices) for s in scans if s.echo_indices]
    if not counts:
        return
    ref = mode_count(counts)
    n_ref = counts.count(ref)
    for scan in scans:
        if not scan.echo_indices:
            continue
        have = scan.echo_indices
        n = max(have)
        for echo in range(1, max(n, ref) + 1):
            if echo in have:
                continue
            why = (
                f"; {n_ref} of the {len(counts)} runs of sub-{sub} have {ref} echoes"
                if echo > n
                else ""
            )
            parts = " (part-mag and part-phase)" if scan.phases else ""
            log.add(
                scan.expected(echo, "mag"),
                f"echo-{echo} of {scan.title} (echoes 1 to {max(n, ref)}{why})",
                f"no such file; the run has echo(es) {fmt_list(have)}",
                f"add the missing echo-{echo} image{parts} with its JSON sidecar "
                "(re-convert the run from DICOM if it was lost), or move this run's files out "
                "of the dataset (e.g. to sourcedata/)",
            )
        if n > ref:
            log.add(
                scan.expected(n, "mag"),
                f"{ref} echoes per run, like {n_ref} of the {len(counts)} runs of sub-{sub} "
                f"task-{scan.task}",
                f"{n} echoes in {scan.title}",
                "check this run's conversion: delete echo files that do not belong to it, or "
                "move runs recorded with another protocol out of the dataset (e.g. to "
                "sourcedata/)",
            )


def check_echo_times_across(log: ProblemLog, sub: str, scans: Sequence[RunScan]) -> None:
    """Missing echo times, and the same echo time for an echo index in every run of a subject.

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

    for echo, (ref, n_ref, n_all) in refs.items():
        have = [(s, s.echo_times[echo]) for s in usable if echo in s.echo_times]
        if n_all < 2:
            continue
        for scan, te in have:
            if abs(te - ref) > ECHO_TIME_TOL_S:
                log.add(
                    sidecar_of(scan.mags[echo]),
                    f"EchoTime {fmt_seconds(ref)} s for echo-{echo}, as in {n_ref} of the "
                    f"{n_all} runs of sub-{sub} (tolerance 1e-4 s)",
                    f"EchoTime {fmt_seconds(te)} in {scan.title}",
                    "correct the sidecar if this is a conversion error; runs recorded with "
                    "other echo times must be moved out of the dataset (e.g. to sourcedata/) "
                    "or processed separately",
                )


def check_tr_across(log: ProblemLog, scans: Sequence[RunScan]) -> None:
    """One repetition time per session (GLMsingle fits a session's runs together)."""
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
                    "correct the sidecars, or move runs with another TR out of the dataset "
                    "(e.g. to sourcedata/)",
                )
